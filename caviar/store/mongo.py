"""MongoStore: the trial store shared by a master and many workers through MongoDB.

This is the one module that knows the database layout; the master, ``MongoTrials``
and the workers all go through it. Collections of the database named in the URL
(default ``caviar``):

- ``experiments``: ``{_id: exp_key, objective: "module:qualname", env: {...},
  max_evals, algo, updated_at, ...}``: what workers need to run a trial;
- ``trials``: hyperopt's trial layout (see caviar.store) with ``params``,
  ``heartbeat`` (float epoch seconds), ``lease_losses`` and ``exp_key``;
- ``counters``: ``{_id: exp_key, next_tid}``, so trial ids stay unique across
  master restarts;
- ``workers``: ``{_id: owner, host, pid, gpu, exp_key, tid, trial_exp_key, heartbeat}``;
- GridFS bucket ``artifacts``: the best trial's files, with
  ``metadata = {exp_key, tid, name, loss, ext}``.

Every state change is one conditional single-document update, so concurrent
workers and masters never double-claim, double-count a lost lease, or let a
worker that lost its lease overwrite a result. Only plain values are stored:
nothing is pickled. Connection errors (``pymongo.errors.ConnectionFailure``)
propagate; callers retry, and each operation is safe to repeat.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time
from typing import Any

import gridfs
from pymongo import ASCENDING, MongoClient, ReturnDocument
from pymongo.errors import BulkWriteError, ConnectionFailure, PyMongoError

from caviar.errors import CaviarError
from caviar.objective import STATUS_OK, failure, to_plain
from caviar.store._base import DONE, MAX_LEASE_LOSSES, NEW, RUNNING, TrialStore, vals_key

log = logging.getLogger(__name__)

DEFAULT_DATABASE = "caviar"
ARTIFACT_BUCKET = "artifacts"
_DUPLICATE_KEY = 11000


def redact(url: str) -> str:
    """The URL with its password hidden, for messages and logs."""
    return re.sub(r"(://[^:/@]+:)[^@/]*@", r"\1***@", url)


def one_line(err: Exception) -> str:
    """pymongo's connection errors end in a long topology dump; keep the cause only."""
    text = str(err).replace("\n", " ")
    return re.split(r" \(configured timeouts|, Timeout: ", text)[0]


class MongoStore(TrialStore):
    """Trials of experiment ``exp_key`` in the MongoDB database named by ``url``.

    With ``exp_key=None`` the store serves a worker of every experiment in the
    database: ``claim`` takes from any experiment (the returned document names
    it) and the worker-side calls (``heartbeat``, ``release``, ``finish``) act
    on the experiment of the claimed trial. Optimizer-side calls need an
    ``exp_key``.
    """

    transient_errors = (ConnectionFailure,)

    def __init__(self, url: str, exp_key: str | None = None, *, timeout_seconds: float = 5.0):
        if exp_key is not None and (not isinstance(exp_key, str) or not exp_key):
            raise CaviarError(f"experiment key must be a non-empty string, got {exp_key!r}")
        self.url = url
        self.exp_key = exp_key  # type: ignore[assignment]
        self._claimed: dict[int, str] = {}  # tid -> exp_key of trials claimed with exp_key=None
        timeout_ms = int(timeout_seconds * 1000)
        try:
            self._client: MongoClient[dict[str, Any]] = MongoClient(
                url,
                serverSelectionTimeoutMS=timeout_ms,
                connectTimeoutMS=timeout_ms,
                socketTimeoutMS=max(60_000, timeout_ms),
                appname="caviar",
            )
        except (PyMongoError, ValueError) as err:
            raise CaviarError(f"bad MongoDB URL {redact(url)!r}: {one_line(err)}") from err
        self.db = self._client.get_default_database(DEFAULT_DATABASE)
        self._trials = self.db["trials"]
        self._experiments = self.db["experiments"]
        self._counters = self.db["counters"]
        self._workers = self.db["workers"]
        self._bucket = gridfs.GridFSBucket(self.db, bucket_name=ARTIFACT_BUCKET)
        try:
            self._client.admin.command("ping")
            self._trials.create_index([("exp_key", ASCENDING), ("tid", ASCENDING)], unique=True)
            self._trials.create_index([("exp_key", ASCENDING), ("state", ASCENDING), ("tid", ASCENDING)])
            self._trials.create_index([("state", ASCENDING), ("tid", ASCENDING)])  # claims of exp_key=None
        except PyMongoError as err:
            self._client.close()
            raise CaviarError(
                f"cannot use MongoDB at {redact(url)} (waited {timeout_seconds:g} s): {one_line(err)}"
            ) from err

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    # -- scoping ------------------------------------------------------------
    def _key(self) -> str:
        """The experiment of optimizer-side calls, which a multi-experiment store lacks."""
        if self.exp_key is None:
            raise ValueError("this MongoStore serves all experiments (exp_key=None); this call needs an exp_key")
        return self.exp_key

    def _scope(self, query: dict[str, Any]) -> dict[str, Any]:
        """Restrict a query to this store's experiment, if it has one."""
        return query if self.exp_key is None else {"exp_key": self.exp_key, **query}

    def _exp_of(self, tid: int) -> str:
        if self.exp_key is not None:
            return self.exp_key
        try:
            return self._claimed[tid]
        except KeyError:
            raise ValueError(f"trial {tid} was not claimed through this store") from None

    def _owned(self, tid: int, owner: str) -> dict[str, Any]:
        """The filter that matches trial ``tid`` only while ``owner`` still holds its lease."""
        return {"exp_key": self._exp_of(tid), "tid": tid, "state": RUNNING, "owner": owner}

    def _took(self, doc: dict[str, Any] | None) -> dict[str, Any] | None:
        """Remember which experiment a claimed trial belongs to (for exp_key=None)."""
        if doc is not None:
            self._claimed[doc["tid"]] = doc["exp_key"]
        return doc

    # -- the experiment -------------------------------------------------------
    def get_experiment(self, exp_key: str | None = None) -> dict[str, Any] | None:
        """The experiment document of ``exp_key`` (default: this store's experiment)."""
        return self._experiments.find_one({"_id": exp_key or self._key()})

    def put_experiment(self, doc: dict[str, Any]) -> None:
        fields = to_plain({k: v for k, v in doc.items() if k != "_id"})
        self._experiments.update_one(
            {"_id": self._key()}, {"$set": {**fields, "updated_at": time.time()}}, upsert=True
        )

    # -- the optimizer's side -----------------------------------------------
    def trial_docs(self) -> list[dict[str, Any]]:
        return list(self._trials.find({"exp_key": self._key()}, {"_id": 0}).sort("tid", ASCENDING))

    def new_tids(self, n: int) -> list[int]:
        counter = self._counters.find_one_and_update(
            {"_id": self._key()}, {"$inc": {"next_tid": n}}, upsert=True, return_document=ReturnDocument.AFTER
        )
        end = counter["next_tid"]
        return list(range(end - n, end))

    def enqueue(self, docs: list[dict[str, Any]]) -> None:
        """Insert NEW trials; repeating an insert that already landed (a retry) is accepted."""
        if not docs:
            return
        exp_key = self._key()
        rows = [
            to_plain({k: v for k, v in doc.items() if k != "_id"})
            | {"exp_key": exp_key, "state": NEW, "owner": None, "heartbeat": None, "lease_losses": 0}
            for doc in docs
        ]
        try:
            self._trials.insert_many(rows, ordered=False)
        except BulkWriteError as err:
            errors = err.details["writeErrors"]
            if any(e["code"] != _DUPLICATE_KEY for e in errors):
                raise
            mine = {rows[e["index"]]["tid"]: rows[e["index"]] for e in errors}
            stored = self._trials.find({"exp_key": exp_key, "tid": {"$in": list(mine)}}, {"tid": 1, "misc": 1})
            same = {d["tid"] for d in stored if vals_key(d["misc"]) == vals_key(mine[d["tid"]]["misc"])}
            clashes = sorted(set(mine) - same)
            if clashes:
                raise ValueError(f"trials {clashes} already exist in experiment {exp_key!r}") from None

    def count_by_state(self) -> dict[int, int]:
        counts = {NEW: 0, RUNNING: 0, DONE: 0}
        pipeline = [{"$match": {"exp_key": self._key()}}, {"$group": {"_id": "$state", "n": {"$sum": 1}}}]
        for row in self._trials.aggregate(pipeline):
            counts[row["_id"]] = row["n"]
        return counts

    def requeue_expired(self, lease_seconds: float, now: float | None = None) -> list[int]:
        """See TrialStore; with exp_key=None it covers every experiment.

        Each trial changes by an update conditional on the owner and heartbeat
        that were seen expired, so of several masters or workers doing this at
        once exactly one counts the loss.
        """
        now = time.time() if now is None else now
        expired = self._trials.find(
            self._scope({"state": RUNNING, "heartbeat": {"$lt": now - lease_seconds}}),
            {"tid": 1, "owner": 1, "heartbeat": 1, "lease_losses": 1},
        )
        changed = []
        for doc in list(expired):
            losses = doc.get("lease_losses", 0) + 1
            update: dict[str, Any] = {"owner": None, "heartbeat": None, "refresh_time": now}
            if losses >= MAX_LEASE_LOSSES:
                update |= {"state": DONE, "result": failure(f"lost its worker {losses} times (lease expired)")}
            else:
                update["state"] = NEW
            seen = {"_id": doc["_id"], "state": RUNNING, "owner": doc["owner"], "heartbeat": doc["heartbeat"]}
            if self._trials.update_one(seen, {"$set": update, "$inc": {"lease_losses": 1}}).modified_count:
                log.warning("trial %s: lease of %s expired (%d lost): %s", doc["tid"], doc["owner"], losses,
                            "failed" if update["state"] == DONE else "back in the queue")
                changed.append(doc["tid"])
        return changed

    def live_workers(self, within_seconds: float) -> list[dict[str, Any]]:
        """Workers seen recently that serve this experiment (or every experiment)."""
        recent = self._workers.find({"heartbeat": {"$gte": time.time() - within_seconds}})
        return [w for w in recent if self.exp_key is None or w.get("exp_key") in (None, self.exp_key)]

    def delete_all(self) -> None:
        """Delete the experiment's trials and artifacts; tids stay reserved so none is reused."""
        exp_key = self._key()
        self._trials.delete_many({"exp_key": exp_key})
        for f in self._bucket.find({"metadata.exp_key": exp_key}):
            self._bucket.delete(f._id)

    # -- the worker's side ----------------------------------------------------
    def claim(self, owner: str) -> dict[str, Any] | None:
        now = time.time()
        doc = self._trials.find_one_and_update(
            self._scope({"state": NEW}),
            {"$set": {"state": RUNNING, "owner": owner, "heartbeat": now, "book_time": now, "refresh_time": now}},
            sort=[("tid", ASCENDING)],
            projection={"_id": 0},
            return_document=ReturnDocument.AFTER,
        )
        return self._took(doc)

    def held_trial(self, owner: str) -> dict[str, Any] | None:
        """The trial ``owner`` holds, if any: recovers a claim whose reply an outage lost."""
        return self._took(self._trials.find_one(self._scope({"state": RUNNING, "owner": owner}), {"_id": 0}))

    def heartbeat(self, tid: int, owner: str) -> bool:
        refreshed = self._trials.update_one(self._owned(tid, owner), {"$set": {"heartbeat": time.time()}})
        return refreshed.matched_count == 1

    def release(self, tid: int, owner: str) -> None:
        self._trials.update_one(
            self._owned(tid, owner),
            {"$set": {"state": NEW, "owner": None, "heartbeat": None, "refresh_time": time.time()}},
        )

    def finish(self, tid: int, owner: str, result: dict[str, Any], artifacts: dict[str, str] | None = None) -> bool:
        """See TrialStore. Idempotent: a retry after a write that landed returns True again."""
        exp_key = self._exp_of(tid)
        result = to_plain(result)
        written = self._trials.update_one(
            self._owned(tid, owner), {"$set": {"state": DONE, "result": result, "refresh_time": time.time()}}
        )
        if not written.matched_count:
            doc = self._trials.find_one({"exp_key": exp_key, "tid": tid}, {"state": 1, "owner": 1, "result": 1})
            if not (doc and doc["state"] == DONE and doc.get("owner") == owner and doc.get("result") == result):
                return False
        if artifacts and result.get("status") == STATUS_OK:
            self._keep_if_best(exp_key, tid, result, artifacts)
        return True

    def worker_alive(self, owner: str, info: dict[str, Any]) -> None:
        fields = {"host": socket.gethostname()} | to_plain(info) | {"heartbeat": time.time()}
        self._workers.update_one({"_id": owner}, {"$set": fields}, upsert=True)

    def worker_gone(self, owner: str) -> None:
        self._workers.delete_one({"_id": owner})

    # -- artifacts -----------------------------------------------------------
    def _keep_if_best(self, exp_key: str, tid: int, result: dict[str, Any], artifacts: dict[str, str]) -> None:
        """Upload a new best trial's files, then drop every other trial's files of the experiment.

        Upload happens before deletion so a crash never leaves the experiment
        without a best artifact; racing finishers converge because each prunes
        to the best trial among the uploaded files.
        """
        best = self._trials.find_one(
            {"exp_key": exp_key, "state": DONE, "result.status": STATUS_OK},
            {"tid": 1},
            sort=[("result.loss", ASCENDING), ("tid", ASCENDING)],
        )
        if best is None or best["tid"] != tid:
            return
        stored = {f.metadata["name"] for f in self._bucket.find({"metadata.exp_key": exp_key, "metadata.tid": tid})}
        for name, path in artifacts.items():
            if name in stored:
                continue
            ext = os.path.splitext(path)[1]
            metadata = {"exp_key": exp_key, "tid": tid, "name": name, "loss": result["loss"], "ext": ext}
            with open(path, "rb") as source:
                self._bucket.upload_from_stream(f"{exp_key}/{tid}/{name}", source, metadata=metadata)
        files = list(self._bucket.find({"metadata.exp_key": exp_key}))
        keep = min((f.metadata["loss"], f.metadata["tid"]) for f in files)[1]
        for f in files:
            if f.metadata["tid"] != keep:
                self._bucket.delete(f._id)

    def fetch_best_artifact(self, name: str, dest: str) -> int | None:
        files = list(self._bucket.find({"metadata.exp_key": self._key(), "metadata.name": name}))
        if not files:
            return None
        best = min(files, key=lambda f: (f.metadata["loss"], f.metadata["tid"]))
        tmp = f"{dest}.tmp"
        with open(tmp, "wb") as out:
            self._bucket.download_to_stream(best._id, out)
        os.replace(tmp, dest)
        return int(best.metadata["tid"])

    # -- early stopping (see TrialStore) -------------------------------------
    # Reports and decisions are fields of the trial; checkpoints are files of the
    # GridFS bucket ``checkpoints`` with metadata {exp_key, tid, step, owner, info}.
    checkpoint_bucket = "checkpoints"

    def report(self, tid: int, owner: str, step: int, loss: float | None) -> bool:
        return self._trials.update_one(self._owned(tid, owner), {"$set": {f"reports.{step}": loss}}).matched_count == 1

    def step_losses(self, tid: int, step: int) -> dict[int, float | None]:
        # Filtered here, not by {"reports.<step>": {"$exists": true}}: stand-ins such as nx-27017 skip null values.
        key = str(step)
        found = self._trials.find({"exp_key": self._exp_of(tid), "reports": {"$exists": True}},
                                  {"_id": 0, "tid": 1, "reports": 1})
        return {d["tid"]: d["reports"][key] for d in sorted(found, key=lambda d: d["tid"]) if key in d["reports"]}

    def decide(self, tid: int, owner: str, step: int, decision: dict[str, Any]) -> dict[str, Any] | None:
        decision = to_plain(decision)
        unset = self._owned(tid, owner) | {f"decisions.{step}": {"$exists": False}}
        if self._trials.update_one(unset, {"$set": {f"decisions.{step}": decision}}).modified_count:
            return decision
        doc = self._trials.find_one({"exp_key": self._exp_of(tid), "tid": tid}, {"_id": 0, "decisions": 1})
        return ((doc or {}).get("decisions") or {}).get(str(step))

    def _checkpoints(self) -> gridfs.GridFSBucket:
        return gridfs.GridFSBucket(self.db, bucket_name=self.checkpoint_bucket)

    def put_checkpoint(self, tid: int, owner: str, path: str, step: int, info: dict[str, Any] | None = None) -> bool:
        """Upload the new checkpoint first, then delete the trial's older ones: one is always there."""
        if self._trials.find_one(self._owned(tid, owner), {"_id": 1}) is None:
            return False
        exp_key, bucket = self._exp_of(tid), self._checkpoints()
        metadata = {"exp_key": exp_key, "tid": tid, "step": step, "owner": owner, "info": to_plain(info or {})}
        with open(path, "rb") as source:
            new_id = bucket.upload_from_stream(f"{exp_key}/{tid}/checkpoint", source, metadata=metadata)
        for f in bucket.find({"metadata.exp_key": exp_key, "metadata.tid": tid}):
            if f._id != new_id:
                bucket.delete(f._id)
        return True

    def get_checkpoint(self, tid: int, dest: str) -> tuple[int, dict[str, Any]] | None:
        bucket = self._checkpoints()
        files = list(bucket.find({"metadata.exp_key": self._exp_of(tid), "metadata.tid": tid}))
        if not files:
            return None
        latest = max(files, key=lambda f: (f.metadata["step"], f.upload_date))
        with open(f"{dest}.tmp", "wb") as out:
            bucket.download_to_stream(latest._id, out)
        os.replace(f"{dest}.tmp", dest)
        return int(latest.metadata["step"]), latest.metadata.get("info") or {}

    def discard_checkpoint(self, tid: int) -> None:
        bucket = self._checkpoints()
        for f in bucket.find({"metadata.exp_key": self._exp_of(tid), "metadata.tid": tid}):
            bucket.delete(f._id)
