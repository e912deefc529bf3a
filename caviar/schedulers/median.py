"""Median stopping (Google Vizier; Optuna's MedianPruner): stop a trial worse than the median at a step.

From ``min_epochs`` on, at every step, a trial stops if its loss is worse than
the median of the other trials' losses at the same step, once at least
``MIN_PEERS`` other trials have reported there.
"""

from __future__ import annotations

import statistics
from typing import Mapping

from caviar.schedulers._base import Decision, Scheduler

MIN_PEERS = 4  # like Optuna's n_startup_trials: no stopping on the word of fewer trials


class MedianScheduler(Scheduler):
    """Stops a trial whose loss at a step is above the median of the others' at that step."""

    name = "median"

    def decides_at(self, tid: int, step: int) -> bool:
        return step >= self.min_epochs and (self.max_epochs is None or step < self.max_epochs)

    def decide(self, tid: int, step: int, losses: Mapping[int, float | None]) -> Decision:
        mine = losses.get(tid)
        others = [loss for other, loss in losses.items() if other != tid and loss is not None]
        if mine is None:
            return Decision(stop=True, peers=len(losses), cutoff=None)
        if len(others) < MIN_PEERS:
            return Decision(stop=False, peers=len(losses), cutoff=None)
        cutoff = statistics.median(others)
        return Decision(stop=mine > cutoff, peers=len(losses), cutoff=cutoff)
