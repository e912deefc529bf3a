"""LocalStore: the trial store of the embedded mode, held in this process.

Durability comes from the results mirror (results/results.pkl is rewritten
atomically after every finished trial); this store is seeded from it on resume.
Queued and running trials are deliberately not persisted: after a crash the
trial that was in flight is simply proposed and run again.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import socket
import threading
import time
from typing import Any

from caviar.files import atomic_copy, remove_durably, write_json
from caviar.store._base import DONE, MAX_LEASE_LOSSES, NEW, RUNNING, TrialStore, best_doc
from caviar.objective import ATTACHMENTS_KEY, failure

log = logging.getLogger(__name__)


class LocalStore(TrialStore):
    """An in-memory, thread-safe store; artifacts of the best trial are kept in ``artifact_dir``."""

    def __init__(self, exp_key: str = "local", docs: list[dict[str, Any]] | None = None, artifact_dir: str | None = None):
        self.exp_key = exp_key
        self._docs: dict[int, dict[str, Any]] = {}
        self._experiment: dict[str, Any] | None = None
        self._workers: dict[str, dict[str, Any]] = {}
        self._lock = threading.RLock()
        self._artifact_dir = artifact_dir
        for doc in docs or []:
            if doc["state"] == DONE:
                self._docs[doc["tid"]] = copy.deepcopy(doc) | {"exp_key": exp_key}
        self._next_tid = max(self._docs, default=-1) + 1

    def get_experiment(self) -> dict[str, Any] | None:
        with self._lock:
            return copy.deepcopy(self._experiment)

    def put_experiment(self, doc: dict[str, Any]) -> None:
        with self._lock:
            self._experiment = (self._experiment or {"_id": self.exp_key}) | copy.deepcopy(doc)

    def trial_docs(self) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(self._docs[t]) for t in sorted(self._docs)]

    def trial(self, tid: int) -> dict[str, Any] | None:
        with self._lock:
            return copy.deepcopy(self._docs.get(tid))

    def new_tids(self, n: int) -> list[int]:
        with self._lock:
            tids = list(range(self._next_tid, self._next_tid + n))
            self._next_tid += n
            return tids

    def enqueue(self, docs: list[dict[str, Any]]) -> None:
        with self._lock:
            for doc in docs:
                if doc["tid"] in self._docs:
                    raise ValueError(f"trial {doc['tid']} already exists")
            for doc in docs:
                self._docs[doc["tid"]] = copy.deepcopy(doc) | {
                    "exp_key": self.exp_key, "state": NEW, "owner": None, "heartbeat": None, "lease_losses": 0,
                }

    def count_by_state(self) -> dict[int, int]:
        with self._lock:
            counts = {NEW: 0, RUNNING: 0, DONE: 0}
            for doc in self._docs.values():
                counts[doc["state"]] = counts.get(doc["state"], 0) + 1
            return counts

    def requeue_expired(self, lease_seconds: float, now: float | None = None) -> list[int]:
        now = time.time() if now is None else now
        changed = []
        with self._lock:
            for doc in self._docs.values():
                if doc["state"] != RUNNING or doc["heartbeat"] >= now - lease_seconds:
                    continue
                doc["lease_losses"] += 1
                if doc["lease_losses"] >= MAX_LEASE_LOSSES:
                    doc["state"] = DONE
                    doc["result"] = failure(f"lost its worker {doc['lease_losses']} times (lease expired)")
                else:
                    doc["state"] = NEW
                doc["lost_by"], doc["owner"] = doc["owner"], None
                doc["refresh_time"] = now
                changed.append(doc["tid"])
        return changed

    def live_workers(self, within_seconds: float) -> list[dict[str, Any]]:
        cutoff = time.time() - within_seconds
        with self._lock:
            return [copy.deepcopy(w) for w in self._workers.values() if w["heartbeat"] >= cutoff]

    def claim(self, owner: str) -> dict[str, Any] | None:
        with self._lock:
            queued = [d for d in self._docs.values() if d["state"] == NEW]
            if not queued:
                return None
            doc = min(queued, key=lambda d: d["tid"])
            now = time.time()
            doc.update(state=RUNNING, owner=owner, heartbeat=now, book_time=now, refresh_time=now)
            return copy.deepcopy(doc)

    def _held(self, tid: int, owner: str, requeued: bool = False) -> dict[str, Any] | None:
        """The trial while ``owner`` holds it (or, if ``requeued``, waits requeued from ``owner``)."""
        doc = self._docs.get(tid)
        if doc and doc["state"] == RUNNING and doc["owner"] == owner:
            return doc
        if requeued and doc and doc["state"] == NEW and doc.get("lost_by") == owner:
            return doc
        return None

    def heartbeat(self, tid: int, owner: str) -> bool:
        with self._lock:
            doc = self._held(tid, owner, requeued=True)
            if doc:
                doc.update(state=RUNNING, owner=owner, heartbeat=time.time())
            return doc is not None

    def release(self, tid: int, owner: str) -> None:
        with self._lock:
            doc = self._held(tid, owner)
            if doc:
                doc.update(state=NEW, owner=None, lost_by=None, refresh_time=time.time())

    def finish(self, tid: int, owner: str, result: dict[str, Any], artifacts: dict[str, str] | None = None) -> bool:
        if ATTACHMENTS_KEY in result:
            log.warning("trial %s: hyperopt result attachments are kept only in MongoDB; dropped", tid)
            result = {k: v for k, v in result.items() if k != ATTACHMENTS_KEY}
        with self._lock:
            doc = self._held(tid, owner, requeued=True)
            if doc is None:  # a repeated finish of what this owner already recorded is fine
                done = self._docs.get(tid)
                same = done is not None and (done.get("owner"), done.get("result")) == (owner, result)
                return same and done["state"] == DONE
            doc.update(state=DONE, owner=owner, result=copy.deepcopy(result), refresh_time=time.time())
            if artifacts and self._artifact_dir and best_doc(list(self._docs.values())) is doc:
                for name, path in artifacts.items():
                    self._keep_artifact(name, path, tid)
            return True

    def _keep_artifact(self, name: str, path: str, tid: int) -> None:
        """Copy a new best's artifact into place, so that a crash never pairs a file with the wrong trial.

        Order: remove the pointer (best_<name>.json), replace the file atomically,
        write the pointer atomically. A crash in between leaves no pointer (no
        kept artifact: the caller says so) rather than a pointer to the wrong file.
        """
        os.makedirs(self._artifact_dir, exist_ok=True)
        dest = os.path.join(self._artifact_dir, f"best_{name}{os.path.splitext(path)[1]}")
        record = os.path.join(self._artifact_dir, f"best_{name}.json")
        remove_durably(record)
        atomic_copy(path, dest)
        write_json(record, {"tid": tid, "file": os.path.basename(dest)})

    def worker_alive(self, owner: str, info: dict[str, Any]) -> None:
        with self._lock:
            self._workers[owner] = {"_id": owner, "host": socket.gethostname()} | info | {"heartbeat": time.time()}

    def worker_gone(self, owner: str) -> None:
        with self._lock:
            self._workers.pop(owner, None)

    def fetch_best_artifact(self, name: str, dest: str) -> int | None:
        record = os.path.join(self._artifact_dir or "", f"best_{name}.json")
        if not self._artifact_dir or not os.path.exists(record):
            return None
        with open(record) as f:
            kept = json.load(f)
        shutil.copyfile(os.path.join(self._artifact_dir, os.path.basename(kept["file"])), dest)
        return int(kept["tid"])

    # -- early stopping (see TrialStore) -------------------------------------
    def report(self, tid: int, owner: str, step: int, loss: float | None) -> bool:
        with self._lock:
            doc = self._held(tid, owner)
            if doc is not None:
                doc.setdefault("reports", {})[str(step)] = loss
            return doc is not None

    def step_losses(self, tid: int, step: int) -> dict[int, float | None]:
        with self._lock:
            return {t: d["reports"][str(step)] for t, d in sorted(self._docs.items())
                    if str(step) in d.get("reports", {})}

    def decide(self, tid: int, owner: str, step: int, decision: dict[str, Any]) -> dict[str, Any] | None:
        with self._lock:
            doc = self._docs.get(tid)
            recorded = (doc or {}).get("decisions", {}).get(str(step))
            if recorded is None and self._held(tid, owner) is not None:
                recorded = doc.setdefault("decisions", {})[str(step)] = copy.deepcopy(decision)
            return copy.deepcopy(recorded)

    def _checkpoint_paths(self, tid: int) -> tuple[str, str]:
        """The checkpoint file of ``tid`` and its record: in ``artifact_dir``/checkpoints, else a folder of this store."""
        if "_checkpoint_dir" not in self.__dict__:
            if self._artifact_dir:
                self._checkpoint_dir = os.path.join(self._artifact_dir, "checkpoints")
            else:
                import tempfile  # only stores without a results folder (tests, scripts) need one

                self._checkpoint_dir = tempfile.mkdtemp(prefix="caviar-checkpoints-")
        base = os.path.join(self._checkpoint_dir, f"tid{tid:05d}")
        return base + ".ckpt", base + ".json"

    def put_checkpoint(self, tid: int, owner: str, path: str, step: int, info: dict[str, Any] | None = None) -> bool:
        with self._lock:
            doc = self._held(tid, owner)
            if doc is None:
                return False
            data, record = self._checkpoint_paths(tid)
            os.makedirs(os.path.dirname(data), exist_ok=True)
            shutil.copyfile(path, data + ".tmp")
            os.replace(data + ".tmp", data)
            # The params tell apart a checkpoint of the same tid proposed again after a crash with another point.
            with open(record + ".tmp", "w") as f:
                json.dump({"tid": tid, "step": step, "info": info or {}, "params": doc["params"]}, f)
            os.replace(record + ".tmp", record)
            return True

    def get_checkpoint(self, tid: int, dest: str) -> tuple[int, dict[str, Any]] | None:
        with self._lock:
            data, record = self._checkpoint_paths(tid)
            doc = self._docs.get(tid)
            if doc is None or not os.path.exists(record):
                return None
            with open(record) as f:
                kept = json.load(f)
            if kept["params"] != doc["params"]:
                return None
            shutil.copyfile(data, dest)
            return int(kept["step"]), kept["info"]

    def discard_checkpoint(self, tid: int) -> None:
        with self._lock:
            for path in self._checkpoint_paths(tid):
                if os.path.exists(path):
                    os.remove(path)
            if not self._artifact_dir:  # the store's own temp folder: removed once it holds nothing, not left behind
                try:
                    os.rmdir(self._checkpoint_dir)
                except OSError:  # other trials' checkpoints are still in it
                    return
                del self._checkpoint_dir
