"""The worker process: claim queued trials from MongoDB, run them, record the results.

One trial at a time: claim atomically, look up the experiment (objective import
path and ``env``), run the objective under a heartbeat, write the result back.
Resolved objectives are cached by import path, so a data set that the
objective's module caches is loaded once per worker, not once per trial.

Robustness rules:

- Database outages: every store call is retried with exponential backoff (up
  to ``MAX_BACKOFF`` seconds); the outage and the recovery are logged once
  each. A finished result is kept in memory and retried until it lands; the
  store keeps it while the trial waits requeued and unclaimed, and refuses
  it (dropped with a warning) once another worker has the trial.
- A lost lease: the heartbeat asks the objective to stop at its next safe
  point (``caviar.objective.check_stop``); the worker logs why and moves on.
- Stopping: the first SIGTERM/SIGINT lets the current trial finish and be
  recorded, then the worker exits 0; a second one hands the trial back to the
  queue and exits with ``EXIT_INTERRUPTED`` (143, as for SIGTERM): at once
  while the objective runs, else right after the database call under way
  (never between a claim and its bookkeeping, which would orphan the trial).
- Workers that go silent lose their trial after the lease; idle workers
  requeue such trials themselves, so no master needs to be running. Nobody
  requeues before its process has seen the database answer for a full lease
  (``MongoStore.steady_for``), at start and after an outage seen by any thread.
- ``exit_when_done``: an idle worker exits 0 once its experiment holds
  ``max_evals`` finished trials.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from pymongo.errors import ConnectionFailure, PyMongoError

from caviar.errors import CaviarError
from caviar.family import ModelFamily, load_family
from caviar.store import DONE
from caviar.store.mongo import MongoStore, one_line
from caviar.objective import LeaseLost, Objective
from caviar.runner import Heartbeat, discard_artifacts, run_trial

log = logging.getLogger(__name__)

EXIT_INTERRUPTED = 128 + signal.SIGTERM
# A trial this host cannot run (its data set or the objective's module is missing here): the trial goes back
# to the queue and the worker stops with 0, the one code that compose's `restart: on-failure` leaves alone,
# so that a host without its data does not restart, claim and hand back trials in a loop.
EXIT_HOST_NOT_READY = 0


class HostNotReady(CaviarError):
    """This host cannot run the experiment's trials (a missing data set or module): no restart fixes it."""
FIRST_POLL_SECONDS = 0.01
FIRST_TRIAL_POLL = 0.05  # longest poll before the first trial, while the master starts
MAX_BACKOFF = 5.0
T = TypeVar("T")


class StopNow(KeyboardInterrupt):
    """The second stop request: leave the objective and the loop at once.

    A KeyboardInterrupt, because ``evaluate`` lets those through instead of
    turning them into a failed trial.
    """


@dataclass
class WorkerConfig:
    """How a worker runs; see ``python -m worker --help``."""

    lease_seconds: float = 60.0
    poll_seconds: float = 0.25
    max_trials: int | None = None
    idle_exit: float | None = None
    gpu: str | None = None
    exit_when_done: bool = False


class Worker:
    """Serves the trials of ``store`` (one experiment, or all with ``exp_key=None``)."""

    def __init__(self, store: MongoStore, config: WorkerConfig):
        self.store, self.config = store, config
        # The random part tells apart the processes of a restarted container (same host name and pid).
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._base_env = dict(os.environ)  # restored before each trial: experiments never share settings
        self.trials_run = 0
        self._objectives: dict[str, ModelFamily] = {}
        self._ready: set[tuple[str, tuple[tuple[str, str], ...]]] = set()  # (objective, settings) prepared here
        self._stop_requests = 0
        self._interruptible = False  # True while only user code runs: no database call to cut in two
        self._current: dict[str, Any] | None = None
        self._db_down = False

    # -- stopping -------------------------------------------------------------
    def request_stop(self) -> None:
        """First call: stop after the current trial. Second: leave at once (StopNow) at a safe point."""
        self._stop_requests += 1
        if self._stop_requests == 1:
            log.info("stop requested: %s", "finishing the current trial first" if self._current else "exiting")
        elif self._stop_requests == 2:
            if self._interruptible:
                raise StopNow()
            log.info("second stop request: leaving after the database call under way")

    def _safe_point(self) -> None:
        """Act on a second stop request here, where the worker's bookkeeping is consistent."""
        if self._stop_requests >= 2:
            raise StopNow()

    def install_signal_handlers(self) -> None:
        """SIGTERM (docker stop) and SIGINT (Ctrl-C) both ask the worker to stop."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.request_stop())

    # -- the loop -------------------------------------------------------------
    def run(self) -> int:
        """Serve trials until stopped, idle for ``idle_exit`` or ``max_trials`` done; return the exit code."""
        presence = Presence(self)
        log.info("worker %s serving %s", self.owner,
                 f"experiment {self.store.exp_key!r}" if self.store.exp_key else "every experiment")
        try:
            self._serve()
        except StopNow:
            self._interruptible = False
            if self._current is not None:
                self._release(self._current["tid"])
            log.warning("stopped at once")
            return EXIT_INTERRUPTED
        finally:
            presence.stop()
        log.info("worker %s done: %d trial(s) run", self.owner, self.trials_run)
        return 0

    def _serve(self) -> None:
        beat = self.config.lease_seconds / 4
        delay = FIRST_POLL_SECONDS
        idle_since = last_requeue = time.monotonic()
        while not self._stop_requests:
            if self.config.max_trials is not None and self.trials_run >= self.config.max_trials:
                log.info("ran --max-trials %d trial(s)", self.config.max_trials)
                return
            doc = self._claim()
            if doc is not None:
                self._run(doc)
                delay, idle_since = FIRST_POLL_SECONDS, time.monotonic()
                continue
            self._safe_point()
            now = time.monotonic()
            if self._stop_requests:
                return
            if self.config.idle_exit is not None and now - idle_since >= self.config.idle_exit:
                log.info("queue empty for %g s: exiting", self.config.idle_exit)
                return
            if now - last_requeue >= beat and not self._db_down:
                if self.config.exit_when_done and self._experiment_complete():
                    return
                self._requeue_expired()
                last_requeue = now
            time.sleep(delay)
            # Until the first trial, poll briskly: the master is about to fill the queue.
            cap = self.config.poll_seconds if self.trials_run else min(self.config.poll_seconds, FIRST_TRIAL_POLL)
            delay = min(delay * 2, cap)

    def _experiment_complete(self) -> bool:
        """True (and logged) once the experiment holds its ``max_evals`` finished trials."""
        experiment = self._retry("read the experiment", self.store.get_experiment) or {}
        max_evals = experiment.get("max_evals")
        done = self._retry("count the trials", self.store.count_by_state)[DONE]  # type: ignore[index]
        if max_evals is None or done < max_evals:
            return False
        log.info("experiment %r is complete (%d of %d trials finished): exiting", self.store.exp_key,
                 done, max_evals)
        return True

    def _requeue_expired(self) -> None:
        """Give silent workers' trials back to the queue; tried once, never retried.

        Held off until this process has seen the database answer for a full
        lease (at start, after an outage seen by any of its threads): until
        then, live workers' heartbeats may not have landed.
        """
        try:
            lease = self._lease()
            if self.store.steady_for(lease):
                self.store.requeue_expired(lease)
        except ConnectionFailure as err:
            log.warning("database unreachable (requeue expired trials: %s); retrying until it is back", one_line(err))
            self._db_down = True

    def _lease(self) -> float:
        """The lease to judge others' trials by: the experiment's (as its master does) if longer than ours."""
        if self.store.exp_key is None:
            return self.config.lease_seconds
        experiment = self.store.get_experiment() or {}
        return max(self.config.lease_seconds, float(experiment.get("lease_seconds") or 0))

    def _claim(self) -> dict[str, Any] | None:
        """Claim the next trial; after a failed attempt first look for a claim whose reply was lost."""
        failed = False

        def attempt() -> dict[str, Any] | None:
            nonlocal failed
            held = self.store.held_trial(self.owner) if failed else None
            failed = True
            return held or self.store.claim(self.owner)

        return self._retry("claim a trial", attempt, stoppable=True)

    def _run(self, doc: dict[str, Any]) -> None:
        """Run one claimed trial and record its result (retrying until it lands or the lease is gone)."""
        tid = doc["tid"]
        self._current = doc  # stays set if StopNow interrupts: run() hands the trial back
        self._safe_point()
        self._announce()
        with Heartbeat(self.store, tid, self.owner, self.config.lease_seconds / 4):  # imports can be slow
            fn, lease = self._prepare(doc)
        try:
            self._interruptible = True
            self._safe_point()
            result, artifacts = run_trial(self.store, doc, fn, self.owner, min(lease, self.config.lease_seconds) / 4)
        except CaviarError as err:  # e.g. no data set on this host: every trial would fail the same way
            self._interruptible = False
            self._release(tid)
            raise HostNotReady(str(err)) from None
        except LeaseLost as stopped:
            log.warning("%s: the objective stopped at a safe point; nothing recorded", stopped)
            self._current = None
            return
        finally:
            self._interruptible = False
        self.trials_run += 1
        try:
            landed = self._retry(f"record trial {tid}", lambda: self.store.finish(tid, self.owner, result, artifacts))
        finally:
            discard_artifacts(artifacts)
        if not landed:
            log.warning("trial %s: lease lost while it ran; result dropped (another worker has the trial)", tid)
        self._current = None

    def _prepare(self, doc: dict[str, Any]) -> tuple[Objective, float]:
        """The trial's objective and lease, after applying its experiment's ``env``.

        A worker that cannot load the objective hands the trial back and stops
        (CaviarError): the problem is in this worker's set-up, and failing the
        trial would burn the whole queue.
        """
        exp_key = doc["exp_key"]
        try:
            experiment = self._retry(f"read experiment {exp_key!r}", lambda: self.store.get_experiment(exp_key)) or {}
            path = experiment.get("objective")
            if not path:
                raise CaviarError(f"experiment {exp_key!r} names no objective (trial {doc['tid']})")
            os.environ.clear()
            os.environ.update(self._base_env)
            os.environ.update({str(k): str(v) for k, v in (experiment.get("env") or {}).items()})
            ready = (path, tuple(sorted(os.environ.items())))
            if ready not in self._ready:
                self._interruptible = True
                try:
                    family = self._objectives.get(path) or load_family(path)
                    family.prepare()  # its data set, once per objective and settings: missing, nothing is claimed
                    self._objectives[path] = family
                finally:
                    self._interruptible = False
                self._ready.add(ready)
        except CaviarError as err:
            self._release(doc["tid"])
            raise HostNotReady(str(err)) from None
        return self._objectives[path], float(experiment.get("lease_seconds") or self.config.lease_seconds)

    def _announce(self) -> None:
        """Show the trial just claimed in ``workers`` at once (status reads it); best effort."""
        try:
            self.store.worker_alive(self.owner, self.info())
        except PyMongoError as err:
            log.debug("presence update failed: %s", one_line(err))

    def _release(self, tid: int) -> None:
        """Hand a trial back to the queue; if that fails its lease expires instead."""
        try:
            self.store.release(tid, self.owner)
            log.warning("trial %s: handed back to the queue", tid)
        except PyMongoError as err:
            log.warning("trial %s: could not hand it back (%s); its lease will expire", tid, one_line(err))

    def _retry(self, what: str, op: Callable[[], T], stoppable: bool = False) -> T | None:
        """Run a store call until the database answers; None if ``stoppable`` and a stop was requested."""
        delay = 0.1
        while True:
            try:
                value = op()
            except ConnectionFailure as err:
                if not self._db_down:
                    log.warning("database unreachable (%s: %s); retrying until it is back", what, one_line(err))
                    self._db_down = True
                if stoppable and self._stop_requests:
                    return None
                self._safe_point()
                time.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)
                continue
            if self._db_down:
                log.info("database reachable again")
                self._db_down = False
            return value

    def info(self) -> dict[str, Any]:
        """What the ``workers`` collection shows about this worker."""
        current = self._current or {}
        return {"pid": os.getpid(), "gpu": self.config.gpu, "exp_key": self.store.exp_key,
                "tid": current.get("tid"), "trial_exp_key": current.get("exp_key")}


class Presence:
    """Keeps the worker's entry in ``workers`` fresh from a background thread, busy or idle.

    The first entry is written before the worker claims anything, so a worker
    that dies on its first trial is still seen.
    """

    def __init__(self, worker: Worker):
        self._worker = worker
        self._interval = worker.config.lease_seconds / 4
        self._stop = threading.Event()
        self._beat()
        self._thread = threading.Thread(target=self._run, name="presence", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        try:
            self._worker.store.worker_alive(self._worker.owner, self._worker.info())
        except PyMongoError as err:  # outages are reported by the main loop
            log.debug("presence update failed: %s", one_line(err))

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._beat()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self._interval + 10)
        try:
            self._worker.store.worker_gone(self._worker.owner)
        except PyMongoError as err:
            log.debug("could not sign off: %s", one_line(err))


def configure_gpu(gpu: str) -> None:
    """Pin the worker to GPU ``gpu`` and let TensorFlow grow its memory instead of taking it all.

    Must run before TensorFlow is imported; TensorFlow is imported only here,
    and only if it is installed.
    """
    os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    if importlib.util.find_spec("tensorflow") is None:
        log.info("CUDA_VISIBLE_DEVICES=%s (TensorFlow not installed)", gpu)
        return
    import tensorflow as tf

    devices = tf.config.list_physical_devices("GPU")
    for device in devices:
        tf.config.experimental.set_memory_growth(device, True)
    log.info("CUDA_VISIBLE_DEVICES=%s: %d GPU(s) visible, memory growth on", gpu, len(devices))
