"""The tuning process: alternate proposing trials and recording results until max-evals finished.

``run_embedded`` runs each trial in this process (no database); ``run_distributed``
leaves the trials to workers that share the store. Both mirror results/ after
every finished trial.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import time
from typing import Any, Sequence

from caviar.family import ModelFamily, score_of
from caviar.output.progress import Progress
from caviar.output.results import ResultsDir
from caviar.output.tracking import Tracker
from caviar.runner import discard_artifacts, run_trial
from caviar.store import DONE, NEW, RUNNING, TrialStore, best_doc, is_ok
from optimizer.search import Search

log = logging.getLogger(__name__)


class Recorder:
    """Mirrors finished trials into results/ and the trackers, shows progress, redraws the best model."""

    def __init__(self, store: TrialStore, results: ResultsDir, progress: Progress, family: ModelFamily,
                 trackers: Sequence[Tracker] = ()):
        self.store, self.results, self.progress, self.family = store, results, progress, family
        self.trackers = list(trackers)
        self._tracked: set[int] = set()

    def observe(self, counts: dict[int, int], workers: int | None = None,
                docs: list[dict[str, Any]] | None = None) -> None:
        """Write what is new among the trials (read now unless given), report."""
        docs = self.store.trial_docs() if docs is None else docs
        best = self.results.update(docs)
        for doc in docs:
            if doc["state"] == DONE and doc["tid"] not in self._tracked:
                for tracker in self.trackers:
                    tracker.trial_finished(doc)
                self._tracked.add(doc["tid"])
        if best is not None:
            log.info("new best: trial %s, %s %.4f", best["tid"], self.family.metric,
                     score_of(best["result"]["loss"], self.family.describe()))
            self.draw(best["params"], "model_best.png")
        failed = sum(1 for d in docs if d["state"] == DONE and not is_ok(d))
        top = best_doc(docs)
        self.progress.show(counts, failed, top["result"]["loss"] if top else None, workers)

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


def run_embedded(search: Search, family: ModelFamily, recorder: Recorder, heartbeat_seconds: float = 30.0) -> None:
    """Propose and evaluate one trial at a time in this process."""
    store = search.store
    owner = f"{socket.gethostname()}:{os.getpid()}"
    recorder.observe(store.count_by_state())
    while True:
        search.top_up(1)
        doc = store.claim(owner)
        if doc is None:
            break
        store.worker_alive(owner, {"tid": doc["tid"], "pid": os.getpid()})
        result, artifacts = run_trial(store, doc, family, owner, heartbeat_seconds)
        store.finish(doc["tid"], owner, result, artifacts)
        discard_artifacts(artifacts)
        recorder.observe(store.count_by_state())


def run_distributed(
    search: Search,
    recorder: Recorder,
    lease_seconds: float,
    lookahead: int,
    poll_seconds: float = 0.02,
) -> None:
    """Keep the queue at (live workers + lookahead) outstanding trials until max-evals have finished."""
    store = search.store
    last_done = -1
    next_requeue = next_census = 0.0
    workers = 0
    outage_since: float | None = None
    while True:
        try:
            counts = store.count_by_state()  # the first call of a round: it tells whether the store is back
            now = time.monotonic()
            if outage_since is not None:
                log.info("store reachable again after %.1fs", now - outage_since)
                outage_since = None
                # Heartbeats could not land during the outage: give the workers a full lease first.
                next_requeue = now + lease_seconds
            if now >= next_requeue:
                for tid in store.requeue_expired(lease_seconds):
                    log.warning("trial %s: its worker went silent for %ss; requeued", tid, lease_seconds)
                next_requeue = now + min(lease_seconds / 4, 5.0)
            if now >= next_census or counts.get(NEW, 0) == 0:  # an empty queue may mean idle workers
                workers = len(store.live_workers(lease_seconds))
                next_census = now + 1.0
            target = max(workers, 1) + lookahead - counts.get(RUNNING, 0)
            if counts.get(DONE, 0) != last_done:
                # One read serves both; the queue is refilled before results/ is written.
                last_done = counts.get(DONE, 0)
                docs = store.trial_docs()
                search.top_up(target, counts, docs)
                recorder.observe(counts, workers, docs)
            else:
                search.top_up(target, counts)
            pending = counts.get(NEW, 0) + counts.get(RUNNING, 0)
            if last_done >= search.max_evals or (search.exhausted and pending == 0):
                return
            time.sleep(poll_seconds)
        except store.transient_errors as err:
            if outage_since is None:
                outage_since = time.monotonic()
                log.warning("store unreachable (%s); retrying", err)
            time.sleep(min(5.0, 0.2 + (time.monotonic() - outage_since) / 4))


def finalize(store: TrialStore, family: ModelFamily, results: ResultsDir, plots: bool = True,
             refit: bool = False) -> None:
    """At the end of a search: the plots, the cv_results table, the best model's test-set metrics (if the
    family can) and, with ``refit``, the best point refit on all the training data (``optimizer.refit``)."""
    from optimizer.refit import refit_best, write_cv_table

    docs = store.trial_docs()
    write_cv_table(docs, results.path)
    if plots:
        try:
            from caviar.output.plots import make_plots

            label = family.metric if family.maximize else f"-{family.metric} (higher is better)"
            make_plots(docs, os.path.join(results.path, "plots"), label)
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
