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

With ``promote`` (the paper's ASHA), a trial is judged against the rung as it
is, without a place for a trial alone: it goes on only if it holds one of the
``n // reduction_factor`` best places of the ``n`` trials at the rung, itself
included. The others pause there (their checkpoint is kept), and as the rung
fills up, a paused trial that now holds one of those places and was never
continued is promoted: continued from its checkpoint as a trial of its own
(``promotions``). Decided on arrival, the first trials at a rung go on however
poor they are, and as the search's proposals improve most newcomers beat the
trials already there: in the early-stopping benchmark 3.2-4.3 epochs per
trial, where one in ``reduction_factor`` going on at each rung would cost 2.3.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from caviar.schedulers._base import Decision, Scheduler


class Asha(Scheduler):
    """Successive halving without synchronisation: promote the top 1/eta seen so far at each rung."""

    name = "asha"

    def __init__(self, min_epochs: int = 1, reduction_factor: int = 3, max_epochs: int | None = None,
                 promote: bool = False):
        super().__init__(min_epochs, reduction_factor, max_epochs)
        if not isinstance(promote, bool):
            raise ValueError(f"promote must be true or false, got {promote!r}")
        self.promotes = promote

    def config(self) -> dict[str, Any]:  # "promote" only when on: experiments recorded before it match still
        return super().config() | ({"promote": True} if self.promotes else {})

    def first_rung(self, tid: int) -> int:
        """The first rung's step for ``tid`` (Hyperband moves it per bracket)."""
        return self.min_epochs

    def group(self, tid: int) -> int:
        """Trials are compared within their group (Hyperband's bracket; ASHA has one)."""
        return 0

    def peers_of(self, tid: int, losses: Mapping[int, float | None]) -> dict[int, float | None]:
        """The trials ``tid`` is compared with."""
        mine = self.group(tid)
        return {other: loss for other, loss in losses.items() if self.group(other) == mine}

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
        keep = (len(others) + 1) // self.reduction_factor  # places at this rung, this trial counted
        if not self.promotes:
            keep = max(keep, 1)
        if keep == 0:  # too few at the rung to hold a place: pause, to be promoted as it fills up
            return Decision(stop=True, peers=len(peers), cutoff=None)
        if len(others) < keep:  # alone at its rung: it goes on, as in Optuna and Ray
            return Decision(stop=False, peers=len(peers), cutoff=None)
        cutoff = others[keep - 1]  # the worst of the others holding a place: to beat, not to equal
        return Decision(stop=mine >= cutoff, peers=len(peers), cutoff=cutoff)

    def promotions(self, docs: Iterable[dict[str, Any]]) -> list[tuple[int, int]]:
        """Paused trials that hold one of the ``n // reduction_factor`` best places at their rung, never
        continued: higher rungs first, then the better loss (ASHA's ``get_job``)."""
        if not self.promotes:
            return []
        docs = list(docs)
        continued = {d["continues"]["tid"] for d in docs if d.get("continues")}
        paused = {}
        for d in docs:
            result = d.get("result") or {}
            if result.get("paused") and d["tid"] not in continued:
                paused[d["tid"]] = int(result["stopped_at"])
        due = []
        for step in sorted(set(paused.values())):
            at_step = {d["tid"]: d["reports"][str(step)] for d in docs
                       if (d.get("reports") or {}).get(str(step)) is not None}
            for group in {self.group(tid) for tid, at in paused.items() if at == step}:
                ranked = sorted((loss, tid) for tid, loss in at_step.items() if self.group(tid) == group)
                for loss, tid in ranked[:len(ranked) // self.reduction_factor]:
                    if paused.get(tid) == step:
                        due.append((-step, loss, tid))
        return [(tid, -neg_step) for neg_step, _loss, tid in sorted(due)]
