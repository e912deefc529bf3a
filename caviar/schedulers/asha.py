"""ASHA: asynchronous successive halving (Li et al. 2018; Optuna's SuccessiveHalvingPruner).

Rungs sit at ``min_epochs * reduction_factor**k`` steps (below ``max_epochs``
when it is known). A trial reaching a rung goes on if its loss is among the
best ``1/reduction_factor`` of the losses already recorded at that rung; it
never waits for other trials to get there, so no worker ever idles.
"""

from __future__ import annotations

from typing import Mapping

from caviar.schedulers._base import Decision, Scheduler, ranked_cutoff


class Asha(Scheduler):
    """Successive halving without synchronisation: promote the top 1/eta seen so far at each rung."""

    name = "asha"

    def first_rung(self, tid: int) -> int:
        """The first rung's step for ``tid`` (Hyperband moves it per bracket)."""
        return self.min_epochs

    def peers_of(self, tid: int, losses: Mapping[int, float | None]) -> dict[int, float | None]:
        """The trials ``tid`` is compared with (Hyperband keeps its own bracket)."""
        return dict(losses)

    def decides_at(self, tid: int, step: int) -> bool:
        if self.max_epochs is not None and step >= self.max_epochs:
            return False
        rung = self.first_rung(tid)
        while rung < step:
            rung *= self.reduction_factor
        return rung == step

    def decide(self, tid: int, step: int, losses: Mapping[int, float | None]) -> Decision:
        peers = self.peers_of(tid, losses)
        mine = peers.get(tid)
        finite = [loss for loss in peers.values() if loss is not None]
        if mine is None or not finite:
            return Decision(stop=True, peers=len(peers), cutoff=None)
        cutoff = ranked_cutoff(finite, self.reduction_factor)
        return Decision(stop=mine > cutoff, peers=len(peers), cutoff=cutoff)
