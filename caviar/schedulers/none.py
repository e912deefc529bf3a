"""No early stopping: every trial runs to its end (reports are still recorded)."""

from __future__ import annotations

from typing import Mapping

from caviar.schedulers._base import Decision, Scheduler


class NoScheduler(Scheduler):
    """Never decides; the default for objectives whose family names no scheduler."""

    name = "none"

    def decides_at(self, tid: int, step: int) -> bool:
        return False

    def decide(self, tid: int, step: int, losses: Mapping[int, float | None]) -> Decision:
        return Decision(stop=False, peers=len(losses), cutoff=None)
