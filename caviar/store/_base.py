"""The trial store interface: where the queue and the results of one experiment live.

Like Optuna's storages, every backend (the in-process ``LocalStore`` of the
embedded mode, ``MongoStore`` for many workers) offers the same small set of
operations, and one conformance suite (tests/optimizer/test_store_conformance.py)
checks each against it.

Trial documents keep hyperopt's layout (``tid``, ``state``, ``spec``,
``result``, ``misc`` with ``idxs``/``vals``, ``exp_key``, ``owner``,
``book_time``, ``refresh_time``, ``version``) so hyperopt's algorithms read them
unchanged, plus plain-valued fields of ours:

- ``params``: the concrete hyperparameters (what the objective receives), so a
  worker needs neither the space nor a pickle;
- ``heartbeat``: float epoch seconds of the owner's last sign of life, on the
  store's clock (the database server's for MongoStore), as are ``book_time``
  and ``refresh_time`` (the last change; finished trials never change again);
- ``lease_losses``: how often a worker lost this trial by going silent;
- ``lost_by``: the owner whose lease ran out, while the trial waits requeued:
  that owner's late heartbeat takes the trial back and its late result is kept;
- ``continues``: on asha's promotion of a paused trial (``--promote yes``),
  ``{"tid", "step", "reports"}`` of the trial it goes on from, whose
  checkpoint it resumes.

States: ``NEW`` (queued), ``RUNNING`` (claimed), ``DONE`` (finished: ok or
failed, per ``result["status"]``). A trial that failed counts as finished.
"""

from __future__ import annotations

import abc
import time
from typing import Any

from caviar.objective import STATUS_OK

# hyperopt's own values (JOB_STATE_*), spelled out so that workers, which never
# run an algorithm, start without importing hyperopt (about 1 s).
NEW, RUNNING, DONE = 0, 1, 2
MAX_LEASE_LOSSES = 3


def is_ok(doc: dict[str, Any]) -> bool:
    """True for a finished trial whose objective succeeded."""
    return doc["state"] == DONE and doc["result"].get("status") == STATUS_OK


def best_doc(docs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The finished ok trial with the lowest loss (first one on ties), if any.

    A cross-validated trial stopped before its last fold comes after every
    other: its loss is a mean over fewer folds, not the same estimate (as
    ``caviar.cv.cv_results`` ranks it last).
    """
    ok = [d for d in docs if is_ok(d)]
    return min(ok, key=lambda d: (_partial_cv(d["result"]), d["result"]["loss"], d["tid"])) if ok else None


def _partial_cv(result: dict[str, Any]) -> bool:
    return bool(result.get("stopped") and result.get("splits"))


def vals_key(misc: dict[str, Any]) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    """A hashable identity of a point (its hyperopt ``vals``), to refuse duplicates."""
    return tuple(sorted((label, tuple(v)) for label, v in misc["vals"].items()))


class TrialStore(abc.ABC):
    """One experiment's trials: a queue for workers and a record for the optimizer."""

    exp_key: str
    # Errors meaning "the store is unreachable right now": callers retry them.
    transient_errors: tuple[type[BaseException], ...] = ()

    # -- the experiment -------------------------------------------------
    @abc.abstractmethod
    def get_experiment(self) -> dict[str, Any] | None:
        """The experiment document (objective path, settings), or None before the first run."""

    @abc.abstractmethod
    def put_experiment(self, doc: dict[str, Any]) -> None:
        """Create or update the experiment document's fields."""

    # -- the optimizer's side -------------------------------------------
    @abc.abstractmethod
    def trial_docs(self) -> list[dict[str, Any]]:
        """Every trial of the experiment, in tid order."""

    @abc.abstractmethod
    def trial(self, tid: int) -> dict[str, Any] | None:
        """One trial's document (as ``trial_docs`` gives it), or None: a reader that follows one trial
        need not read them all."""

    @abc.abstractmethod
    def new_tids(self, n: int) -> list[int]:
        """Reserve ``n`` fresh trial ids, never handed out twice even across restarts."""

    @abc.abstractmethod
    def enqueue(self, docs: list[dict[str, Any]]) -> None:
        """Add NEW trial documents (with ``params``) to the queue."""

    @abc.abstractmethod
    def count_by_state(self) -> dict[int, int]:
        """How many trials are in each state (missing states count 0)."""

    @abc.abstractmethod
    def requeue_expired(self, lease_seconds: float, now: float | None = None) -> list[int]:
        """Give RUNNING trials whose heartbeat is older than the lease back to the queue.

        After ``MAX_LEASE_LOSSES`` lost leases a trial is finished as failed instead,
        so a trial that kills every worker that runs it cannot kill them all.
        Returns the tids that changed.
        """

    def steady_for(self, seconds: float) -> bool:
        """Whether this process has seen the store answer for ``seconds``: callers requeue only then.

        An in-process store is never unreachable.
        """
        return True

    def server_time(self) -> float:
        """The clock that heartbeats and book times are stamped with: this host's, unless the store has its own.

        Whoever judges an age (requeueing, ``status``) reads this clock, never its host's.
        """
        return time.time()

    @abc.abstractmethod
    def live_workers(self, within_seconds: float) -> list[dict[str, Any]]:
        """Workers that reported a heartbeat within the last ``within_seconds``."""

    # -- the worker's side ----------------------------------------------
    @abc.abstractmethod
    def claim(self, owner: str) -> dict[str, Any] | None:
        """Atomically move the oldest NEW trial to RUNNING for ``owner``; None if the queue is empty."""

    @abc.abstractmethod
    def heartbeat(self, tid: int, owner: str) -> bool:
        """Refresh ``owner``'s lease on ``tid``; False when the trial is no longer its own.

        A trial requeued from ``owner`` (``lost_by``) that nobody claimed yet is taken back.
        """

    @abc.abstractmethod
    def release(self, tid: int, owner: str) -> None:
        """Hand a RUNNING trial back to the queue (a worker that must stop at once)."""

    @abc.abstractmethod
    def finish(self, tid: int, owner: str, result: dict[str, Any], artifacts: dict[str, str] | None = None) -> bool:
        """Record a trial's result (DONE); keep its artifact files if it is the new best.

        Also accepted while the trial waits requeued from ``owner`` and nobody
        claimed it. Returns False (and records nothing) when the trial was given
        to someone else or finished meanwhile. A result the store cannot hold
        is recorded as the trial's failure, naming why.
        """

    @abc.abstractmethod
    def worker_alive(self, owner: str, info: dict[str, Any]) -> None:
        """Record that a worker is alive, with what it is doing (host, gpu, tid)."""

    @abc.abstractmethod
    def worker_gone(self, owner: str) -> None:
        """Forget a worker that stopped cleanly, so status does not list it as stale."""

    @abc.abstractmethod
    def fetch_best_artifact(self, name: str, dest: str) -> int | None:
        """Copy the kept artifact ``name`` to the file ``dest`` and return its trial's tid (None: none kept).

        Callers compare the tid with the best trial: a crash between recording a
        new best and storing its file leaves the previous best's file.
        """

    # -- early stopping: reports, decisions and checkpoints of running trials ----
    # Reports live in the trial document as ``reports: {"<step>": loss or None}``
    # (losses minimized; None for a NaN/inf report) and decisions as
    # ``decisions: {"<step>": {"stop", "peers", "cutoff"}}``. Checkpoints are
    # files in the store's artifact space, the latest one per trial.

    @abc.abstractmethod
    def report(self, tid: int, owner: str, step: int, loss: float | None) -> bool:
        """Record ``loss`` at ``step`` in the trial (repeating a report is harmless); False if ``owner`` lost it."""

    @abc.abstractmethod
    def step_losses(self, tid: int, step: int) -> dict[int, float | None]:
        """Every trial's loss at ``step`` in the experiment of ``tid``: ``{tid: loss}``."""

    @abc.abstractmethod
    def decide(self, tid: int, owner: str, step: int, decision: dict[str, Any]) -> dict[str, Any] | None:
        """Record ``decision`` at ``step`` unless one is recorded; return the recorded one.

        The first decision wins, so a trial that asks again (resumed elsewhere)
        gets the same answer. None when ``owner`` no longer holds the trial and
        no decision was recorded.
        """

    @abc.abstractmethod
    def put_checkpoint(self, tid: int, owner: str, path: str, step: int, info: dict[str, Any] | None = None) -> bool:
        """Keep the file ``path`` as the trial's checkpoint after ``step`` (replacing older ones); False if not held."""

    @abc.abstractmethod
    def get_checkpoint(self, tid: int, dest: str) -> tuple[int, dict[str, Any]] | None:
        """Copy the trial's latest checkpoint to ``dest``: its (step, info), or None if it has none."""

    @abc.abstractmethod
    def discard_checkpoint(self, tid: int) -> None:
        """Delete the trial's checkpoints (it has ended)."""
