"""The results/ folder: a human- and hyperopt-readable mirror of an experiment.

- ``results.pkl``: a pickled ``hyperopt.Trials`` of every finished trial,
  rewritten atomically (temp file, fsync, rename) after each new result, so a
  crash at any instant leaves the previous complete file. It is also what the
  embedded mode resumes from.
- one JSON per finished trial, named so that sorting the names orders the
  trials by score (best last, failures first), as the seed project did;
- ``best.json``: the best trial's hyperparameters and metrics (plus the test
  set metrics of the best model once a search has ended);
- ``experiment.json``: what the folder belongs to (space, objective), so a
  resume with a different space is refused instead of mixing two searches.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
from typing import Any

from hyperopt import Trials
from hyperopt.base import trials_from_docs

from caviar.errors import CaviarError
from caviar.files import atomic_write, write_json
from caviar.store import DONE, best_doc, is_ok

log = logging.getLogger(__name__)

PICKLE = "results.pkl"
BEST = "best.json"
EXPERIMENT = "experiment.json"
# What makes two searches the same search; a folder holds one of them only.
IDENTITY = ("space", "objective", "exp_key")
TRIAL_FILE = re.compile(r"_tid(\d+)_.*\.json$")


def score_name(doc: dict[str, Any]) -> str:
    """A file stem that sorts by score (−loss, e.g. accuracy): failures first, best last."""
    tid = f"tid{doc['tid']:05d}"
    if not is_ok(doc):
        return f"!failed_{tid}"
    score = -doc["result"]["loss"]
    # The objective names its model: keep it safe as (part of) a file name.
    name = re.sub(r"[^A-Za-z0-9._-]", "_", str(doc["result"].get("model_name") or "trial"))[:80]
    if 0 <= score < 10:
        return f"{score:.6f}_{tid}_{name}"
    # Outside [0, 10): shift into a fixed-width positive number so text order = numeric order.
    return f"~{score + 1e12:024.6f}_{tid}_{name}"


def trial_summary(doc: dict[str, Any]) -> dict[str, Any]:
    """What one trial's JSON holds: its id, hyperparameters and full result."""
    return {
        "tid": doc["tid"],
        "exp_key": doc.get("exp_key"),
        "params": doc.get("params"),
        "result": doc["result"],
        "owner": doc.get("owner"),
        "book_time": doc.get("book_time"),
        "refresh_time": doc.get("refresh_time"),
    }


def best_summary(doc: dict[str, Any]) -> dict[str, Any]:
    """What best.json and `python -m optimizer best` show: the trial without its per-epoch history."""
    summary = trial_summary(doc)
    summary["result"] = {k: v for k, v in doc["result"].items() if k != "history"}
    return summary


class ResultsDir:
    """Keeps results/ in step with the finished trials of one experiment."""

    def __init__(self, path: str):
        self.path = path
        self._written: set[int] = set()
        self._best_tid: int | None = None

    def _file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def prepare(self, identity: dict[str, Any], settings: dict[str, Any] | None = None) -> None:
        """Create the folder and refuse to mix a different search into it; record its settings."""
        os.makedirs(self.path, exist_ok=True)
        known = self._read_json(EXPERIMENT)
        if known is not None:
            clash = {k: (known.get(k), identity.get(k)) for k in IDENTITY if known.get(k) != identity.get(k)}
            if clash:
                details = ", ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in clash.items())
                raise CaviarError(f"{self.path} holds another search ({details}); use another --results-dir")
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
        """The finished trials saved in results.pkl ([] if none); an unreadable file is an error, left untouched."""
        path = self._file(PICKLE)
        if not os.path.exists(path):
            return []
        try:
            with open(path, "rb") as f:
                trials = pickle.load(f)
            docs = list(trials._dynamic_trials)
        except Exception as err:  # noqa: BLE001 - any unpickling problem
            raise CaviarError(f"cannot read {path} ({type(err).__name__}: {err}); it was left untouched") from None
        if not isinstance(trials, Trials):
            raise CaviarError(f"{path} does not hold a hyperopt Trials object; it was left untouched")
        self._written = {d["tid"] for d in docs}
        self._drop_orphans()
        return docs

    def _drop_orphans(self) -> None:
        """Remove trial JSONs that results.pkl does not hold (a crash between the two writes)."""
        for name in os.listdir(self.path):
            match = TRIAL_FILE.search(name)
            if match and int(match.group(1)) not in self._written:
                log.info("removing %s: its trial was not recorded before the last stop", name)
                os.remove(self._file(name))

    def update(self, docs: list[dict[str, Any]]) -> dict[str, Any] | None:
        """Write what is new among the finished trials; return the best trial when it changed."""
        done = [d for d in docs if d["state"] == DONE]
        new = [d for d in done if d["tid"] not in self._written]
        if not new:
            return None
        trials = trials_from_docs([d | {"exp_key": None} for d in done], validate=False)
        atomic_write(self._file(PICKLE), pickle.dumps(trials, protocol=pickle.HIGHEST_PROTOCOL))
        for doc in new:  # after the pickle: a JSON never names a trial that a resume would run again
            write_json(self._file(f"{score_name(doc)}.json"), trial_summary(doc))
        self._written.update(d["tid"] for d in new)
        best = best_doc(done)
        if best is None or best["tid"] == self._best_tid:
            return None
        self._best_tid = best["tid"]
        self.write_best(best)
        return best

    def write_best(self, best: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
        """Rewrite best.json from the best trial (and e.g. its test-set metrics)."""
        write_json(self._file(BEST), best_summary(best) | (extra or {}))
