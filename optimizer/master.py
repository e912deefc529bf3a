"""The tuning process: alternate proposing trials and recording results until max-evals finished.

``run_embedded`` runs each trial in this process (no database); ``run_distributed``
leaves the trials to workers that share the store. Both mirror results/ after
every finished trial.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import tempfile
import time
import uuid
from typing import TYPE_CHECKING, Any, Sequence

from caviar.errors import CaviarError
from caviar.family import ModelFamily, score_of
from caviar.output.progress import Progress
from caviar.output.results import ResultsDir
from caviar.output.tracking import Tracker
from caviar.runner import discard_artifacts, run_trial
from caviar.growing import NewItems
from caviar.store import DONE, NEW, RUNNING, TrialStore, best_doc, is_ok
from caviar.store.own_trials import OwnTrials
from optimizer.search import Searcher

if TYPE_CHECKING:  # the embedded mode runs without pymongo
    from caviar.store.mongo import MongoStore

log = logging.getLogger(__name__)

EXIT_TERMINATED = 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM reached the master: results/ is mirrored, the trackers are closed, exit ``EXIT_TERMINATED``."""

    exit_code = EXIT_TERMINATED


class MasterLease:
    """The one-master-per-experiment lease: a second master stands by until the first one's lease ends.

    The lease is renewed by the master's loop on the database's clock, and
    synchronously before every top-up of the queue, so two masters never
    queue trials of one experiment at the same time (never past max-evals).
    A master that exits cleanly releases it; one that was killed holds it
    until ``lease_seconds`` pass without a renewal.
    """

    def __init__(self, store: "MongoStore", lease_seconds: float):
        self.store, self.lease_seconds = store, lease_seconds
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"

    def acquire(self) -> None:
        """Take the lease, standing by (one log line naming the live master) while another holds it."""
        waiting = False
        while True:
            live = self.store.acquire_master(self.owner, self.lease_seconds, {"pid": os.getpid()})
            if live is None:
                log.info("master %s holds experiment %r", self.owner, self.store.exp_key)
                return
            if not waiting:
                log.warning("experiment %r has a live master, %s (last seen %.1f s ago): standing by until "
                            "it exits or stays silent for its lease of %g s", self.store.exp_key, live["owner"],
                            live["age"], live.get("lease_seconds", self.lease_seconds))
                waiting = True
            time.sleep(min(self.lease_seconds / 4, 5.0))

    def renew(self) -> None:
        """Refresh the lease; a master that lost it to another stops (CaviarError)."""
        if not self.store.renew_master(self.owner):
            raise CaviarError(f"another master took over experiment {self.store.exp_key!r} "
                              "while this one could not reach the database: stopping")

    def release(self) -> None:
        """Give the lease up at a clean exit; best effort (it expires anyway)."""
        try:
            self.store.release_master(self.owner)
        except self.store.transient_errors as err:
            log.debug("could not release the master lease: %s", err)


class Recorder:
    """Mirrors finished trials into results/ and the trackers, shows progress, redraws the best model."""

    def __init__(self, store: TrialStore, results: ResultsDir, progress: Progress, family: ModelFamily,
                 trackers: Sequence[Tracker] = ()):
        self.store, self.results, self.progress, self.family = store, results, progress, family
        self.trackers = list(trackers)
        self._tracked: set[int] = set()
        self._failed = 0
        self._newly_finished = NewItems()

    def observe(self, counts: dict[int, int], workers: int | None = None,
                finished: list[dict[str, Any]] | None = None) -> None:
        """Write the newly finished trials, report.

        ``finished``: every finished trial in the order they finished, a list
        that only grows (``TrialView.finished``); read from the store if not
        given. Finished trials never change: each is handled once, so the work
        per call grows with what is new, not with the experiment.
        """
        if finished is None:
            finished = [d for d in self.store.trial_docs() if d["state"] == DONE]
        new = [d for d in self._newly_finished.take(finished) if d["tid"] not in self._tracked]
        best = self.results.update(new)
        for doc in new:
            for tracker in self.trackers:
                tracker.trial_finished(doc)
            self._tracked.add(doc["tid"])
            self._failed += not is_ok(doc)
        if best is not None:
            log.info("new best: trial %s, %s %.4f", best["tid"], self.family.metric,
                     score_of(best["result"]["loss"], self.family.describe()))
            self.draw(best["params"], "model_best.png")
        top = self.results.best
        self.progress.show(counts, self._failed, top["result"]["loss"] if top else None, workers)

    def close(self) -> None:
        """End the trackers' runs (MLflow's parent run is marked finished)."""
        for tracker in self.trackers:
            tracker.close()

    def draw(self, params: dict[str, Any], name: str) -> None:
        """Draw a model diagram if the family knows how; a failure is only a warning."""
        if not self.family.diagrams:
            return
        try:
            self.family.draw(params, os.path.join(self.results.path, name))
        except Exception as err:  # noqa: BLE001 - a diagram is never worth stopping a search
            log.warning("could not draw %s: %s", name, err)


def run_embedded(search: Searcher, family: ModelFamily, recorder: Recorder, heartbeat_seconds: float = 30.0) -> None:
    """Propose and evaluate one trial at a time in this process.

    The store is read once (``OwnTrials``); after that the search and the
    recorder learn of each trial as this loop finishes it.
    """
    store = search.store
    trials = OwnTrials(store)
    owner = f"{socket.gethostname()}:{os.getpid()}"
    recorder.observe(store.count_by_state(), finished=trials.finished)
    while True:
        counts = store.count_by_state()
        search.top_up(1, counts, trials.finished, trials.pending(counts))
        doc = trials.claim(owner)
        if doc is None:
            break
        store.worker_alive(owner, {"tid": doc["tid"], "pid": os.getpid()})
        recorder.results.live(doc)  # what `status` shows as running: it reads results/ only
        result, artifacts = run_trial(store, doc, family, owner, heartbeat_seconds)
        trials.finish(doc["tid"], owner, result, artifacts)
        discard_artifacts(artifacts)
        recorder.observe(store.count_by_state(), finished=trials.finished)
    recorder.results.live(None)


def run_distributed(
    search: Searcher,
    recorder: Recorder,
    lease: MasterLease,
    lookahead: int,
    poll_seconds: float = 0.02,
) -> None:
    """Keep the queue at (live workers + lookahead) outstanding trials until max-evals have finished.

    Trials are read incrementally (``TrialView``): the cost per finished trial
    stays flat as the experiment grows. Requeueing waits until this process
    has seen the database answer for a full lease (``steady_for``). SIGTERM
    mirrors what finished and raises ``Terminated``.
    """
    from caviar.store.mongo import TrialView

    store, lease_seconds = lease.store, lease.lease_seconds
    view = TrialView(store)
    last_done = -1
    next_requeue = next_census = next_renew = 0.0
    workers = 0
    outage_since: float | None = None
    terminated: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, _frame: terminated.append(signum))
    try:
        while True:
            try:
                view.refresh()  # the first call of a round: it tells whether the store is back
                counts = view.counts()
                now = time.monotonic()
                if outage_since is not None:
                    log.info("store reachable again after %.1fs", now - outage_since)
                    outage_since = None
                if terminated:
                    recorder.observe(counts, workers, view.finished())
                    log.warning("stopped by SIGTERM: %d finished trials mirrored; run again to resume",
                                counts.get(DONE, 0))
                    raise Terminated()
                if now >= next_requeue and store.steady_for(lease_seconds):
                    for tid in store.requeue_expired(lease_seconds):
                        log.warning("trial %s: its worker went silent for %ss; requeued", tid, lease_seconds)
                    next_requeue = now + min(lease_seconds / 4, 5.0)
                if now >= next_census or counts.get(NEW, 0) == 0:  # an empty queue may mean idle workers
                    workers = len(store.live_workers(lease_seconds))
                    next_census = now + 1.0
                target = max(workers, 1) + lookahead - counts.get(RUNNING, 0)
                if (target > counts.get(NEW, 0) and search.remaining(counts) > 0) or now >= next_renew:
                    lease.renew()  # before queueing anything: no other master may have taken over
                    next_renew = now + lease_seconds / 4
                if search.top_up(target, counts, view.finished(), view.pending()):
                    view.refresh()
                    counts = view.counts()
                if counts.get(DONE, 0) != last_done:
                    last_done = counts.get(DONE, 0)
                    recorder.observe(counts, workers, view.finished())
                pending = counts.get(NEW, 0) + counts.get(RUNNING, 0)
                if last_done >= search.max_evals or (search.exhausted and pending == 0):
                    return
                time.sleep(poll_seconds)
            except store.transient_errors as err:
                if outage_since is None:
                    outage_since = time.monotonic()
                    log.warning("store unreachable (%s); retrying", err)
                time.sleep(min(5.0, 0.2 + (time.monotonic() - outage_since) / 4))
    finally:
        signal.signal(signal.SIGTERM, previous)


def finalize(store: TrialStore, family: ModelFamily, results: ResultsDir, plots: bool = True,
             refit: bool = False) -> None:
    """At the end of a search: the plots, the cv_results table, the best model's test-set metrics (if the
    family can) and, with ``refit``, the best point refit on all the training data (``optimizer.refit``)."""
    from optimizer.refit import refit_best, write_cv_table

    docs = store.trial_docs()
    for doc in docs:  # trials paused by asha (--promote yes): the checkpoints that no promotion took go
        if doc["state"] == DONE and doc["result"].get("paused"):
            store.discard_checkpoint(doc["tid"])
    write_cv_table(docs, results.path)
    if plots:
        try:
            from caviar.output.plots import make_plots

            make_plots(docs, os.path.join(results.path, "plots"), family.describe())
        except Exception as err:  # noqa: BLE001 - plots are never worth failing a finished search
            log.warning("could not draw the plots: %s", err)
    best = best_doc(docs)
    if best is None:
        log.warning("no trial succeeded: nothing to report as best")
        return
    extra: dict[str, Any] = {}
    if family.test_artifact is not None:
        name = os.path.splitext(family.test_artifact)[0]
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, family.test_artifact)
            kept = store.fetch_best_artifact(name, path)
            if kept == best["tid"]:
                log.info("evaluating the best trial's %s (trial %s) on the test set", name, best["tid"])
                extra["test"] = family.evaluate_best(path)
                log.info("test set: %s", extra["test"])
            else:
                log.warning("the best trial's %s was not kept (kept: trial %s): no test-set evaluation", name, kept)
    if refit:
        extra["refit"] = refit_best(family, best, results.path)
    results.write_best(best, extra)
    log.info("best trial %s: %s %.4f, params %s", best["tid"], family.metric,
             score_of(best["result"]["loss"], family.describe()), best["params"])
