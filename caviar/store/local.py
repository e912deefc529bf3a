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
        """Copy an artifact into place atomically, then record whose it is (best_<name>.json)."""
        os.makedirs(self._artifact_dir, exist_ok=True)
        ext = os.path.splitext(path)[1]
        dest = os.path.join(self._artifact_dir, f"best_{name}{ext}")
        tmp = dest + ".tmp"
        shutil.copyfile(path, tmp)
        os.replace(tmp, dest)
        record = os.path.join(self._artifact_dir, f"best_{name}.json")
        with open(record + ".tmp", "w") as f:
            json.dump({"tid": tid, "file": os.path.basename(dest)}, f)
        os.replace(record + ".tmp", record)

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
        shutil.copyfile(os.path.join(self._artifact_dir, kept["file"]), dest)
        return int(kept["tid"])
