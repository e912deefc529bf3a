"""MongoStore: the trial store shared by a master and many workers through MongoDB.

This is the one module that knows the database layout; the master, ``MongoTrials``
and the workers all go through it. Collections of the database named in the URL
(default ``caviar``):

- ``experiments``: ``{_id: exp_key, objective: "module:qualname", env: {...},
  max_evals, algo, updated_at, ...}``: what workers need to run a trial;
- ``trials``: hyperopt's trial layout (see caviar.store) with ``params``,
  ``heartbeat``, ``lease_losses`` and ``exp_key``, indexed by ``refresh_time``
  so that readers fetch only what changed (``TrialView``);
- ``counters``: ``{_id: exp_key, next_tid}``, so trial ids stay unique across
  master restarts;
- ``workers``: ``{_id: owner, host, pid, gpu, exp_key, tid, trial_exp_key, heartbeat}``;
- ``masters``: ``{_id: exp_key, owner, host, pid, heartbeat}``: the master lease,
  so that one master at a time queues an experiment's trials;
- GridFS bucket ``artifacts``: the best trial's files, with
  ``metadata = {exp_key, tid, name, loss, ext}``.

Time is the database's: every lease time (``heartbeat``, ``book_time``,
``refresh_time`` of trials, workers and masters) is the server's clock, read
with ``hello`` (``localTime``) just before the write, and judged against it,
never against a host's clock, so hosts whose clocks disagree share leases
safely. Times are stored as float epoch seconds. (MongoDB 4.2+ could stamp
them in the write itself with ``$$NOW`` in an update pipeline, and
``$currentDate`` writes dates; the nx-27017 test server has no update
pipelines and compares dates written by updates wrongly, so the form used
here is the one that is right on both.)

Every state change is one conditional single-document update, so concurrent
workers and masters never double-claim, double-count a lost lease, or let a
worker that lost its lease overwrite a result. Only plain values are stored:
nothing is pickled. Connection errors (``pymongo.errors.ConnectionFailure``)
propagate; callers retry, and each operation is safe to repeat.
"""

from __future__ import annotations

import datetime
import functools
import logging
import math
import os
import re
import socket
import threading
import time
from typing import Any, Callable, TypeVar

import gridfs
from bson.errors import InvalidDocument
from pymongo import ASCENDING, MongoClient, ReturnDocument
from pymongo.errors import BulkWriteError, ConnectionFailure, DuplicateKeyError, PyMongoError, WriteError

from caviar.errors import CaviarError
from caviar.objective import ATTACHMENTS_KEY, STATUS_OK, failure, to_plain
from caviar.store._base import DONE, MAX_LEASE_LOSSES, NEW, RUNNING, TrialStore, vals_key

log = logging.getLogger(__name__)

DEFAULT_DATABASE = "caviar"
ARTIFACT_BUCKET = "artifacts"
_DUPLICATE_KEY = 11000
# The largest integer a BSON document holds: trial ids and max_evals must stay below it.
MAX_INT64 = 2**63 - 1
# A change made with the server's clock just before a reader's query may become
# visible just after it: readers look this far back each time (see TrialView).
VISIBILITY_SLACK = 2.0
F = TypeVar("F", bound=Callable[..., Any])
# The _id of the documents of the experiment without a key (hyperopt's exp_key=None);
# named experiments have non-empty keys.
NO_KEY_ID = ""
_THIS = object()  # "this store's experiment", where None names the experiment without a key
# What a document the database cannot hold raises: bson's encoder (a key with a NUL byte; pymongo's
# DocumentTooLarge, over 16 MB, derives from it), an integer over 8 bytes, the server refusing the write.
_REFUSED = (InvalidDocument, OverflowError, WriteError)
# hyperopt's Trials.aname: the attachment name of a trial's own attachment.
TRIAL_ATTACHMENT = "ATTACH::{tid}::{name}"
ATTACHMENT_BUCKET = "attachments"


def _watched(method: F) -> F:
    """Record whether the database answered the call (see ``MongoStore.steady_for``)."""

    @functools.wraps(method)
    def call(self: "MongoStore", *args: Any, **kw: Any) -> Any:
        try:
            value = method(self, *args, **kw)
        except ConnectionFailure:
            with self._health_lock:
                self._answering_since = None
            raise
        with self._health_lock:
            if self._answering_since is None:
                self._answering_since = time.monotonic()
        return value

    return call  # type: ignore[return-value]


def _storable_loss(doc: dict[str, Any]) -> dict[str, Any]:
    """A NaN or infinite ``result.loss`` as a string ("nan", "inf", "-inf"): JSON-backed servers refuse them."""
    loss = (doc.get("result") or {}).get("loss")
    if isinstance(loss, float) and not math.isfinite(loss):
        doc["result"] = doc["result"] | {"loss": str(loss)}
    return doc


def _readable_loss(doc: dict[str, Any]) -> dict[str, Any]:
    """Undo ``_storable_loss``: the float that hyperopt code expects."""
    loss = (doc.get("result") or {}).get("loss")
    if isinstance(loss, str):
        doc["result"]["loss"] = float(loss)
    return doc


def equal(**fields: Any) -> dict[str, Any]:
    """A filter of equalities written as ``{"$eq": value}`` (``None`` as is).

    In MongoDB it means what ``{field: value}`` means. SQL-backed servers such
    as nx-27017 answer it from the compound indexes, whereas a bare value there
    also looks for the value inside arrays, which no index answers: every
    query of the queue would read every trial, and the cost per trial would
    grow with the experiment. Top-level ``$or`` is avoided for the same reason.
    """
    return {name: value if value is None else {"$eq": value} for name, value in fields.items()}


def tid_order(tid: Any) -> tuple[int, Any]:
    """Sort key of trial ids: numbers in order, then any other ids hyperopt code inserted (strings)."""
    return (0, tid) if isinstance(tid, (int, float)) else (1, str(tid))


def check_int64(value: Any, what: str) -> None:
    """Refuse an integer that MongoDB cannot store, before anything is written."""
    if isinstance(value, int) and value > MAX_INT64:
        raise CaviarError(f"{what} {value} is more than MongoDB can store (at most {MAX_INT64})")


def redact(url: str) -> str:
    """The URL with its password hidden, for messages and logs."""
    return re.sub(r"(://[^:/@]+:)[^@/]*@", r"\1***@", url)


def one_line(err: Exception) -> str:
    """pymongo's connection errors end in a long topology dump; keep the cause only."""
    text = str(err).replace("\n", " ")
    return re.split(r" \(configured timeouts|, Timeout: |, full error: ", text)[0]


class MongoStore(TrialStore):
    """Trials of experiment ``exp_key`` in the MongoDB database named by ``url``.

    ``exp_key=None`` has hyperopt's meaning: reads (``trial_docs``, counts,
    ``requeue_expired``, ``delete_all``) cover every experiment of the
    database, and what it writes belongs to the experiment without a key
    (trials with ``exp_key: None``). A worker with ``exp_key=None`` serves
    every experiment: ``claim`` takes from any (the returned document names
    it) and ``heartbeat``, ``release`` and ``finish`` act on the experiment of
    the claimed trial.
    """

    transient_errors = (ConnectionFailure,)

    def __init__(self, url: str, exp_key: str | None = None, *, timeout_seconds: float = 5.0):
        if exp_key is not None and (not isinstance(exp_key, str) or not exp_key):
            raise CaviarError(f"experiment key must be a non-empty string, got {exp_key!r}")
        self.url = url
        self.exp_key = exp_key  # type: ignore[assignment]
        self._health_lock = threading.Lock()
        self._answering_since: float | None = None
        self._claimed: dict[int, str] = {}  # tid -> exp_key of trials claimed with exp_key=None
        self._reports_lock = threading.Lock()
        self._finished_reports: dict[str | None, FinishedReports] = {}  # exp_key -> its finished trials' reports
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
        self._masters = self.db["masters"]
        self._bucket = gridfs.GridFSBucket(self.db, bucket_name=ARTIFACT_BUCKET)
        self._attachments = gridfs.GridFSBucket(self.db, bucket_name=ATTACHMENT_BUCKET)
        try:
            self._client.admin.command("ping")
            self._trials.create_index([("exp_key", ASCENDING), ("tid", ASCENDING)], unique=True)
            self._trials.create_index([("exp_key", ASCENDING), ("state", ASCENDING), ("tid", ASCENDING)])
            self._trials.create_index([("state", ASCENDING), ("tid", ASCENDING)])  # claims of exp_key=None
            self._trials.create_index([("exp_key", ASCENDING), ("refresh_time", ASCENDING)])  # TrialView
        except ConnectionFailure as err:
            self._client.close()
            raise CaviarError(
                f"cannot use MongoDB at {redact(url)} (waited {timeout_seconds:g} s): {one_line(err)}"
            ) from err
        except PyMongoError as err:  # it answered, and refused (an invalid database name, missing rights...)
            self._client.close()
            raise CaviarError(f"MongoDB at {redact(url)} refused to set up the experiment's collections: "
                              f"{one_line(err)}") from err
        self._answering_since = time.monotonic()

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    # -- the database's clock and health ------------------------------------
    @_watched
    def server_time(self) -> float:
        """The database server's clock in epoch seconds: the one clock every lease is judged by."""
        local = self._client.admin.command("hello")["localTime"]  # naive UTC, millisecond precision
        return local.replace(tzinfo=datetime.timezone.utc).timestamp()

    def steady_for(self, seconds: float) -> bool:
        """True once every call of this process (any thread) has had answers for ``seconds``.

        Requeueing is held off until then, at start and after an outage: the
        heartbeats of live workers could not land while this process could not
        reach the database either, so their age means nothing yet.
        """
        with self._health_lock:
            since = self._answering_since
        return since is not None and time.monotonic() - since >= seconds

    # -- scoping ------------------------------------------------------------
    def _doc_id(self, exp_key: str | None | object = _THIS) -> str:
        """The ``_id`` of an experiment's documents in ``experiments``, ``counters`` and ``masters``."""
        key = self.exp_key if exp_key is _THIS else exp_key
        return NO_KEY_ID if key is None else str(key)

    def _scope(self, query: dict[str, Any]) -> dict[str, Any]:
        """Restrict a query to this store's experiment, if it has one."""
        return query if self.exp_key is None else equal(exp_key=self.exp_key) | query

    def _file_scope(self, query: dict[str, Any]) -> dict[str, Any]:
        """Restrict a GridFS query to this store's experiment, if it has a key."""
        return query if self.exp_key is None else {"metadata.exp_key": self.exp_key, **query}

    def _exp_of(self, tid: int) -> str | None:
        if self.exp_key is not None:
            return self.exp_key
        try:
            return self._claimed[tid]
        except KeyError:
            raise ValueError(f"trial {tid} was not claimed through this store") from None

    def _owned(self, tid: int, owner: str) -> dict[str, Any]:
        """The filter that matches trial ``tid`` only while ``owner`` still holds its lease."""
        return equal(exp_key=self._exp_of(tid), tid=tid, state=RUNNING, owner=owner)

    def _took(self, doc: dict[str, Any] | None) -> dict[str, Any] | None:
        """Remember which experiment a claimed trial belongs to (for exp_key=None)."""
        if doc is not None:
            self._claimed[doc["tid"]] = doc["exp_key"]
            if doc.get("continues"):  # a promotion reads and drops the checkpoint of the trial it continues
                self._claimed[doc["continues"]["tid"]] = doc["exp_key"]
        return doc

    # -- the experiment -------------------------------------------------------
    @_watched
    def get_experiment(self, exp_key: str | None | object = _THIS) -> dict[str, Any] | None:
        """The experiment document of ``exp_key`` (default: this store's experiment)."""
        return self._experiments.find_one({"_id": self._doc_id(exp_key)})

    @_watched
    def put_experiment(self, doc: dict[str, Any]) -> None:
        fields = to_plain({k: v for k, v in doc.items() if k != "_id"})
        check_int64(fields.get("max_evals"), "max-evals")
        self._experiments.update_one(
            {"_id": self._doc_id()}, {"$set": fields | {"updated_at": self.server_time()}}, upsert=True
        )

    # -- the optimizer's side -----------------------------------------------
    @_watched
    def trial_docs(self) -> list[dict[str, Any]]:
        docs = [_readable_loss(d) for d in self._trials.find(self._scope({}), {"_id": 0})]
        return sorted(docs, key=lambda d: tid_order(d["tid"]))

    @_watched
    def trial(self, tid: int) -> dict[str, Any] | None:
        doc = self._trials.find_one(equal(exp_key=self._exp_of(tid), tid=tid), {"_id": 0})
        return None if doc is None else _readable_loss(doc)

    @_watched
    def changed_docs(self, since: float | None, skip: dict[Any, Any]) -> tuple[list[dict[str, Any]], float]:
        """Trials changed at or after ``since`` (all if None) but those in ``skip`` (``_id`` -> tid); and the next ``since``.

        Documents keep their ``_id`` (tids repeat across experiments). The next
        ``since`` lies ``VISIBILITY_SLACK`` before this query on the server's
        clock, so a change that became visible late is still seen. Within one
        experiment the trials to skip are named by tid, which the
        ``(exp_key, refresh_time)`` index answers on every server.
        """
        start = self.server_time()
        query = self._scope({})
        if since is not None:
            query["refresh_time"] = {"$gte": since}
            if skip:
                query["_id" if self.exp_key is None else "tid"] = {"$nin": list(skip if self.exp_key is None
                                                                               else skip.values())}
        return [_readable_loss(d) for d in self._trials.find(query)], start - VISIBILITY_SLACK

    @_watched
    def new_tids(self, n: int) -> list[int]:
        counter = self._counters.find_one_and_update(
            {"_id": self._doc_id()}, {"$inc": {"next_tid": n}}, upsert=True, return_document=ReturnDocument.AFTER
        )
        end = counter["next_tid"]
        return list(range(end - n, end))

    @_watched
    def enqueue(self, docs: list[dict[str, Any]]) -> None:
        """Insert trials (NEW unless a document says otherwise); repeating an insert that landed is accepted."""
        if not docs:
            return
        exp_key = self.exp_key
        now = self.server_time()
        rows = [
            _storable_loss(
                {"state": NEW, "owner": None, "heartbeat": None, "lease_losses": 0}
                | to_plain({k: v for k, v in doc.items() if k != "_id"})
                | {"exp_key": exp_key, "refresh_time": now}
            )
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

    @_watched
    def count_by_state(self) -> dict[int, int]:
        counts = {NEW: 0, RUNNING: 0, DONE: 0}
        pipeline = [{"$match": self._scope({})}, {"$group": {"_id": "$state", "n": {"$sum": 1}}}]
        for row in self._trials.aggregate(pipeline):
            counts[row["_id"]] = row["n"]
        return counts

    @_watched
    def requeue_expired(self, lease_seconds: float, now: float | None = None) -> list[int]:
        """See TrialStore; with exp_key=None it covers every experiment.

        ``now`` (epoch seconds) defaults to the server's clock, which also
        stamped the heartbeats. Each trial changes by an update conditional on
        the owner and heartbeat that were seen expired, so of several masters
        or workers doing this at once exactly one counts the loss.
        """
        now = self.server_time() if now is None else now
        cutoff = now - lease_seconds
        expired = self._trials.find(
            self._scope(equal(state=RUNNING) | {"heartbeat": {"$lt": cutoff}}),
            {"tid": 1, "owner": 1, "heartbeat": 1, "lease_losses": 1},
        )
        changed = []
        for doc in list(expired):
            losses = doc.get("lease_losses", 0) + 1
            update: dict[str, Any] = {"owner": None, "heartbeat": None, "lost_by": doc["owner"]}
            if losses >= MAX_LEASE_LOSSES:
                update |= {"state": DONE, "result": failure(f"lost its worker {losses} times (lease expired)")}
            else:
                update["state"] = NEW
            seen = {"_id": doc["_id"], "state": RUNNING, "owner": doc["owner"], "heartbeat": doc["heartbeat"]}
            change = {"$set": update | {"refresh_time": now}, "$inc": {"lease_losses": 1}}
            if self._trials.update_one(seen, change).modified_count:
                log.warning("trial %s: lease of %s expired (%d lost): %s", doc["tid"], doc["owner"], losses,
                            "failed" if update["state"] == DONE else "back in the queue")
                changed.append(doc["tid"])
        return changed

    @_watched
    def live_workers(self, within_seconds: float) -> list[dict[str, Any]]:
        """Workers seen recently (by the server's clock) that serve this experiment (or every experiment)."""
        recent = self._workers.find({"heartbeat": {"$gte": self.server_time() - within_seconds}})
        return [w for w in recent if self.exp_key is None or w.get("exp_key") in (None, self.exp_key)]

    # -- the master lease ------------------------------------------------------
    @_watched
    def acquire_master(self, owner: str, lease_seconds: float, info: dict[str, Any]) -> dict[str, Any] | None:
        """Become the experiment's master unless another one renewed its lease within ``lease_seconds``.

        Returns None when ``owner`` now holds the lease, else the live master's
        document (with ``age``: seconds since it was last seen, on the server's clock).
        """
        now = self.server_time()
        takeable = {"_id": self._doc_id(), "$or": [{"owner": owner}, {"heartbeat": {"$lt": now - lease_seconds}}]}
        fields = {"owner": owner, "host": socket.gethostname(), "lease_seconds": lease_seconds} | to_plain(info)
        try:
            self._masters.update_one(takeable, {"$set": fields | {"heartbeat": now}}, upsert=True)
            return None
        except DuplicateKeyError:
            live = self._masters.find_one({"_id": self._doc_id()}) or {}
            if live.get("owner") == owner or live.get("heartbeat") is None:
                return self.acquire_master(owner, lease_seconds, info)  # released or renewed meanwhile
            return live | {"age": now - live["heartbeat"]}

    @_watched
    def renew_master(self, owner: str) -> bool:
        """Refresh ``owner``'s master lease; False when another master has taken it."""
        return self._masters.update_one(
            {"_id": self._doc_id(), "owner": owner}, {"$set": {"heartbeat": self.server_time()}}
        ).matched_count == 1

    @_watched
    def release_master(self, owner: str) -> None:
        """Give up the master lease (a clean exit), so a new master may start at once."""
        self._masters.delete_one({"_id": self._doc_id(), "owner": owner})

    @_watched
    def delete_all(self) -> None:
        """Delete the experiment's trials, artifacts, checkpoints and attachments; tids stay reserved so none is reused."""
        self._trials.delete_many(self._scope({}))
        # Tells readers that cached the finished trials (step_losses) to read them afresh.
        counters = {} if self.exp_key is None else {"_id": self._doc_id()}
        self._counters.update_many(counters, {"$inc": {"deletions": 1}})
        for bucket in (self._bucket, self._attachments, self._checkpoints()):
            for f in bucket.find(self._file_scope({})):
                bucket.delete(f._id)

    # -- the worker's side ----------------------------------------------------
    @_watched
    def claim(self, owner: str) -> dict[str, Any] | None:
        now = self.server_time()
        doc = self._trials.find_one_and_update(
            self._scope(equal(state=NEW) | {"params": {"$exists": True}}),  # hyperopt's raw inserts are records only
            {"$set": {"state": RUNNING, "owner": owner, "heartbeat": now, "book_time": now, "refresh_time": now}},
            sort=[("tid", ASCENDING)],
            projection={"_id": 0},
            return_document=ReturnDocument.AFTER,
        )
        return self._took(doc)

    @_watched
    def held_trial(self, owner: str) -> dict[str, Any] | None:
        """The trial ``owner`` holds, if any: recovers a claim whose reply an outage lost."""
        return self._took(self._trials.find_one(self._scope(equal(state=RUNNING, owner=owner)), {"_id": 0}))

    def _update_ours_or_unclaimed(self, tid: int, owner: str, fields: dict[str, Any]) -> bool:
        """Set ``fields`` on trial ``tid`` while ``owner`` holds it, or while it waits requeued from ``owner``
        and nobody took it yet; True if it was changed.

        Two conditional updates rather than one with ``$or`` (see ``equal``):
        each is atomic, and a trial that moves from the first form to the
        second between them (requeued meanwhile) is caught by the second.
        """
        change = {"$set": fields}
        if self._trials.update_one(self._owned(tid, owner), change).matched_count:
            return True
        unclaimed = equal(exp_key=self._exp_of(tid), tid=tid, state=NEW, lost_by=owner)
        return self._trials.update_one(unclaimed, change).matched_count == 1

    @_watched
    def heartbeat(self, tid: int, owner: str) -> bool:
        """See TrialStore; a trial requeued while its owner was cut off, and not yet claimed, is taken back."""
        return self._update_ours_or_unclaimed(
            tid, owner, {"state": RUNNING, "owner": owner, "heartbeat": self.server_time()})

    @_watched
    def release(self, tid: int, owner: str) -> None:
        self._trials.update_one(
            self._owned(tid, owner),
            {"$set": {"state": NEW, "owner": None, "heartbeat": None, "lost_by": None,
                      "refresh_time": self.server_time()}},
        )

    @_watched
    def finish(self, tid: int, owner: str, result: dict[str, Any], artifacts: dict[str, str] | None = None) -> bool:
        """See TrialStore. Idempotent: a retry after a write that landed returns True again.

        hyperopt result ``attachments`` (name -> bytes) go to GridFS before the
        result, as the trial's attachments (``trial_attachments`` in hyperopt),
        and are deleted again if the result is refused. A result the database
        cannot hold (over 16 MB, an integer over 8 bytes, a key it refuses) is
        recorded as the trial's failure, naming why: otherwise every worker
        given the trial would stop on the same write.
        """
        exp_key = self._exp_of(tid)
        attachments = result.get(ATTACHMENTS_KEY) or {}
        result = to_plain({k: v for k, v in result.items() if k != ATTACHMENTS_KEY})
        names = [TRIAL_ATTACHMENT.format(tid=tid, name=name) for name in attachments]
        for name, data in zip(names, attachments.values()):
            self._put_attachment(exp_key, name, data)
        try:
            written = self._set_result(tid, owner, result)
        except _REFUSED as err:
            for name in names:
                self._delete_attachment(exp_key, name)
            names = []
            result = failure(f"the database refused the trial's result ({type(err).__name__}: {one_line(err)[:300]}); "
                             "return a smaller result of plain values (large outputs belong in artifacts)")
            log.warning("trial %s: %s", tid, result["error"])
            written = self._set_result(tid, owner, result)
        if not written:
            doc = self._trials.find_one(equal(exp_key=exp_key, tid=tid), {"state": 1, "owner": 1, "result": 1})
            if not (doc and doc["state"] == DONE and doc.get("owner") == owner and doc.get("result") == result):
                for name in names:
                    self._delete_attachment(exp_key, name)
                return False
        if artifacts and result.get("status") == STATUS_OK:
            self._keep_if_best(exp_key, tid, result, artifacts)
        return True

    def _set_result(self, tid: int, owner: str, result: dict[str, Any]) -> bool:
        return self._update_ours_or_unclaimed(
            tid, owner, {"state": DONE, "owner": owner, "result": result, "refresh_time": self.server_time()})

    @_watched
    def worker_alive(self, owner: str, info: dict[str, Any]) -> None:
        fields = {"host": socket.gethostname()} | to_plain(info) | {"heartbeat": self.server_time()}
        self._workers.update_one({"_id": owner}, {"$set": fields}, upsert=True)

    @_watched
    def worker_gone(self, owner: str) -> None:
        self._workers.delete_one({"_id": owner})

    # -- hyperopt's attachments (bytes by name) ------------------------------
    def _put_attachment(self, exp_key: str | None, name: str, data: bytes) -> None:
        """Store ``data`` as attachment ``name`` of ``exp_key``, replacing an older one once it is in."""
        older = [f._id for f in self._attachments.find({"metadata.exp_key": exp_key, "metadata.name": name})]
        self._attachments.upload_from_stream(name, data, metadata={"exp_key": exp_key, "name": name})
        for file_id in older:
            self._attachments.delete(file_id)

    def _delete_attachment(self, exp_key: str | None, name: str) -> bool:
        found = False
        for f in self._attachments.find({"metadata.exp_key": exp_key, "metadata.name": name}):
            self._attachments.delete(f._id)
            found = True
        return found

    @_watched
    def attachment_names(self) -> list[str]:
        """Names of the experiment's attachments (every experiment's with exp_key=None)."""
        return sorted({f.metadata["name"] for f in self._attachments.find(self._file_scope({}))})

    @_watched
    def get_attachment(self, name: str) -> bytes | None:
        """The newest attachment ``name`` (None if there is none)."""
        files = list(self._attachments.find(self._file_scope({"metadata.name": name})).sort("uploadDate", -1))
        return self._attachments.open_download_stream(files[0]._id).read() if files else None

    @_watched
    def put_attachment(self, name: str, data: bytes) -> None:
        """Store ``data`` under ``name`` for the experiment (hyperopt's ``trials.attachments[name] = data``)."""
        self._put_attachment(self.exp_key, name, data)

    @_watched
    def delete_attachment(self, name: str) -> bool:
        """Delete attachment ``name``; False if there was none."""
        return self._delete_attachment(self.exp_key, name)

    # -- artifacts -----------------------------------------------------------
    def _keep_if_best(self, exp_key: str, tid: int, result: dict[str, Any], artifacts: dict[str, str]) -> None:
        """Upload a new best trial's files, then drop every other trial's files of the experiment.

        Upload happens before deletion so a crash never leaves the experiment
        without a best artifact; racing finishers converge because each prunes
        to the best trial among the uploaded files.
        """
        best = self._trials.find_one(
            equal(exp_key=exp_key, state=DONE) | {"result.status": STATUS_OK},
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

    @_watched
    def fetch_best_artifact(self, name: str, dest: str) -> int | None:
        files = list(self._bucket.find({"metadata.exp_key": self.exp_key, "metadata.name": name}))
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

    @_watched
    def step_losses(self, tid: int, step: int) -> dict[int, float | None]:
        """See TrialStore. Finished trials never change, so this store reads each one's reports once (those
        whose ``refresh_time`` is recent, as ``TrialView`` does) and the queued and running trials' at every
        call: the cost is that of the trials in flight and those finished since, however large the experiment
        (reading every trial's reports took 0.17 s at 1,000 trials on nx-27017, 1.8 s at 10,000)."""
        exp_key = self._exp_of(tid)
        scope = equal(exp_key=exp_key) | {"reports": {"$exists": True}}
        fields = {"_id": 0, "tid": 1, "state": 1, "reports": 1, "refresh_time": 1}
        with self._reports_lock:
            counter = self._counters.find_one({"_id": self._doc_id(exp_key)}, {"deletions": 1}) or {}
            known = self._finished_reports.get(exp_key)
            if known is None or known.deletions != counter.get("deletions", 0):  # new, or delete_all since
                known = self._finished_reports[exp_key] = FinishedReports(counter.get("deletions", 0))
            # In flight (queued or running) first: a trial finishing between the two reads is seen by the second.
            # A range, not $in: nx-27017 answers $in on the state by reading every trial.
            in_flight = list(self._trials.find(scope | {"state": {"$lt": DONE}}, fields))
            start = self.server_time()
            query = dict(scope)
            if known.since is not None:
                query |= {"refresh_time": {"$gte": known.since}, "tid": {"$nin": list(known.recent)}}
            known.add([d for d in self._trials.find(query, fields) if d["state"] >= DONE], start - VISIBILITY_SLACK)
            losses = dict(known.at(step))
        key = str(step)
        losses |= {d["tid"]: d["reports"][key] for d in in_flight if key in d["reports"] and d["tid"] not in known.tids}
        return dict(sorted(losses.items()))

    def decide(self, tid: int, owner: str, step: int, decision: dict[str, Any]) -> dict[str, Any] | None:
        decision = to_plain(decision)
        unset = self._owned(tid, owner) | {f"decisions.{step}": {"$exists": False}}
        if self._trials.update_one(unset, {"$set": {f"decisions.{step}": decision}}).modified_count:
            return decision
        doc = self._trials.find_one(equal(exp_key=self._exp_of(tid), tid=tid), {"_id": 0, "decisions": 1})
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


class FinishedReports:
    """The reports of one experiment's finished trials, by step: what ``step_losses`` has read so far."""

    def __init__(self, deletions: int):
        self.deletions = deletions  # the experiment's count of delete_all calls when this was started
        self.since: float | None = None  # the next read's lower bound on refresh_time
        self.recent: dict[int, float] = {}  # tid -> refresh_time of trials the next read would return again
        self.tids: set[int] = set()
        self._by_step: dict[str, dict[int, float | None]] = {}

    def add(self, docs: list[dict[str, Any]], since: float) -> None:
        """Take finished trials read at or after ``self.since``; the next read starts at ``since``."""
        for doc in docs:
            self.tids.add(doc["tid"])
            self.recent[doc["tid"]] = doc.get("refresh_time") or 0.0
            for step, loss in doc["reports"].items():
                self._by_step.setdefault(step, {})[doc["tid"]] = loss
        self.since = since
        self.recent = {tid: t for tid, t in self.recent.items() if t >= since}

    def at(self, step: int) -> dict[int, float | None]:
        """``{tid: loss}`` of the finished trials that reported at ``step`` (shared: do not modify it)."""
        return self._by_step.get(str(step), {})


class TrialView:
    """One experiment's trials held in memory and kept current by reading only what changed.

    Finished trials never change, so a reader that has one never reads it
    again: each ``refresh`` fetches the trials whose ``refresh_time`` (server
    clock, indexed) is recent, and updates what it keeps (the trials in tid
    order, the finished ones in the order they finished, the pending ones) in
    place, which keeps the cost per finished trial flat however large the
    experiment grows. The master and ``MongoTrials`` read through it.
    """

    def __init__(self, store: MongoStore):
        self._store = store
        self.reset()

    def reset(self) -> None:
        """Forget everything (after ``delete_all``): the next refresh reads every trial."""
        self._docs: dict[Any, dict[str, Any]] = {}  # by _id: tids repeat across experiments
        self._counts = {NEW: 0, RUNNING: 0, DONE: 0}
        self._since: float | None = None
        self._recent_done: dict[Any, dict[str, Any]] = {}  # finished trials the next query would return again
        self._ordered: list[dict[str, Any]] = []  # every trial, in tid order once sorted
        self._position: dict[Any, int] = {}  # _id -> index in _ordered
        self._unsorted = False  # a trial arrived after one with a larger tid
        self._finished: list[dict[str, Any]] = []
        self._pending: dict[Any, dict[str, Any]] = {}

    def refresh(self) -> int:
        """Read what changed since the last refresh; return how many trials changed."""
        skip = {key: doc["tid"] for key, doc in self._recent_done.items()}
        changed, since = self._store.changed_docs(self._since, skip)
        for doc in changed:
            key = doc.pop("_id")
            old = self._docs.get(key)
            if old is not None:
                self._counts[old["state"]] -= 1
                self._ordered[self._position[key]] = doc
            else:
                if self._ordered and tid_order(doc["tid"]) < tid_order(self._ordered[-1]["tid"]):
                    self._unsorted = True
                self._position[key] = len(self._ordered)
                self._ordered.append(doc)
            self._counts[doc["state"]] = self._counts.get(doc["state"], 0) + 1
            self._docs[key] = doc
            if doc["state"] == DONE:
                self._recent_done[key] = doc
                self._pending.pop(key, None)
                if old is None or old["state"] != DONE:
                    self._finished.append(doc)
            else:
                self._pending[key] = doc
        self._since = since
        self._recent_done = {k: doc for k, doc in self._recent_done.items() if doc["refresh_time"] >= since}
        return len(changed)

    def docs(self) -> list[dict[str, Any]]:
        """Every trial, in tid order (the list is shared: do not modify it)."""
        if self._unsorted:
            keys = sorted(self._docs, key=lambda k: tid_order(self._docs[k]["tid"]))
            self._ordered = [self._docs[k] for k in keys]
            self._position = {k: i for i, k in enumerate(keys)}
            self._unsorted = False
        return self._ordered

    def finished(self) -> list[dict[str, Any]]:
        """The finished trials in the order this view saw them finish: a list that only grows (shared: do not
        modify it), so a reader can take what is new since it last looked by its length."""
        return self._finished

    def pending(self) -> list[dict[str, Any]]:
        """The queued and running trials."""
        return list(self._pending.values())

    def counts(self) -> dict[int, int]:
        """How many trials are in each state, as of the last refresh."""
        return dict(self._counts)
