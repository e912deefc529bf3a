"""ASHA: asynchronous successive halving (Li et al. 2018; Optuna's SuccessiveHalvingPruner).

Rungs sit at ``min_epochs * reduction_factor**k`` steps (below ``max_epochs``
when it is known). A trial reaching a rung goes on if its loss is among the
best ``1/reduction_factor`` of the losses already recorded at that rung; it
never waits for other trials to get there, so no worker ever idles.

Ties go against the trial arriving: it must beat the ``k``-th best loss of the
others (``k``: its rung's share, at least 1), not merely equal it. Equal losses
are common at a rung (every model that predicts one class scores that class's
share of the validation set), and counting a tie as a place among the best let
such a model run to the end where the identical ones before it had been
stopped; Optuna's pruner promotes ties.
"""

from __future__ import annotations

from typing import Mapping

from caviar.schedulers._base import Decision, Scheduler


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
        if mine is None:
            return Decision(stop=True, peers=len(peers), cutoff=None)
        others = sorted(loss for other, loss in peers.items() if other != tid and loss is not None)
        keep = max((len(others) + 1) // self.reduction_factor, 1)  # places at this rung, this trial counted
        if len(others) < keep:  # alone at its rung: it goes on, as in Optuna and Ray
            return Decision(stop=False, peers=len(peers), cutoff=None)
        cutoff = others[keep - 1]  # the worst of the others holding a place: to beat, not to equal
        return Decision(stop=mine >= cutoff, peers=len(peers), cutoff=cutoff)
