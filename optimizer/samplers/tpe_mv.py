"""Optuna's multivariate TPE with a constant liar, on a hyperopt space ("tpe-mv").

Optuna's TPE models the parameters jointly (``multivariate``), per group of
parameters that occur together (``group``: the branches of nested choices), and
with ``constant_liar`` it counts every pending trial as a bad result, so points
proposed in parallel spread out instead of piling onto the same optimum. Its
start-up phase (random points) counts finished trials only.

The Optuna study lives in memory and is kept between calls: each call adds the
trials that finished or appeared since the last one, in tid order, so a study
rebuilt from a store's contents by a resumed search is the one the
uninterrupted search had (the only extra trials of the latter are refused
duplicates, failed, which TPE ignores).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, Sequence

import numpy as np
import optuna
from hyperopt import Domain
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.search_space.group_decomposed import _SearchSpaceGroup
from optuna.trial import TrialState, create_trial

from optimizer.samplers._base import Doc, Sampler, Vals, finished_loss
from optimizer.samplers._space import Param, translate, warn_prior
from caviar.store import DONE

log = logging.getLogger(__name__)

# Optuna's default; like hyperopt's 20 it is a number of *finished* trials here.
N_STARTUP_TRIALS = 10


class MultivariateTPE(Sampler):
    """Optuna's ``TPESampler(multivariate=True, group=True, constant_liar=True)`` driven ask-and-tell."""

    def __init__(self, domain: Domain, n_startup_trials: int = N_STARTUP_TRIALS, constant_liar: bool = True):
        super().__init__(domain)
        self.params = translate(domain.expr)
        self.modelled = [p for p in self.params if p.distribution is not None]
        warn_prior(log, "tpe-mv", self.params)
        self.n_startup_trials, self.constant_liar = n_startup_trials, constant_liar
        optuna.logging.set_verbosity(optuna.logging.ERROR)  # no line per trial told or sampled alone
        self.study = optuna.create_study(direction="minimize")
        self._done: set[int] = set()
        self._running: dict[int, int] = {}  # tid -> Optuna trial number of a pending trial
        self._pending_dists: dict[int, dict[str, BaseDistribution]] = {}  # tid -> its parameters' distributions
        self._n_trials = 0  # trials in the study (without copying them all to count them)
        self._groups = _GroupedSpace()

    def propose(self, tid: int, seed: int, finished: Sequence[Doc], pending: Sequence[Doc]) -> Vals:
        self._sync(finished, pending)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self.study.sampler = optuna.samplers.TPESampler(
                n_startup_trials=self.n_startup_trials, multivariate=True, group=True,
                constant_liar=self.constant_liar, seed=seed,
            )
        self.study.sampler._group_decomposed_search_space = self._groups  # kept, not recomputed: see _GroupedSpace
        trial = self.study.ask()
        self._n_trials += 1
        rng = np.random.default_rng(seed)
        vals: Vals = {}
        for p in self.params:  # parents first, so a child sees the choice above it
            if not p.active(vals):
                vals[p.label] = []
            elif p.distribution is None:
                vals[p.label] = [p.sample_prior(rng)]
            else:
                vals[p.label] = [p.to_hyperopt(_suggest(trial, p))]
        # The asked trial also holds values of inactive branches (Optuna's relative sample), which
        # the constant liar would use: it is replaced by the pending trial a resumed search would add.
        self.study.tell(trial.number, state=TrialState.FAIL)
        self._add(tid, vals, TrialState.RUNNING)
        return vals

    def _sync(self, finished: Sequence[Doc], pending: Sequence[Doc]) -> None:
        """Bring the study up to date: new trials added in tid order, finished ones told, vanished ones failed."""
        new = [d for d in finished if d["tid"] not in self._done and d["tid"] not in self._running]
        new += [d for d in pending if d["tid"] not in self._running]
        for doc in sorted(new, key=lambda d: d["tid"]):
            value = finished_loss(doc) if doc["state"] == DONE else None
            state = TrialState.RUNNING if doc["state"] != DONE else _finished_state(value)
            self._add(doc["tid"], doc["misc"]["vals"], state, value)
        for doc in finished:
            if doc["tid"] in self._running:
                value = finished_loss(doc)
                number, dists = self._running.pop(doc["tid"]), self._pending_dists.pop(doc["tid"])
                self.study.tell(number, value, state=_finished_state(value))
                self._done.add(doc["tid"])
                if value is not None:
                    self._completed(number, dists)
        still = {d["tid"] for d in pending}
        for tid in [t for t in self._running if t not in still]:  # refused as a duplicate, or gone
            self.study.tell(self._running.pop(tid), state=TrialState.FAIL)
            del self._pending_dists[tid]

    def _add(self, tid: int, vals: Vals, state: TrialState, value: float | None = None) -> None:
        """Add a trial the study has not seen: finished (with its loss, or failed) or pending (RUNNING)."""
        modelled = [p for p in self.modelled if vals.get(p.label)]
        params = {p.label: p.to_optuna(vals[p.label][0]) for p in modelled}
        dists = {p.label: p.distribution for p in modelled}
        try:
            trial = create_trial(state=state, value=value, params=params, distributions=dists)
        except ValueError as err:  # a value outside the space: a document of another space
            log.debug("trial %s left out of the model: %s", tid, err)
            return
        self.study.add_trial(trial)
        self._n_trials += 1
        if state == TrialState.RUNNING:
            self._running[tid] = self._n_trials - 1
            self._pending_dists[tid] = dists
        else:
            self._done.add(tid)
            if state == TrialState.COMPLETE:
                self._completed(self._n_trials - 1, dists)

    def _completed(self, number: int, dists: dict[str, BaseDistribution]) -> None:
        """Trial ``number`` (with these parameters) is COMPLETE."""
        self._groups.add(number, dists)


class _GroupedSpace:
    """Optuna's ``_GroupDecomposedSearchSpace`` (what ``group=True`` uses), kept up to date trial by trial.

    Optuna's folds the parameter sets of every COMPLETE trial, in trial number order, into
    groups at each proposal: a tenth of a proposal's time at 1,000 trials. Folding a set
    already folded changes nothing, so folding only the distinct sets, in the order of
    the first trial of each, gives the same groups in the same order (the order in
    which TPE draws them), hence the same proposals.
    """

    def __init__(self) -> None:
        self._first: dict[frozenset[str], tuple[int, dict[str, BaseDistribution]]] = {}

    def add(self, number: int, dists: dict[str, BaseDistribution]) -> None:
        """Count COMPLETE trial ``number`` with these parameters."""
        first = self._first.get(frozenset(dists))
        if first is None or number < first[0]:
            self._first[frozenset(dists)] = number, dists

    def calculate(self, study: optuna.Study, use_cache: bool = False) -> _SearchSpaceGroup:
        """The groups, as ``_GroupDecomposedSearchSpace.calculate`` finds them from the study's trials."""
        group = _SearchSpaceGroup()
        for _, dists in sorted(self._first.values(), key=lambda first: first[0]):
            group.add_distributions(dists)
        return group


def _finished_state(value: float | None) -> TrialState:
    return TrialState.COMPLETE if value is not None else TrialState.FAIL


def _suggest(trial: optuna.Trial, p: Param) -> Any:
    """Ask Optuna for one parameter's value in its own representation."""
    d = p.distribution
    if isinstance(d, CategoricalDistribution):
        return trial.suggest_categorical(p.label, d.choices)
    if isinstance(d, IntDistribution):
        return trial.suggest_int(p.label, d.low, d.high, log=d.log)
    assert isinstance(d, FloatDistribution)
    return trial.suggest_float(p.label, d.low, d.high, log=d.log)
