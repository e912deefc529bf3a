"""The results/ folder: a human- and hyperopt-readable mirror of an experiment.

- ``results.pkl``: a pickled ``hyperopt.Trials`` of every finished trial,
  rewritten atomically (temp file, fsync, rename), so a crash at any instant
  leaves the previous complete file. It is what the embedded mode resumes
  from, so there it is rewritten after each new result; a mirror of MongoDB
  (``pickle_seconds``) rewrites it at most that often and at the end, since the
  database holds every result and a restarted master mirrors what is missing
  (rewriting a file of 10,000 trials after each one would make the cost per
  trial grow with the experiment).
- one JSON per finished trial (params, ``misc`` and the full result), named so
  that sorting the names orders the trials by the family's metric, ascending
  (failures first); ``rebuild_pickle`` makes a results.pkl from them;
- ``best.json``: the best trial's hyperparameters and metrics (plus the test
  set metrics of the best model once a search has ended);
- ``experiment.json``: what the folder belongs to (space, objective, the
  settings that change what a score means, the metric and its direction), so a
  resume with anything else is refused instead of mixing two searches.

Only the search that holds the folder's lock (``lock``) writes or deletes here;
reading (``load_docs``, ``experiment``) never changes a file, so ``status``,
``best``, ``plot`` and ``export`` can run beside a search.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import pickle
import re
import time
from collections.abc import Mapping
from typing import Any

from hyperopt import Trials
from hyperopt.base import trials_from_docs

from caviar.errors import CaviarError
from caviar.files import TEMP_PREFIX, atomic_write, write_json
from caviar.family import score_of
from caviar.store import DONE, best_doc, is_ok

log = logging.getLogger(__name__)

PICKLE = "results.pkl"
BEST = "best.json"
EXPERIMENT = "experiment.json"
LIVE = "live.json"
# What makes two searches the same search; a folder holds one of them only. "env" holds
# the family's settings and the seed (what the objective reads): they change what a score means.
IDENTITY = ("space", "objective", "exp_key", "env")
TRIAL_FILE = re.compile(r"_tid(\d+)(_.*)?\.json$")
# Scores in [0, 10**6) get a fixed-width integer part, so that name order is numeric order.
SCORE_WIDTH = 13

# How often at most a mirror of MongoDB rewrites results.pkl (see ResultsDir.flush).
MIRROR_PICKLE_SECONDS = 5.0


def score_name(doc: dict[str, Any], describe: Mapping[str, Any] | None = None) -> str:
    """A readable file stem that sorts by the family's metric (``describe()``), ascending; failures first.

    ``000000.676100_tid00004_model_x`` is an accuracy of 0.6761, ``000012.500000_tid00000_trial``
    a loss of 12.5. Name order is numeric order for scores in [0, 10**6); a negative score
    starts with "-" (before all others), a larger one with "~" (after them).
    """
    tid = f"tid{doc['tid']:05d}"
    if not is_ok(doc):
        return f"!failed_{tid}"
    score = score_of(doc["result"]["loss"], describe or {})
    # The objective names its model: keep it safe as (part of) a file name.
    name = re.sub(r"[^A-Za-z0-9._-]", "_", str(doc["result"].get("model_name") or "trial"))[:80]
    value = f"~{score:.6e}" if score >= 10**6 else f"{score:0{SCORE_WIDTH}.6f}"
    return f"{value}_{tid}_{name}"


def trial_summary(doc: dict[str, Any]) -> dict[str, Any]:
    """What one trial's JSON holds: its id, hyperparameters, hyperopt's ``misc`` and full result."""
    misc = doc.get("misc") or {}
    return {
        "tid": doc["tid"],
        "exp_key": doc.get("exp_key"),
        "params": doc.get("params"),
        "misc": {"idxs": misc.get("idxs"), "vals": misc.get("vals")},
        "result": doc["result"],
        "owner": doc.get("owner"),
        "book_time": doc.get("book_time"),
        "refresh_time": doc.get("refresh_time"),
    } | ({"continues": doc["continues"]} if doc.get("continues") else {})  # a promotion: the trial it goes on from


def doc_of_summary(summary: dict[str, Any]) -> dict[str, Any]:
    """The finished trial document a trial JSON was written from (``rebuild_pickle``)."""
    tid = int(summary["tid"])
    misc = summary.get("misc") or {}
    if not isinstance(misc.get("vals"), dict) or not isinstance(misc.get("idxs"), dict):
        raise ValueError("it has no misc.vals/idxs (written by an older version)")
    return {
        "tid": tid, "state": DONE, "spec": None, "result": dict(summary["result"]), "params": summary.get("params"),
        "misc": {"tid": tid, "cmd": None, "workdir": None, "idxs": misc["idxs"], "vals": misc["vals"]},
        "exp_key": None, "owner": summary.get("owner"), "version": 0,
        "book_time": summary.get("book_time"), "refresh_time": summary.get("refresh_time"),
    } | ({"continues": summary["continues"]} if summary.get("continues") else {})


def best_summary(doc: dict[str, Any]) -> dict[str, Any]:
    """What best.json and `python -m optimizer best` show: the trial without its per-epoch history."""
    summary = trial_summary(doc)
    summary["result"] = {k: v for k, v in doc["result"].items() if k != "history"}
    return summary


class ResultsDir:
    """Keeps results/ in step with the finished trials of one experiment.

    ``describe`` is the family's metric and direction; it names the trial files.
    """

    def __init__(self, path: str, describe: Mapping[str, Any] | None = None, pickle_seconds: float = 0.0):
        self.path = path
        self.describe = dict(describe or {})
        self.pickle_seconds = pickle_seconds
        self._done: dict[int, dict[str, Any]] = {}  # the finished trials mirrored here, by tid
        self._pickled = 0  # how many of them results.pkl holds
        self._next_pickle = 0.0  # time.monotonic() before which results.pkl is not rewritten
        self._best: dict[str, Any] | None = None
        self._lock_fd: int | None = None

    def _file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def lock(self) -> None:
        """Create the folder and hold it for this process; refuse if another search holds it.

        An ``flock`` on the folder itself: the kernel drops it when the process
        dies, so a crash can never leave the folder locked, and no file is made.
        """
        if self._lock_fd is not None:
            return
        os.makedirs(self.path, exist_ok=True)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise CaviarError(f"another search is running in {self.path}/; wait for it to end, or start a new "
                              "folder with --results-dir NEW") from None
        self._lock_fd = fd

    def check(self, identity: dict[str, Any], adopt: bool = False) -> None:
        """Refuse a folder that holds another search, or a results.pkl that no experiment.json vouches for."""
        known = self._read_json(EXPERIMENT)
        if known is None:
            if os.path.exists(self._file(PICKLE)) and not adopt:
                raise CaviarError(f"{self._file(PICKLE)} has no {EXPERIMENT}: it may come from another search; "
                                  "pass --adopt to resume it as this search, or use another --results-dir")
            return
        clash = [_difference(k, known.get(k), identity.get(k)) for k in IDENTITY
                 if k in known and known.get(k) != identity.get(k)]
        if clash:
            raise CaviarError(f"{self.path}/ holds another search ({'; '.join(clash)}); start a new folder "
                              "with --results-dir NEW")

    def prepare(self, identity: dict[str, Any], settings: dict[str, Any] | None = None, adopt: bool = False) -> None:
        """Refuse to mix a different search into the folder (``check``); record the search's identity and settings."""
        os.makedirs(self.path, exist_ok=True)
        self.check(identity, adopt)
        known = self._read_json(EXPERIMENT)
        write_json(self._file(EXPERIMENT), (known or {}) | identity | (settings or {}))

    def experiment(self) -> dict[str, Any]:
        """What experiment.json says about the search in this folder ({} if nothing yet)."""
        return self._read_json(EXPERIMENT) or {}

    def _read_json(self, name: str) -> dict[str, Any] | None:
        path = self._file(name)
        if not os.path.exists(path):
            return None
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, ValueError) as err:
            raise CaviarError(f"cannot read {path}: {err}") from None

    def load_docs(self) -> list[dict[str, Any]]:
        """The finished trials saved in results.pkl ([] if none); an unreadable file is an error. Reads only."""
        path = self._file(PICKLE)
        if not os.path.exists(path):
            return []
        try:
            with open(path, "rb") as f:
                trials = pickle.load(f)
        except Exception as err:  # noqa: BLE001 - any unpickling problem
            raise CaviarError(f"cannot read {path} ({type(err).__name__}: {err}); it was left untouched; "
                              f"python -m optimizer rebuild --results-dir {self.path} rebuilds it from the "
                              "trial JSONs") from None
        if not isinstance(trials, Trials):
            raise CaviarError(f"{path} does not hold a hyperopt Trials object but a {type(trials).__name__}; "
                              "it was left untouched")
        docs = list(trials._dynamic_trials)
        self._done = {d["tid"]: d for d in docs if d["state"] == DONE}
        self._pickled = len(self._done)
        self._best = best_doc(list(self._done.values()))
        return docs

    def repair(self, docs: list[dict[str, Any]]) -> None:
        """Make the trial JSONs match results.pkl after a crash; remove this folder's stale temp files.

        Only the search holding the lock calls this. A trial whose JSON is
        missing gets it back; a JSON of a trial results.pkl does not hold, or
        under an outdated name, is removed.
        """
        self.remove_stale_temp()
        wanted = {d["tid"]: f"{score_name(d, self.describe)}.json" for d in docs if d["state"] == DONE}
        names = set(os.listdir(self.path))
        for name in sorted(names):
            match = TRIAL_FILE.search(name)
            if match and not name.startswith(TEMP_PREFIX) and wanted.get(int(match.group(1))) != name:
                log.info("removing %s: its trial is not in results.pkl (or the name is outdated)", name)
                os.remove(self._file(name))
        for doc in docs:
            if doc["tid"] in wanted and wanted[doc["tid"]] not in names:
                log.info("rewriting %s from results.pkl", wanted[doc["tid"]])
                write_json(self._file(wanted[doc["tid"]]), trial_summary(doc))

    def remove_stale_temp(self) -> None:
        """Remove the temp files a killed search left here (only the lock holder may: they are its own)."""
        for name in sorted(os.listdir(self.path)):
            if name.startswith(TEMP_PREFIX):
                log.info("removing %s: a temp file of a stopped search", name)
                os.remove(self._file(name))

    def update(self, docs: list[dict[str, Any]]) -> dict[str, Any] | None:
        """Write what is new among the finished trials; return the best trial when it changed.

        Finished trials never change, so only the new ones are written and
        compared with the best so far.
        """
        new = [d for d in docs if d["state"] == DONE and d["tid"] not in self._done]
        if not new:
            return None
        self._done.update((d["tid"], d) for d in new)
        if time.monotonic() >= self._next_pickle:
            self.flush()
        for doc in new:  # after the pickle (embedded): a JSON never names a trial that a resume would run again
            write_json(self._file(f"{score_name(doc, self.describe)}.json"), trial_summary(doc))
        best = best_doc([self._best, *new] if self._best else new)
        if best is None or best is self._best:
            return None
        self._best = best
        self.write_best(best)
        return best

    @property
    def best(self) -> dict[str, Any] | None:
        """The best finished trial mirrored so far (None: none succeeded yet)."""
        return self._best

    def flush(self) -> None:
        """Rewrite results.pkl if it lacks a finished trial; next time no sooner than ``pickle_seconds``
        from now, nor than ten times this write took (so writing stays a small share of the time)."""
        if self._pickled == len(self._done):
            return
        started = time.monotonic()
        done = [self._done[t] | {"exp_key": None} for t in sorted(self._done)]
        trials = trials_from_docs(done, validate=False)
        atomic_write(self._file(PICKLE), pickle.dumps(trials, protocol=pickle.HIGHEST_PROTOCOL))
        self._pickled = len(done)
        if self.pickle_seconds:
            took = time.monotonic() - started
            self._next_pickle = time.monotonic() + max(self.pickle_seconds, 10 * took)

    def write_best(self, best: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
        """Rewrite best.json from the best trial (and e.g. its test-set metrics)."""
        write_json(self._file(BEST), best_summary(best) | (extra or {}))

    def best_test(self) -> dict[str, Any] | None:
        """The best model's test-set metrics in best.json, with their trial: {"tid", "metrics"} (None: none yet)."""
        best = self._read_json(BEST) or {}
        return {"tid": best["tid"], "metrics": best["test"]} if best.get("test") else None

    def live(self, doc: dict[str, Any] | None) -> None:
        """Record the trial the embedded search is running now (None: none), for ``status`` to read."""
        write_json(self._file(LIVE), {"tid": None} if doc is None else {
            "tid": doc["tid"], "pid": os.getpid(), "started": doc.get("book_time"), "params": doc.get("params")})

    def running(self) -> dict[str, Any] | None:
        """The trial an embedded search is running now, if the process that recorded it is alive."""
        live = self._read_json(LIVE)
        if not live or live.get("tid") is None:
            return None
        try:
            os.kill(int(live["pid"]), 0)
        except ProcessLookupError:
            return None  # the search died mid-trial; a resume runs that trial again
        except PermissionError:
            pass  # alive, under another user
        return live

    def rebuild_pickle(self, replace: bool = False) -> int:
        """Write results.pkl from the trial JSONs; return how many trials it holds.

        An existing results.pkl is never overwritten unless ``replace``: it is
        then kept as results.pkl.damaged.
        """
        pkl = self._file(PICKLE)
        if not os.path.isdir(self.path):
            raise CaviarError(f"no results folder {self.path}/")
        docs = {}
        for name in sorted(os.listdir(self.path)):
            if not TRIAL_FILE.search(name) or name.startswith(TEMP_PREFIX):
                continue
            try:
                doc = doc_of_summary(self._read_json(name) or {})
            except (KeyError, TypeError, ValueError) as err:
                raise CaviarError(f"cannot rebuild from {self._file(name)}: {err}") from None
            if doc["tid"] in docs:
                raise CaviarError(f"two trial JSONs for trial {doc['tid']} in {self.path}/: remove one first")
            docs[doc["tid"]] = doc
        if not docs:
            raise CaviarError(f"no trial JSON in {self.path}/ to rebuild {PICKLE} from")
        if os.path.exists(pkl):
            damaged = pkl + ".damaged"
            if not replace:
                raise CaviarError(f"{pkl} exists; pass --replace to keep it as {os.path.basename(damaged)} and "
                                  "write a new one")
            if os.path.exists(damaged):
                raise CaviarError(f"{damaged} exists too; move it away first")
            os.rename(pkl, damaged)
        trials = trials_from_docs([docs[t] for t in sorted(docs)], validate=False)
        atomic_write(pkl, pickle.dumps(trials, protocol=pickle.HIGHEST_PROTOCOL))
        return len(docs)


def _difference(key: str, there: Any, now: Any) -> str:
    """One clause of the refusal: the setting (each differing variable of "env") there and now."""
    if key == "env" and isinstance(there, dict) and isinstance(now, dict):
        return ", ".join(f"{k} {there.get(k, '')!r} there, {now.get(k, '')!r} now"
                         for k in sorted(set(there) | set(now)) if there.get(k, "") != now.get(k, ""))
    return f"{key} {there!r} there, {now!r} now"
