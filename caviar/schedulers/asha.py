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

import bisect
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from caviar.growing import NewItems
from caviar.reporting import stored_reports
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
        self._rungs: _Rungs | None = None  # promotions' index, built on first use

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

    def promotions(self, finished: Sequence[dict[str, Any]], pending: Sequence[dict[str, Any]] = ()
                   ) -> list[tuple[dict[str, Any], int]]:
        """Paused trials that hold one of the ``n // reduction_factor`` best places at their rung, never
        continued: higher rungs first, then the better loss (ASHA's ``get_job``)."""
        if not self.promotes:
            return []
        if self._rungs is None:
            self._rungs = _Rungs(self)
        return self._rungs.due(finished, pending)


Entry = tuple[float, int]  # (loss at the rung, tid): a place at a rung, ties to the lower tid


class _Rungs:
    """The finished trials' losses at each rung and the paused trials not yet continued, sorted, read once.

    Kept current from the finished trials as they come (a list that only
    grows), so that a top-up costs O(log n) per rung plus the pending trials,
    where ranking every trial at every top-up cost O(n).
    """

    def __init__(self, asha: Asha):
        self.asha = asha
        self._new = NewItems()
        self._clear()

    def _clear(self) -> None:
        self.losses: dict[tuple[int, int], list[Entry]] = defaultdict(list)  # (group, step) -> finished trials'
        self.paused: dict[tuple[int, int], list[Entry]] = defaultdict(list)  # (group, step) -> paused, not continued
        self._paused_at: dict[int, tuple[tuple[int, int], Entry, dict[str, Any]]] = {}  # tid -> key, entry, doc
        self._continued: set[int] = set()

    def due(self, finished: Sequence[dict[str, Any]], pending: Sequence[dict[str, Any]]
            ) -> list[tuple[dict[str, Any], int]]:
        new = self._new.take(finished)
        if new and len(new) == len(finished):  # a list read anew (or a first one): index it from the start
            self._clear()
        for doc in new:
            self._add(doc)
        continuing = {d["continues"]["tid"] for d in pending if d.get("continues")}
        running: dict[tuple[int, int], list[Entry]] = defaultdict(list)
        for doc in pending:
            for key, entry in self._places(doc):
                running[key].append(entry)
        due = []
        for (group, step), paused in self.paused.items():
            places = (len(self.losses[group, step]) + len(running[group, step])) // self.asha.reduction_factor
            if not paused or not places:
                continue
            last = _kth(self.losses[group, step], sorted(running[group, step]), places)
            due += [(-step, loss, tid) for loss, tid in paused[:bisect.bisect_right(paused, last)]
                    if tid not in continuing]
        return [(self._paused_at[tid][2], -neg_step) for neg_step, _loss, tid in sorted(due)]

    def _places(self, doc: dict[str, Any]) -> list[tuple[tuple[int, int], Entry]]:
        """The trial's places at the rungs it reported at (a NaN/inf report holds none)."""
        tid = doc["tid"]
        return [((self.asha.group(tid), step), (loss, tid)) for step, loss in stored_reports(doc).items()
                if loss is not None and self.asha.decides_at(tid, step)]

    def _add(self, doc: dict[str, Any]) -> None:
        tid, result = doc["tid"], doc.get("result") or {}
        parent = (doc.get("continues") or {}).get("tid")
        if parent is not None:
            self._continued.add(parent)
            if parent in self._paused_at:
                key, entry, _ = self._paused_at.pop(parent)
                self.paused[key].remove(entry)
        places = dict(self._places(doc))
        for key, entry in places.items():
            bisect.insort(self.losses[key], entry)
        if result.get("paused") and tid not in self._continued:
            key = (self.asha.group(tid), int(result["stopped_at"]))
            if key in places:
                bisect.insort(self.paused[key], places[key])
                self._paused_at[tid] = (key, places[key], doc)


def _kth(ranked: list[Entry], others: list[Entry], k: int) -> Entry:
    """The ``k``-th smallest entry of two sorted lists, ``others`` short: O(len(others)) whatever ``ranked``'s."""
    skipped = max(0, k - 1 - len(others))  # entries of ranked surely among the first k - 1
    return sorted(ranked[skipped:k] + others)[k - 1 - skipped]
