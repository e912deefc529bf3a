"""Running claimed trials: heartbeat while the objective runs, then write the result back."""

from __future__ import annotations

import logging
import shutil
import threading
from typing import Any

from caviar import schedulers
from caviar.objective import Objective, evaluate, request_stop
from caviar.reporting import reporting_to
from caviar.runner.artifacts import TrialArtifacts, new_scratch, scratch_env, split_artifacts
from caviar.runner.reports import TrialReporter
from caviar.store import TrialStore

log = logging.getLogger(__name__)


class Heartbeat:
    """Refreshes the lease of one trial from a background thread while it runs.

    It stops beating once another worker owns the trial (the store then refuses
    this worker's result) and asks the objective to stop at its next safe point
    (``caviar.objective.check_stop``). Database errors are logged once and
    retried on the next beat: a short outage must not lose the trial. The
    store takes back a trial requeued meanwhile that nobody claimed.
    """

    def __init__(self, store: TrialStore, tid: int, owner: str, interval: float):
        self._store, self._tid, self._owner, self._interval = store, tid, owner, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{tid}", daemon=True)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        request_stop(None)

    def _run(self) -> None:
        failing = False
        while not self._stop.wait(self._interval):
            try:
                if not self._store.heartbeat(self._tid, self._owner):
                    reason = f"trial {self._tid}: lease lost (another worker holds the trial, or it finished)"
                    log.warning("%s; asking the objective to stop at its next safe point", reason)
                    request_stop(reason)
                    return
                if failing:
                    log.info("trial %s: heartbeat reaches the store again", self._tid)
                failing = False
            except Exception as err:  # noqa: BLE001 - keep beating through outages
                if not failing:
                    log.warning("trial %s: heartbeat failed (%s), retrying", self._tid, err)
                failing = True


def run_trial(
    store: TrialStore, doc: dict[str, Any], fn: Objective, owner: str, heartbeat_seconds: float
) -> tuple[dict[str, Any], TrialArtifacts]:
    """Evaluate one claimed trial under a heartbeat, in its own scratch folder; return (storable result, artifacts).

    The caller writes the result with ``store.finish`` (which keeps the
    artifacts of a new best) and then deletes the scratch folder
    (``discard_artifacts``); if the objective stops the run, it is deleted here.
    """
    log.info("trial %s: start %s", doc["tid"], doc["params"])
    scratch = new_scratch(doc["tid"])
    reporter = TrialReporter(store, doc, owner, schedulers.from_env(), bool(getattr(fn, "maximize", False)))
    try:
        with Heartbeat(store, doc["tid"], owner, heartbeat_seconds), scratch_env(scratch), reporting_to(reporter):
            result = reporter.close(evaluate(reporter.objective(fn), doc["params"]))
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    result, artifacts = split_artifacts(result, scratch)
    log.info("trial %s: %s loss=%s%s", doc["tid"], result["status"], result.get("loss"),
             f" (stopped at step {result['stopped_at']})" if result.get("stopped") else "")
    return result, artifacts
