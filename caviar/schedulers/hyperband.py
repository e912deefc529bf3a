"""Hyperband as brackets of ASHA (Li et al. 2017/2018; Optuna's HyperbandPruner).

Bracket ``s`` (0 .. s_max, ``s_max = floor(log_eta(max_epochs / min_epochs))``)
starts its rungs at ``min_epochs * eta**s``: bracket 0 stops trials the most
aggressively, the last runs them all to the end. A trial's bracket is its tid
modulo the number of brackets, so every worker places it alike, and trials
are compared only within their bracket.
"""

from __future__ import annotations

from caviar.schedulers.asha import Asha


class Hyperband(Asha):
    """Several ASHA brackets with growing first rungs; a trial's bracket is ``tid % brackets``."""

    name = "hyperband"

    def __init__(self, min_epochs: int = 1, reduction_factor: int = 3, max_epochs: int | None = None,
                 promote: bool = False):
        super().__init__(min_epochs, reduction_factor, max_epochs, promote)
        if promote:  # a promoted trial continues under a new tid, which would fall in another bracket
            raise ValueError("hyperband does not promote paused trials: use asha for promote")
        if max_epochs is None:
            raise ValueError("hyperband needs max_epochs (the steps of a full trial) to size its brackets")
        s_max = 0
        while min_epochs * reduction_factor ** (s_max + 1) <= max_epochs:
            s_max += 1
        self.brackets = s_max + 1

    def group(self, tid: int) -> int:
        return tid % self.brackets  # the bracket

    def first_rung(self, tid: int) -> int:
        return self.min_epochs * self.reduction_factor ** self.group(tid)
