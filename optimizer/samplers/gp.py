"""Bayesian optimization with a Gaussian process on a hyperopt space ("gp").

Each proposal fits a GP (``_gaussian_process``) to the finished trials and
proposes the point of highest expected improvement. On the smooth, few-dozen
to few-hundred trial problems hyperparameter tuning is made of, a GP's model of
the whole surface finds the optimum with several times fewer evaluations than
TPE's density ratio (``bench/quality.py``).

- **Hyperopt spaces as they are.** Every label of the space (``_space``) is a
  column in [0, 1]: floats and integers scaled (log-scaled where the space is),
  a choice one-hot. A parameter switched off by a choice sits at 0.5 (its
  one-hot at zeros); the choice's own column tells the GP which branch a point
  took. Parameters the translation cannot model are drawn from their prior.
- **The acquisition** is maximized over random points of the space and local
  moves around the best trials (Gaussian steps, changed choices, children of a
  new branch drawn anew), refined with shrinking steps: no gradients, so
  choices, nested branches and integers are handled the same way.
- **Trust regions** (TuRBO, Eriksson et al. 2019): the numbers of a proposal
  stay in a box around the best trial of the current *region*, its sides
  scaled by the fitted lengthscales, doubled after ``TR_SUCCESSES`` improving
  trials in a row, halved after ``TR_FAILURES`` failing ones. Below
  ``TR_LENGTH_MIN`` the region restarts: ``n_startup_trials`` random points,
  then a new box around the best of them, with the GP still fitted on every
  trial but the improvement measured against the region's own best, and no
  point within ``TR_AVOID`` of the best point of an earlier region (of the
  ``TR_AVOIDED`` best ones). On Hartmann-6 a run otherwise spent its last 50
  evaluations refining the local optimum its first 15 had found (a quarter
  of the runs); restarts found the global one
  in some of them (held-out seeds 100-139: 6 trapped of 40 instead of 10;
  140-179: 9 instead of 14), at the cost of less refinement where the first
  region was right (median regret after 100 evaluations 0.001 instead of
  0.0001). Fitting each region on its own trials, as TuRBO does, freed more
  runs (4 and 3 of 40) but forgot what the choices of the CNN-like space do
  (one seed in 10 left at 0.15). The region is recomputed from the finished
  losses at every proposal, not kept (see *Deterministic*); in parallel,
  trials are judged in batches of the number running, as TuRBO judges a batch.
  A box with no free point left (in parallel: every point in it beside a
  pending one) gives way to the whole space for that proposal; otherwise 6-10%
  of the parallel proposals on Branin fell beside a pending trial.
- **Parallel-aware.** Queued and running trials (the earlier proposals of the
  same top-up included) enter as Kriging believers, which takes the model's
  uncertainty away around them, and no point is proposed within
  ``MIN_PENDING_DISTANCE`` of one; the random start-up counts finished trials
  only. (A constant liar at the worst loss, as Optuna's TPE uses, spread the
  points too far on Hartmann-6: worse than TPE at 50 evaluations.)
- **Failed and stopped trials.** A failed trial is left out of the model (its
  point is not proposed again). Once a scheduler has stopped a trial early,
  the GP gets one more input, the fidelity: every trial is observed at each
  step some trial was stopped at (its best report so far, fidelity log(step) /
  log(last step)) and, if it went on to the end, at fidelity 1; proposals,
  the incumbent and the trust region's centre are judged at fidelity 1. A
  stopped trial is compared with its peers at the same step, and the trials
  that went on teach the model what an early loss bodes for the end (counted
  with its own loss as if final, a stopped trial ranked below every trial that
  went on, and the options it had tried looked bad: ``bench/early_stopping.py``'s
  run N in the README).
- **Deterministic.** A proposal is a function of the finished and pending
  trials (taken in tid order) and the seed, so a resumed search proposes what
  the uninterrupted one would have.
- **Bounded cost.** Each finished trial is read once; the hyperparameters are
  fitted on at most ``FIT_POINTS`` observations and the posterior conditioned
  on those of at most ``MODEL_POINTS`` trials (half the best, half the latest;
  with early stopping, one per stopping step a trial reached and one at the
  end), so past a few hundred trials a proposal costs about the same however
  large the experiment (what grows is the trust region's replay over the
  losses: 1-4 ms at 10,000 trials).
"""

from __future__ import annotations

import itertools
import logging
import math
from typing import Any, Mapping, Sequence

import numpy as np
from hyperopt import Domain
from threadpoolctl import ThreadpoolController
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from optimizer.samplers._base import Doc, Sampler, Vals, finished_loss
from optimizer.samplers._gaussian_process import GaussianProcess, log_expected_improvement, transform_outputs
from optimizer.samplers._space import Param, translate, warn_prior
from caviar.growing import NewItems
from caviar.reporting import stored_reports

log = logging.getLogger(__name__)

N_STARTUP_TRIALS = 5  # finished trials proposed at random before the first fit (5 beat 10 on held-out seeds)
FIT_POINTS = 100
MODEL_POINTS = 200
N_RANDOM = 1000  # random candidates per proposal
N_TOP = 10  # best trials moved around
LOCAL_STEPS = (0.2, 0.05, 0.01)  # first round of local moves, around the best trials
REFINE_STEPS = (0.05, 0.01, 0.002)  # then around the best candidates
N_KEEP = 5
TR_LENGTH_INIT, TR_LENGTH_MIN, TR_LENGTH_MAX = 0.8, 0.03, 1.6  # the trust region's side (unit columns)
TR_SUCCESSES, TR_FAILURES = 3, 3  # improving / failing batches in a row that double / halve it
TR_IMPROVEMENT = 1e-4  # an improvement: below the region's best by this share of its magnitude
TR_AVOID = 0.1  # a restarted region proposes nothing this close (RMS) to an earlier region's best
TR_AVOIDED = 20  # ... of the best this many earlier regions (more cost time per proposal, growing with the experiment)
# Believers leave the mean as it is: once the model has converged, the best points lie right
# beside the pending ones. Closer than this (RMS over the unit columns) to one is no new point.
MIN_PENDING_DISTANCE = 0.02
# BLAS on one thread: its threads cost far more than they bring on matrices this small (10x on a busy machine).
_BLAS = ThreadpoolController()


class _UnitSpace:
    """A hyperopt space's labels as columns of unit values (NaN: switched off), and their GP encoding."""

    def __init__(self, params: list[Param]):
        self.params = params
        self.index = {p.label: i for i, p in enumerate(params)}
        self.modelled = [i for i, p in enumerate(params) if p.distribution is not None]
        self.width = sum(_width(params[i]) for i in self.modelled)
        self.one_hot = np.array([isinstance(params[i].distribution, CategoricalDistribution)
                                 for i in self.modelled for _ in range(_width(params[i]))], dtype=bool)

    def from_vals(self, vals_list: Sequence[Mapping[str, list[Any]]]) -> np.ndarray:
        """Trials' points (``misc["vals"]``) as rows of unit values."""
        u = np.full((len(vals_list), len(self.params)), np.nan)
        for row, vals in enumerate(vals_list):
            for i, p in enumerate(self.params):
                if vals.get(p.label):
                    u[row, i] = _to_unit(p, vals[p.label][0])
        return u

    def to_vals(self, row: np.ndarray, prior: Mapping[str, Any]) -> Vals:
        """One row as ``misc["vals"]``; ``prior``: the values of the parameters drawn from their prior."""
        return {p.label: [] if math.isnan(v) else [_from_unit(p, v) if p.distribution else prior[p.label]]
                for p, v in zip(self.params, row)}

    def complete(self, u: np.ndarray, rng: np.random.Generator, fixed: np.ndarray) -> np.ndarray:
        """Switch parameters on and off as the rows' choices say; draw values for the ones newly on.

        Parameters drawn from the prior take this proposal's draw (``fixed``) wherever they are on.
        """
        for i, p in enumerate(self.params):  # parents first
            active = np.zeros(len(u), dtype=bool)
            for conj in p.conditions:
                ok = np.ones(len(u), dtype=bool)
                for label, option in conj:
                    ok &= u[:, self.index[label]] == option
                active |= ok
            if p.distribution is None:  # this proposal's draw from the prior, in every row
                u[active, i] = fixed[i]
            elif (fresh := active & np.isnan(u[:, i])).any():
                u[fresh, i] = _random_unit(p, int(fresh.sum()), rng)
            u[~active, i] = np.nan
        return u

    def random(self, n: int, rng: np.random.Generator, fixed: np.ndarray) -> np.ndarray:
        """``n`` points drawn from the space (uniform in the unit columns)."""
        return self.complete(np.full((n, len(self.params)), np.nan), rng, fixed)

    def flipped(self, u: np.ndarray, rng: np.random.Generator, fixed: np.ndarray) -> np.ndarray:
        """Every point one choice away from a row of ``u``, the rest kept (a new branch's children drawn).

        Gaussian steps move every number at once, which loses a good point's numbers whenever a
        choice changes with them; changing one choice alone is how an additive effect is found.
        """
        out = []
        for i in self.modelled:
            d = self.params[i].distribution
            if isinstance(d, CategoricalDistribution):
                for option in range(len(d.choices)):
                    rows = u[~np.isnan(u[:, i]) & (u[:, i] != option)].copy()
                    rows[:, i] = option
                    out.append(rows)
        return self.complete(np.vstack(out), rng, fixed) if out else np.empty((0, u.shape[1]))

    def moved(self, u: np.ndarray, rng: np.random.Generator, step: float, fixed: np.ndarray) -> np.ndarray:
        """Local moves: Gaussian steps of ``step`` on numbers, each choice changed with probability ``step``."""
        u = u.copy()
        for i in self.modelled:
            p, on = self.params[i], ~np.isnan(u[:, i])
            if isinstance(p.distribution, CategoricalDistribution):
                change = on & (rng.random(len(u)) < step)
                u[change, i] = _random_unit(p, int(change.sum()), rng)
            else:
                u[on, i] = _reflect(u[on, i] + step * rng.standard_normal(int(on.sum())))
        return self.complete(u, rng, fixed)

    def near(self, u: np.ndarray, others: np.ndarray, radius: float | np.ndarray) -> np.ndarray:
        """Which rows of ``u`` lie within RMS distance ``radius`` (one, or one per row) of a row of ``others``.

        Over the modelled parameters on in either point: numbers by their unit values
        (integers snapped), a different option or a parameter only one point has counts 1.
        """
        total, count = np.zeros((len(u), len(others))), np.zeros((len(u), len(others)))
        for i in self.modelled:
            d, a, b = self.params[i].distribution, u[:, i, None], others[None, :, i]
            on_a, on_b = ~np.isnan(a), ~np.isnan(b)
            either = on_a | on_b
            if isinstance(d, CategoricalDistribution):
                differs = (on_a != on_b) | (on_a & on_b & (a != b))
            else:
                if isinstance(d, IntDistribution):
                    a, b = _snapped(d, a), _snapped(d, b)
                differs = np.where(on_a & on_b, (a - b) ** 2, (on_a != on_b).astype(float))
            total += np.where(either, differs, 0.0)
            count += either
        return np.any(total < radius**2 * np.maximum(count, 1), axis=1)

    def encode(self, u: np.ndarray) -> np.ndarray:
        """The GP's inputs: unit numbers snapped to the values they stand for, choices one-hot."""
        x = np.zeros((len(u), self.width))
        col = 0
        for i in self.modelled:
            p, values, on = self.params[i], u[:, i], ~np.isnan(u[:, i])
            if isinstance(p.distribution, CategoricalDistribution):
                n = len(p.distribution.choices)
                x[on, col + values[on].astype(int)] = 1.0
                col += n
            else:
                if isinstance(p.distribution, IntDistribution):
                    values = _snapped(p.distribution, values)
                x[:, col] = np.where(on, values, 0.5)
                col += 1
        return x


def _width(p: Param) -> int:
    return len(p.distribution.choices) if isinstance(p.distribution, CategoricalDistribution) else 1


def _int_edges(d: IntDistribution) -> tuple[float, float]:
    """The unit interval's ends in the integer's (log-)scale: each integer gets an equal share."""
    return (math.log(d.low - 0.5), math.log(d.high + 0.5)) if d.log else (d.low - 0.5, d.high + 0.5)


def _int_of_unit(d: IntDistribution, u: np.ndarray) -> np.ndarray:
    """The integers unit values stand for (NaN stays NaN)."""
    low, high = _int_edges(d)
    scaled = low + u * (high - low)
    return np.clip(np.round(np.exp(scaled) if d.log else scaled), d.low, d.high)


def _snapped(d: IntDistribution, u: np.ndarray) -> np.ndarray:
    """Unit values moved to the unit value of the integer they stand for, so equal integers encode alike."""
    low, high = _int_edges(d)
    k = _int_of_unit(d, u)
    return ((np.log(k) if d.log else k) - low) / (high - low)


def _to_unit(p: Param, value: Any) -> float:
    """The unit value of a hyperopt value (for a choice: the option's index)."""
    d = p.distribution
    if d is None:  # drawn from the prior: kept as a number, for the choices it may switch on
        return float(value)
    v = p.to_optuna(value)
    if isinstance(d, CategoricalDistribution):
        return float(d.choices.index(v))
    if isinstance(d, IntDistribution):
        low, high = _int_edges(d)
        return ((math.log(v) if d.log else v) - low) / (high - low)
    assert isinstance(d, FloatDistribution)
    if d.high == d.low:
        return 0.5
    if d.log:
        return (math.log(v) - math.log(d.low)) / (math.log(d.high) - math.log(d.low))
    return (v - d.low) / (d.high - d.low)


def _from_unit(p: Param, u: float) -> Any:
    """The hyperopt value of a unit value."""
    d = p.distribution
    if isinstance(d, CategoricalDistribution):
        return p.to_hyperopt(d.choices[int(u)])
    if isinstance(d, IntDistribution):
        return p.to_hyperopt(int(_int_of_unit(d, np.array(u))))
    assert isinstance(d, FloatDistribution)
    if d.log:
        v = math.exp(math.log(d.low) + u * (math.log(d.high) - math.log(d.low)))
    else:
        v = d.low + u * (d.high - d.low)
    return p.to_hyperopt(min(max(v, d.low), d.high))


def _reflect(u: np.ndarray) -> np.ndarray:
    """Back into [0, 1] by reflection at the ends (clipping would pile moves up on the bounds)."""
    u = np.abs(u) % 2.0
    return np.where(u > 1.0, 2.0 - u, u)


def _random_unit(p: Param, n: int, rng: np.random.Generator) -> np.ndarray:
    if isinstance(p.distribution, CategoricalDistribution):
        return rng.integers(len(p.distribution.choices), size=n).astype(float)
    return rng.random(n)


def _subset(losses: np.ndarray, size: int) -> np.ndarray:
    """Indices (rows in tid order) of the best ``size // 2`` and the latest others, ``size`` in all."""
    n = len(losses)
    if n <= size:
        return np.arange(n)
    best = np.argsort(losses, kind="stable")[: size // 2]
    latest = np.setdiff1d(np.arange(n), best)[-(size - len(best)):]
    return np.sort(np.concatenate([best, latest]))


class _History:
    """The finished trials read so far (their losses, unit rows and encodings), each read once.

    Kept across proposals so that a proposal's work does not grow with the
    experiment: ``finished`` only grows, and a trial's point and loss never change.
    A promotion (``continues``: asha went on with a paused trial) is the same
    point further trained: its loss replaces the one it continues, so a point
    counts once, with its latest score.
    """

    def __init__(self, space: _UnitSpace):
        self.space = space
        self._new = NewItems()
        self._seen: set[int] = set()  # a list read anew (a store read) starts from the beginning again
        self.tids: list[int] = []
        self.losses: list[float] = []
        self.rows: list[np.ndarray] = []
        self.tried: set[bytes] = set()  # encodings of every finished point (failed ones too): not proposed again
        self._position: dict[int, int] = {}  # tid -> its row (a promotion's: the row of the trial it continues)
        self.curves: list[dict[int, float]] = []  # per row: its finite reports, {step: loss}
        self.stopped_at: list[int | None] = []  # per row: the step a scheduler stopped it at (None: it ran to the end)

    def update(self, finished: Sequence[Doc]) -> None:
        """Take the trials of ``finished`` not read yet."""
        new = [d for d in self._new.take(finished) if d["tid"] not in self._seen]
        self._seen.update(d["tid"] for d in new)
        if not new:
            return
        self.tried.update(row.tobytes() for row in self.space.encode(self.space.from_vals(
            [d["misc"]["vals"] for d in new])))
        tids: list[int] = []
        vals: list[dict[str, Any]] = []
        for d in new:
            loss = finished_loss(d)
            row = self._position.get((d.get("continues") or {}).get("tid"))
            if row is not None:
                self._position[d["tid"]] = row
                if loss is not None:
                    self.losses[row] = loss
                    self.curves[row].update(_curve(d))
                    self.stopped_at[row] = _stopped_at(d)
            elif loss is not None:
                self._position[d["tid"]] = len(self.losses)
                tids.append(d["tid"])
                vals.append(d["misc"]["vals"])
                self.losses.append(loss)
                self.curves.append(_curve(d))
                self.stopped_at.append(_stopped_at(d))
        if tids:
            self.tids += tids
            self.rows.extend(self.space.from_vals(vals))

    def in_tid_order(self) -> tuple[np.ndarray, np.ndarray]:
        """The positions of the trials (in ``rows``) and their losses, in tid order."""
        order = np.argsort(self.tids, kind="stable")
        return order, np.asarray(self.losses)[order]

    def observations(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The model's observations of the trials at ``rows``: for each, the trial (its index in ``rows``), the loss
        and its fidelity, or None for the fidelities when no trial of ``rows`` was stopped early.

        A trial stopped at step s tells how its point does after s steps, not at the end. With early stopping,
        every trial is observed at each step some trial was stopped at (its best report up to it, fidelity
        log(s) / log(last step)) and, if it ran to the end, at the end (fidelity 1, its loss): the GP learns how
        a point's loss after s steps bodes for its end from the trials that went on, and judges a stopped
        point by its peers at the same step instead of by the trials that trained longer.
        """
        stops = {self.stopped_at[r] for r in rows} - {None}
        last = max((max(self.curves[r], default=0) for r in rows), default=0)
        rungs = sorted(s for s in stops if s < last)
        if not rungs:
            return np.arange(len(rows)), np.array([self.losses[r] for r in rows]), None
        observed: list[tuple[int, float, float]] = []
        for k, r in enumerate(rows):
            curve, stopped_at = self.curves[r], self.stopped_at[r]
            for step in rungs:
                if (stopped_at is not None and step > stopped_at) or max(curve, default=0) < step:
                    break
                if reached := [loss for s, loss in curve.items() if s <= step]:
                    observed.append((k, min(reached), math.log(step) / math.log(last)))
            if stopped_at is None or stopped_at >= last:  # ran to the end (or as far as any trial went)
                observed.append((k, self.losses[r], 1.0))
        trials, losses, fidelities = (np.array(column) for column in zip(*observed))
        return trials.astype(int), losses, fidelities


def _curve(doc: Doc) -> dict[int, float]:
    """A trial's finite reports, {step: loss}."""
    return {step: loss for step, loss in stored_reports(doc).items() if loss is not None and math.isfinite(loss)}


def _stopped_at(doc: Doc) -> int | None:
    return doc["result"].get("stopped_at") if doc["result"].get("stopped") else None


class GaussianProcessSampler(Sampler):
    """GP-based Bayesian optimization (expected improvement, Kriging believers) on a hyperopt space."""

    def __init__(self, domain: Domain, n_startup_trials: int = N_STARTUP_TRIALS):
        super().__init__(domain)
        self.space = _UnitSpace(translate(domain.expr))
        self.n_startup_trials = n_startup_trials
        self.history = _History(self.space)
        self._numeric = np.array([p.distribution is not None and not isinstance(p.distribution, CategoricalDistribution)
                                  for p in self.space.params])
        warn_prior(log, "gp", self.space.params)

    def _box(self, centre: np.ndarray, length: float, gp: GaussianProcess) -> tuple[np.ndarray, np.ndarray]:
        """The trust region's bounds per unit column: sides ``length`` times the number's lengthscale over their
        geometric mean (TuRBO's), around ``centre``; columns that are choices, or off at the centre, unbounded."""
        space, numeric = self.space, self._numeric
        lengthscales, col = np.full(len(space.params), np.nan), 0
        for i in space.modelled:
            lengthscales[i] = math.exp(gp.theta[col])
            col += _width(space.params[i])
        bounded = numeric & ~np.isnan(centre)
        half = np.ones(len(space.params))
        if numeric.any():
            half[numeric] = lengthscales[numeric] / np.exp(np.mean(np.log(lengthscales[numeric]))) * length / 2
        low = np.where(bounded, np.clip(centre - half, 0.0, 1.0), 0.0)
        high = np.where(bounded, np.clip(centre + half, 0.0, 1.0), 1.0)
        return low, high

    def propose(self, tid: int, seed: int, finished: Sequence[Doc], pending: Sequence[Doc]) -> Vals:
        with _BLAS.limit(limits=1, user_api="blas"):
            return self._propose(seed, finished, pending)

    def _propose(self, seed: int, finished: Sequence[Doc], pending: Sequence[Doc]) -> Vals:
        rng = np.random.default_rng(seed)
        space = self.space
        prior = {p.label: p.sample_prior(rng) for p in space.params if p.distribution is None}
        fixed = np.array([_to_unit(p, prior[p.label]) if p.label in prior else np.nan for p in space.params])
        self.history.update(finished)
        if len(self.history.losses) < self.n_startup_trials or not space.modelled:
            return space.to_vals(space.random(1, rng, fixed)[0], prior)
        u_pending = space.from_vals([d["misc"]["vals"] for d in pending])
        order, all_losses = self.history.in_tid_order()
        starts, length = _trust_region(all_losses, self.n_startup_trials, 1 + len(pending))
        avoided, radii = self._avoided(u_pending, order, all_losses, starts)
        if len(all_losses) - starts[-1] < self.n_startup_trials:  # a restarted region's random start-up
            candidates = space.random(N_RANDOM, rng, fixed)
            away = np.flatnonzero(~space.near(candidates, avoided, radii))
            return space.to_vals(candidates[away[0] if len(away) else 0], prior)
        positions = _subset(all_losses, MODEL_POINTS)  # the model's trials, by their places in tid order
        u_done = np.array([self.history.rows[order[i]] for i in positions])
        x_done = space.encode(u_done)
        trials, losses, fidelities = self.history.observations(order[positions])
        y = transform_outputs(losses)
        x_observed = x_done[trials] if fidelities is None else np.column_stack([x_done[trials], fidelities])
        gp = GaussianProcess(x_observed, y, fit=_subset(y, FIT_POINTS) if len(y) > FIT_POINTS else None,
                             one_hot=space.one_hot if fidelities is None else np.append(space.one_hot, False))
        model = gp if fidelities is None else _AtTheEnd(gp)
        region = positions >= starts[-1]
        ends = model.predict(x_done)[0]  # each trial's loss at the end, as the model sees it
        best = float(ends[region].min())
        x_pending = space.encode(u_pending)
        model.condition_on_pending(x_pending)
        # Points already tried or pending (all of them, not only the model's) are never proposed again.
        queued = {row.tobytes() for row in x_pending}  # not merged with history.tried: a copy per proposal
        acquisition = _Acquisition(self, model, best, queued, avoided, radii, rng, fixed)
        in_region = u_done[region], (y if fidelities is None else ends)[region]
        centre = in_region[0][np.argmin(in_region[1])]
        chosen, value = acquisition.maximize(*self._box(centre, length, gp), min(1.0, length), in_region)
        if value == -np.inf:  # the box is full (in parallel: every point in it beside a pending one): look everywhere
            chosen, _ = acquisition.maximize(np.zeros(len(space.params)), np.ones(len(space.params)), 1.0, in_region)
        return space.to_vals(chosen, prior)

    def _avoided(self, u_pending: np.ndarray, order: np.ndarray, losses: np.ndarray, starts: list[int]
                 ) -> tuple[np.ndarray, np.ndarray]:
        """The points no proposal may come near, with their radii: the pending ones and the best of the
        ``TR_AVOIDED`` best earlier trust regions."""
        bests = [a + int(np.argmin(losses[a:b])) for a, b in itertools.pairwise(starts)]  # earlier regions'
        bests = sorted(bests, key=lambda i: losses[i])[:TR_AVOIDED]
        earlier = np.array([self.history.rows[order[i]] for i in sorted(bests)]).reshape(-1, len(self.space.params))
        radii = np.repeat([MIN_PENDING_DISTANCE, TR_AVOID], [len(u_pending), len(earlier)])
        return np.vstack([u_pending, earlier]), radii


class _AtTheEnd:
    """A GP fitted with a last input for the fidelity (``_History.observations``), predicting at fidelity 1:
    what a point would reach if it trained to the end, which is what a proposal is for."""

    def __init__(self, gp: GaussianProcess):
        self.gp = gp

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.gp.predict(self._at_the_end(x))

    def condition_on_pending(self, x_pending: np.ndarray) -> None:
        self.gp.condition_on_pending(self._at_the_end(x_pending))

    @staticmethod
    def _at_the_end(x: np.ndarray) -> np.ndarray:
        return np.column_stack([x, np.ones(len(x))])


class _Acquisition:
    """Log expected improvement over the points a proposal may take, maximized in a box.

    No gradients: random points of the box and moves around the best trials in
    it, the best ``N_KEEP`` refined with shrinking steps, so that choices, nested
    branches and integers are handled alike.
    """

    def __init__(self, sampler: GaussianProcessSampler, gp: GaussianProcess | _AtTheEnd, best: float,
                 queued: set[bytes], avoided: np.ndarray, radii: np.ndarray, rng: np.random.Generator, fixed: np.ndarray):
        self.space, self.numeric, self.tried = sampler.space, sampler._numeric, sampler.history.tried
        self.gp, self.best, self.queued, self.avoided, self.radii = gp, best, queued, avoided, radii
        self.rng, self.fixed = rng, fixed

    def score(self, u: np.ndarray) -> np.ndarray:
        """The acquisition at unit points ``u``; -inf where a point was tried, is queued or is too near one."""
        x = self.space.encode(u)
        mean, sd = self.gp.predict(x)
        values = log_expected_improvement(mean, sd, self.best)
        values[[(key := row.tobytes()) in self.tried or key in self.queued for row in x]] = -np.inf
        values[self.space.near(u, self.avoided, self.radii)] = -np.inf
        return values

    def maximize(self, low: np.ndarray, high: np.ndarray, scale: float, done: tuple[np.ndarray, np.ndarray]
                 ) -> tuple[np.ndarray, float]:
        """The best candidate in the box and its score; local moves ``scale`` times their usual steps, around
        the best of ``done`` (the region's unit rows and transformed losses) that lie in the box."""
        space, numeric, rng, fixed = self.space, self.numeric, self.rng, self.fixed
        span = np.maximum(high - low, 1e-12)

        def into_box(u: np.ndarray, moved: bool) -> np.ndarray:
            """Random unit points scaled into the box, or moved ones reflected into it (choices as they are)."""
            inside = low + span * (_reflect((u - low) / span) if moved else u)
            return np.where(numeric & ~np.isnan(u), inside, u)

        rows, y = done
        in_box = np.all(~numeric | np.isnan(rows) | ((rows >= low) & (rows <= high)), axis=1)
        top = rows[np.flatnonzero(in_box)[np.argsort(y[in_box], kind="stable")[:N_TOP]]]
        pool = [into_box(space.random(N_RANDOM, rng, fixed), False)]
        pool += [into_box(space.moved(np.repeat(top, N_RANDOM // (len(LOCAL_STEPS) * len(top)), axis=0), rng,
                                      step * scale, fixed), True)
                 for step in LOCAL_STEPS]
        pool.append(space.flipped(top, rng, fixed))
        candidates = np.vstack(pool)
        values = self.score(candidates)
        keep = np.argsort(-values, kind="stable")[:N_KEEP]
        candidates, values = candidates[keep], values[keep]
        for step in REFINE_STEPS:
            moved = np.vstack([
                into_box(space.moved(np.repeat(candidates, N_RANDOM // (len(REFINE_STEPS) * N_KEEP), axis=0),
                                     rng, step * scale, fixed), True),
                space.flipped(candidates, rng, fixed)])
            candidates, values = np.vstack([candidates, moved]), np.concatenate([values, self.score(moved)])
            keep = np.argsort(-values, kind="stable")[:N_KEEP]
            candidates, values = candidates[keep], values[keep]
        return candidates[0], float(values[0])


def _trust_region(losses: np.ndarray, n_startup: int, batch: int) -> tuple[list[int], float]:
    """The trust region after ``losses`` (finished, in tid order): where each region began, and its side.

    Replayed from the first trial at every proposal, so that it depends on the trials alone. A region's
    first ``n_startup`` trials are its start-up; then each ``batch`` of trials improves on the region's
    best or fails (a parallel search judges as many trials at once as are running, the way TuRBO judges
    a batch: a trial proposed before its neighbours finished is no failure of theirs).
    """
    losses = np.asarray(losses).tolist()  # Python floats: this loop runs over every trial at every proposal
    starts, length, successes, failures, best = [0], TR_LENGTH_INIT, 0, 0, math.inf
    i = 0
    while i < len(losses):
        if i - starts[-1] < n_startup:
            best = min(best, losses[i])
            i += 1
            continue
        if i + batch > len(losses):
            break
        y = min(losses[i:i + batch])
        successes, failures = (successes + 1, 0) if y < best - TR_IMPROVEMENT * abs(best) else (0, failures + 1)
        best = min(best, y)
        if successes == TR_SUCCESSES:
            length, successes = min(2 * length, TR_LENGTH_MAX), 0
        elif failures == math.ceil(TR_FAILURES / batch):
            length, failures = length / 2, 0
        i += batch
        if length < TR_LENGTH_MIN:
            starts.append(i)
            length, successes, failures, best = TR_LENGTH_INIT, 0, 0, math.inf
    return starts, length
