"""The optimizer: asks hyperopt's algorithm for new points and keeps a store's queue filled.

It reads every finished result from the store before each proposal, so TPE
learns from all workers, and it never queues a point identical to one already
queued, running or finished (it re-samples instead).
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import numpy as np
from hyperopt import Domain, Trials, anneal, rand, space_eval, tpe

from caviar.errors import CaviarError
from caviar.objective import to_plain
from caviar.store import DONE, NEW, RUNNING, TrialStore, vals_key

log = logging.getLogger(__name__)

ALGORITHMS: dict[str, Callable[..., list[dict[str, Any]]]] = {
    "tpe": tpe.suggest,
    "random": rand.suggest,
    "anneal": anneal.suggest,
}
# How often to re-sample a duplicate before concluding the space is exhausted.
MAX_RESAMPLES = 50


def _not_called(params: dict[str, Any]) -> None:
    raise AssertionError("the optimizer never evaluates the objective itself")


def concrete_params(space: Any, misc: dict[str, Any]) -> dict[str, Any]:
    """The hyperparameters an objective receives for a point, as plain values."""
    assignment = {label: v[0] for label, v in misc["vals"].items() if v}
    params = space_eval(space, assignment)
    try:
        return to_plain(params)
    except TypeError as err:
        raise CaviarError(f"the search space yields a value that cannot be stored: {err}") from None


class Search:
    """Proposes trials for one experiment held in ``store``."""

    def __init__(self, store: TrialStore, space: Any, algo: str, max_evals: int, seed: int = 0):
        if algo not in ALGORITHMS:
            raise CaviarError(f"unknown algorithm {algo!r}: choose one of {', '.join(ALGORITHMS)}")
        if max_evals < 1:
            raise CaviarError(f"max-evals must be at least 1, not {max_evals}")
        self.store, self.space, self.max_evals, self.seed = store, space, max_evals, seed
        self._suggest = ALGORITHMS[algo]
        try:
            self._domain = Domain(_not_called, space)
        except Exception as err:  # noqa: BLE001 - a broken user space
            raise CaviarError(f"the search space is not a valid hyperopt space: {type(err).__name__}: {err}") from None
        self.exhausted = False

    def remaining(self, counts: dict[int, int]) -> int:
        """Trials still to propose before the experiment holds ``max_evals``."""
        return self.max_evals - sum(counts.get(s, 0) for s in (NEW, RUNNING, DONE))

    def top_up(self, queued_target: int, counts: dict[int, int] | None = None,
               docs: list[dict[str, Any]] | None = None) -> int:
        """Queue new points until ``queued_target`` wait in the queue (never past max_evals).

        ``counts`` and ``docs`` may be passed when the caller has just read them.
        """
        counts = self.store.count_by_state() if counts is None else counts
        wanted = min(queued_target - counts.get(NEW, 0), self.remaining(counts))
        if wanted <= 0 or self.exhausted:
            return 0
        docs = self.store.trial_docs() if docs is None else docs
        trials = Trials()
        trials._insert_trial_docs([d | {"exp_key": None} for d in docs])
        trials.refresh()
        seen = {vals_key(d["misc"]) for d in docs}
        new_docs = []
        for tid in self.store.new_tids(wanted):
            doc = self._propose(tid, trials, seen)
            if doc is None:
                self.exhausted = True
                log.warning("the search space is exhausted: every point was already tried")
                break
            seen.add(vals_key(doc["misc"]))
            new_docs.append(doc)
        if new_docs:
            self.store.enqueue(new_docs)
        return len(new_docs)

    def _propose(self, tid: int, trials: Trials, seen: set[Any]) -> dict[str, Any] | None:
        """One new point not in ``seen``; seeds depend on the tid so a resumed run goes on afresh."""
        for attempt in range(MAX_RESAMPLES):
            seed = int(np.random.default_rng([self.seed, tid, attempt]).integers(2**31 - 1))
            try:
                [doc] = self._suggest([tid], self._domain, trials, seed)
            except Exception as err:  # noqa: BLE001 - a space that cannot be sampled
                raise CaviarError(f"the search space cannot be sampled: {type(err).__name__}: {err}") from None
            if vals_key(doc["misc"]) not in seen:
                break
            log.debug("trial %s: re-sampling a duplicate point", tid)
        else:
            return None
        doc = to_plain(doc)
        doc["params"] = concrete_params(self.space, doc["misc"])
        return doc
