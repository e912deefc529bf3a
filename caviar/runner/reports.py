"""The running trial's reporter: its reports go to the store, its scheduler decides from the store.

Installed by ``run_trial`` for each trial (``caviar.reporting.reporting_to``).
Every report is written to the trial's document before the scheduler is asked,
and the decision is read back from the document (the first one recorded at a
step wins), so any worker, restarted or not, gets the same answer.

A store that is unreachable never fails the trial: reports wait in memory and
are written with the next report (or at the end), the trial goes on without a
decision meanwhile, and a checkpoint that cannot be written is skipped.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from caviar.objective import STATUS_OK, Objective, check_stop, failure
from caviar.reporting import Checkpoint, Reporter, TrialStopped, check_step, finite_or_none, stored_reports
from caviar.schedulers import Scheduler
from caviar.store import TrialStore

log = logging.getLogger(__name__)


class TrialReporter(Reporter):
    """Reports of one claimed trial (``doc``) held by ``owner``, judged by ``scheduler``.

    ``maximize``: the objective reports a score to maximize (its loss is minus
    the score), as the family declares.
    """

    def __init__(self, store: TrialStore, doc: dict[str, Any], owner: str, scheduler: Scheduler, maximize: bool):
        self._store, self._tid, self._owner, self._scheduler = store, doc["tid"], owner, scheduler
        self._sign = -1.0 if maximize else 1.0
        # Losses of this trial, earlier attempts' included (a resumed trial's best may lie before its restart).
        # A promoted trial (``continues``) starts from its paused parent's checkpoint, with the parent's losses.
        self._parent: int | None = (doc.get("continues") or {}).get("tid")
        self.losses: dict[int, float | None] = stored_reports(doc.get("continues") or {}) | stored_reports(doc)
        self._unwritten: dict[int, float | None] = {}
        self.stopped_at: int | None = None
        self.resumed_from: int | None = None
        self.paused = False  # stopped by a promoting scheduler with a checkpoint of its stopping step kept
        self._lost = False
        self._store_down = False

    # -- Reporter -------------------------------------------------------------
    def report(self, step: int, value: float) -> bool:
        check_stop()  # a worker that lost the trial's lease stops here, at a safe point, and records nothing
        step = check_step(step)
        score = finite_or_none(value)
        loss = None if score is None else self._sign * score
        self.losses[step] = self._unwritten[step] = loss
        if self.stopped_at is not None or self._lost:
            return False
        try:
            self._write_reports()
            if not self._lost and self._scheduler.decides_at(self._tid, step):
                decision = self._decide(step)
                if decision is not None and decision["stop"]:
                    self.stopped_at = step
                    log.info("trial %s: stopped by %s at step %s (loss %s, cutoff %s of %s trials)", self._tid,
                             self._scheduler.name, step, loss, decision.get("cutoff"), decision.get("peers"))
        except self._store.transient_errors as err:
            self._outage(f"report of step {step}", err)
        return self.stopped_at is None and not self._lost

    def should_stop(self) -> bool:
        return self.stopped_at is not None or self._lost

    def pausing(self) -> bool:
        return (self._scheduler.promotes and not self._lost and self.stopped_at is not None
                and self.losses.get(self.stopped_at) is not None)

    def save_checkpoint(self, path: str, step: int, info: dict[str, Any] | None = None) -> None:
        step = check_step(step)
        if self._lost or (self.stopped_at is not None and not (self.pausing() and step == self.stopped_at)):
            return  # a stopped trial keeps a checkpoint only to be promoted from where it paused
        try:
            if not self._store.put_checkpoint(self._tid, self._owner, path, step, info):
                self._lose()
            elif self.stopped_at is not None:
                self.paused = True
        except self._store.transient_errors as err:
            self._outage(f"checkpoint of step {step}", err)

    def restore_checkpoint(self, dest: str) -> Checkpoint | None:
        try:
            kept = self._store.get_checkpoint(self._tid, dest)
            if kept is None and self._parent is not None:
                kept = self._store.get_checkpoint(self._parent, dest)
        except self._store.transient_errors as err:
            self._outage("checkpoint restore (starting from scratch)", err)
            return None
        if kept is None:
            return None
        self.resumed_from = kept[0]
        log.info("trial %s: resuming from the checkpoint of step %s", self._tid, kept[0])
        return Checkpoint(kept[0], kept[1])

    # -- the runner's side ----------------------------------------------------
    def objective(self, fn: Objective) -> Callable[[dict[str, Any]], Any]:
        """``fn`` with ``TrialStopped`` turned into the stopped trial's result."""

        def run(params: dict[str, Any]) -> Any:
            try:
                return fn(params)
            except TrialStopped:
                return self._stopped_result()

        return run

    def close(self, result: dict[str, Any]) -> dict[str, Any]:
        """Mark a stopped or resumed trial's result, write what is left, drop the checkpoint."""
        if result.get("status") == STATUS_OK and self.stopped_at is not None:
            result |= {"stopped": True, "stopped_at": self.stopped_at}
            if self.paused:
                result["paused"] = True  # its checkpoint stays, for a promotion
        if self.resumed_from is not None:
            result["resumed_from"] = self.resumed_from
        try:
            self._write_reports()
            if not result.get("paused"):
                self._store.discard_checkpoint(self._tid)
            if self._parent is not None:
                self._store.discard_checkpoint(self._parent)
        except self._store.transient_errors as err:
            log.warning("trial %s: could not write its last reports or drop its checkpoint (%s)", self._tid, err)
        return result

    # -- inside -----------------------------------------------------------------
    def _stopped_result(self) -> dict[str, Any]:
        """The result of an objective that raised TrialStopped: its best reported loss."""
        finite = [loss for loss in self.losses.values() if loss is not None]
        if self.stopped_at is None:  # the objective stopped itself
            self.stopped_at = max(self.losses, default=0)
        if not finite:
            return failure(f"stopped at step {self.stopped_at} without a finite report")
        return {"loss": min(finite), "status": STATUS_OK}

    def _write_reports(self) -> None:
        for step in sorted(self._unwritten):
            if not self._store.report(self._tid, self._owner, step, self._unwritten[step]):
                self._lose()
                return
            del self._unwritten[step]
        if self._store_down:
            log.info("trial %s: reports reach the store again", self._tid)
            self._store_down = False

    def _decide(self, step: int) -> dict[str, Any] | None:
        """Decide from the stored losses; the store keeps the first decision taken (a resumed trial's included)."""
        losses = self._store.step_losses(self._tid, step)
        decision = self._scheduler.decide(self._tid, step, losses).as_doc() | {"scheduler": self._scheduler.name}
        return self._store.decide(self._tid, self._owner, step, decision)

    def _lose(self) -> None:
        if not self._lost:
            log.warning("trial %s: no longer held by this worker; stopping it", self._tid)
        self._lost = True

    def _outage(self, what: str, err: Exception) -> None:
        if not self._store_down:
            log.warning("trial %s: store unreachable (%s: %s); going on, reports kept until it is back",
                        self._tid, what, err)
        self._store_down = True
