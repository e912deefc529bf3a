"""The optimizer: asks a sampler for new points and keeps a store's queue filled.

Before each top-up it reads every trial from the store (or takes them from a
caller that keeps them current, the master's ``TrialView``), so the sampler
learns from all workers' results and knows what is queued or running
(including the points proposed earlier in the same top-up), and it never
queues a point identical to one already queued, running or finished (it
re-samples instead).
"""

from __future__ import annotations

import abc
import logging
from typing import Any

import numpy as np
from hyperopt import Domain, Trials, space_eval

from caviar.errors import CaviarError
from caviar.objective import to_plain
from optimizer.samplers import ALGORITHMS
from optimizer.samplers._base import Doc
from optimizer.samplers.registry import SAMPLERS
from caviar.schedulers import Scheduler
from caviar.growing import NewItems
from caviar.store import DONE, NEW, RUNNING, TrialStore, vals_key

log = logging.getLogger(__name__)

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


def proposal_seed(seed: int, tid: int, attempt: int) -> int:
    """The seed of one proposal: a function of the search's seed and the tid, so a resumed run goes on alike."""
    return int(np.random.default_rng([seed, tid, attempt]).integers(2**31 - 1))


class Searcher(abc.ABC):
    """Keeps ``store``'s queue filled, up to ``max_evals`` trials in all: what the master drives.

    ``Search`` proposes with a sampler, ``optimizer.grid.GridSearch`` queues
    every point of a grid; both share the bookkeeping of a top-up here.
    """

    store: TrialStore
    max_evals: int
    exhausted: bool  # nothing left to propose
    # Promotions of paused trials go before new points (ASHA's get_job); see caviar.schedulers.asha.
    scheduler: Scheduler | None

    def remaining(self, counts: dict[int, int]) -> int:
        """Trials still to propose before the experiment holds ``max_evals``."""
        return self.max_evals - sum(counts.get(s, 0) for s in (NEW, RUNNING, DONE))

    def top_up(self, queued_target: int, counts: dict[int, int] | None = None,
               finished: list[Doc] | None = None, pending: list[Doc] | None = None) -> int:
        """Queue new points until ``queued_target`` wait in the queue (never past max_evals).

        ``counts``, ``finished`` (every finished trial in the order they
        finished, a list that only grows: ``TrialView.finished``) and
        ``pending`` may be passed by a caller that keeps them current; the
        work per top-up then grows with what is new, not with the experiment.
        """
        counts = self.store.count_by_state() if counts is None else counts
        wanted = min(queued_target - counts.get(NEW, 0), self.remaining(counts))
        promotes = self.scheduler is not None and self.scheduler.promotes
        if wanted <= 0 or (self.exhausted and not promotes):
            return 0
        if finished is None or pending is None:
            docs = self.store.trial_docs()
            finished = [d for d in docs if d["state"] == DONE]
            pending = [d for d in docs if d["state"] != DONE]
        new_docs = self._promoted_docs(wanted, finished, pending) if promotes else []
        if len(new_docs) < wanted and not self.exhausted:
            new_docs += self._new_docs(wanted - len(new_docs), finished, pending + new_docs)
        if new_docs:
            self.store.enqueue(new_docs)
        return len(new_docs)

    def _promoted_docs(self, wanted: int, finished: list[Doc], pending: list[Doc]) -> list[Doc]:
        """Up to ``wanted`` NEW trials that continue the paused trials the scheduler promotes now.

        A promotion is a trial of its own (finished trials never change): the
        parent's point and ``params``, with ``continues`` naming the parent, the
        step it paused at and the point's reports so far (the parent's, and
        those it continued), so the worker resumes from the parent's checkpoint
        and every earlier loss counts for its result.
        """
        assert self.scheduler is not None
        due = self.scheduler.promotions(finished, pending)[:wanted]
        if not due:
            return []
        docs = []
        for (parent, step), tid in zip(due, self.store.new_tids(len(due))):
            vals = parent["misc"]["vals"]
            misc = dict(parent["misc"], tid=tid, idxs={label: [tid] if v else [] for label, v in vals.items()})
            [doc] = Trials().new_trial_docs([tid], [parent.get("spec")], [{"status": "new"}], [misc])
            earlier = (parent.get("continues") or {}).get("reports") or {}  # a promotion of a promotion: all of them
            continues = {"tid": parent["tid"], "step": step, "reports": earlier | (parent.get("reports") or {})}
            doc = to_plain(doc) | {"params": parent["params"], "continues": continues}
            log.info("trial %s: promoted from rung %s, continued as trial %s", parent["tid"], step, tid)
            docs.append(doc)
        return docs

    @abc.abstractmethod
    def _new_docs(self, wanted: int, finished: list[Doc], pending: list[Doc]) -> list[Doc]:
        """Up to ``wanted`` NEW trial documents, none a point already stored; fewer (and ``exhausted``
        set) once no new point is left."""


class Search(Searcher):
    """Proposes trials for one experiment held in ``store``."""

    def __init__(self, store: TrialStore, space: Any, algo: str, max_evals: int, seed: int = 0,
                 scheduler: Scheduler | None = None):
        if algo not in SAMPLERS:
            raise CaviarError(f"unknown algorithm {algo!r}: choose one of {', '.join(ALGORITHMS)}")
        if max_evals < 1:
            raise CaviarError(f"max-evals must be at least 1, not {max_evals}")
        self.store, self.space, self.max_evals, self.seed, self.scheduler = store, space, max_evals, seed, scheduler
        try:
            self._domain = Domain(_not_called, space)
        except Exception as err:  # noqa: BLE001 - a broken user space
            raise CaviarError(f"the search space is not a valid hyperopt space: {type(err).__name__}: {err}") from None
        self.sampler = SAMPLERS[algo](self._domain)
        self.exhausted = False
        self._keys: dict[int, Any] = {}  # tid -> vals_key: a trial's point never changes
        self._newly_finished = NewItems()
        self._finished_keys: set[Any] = set()  # the points of the finished trials taken so far

    def _new_docs(self, wanted: int, finished: list[Doc], pending: list[Doc]) -> list[Doc]:
        new = self._newly_finished.take(finished)
        if len(new) == len(finished):  # a list read anew (or a first one): key it from the start
            self._finished_keys = set()
        self._finished_keys.update(self._key(d) for d in new)
        seen = {self._key(d) for d in pending}
        new_docs: list[Doc] = []
        for tid in self.store.new_tids(wanted):
            doc = self._propose(tid, finished, pending + new_docs, seen)
            if doc is None:
                self.exhausted = True
                log.warning("the search space is exhausted: every point was already tried")
                break
            seen.add(vals_key(doc["misc"]))
            new_docs.append(doc)
        return new_docs

    def _key(self, doc: Doc) -> Any:
        """``vals_key`` of a trial, computed once per trial rather than once per top-up."""
        key = self._keys.get(doc["tid"])
        if key is None:
            key = self._keys[doc["tid"]] = vals_key(doc["misc"])
        return key

    def _propose(self, tid: int, finished: list[Doc], pending: list[Doc], seen: set[Any]) -> Doc | None:
        """One new point, neither in ``seen`` (pending and just proposed) nor a finished trial's, as a NEW trial
        document with its concrete ``params``."""
        for attempt in range(MAX_RESAMPLES):
            try:
                vals = self.sampler.propose(tid, proposal_seed(self.seed, tid, attempt), finished, pending)
            except Exception as err:  # noqa: BLE001 - a space that cannot be sampled
                raise CaviarError(f"the search space cannot be sampled: {type(err).__name__}: {err}") from None
            misc = {"tid": tid, "cmd": self._domain.cmd, "workdir": self._domain.workdir,
                    "idxs": {label: [tid] if v else [] for label, v in vals.items()}, "vals": vals}
            key = vals_key(misc)
            if key not in seen and key not in self._finished_keys:
                break
            log.debug("trial %s: re-sampling a duplicate point", tid)
        else:
            return None
        [doc] = Trials().new_trial_docs([tid], [None], [self._domain.new_result()], [misc])
        doc = to_plain(doc)
        doc["params"] = concrete_params(self.space, doc["misc"])
        return doc
