"""gp specifics: the unit encoding keeps every kind's values, the GP's gradient and log EI are right, it learns."""

import math

import numpy as np
import pytest
import scipy.stats
from hyperopt import Domain, hp, space_eval
from optuna.distributions import CategoricalDistribution, FloatDistribution

from caviar.store.local import LocalStore
from optimizer.samplers._gaussian_process import (GaussianProcess, _yeo_johnson, _yeo_johnson_lambda,
                                                  log_expected_improvement, transform_outputs)
from optimizer.samplers._space import translate
from optimizer.samplers.gp import TR_LENGTH_INIT, TR_LENGTH_MAX, _trust_region, _UnitSpace
from optimizer.search import Search
from neural_net.space import CIFAR_SPACE
from tests.optimizer.samplers.test_conformance import BRANIN, branin
from tests.optimizer.samplers.test_space import EVERY_KIND, assignment, hyperopt_points


@pytest.mark.parametrize("space", [EVERY_KIND, CIFAR_SPACE], ids=["every-kind", "cifar"])
def test_points_round_trip_through_unit_values_to_the_same_concrete_params(space):
    domain, points = hyperopt_points(space, 300)
    unit = _UnitSpace(translate(domain.expr))
    rows = unit.from_vals(points)
    floats = {p.label for p in unit.params if isinstance(p.distribution, FloatDistribution)}
    for vals, row in zip(points, rows):
        back = unit.to_vals(row, assignment(vals))
        assert back.keys() == vals.keys()
        for label, value in vals.items():  # scaling to [0, 1] and back may move a float by an ulp
            assert back[label] == (pytest.approx(value, rel=1e-12) if label in floats else value), label
    x = unit.encode(rows)
    assert x.shape == (300, unit.width) and np.all((0 <= x) & (x <= 1))


def test_random_and_moved_points_switch_branches_on_and_off_as_their_choices_say():
    domain = Domain(lambda p: 0, EVERY_KIND)
    unit = _UnitSpace(translate(domain.expr))
    rng = np.random.default_rng(0)
    prior = {p.label: 1 for p in unit.params if p.distribution is None}  # pc's second option: "deep" on
    fixed = np.array([1.0 if p.label in prior else np.nan for p in unit.params])
    rows = unit.random(200, rng, fixed)
    rows = np.vstack([rows, unit.moved(rows, rng, 0.5, fixed)])
    for row in rows:
        vals = unit.to_vals(row, prior)
        for p in unit.params:
            assert p.active(vals) == bool(vals[p.label]), (p.label, vals)
        space_eval(EVERY_KIND, assignment(vals))  # a valid point
    widths = {unit.to_vals(r, prior)["width"][0] for r in rows if not math.isnan(r[unit.index["width"]])}
    assert widths <= {16.0 * k for k in range(1, 17)} and len(widths) > 8


def test_the_gradient_of_the_fitting_objective_matches_finite_differences():
    rng = np.random.default_rng(1)
    x = rng.random((15, 3))
    gp = GaussianProcess(x, np.sin(6 * x[:, 0]) + x[:, 1], max_iterations=0)
    theta = np.array([-1.0, 0.3, 1.2, 0.2, -3.0])
    value, grad = gp._neg_log_posterior(theta)
    for i in range(len(theta)):
        step = np.zeros_like(theta)
        step[i] = 1e-6
        numeric = (gp._neg_log_posterior(theta + step)[0] - gp._neg_log_posterior(theta - step)[0]) / 2e-6
        assert numeric == pytest.approx(grad[i], rel=1e-4, abs=1e-6)


def test_the_fitted_gp_interpolates_its_points_and_is_unsure_far_from_them():
    x = np.linspace(0, 0.5, 12)[:, None]
    y = np.sin(8 * x[:, 0])
    gp = GaussianProcess(x, y)
    mean, sd = gp.predict(np.array([[0.21], [1.0]]))
    assert mean[0] == pytest.approx(math.sin(8 * 0.21), abs=0.02) and sd[0] < 0.05
    assert sd[1] > 10 * sd[0]
    gp.condition_on_pending(np.array([[1.0]]))  # a pending point: unsure no more, mean unchanged
    mean_after, sd_after = gp.predict(np.array([[1.0]]))
    assert sd_after[0] < sd[1] / 5 and mean_after[0] == pytest.approx(mean[1], abs=1e-6)


def test_log_expected_improvement_is_the_log_of_the_closed_form_and_finite_far_away():
    mean, sd = np.array([0.0, 1.0, -0.5, 30.0]), np.array([1.0, 0.5, 2.0, 1.0])
    z = (0.2 - mean) / sd
    closed = sd * (z * scipy.stats.norm.cdf(z) + scipy.stats.norm.pdf(z))
    got = log_expected_improvement(mean, sd, 0.2)
    assert np.allclose(got[:3], np.log(closed[:3]))
    assert np.isfinite(got[3]) and got[3] < got[1]  # EI underflows at z = -29.8; its log does not


def test_outputs_are_made_normal_without_changing_their_order():
    y = np.array([0.4, 0.5, 0.45, 3.0, 250.0, 0.41])
    t = transform_outputs(y)
    assert list(np.argsort(t)) == list(np.argsort(y))
    assert t.mean() == pytest.approx(0) and t.std() == pytest.approx(1)
    assert t[4] - t[3] < 3  # the outlier no longer flattens the rest
    assert list(transform_outputs(np.array([2.0, 2.0]))) == [0.0, 0.0]


@pytest.mark.parametrize("draw", [lambda r: r.gamma(2, size=40), lambda r: r.normal(size=7),
                                  lambda r: -r.lognormal(size=100), lambda r: r.random(30) ** 5])
def test_the_written_out_yeo_johnson_finds_scipys_lambda_and_values_exactly(draw):
    y = draw(np.random.default_rng(0))
    z = (y - y.mean()) / y.std()
    expected, lmbda = scipy.stats.yeojohnson(z)
    assert _yeo_johnson_lambda(z) == lmbda
    assert np.array_equal(_yeo_johnson(z, lmbda), expected)


def test_gp_gets_close_to_branins_optimum_in_30_evaluations():
    """Branin's minimum is 0.398; 30 random points get within about 1 of it, the GP within 0.01."""
    store = LocalStore()
    search = Search(store, BRANIN, "gp", max_evals=30, seed=0)
    while search.top_up(1):
        doc = store.claim("w")
        store.finish(doc["tid"], "w", {"status": "ok", "loss": branin(doc["params"])})
    assert min(d["result"]["loss"] for d in store.trial_docs()) < 0.398 + 0.01


def test_a_trust_region_halves_after_failures_restarts_when_too_small_and_grows_after_successes():
    flat = np.ones(35)  # nothing ever improves: 5 start-up trials, then a halving per 3 failures
    assert _trust_region(flat, 5, 1) == ([0, 20], TR_LENGTH_INIT / 2**3)  # 5 halvings: restart at 20; 3 more
    assert _trust_region(flat[:29], 5, 4) == ([0, 25], TR_LENGTH_INIT)  # in 4s: a failing batch halves it
    assert _trust_region(-np.arange(20.0), 5, 1) == ([0], TR_LENGTH_MAX)  # 15 successes: doubled up to the cap


def test_parallel_proposals_never_fall_beside_a_pending_trial_even_once_the_trust_region_is_small():
    """4 trials always running, the oldest finishing next: no proposal within RMS 0.02 of a running one.

    Without looking outside a box full of pending points, a tenth of Branin's parallel proposals did.
    """
    store = LocalStore()
    search = Search(store, BRANIN, "gp", max_evals=100, seed=0)
    running: list[dict] = []
    near = 0
    while search.top_up(1):
        doc = store.claim("w")
        unit = np.array([(doc["params"]["x1"] + 5) / 15, doc["params"]["x2"] / 15])
        near += any(np.sqrt(np.mean((unit - other) ** 2)) < 0.02 for _, other in running)
        running.append((doc["tid"], unit))
        if len(running) == 4:
            tid, _ = running.pop(0)
            [done] = [d for d in store.trial_docs() if d["tid"] == tid]
            store.finish(tid, "w", {"status": "ok", "loss": branin(done["params"])})
    assert near == 0


# Four choices of four options, each option an offset, and two numbers: 256 combinations of options.
OFFSETS = [[0.3, 0.0, 0.2, 0.1], [0.1, 0.3, 0.0, 0.2], [0.2, 0.1, 0.3, 0.0], [0.0, 0.2, 0.1, 0.3]]
ADDITIVE = {"x": hp.uniform("x", 0, 1), "y": hp.uniform("y", 0, 1),
            **{f"c{i}": hp.choice(f"c{i}", [0, 1, 2, 3]) for i in range(4)}}


def test_gp_learns_what_each_option_does_from_points_that_differ_in_everything_else():
    """Within 0.01 of the optimum (0) in 40 evaluations on every seed: the one-hot lengthscale prior's job.

    With that prior centred at 0.5 like the numbers', an option's effect did not carry over to
    points with other options elsewhere, and this test failed (a seed 0.22 away: options wrong).
    """
    def loss(p):
        return (p["x"] - 0.3) ** 2 + (p["y"] - 0.7) ** 2 + sum(OFFSETS[i][p[f"c{i}"]] for i in range(4))

    for seed in range(5):
        store = LocalStore()
        search = Search(store, ADDITIVE, "gp", max_evals=40, seed=seed)
        while search.top_up(1):
            doc = store.claim("w")
            store.finish(doc["tid"], "w", {"status": "ok", "loss": loss(doc["params"])})
        assert min(d["result"]["loss"] for d in store.trial_docs()) < 0.01, seed


def test_gp_never_proposes_a_failed_point_again_in_a_small_discrete_space():
    """The GP would rank the failed point first each time (it sits in the best region): the search must go on."""
    space = {"a": hp.choice("a", list(range(6))), "b": hp.choice("b", list(range(6)))}
    store = LocalStore()
    search = Search(store, space, "gp", max_evals=36, seed=0)
    while search.top_up(1):
        doc = store.claim("w")
        a, b = doc["params"]["a"], doc["params"]["b"]
        result = {"status": "fail"} if (a, b) == (2, 2) else {"status": "ok", "loss": float((a - 2) ** 2 + (b - 2) ** 2)}
        store.finish(doc["tid"], "w", result)
    assert len(store.trial_docs()) == 36 and not search.exhausted


def test_flipped_points_change_one_choice_and_keep_every_number_of_the_branches_they_share():
    domain = Domain(lambda p: 0, CIFAR_SPACE)
    unit = _UnitSpace(translate(domain.expr))
    rng = np.random.default_rng(3)
    rows = unit.random(4, rng, np.full(len(unit.params), np.nan))
    flipped = unit.flipped(rows, rng, np.full(len(unit.params), np.nan))
    choices = [i for i in unit.modelled if isinstance(unit.params[i].distribution, CategoricalDistribution)]
    assert len(flipped) == sum(len(unit.params[i].distribution.choices) - 1 for i in choices for r in rows
                               if not math.isnan(r[i]))
    for row in flipped:
        source = min(rows, key=lambda r: np.sum(np.nan_to_num(r, nan=-1) != np.nan_to_num(row, nan=-1)))
        on_both = ~np.isnan(source) & ~np.isnan(row)
        # One choice changed; a nested choice it switched on or off is on in only one of the two.
        assert len([i for i in choices if on_both[i] and source[i] != row[i]]) == 1
        numbers = [i for i in unit.modelled if i not in choices and on_both[i]]
        assert all(source[i] == row[i] for i in numbers)


def test_a_promotion_replaces_the_score_of_the_trial_it_continues_in_the_model() -> None:
    """asha's promotion is the same point trained further: one row, its latest loss (in one read or two)."""
    from optimizer.samplers.gp import _History

    space = _UnitSpace(translate(Domain(lambda p: 0.0, {"x": hp.uniform("x", 0, 1)}).expr))

    def trial(tid: int, x: float, loss: float | None, continues: int | None = None) -> dict:
        result = {"status": "ok", "loss": loss} if loss is not None else {"status": "fail"}
        return {"tid": tid, "misc": {"vals": {"x": [x]}}, "result": result} | (
            {"continues": {"tid": continues, "step": 1, "reports": {}}} if continues is not None else {})

    docs = [trial(0, 0.2, 5.0), trial(1, 0.7, 3.0), trial(2, 0.2, 1.0, continues=0), trial(3, 0.2, 0.5, continues=2),
            trial(4, 0.9, None, continues=1)]
    whole, pieces = _History(space), _History(space)
    whole.update(docs)
    finished: list[dict] = []
    for doc in docs:
        finished.append(doc)
        pieces.update(finished)
    for history in (whole, pieces):
        assert history.tids == [0, 1] and history.losses == [0.5, 3.0] and len(history.rows) == 2


def _reported(tid: int, x: float, curve: dict[int, float], stopped_at: int | None = None) -> dict:
    """A finished trial of the space {"x": uniform(0, 1)} that reported ``curve`` (and was stopped at ``stopped_at``)."""
    result = {"status": "ok", "loss": min(curve.values())} | (
        {"stopped": True, "stopped_at": stopped_at} if stopped_at is not None else {})
    return {"tid": tid, "misc": {"vals": {"x": [x]}}, "result": result,
            "reports": {str(step): loss for step, loss in curve.items()}}


def test_with_stopped_trials_each_trial_is_observed_at_every_stopping_step_it_reached_and_at_the_end() -> None:
    from optimizer.samplers.gp import _History

    space = _UnitSpace(translate(Domain(lambda p: 0.0, {"x": hp.uniform("x", 0, 1)}).expr))
    full = {step: 1.0 / step for step in range(1, 10)}
    docs = [_reported(0, 0.1, full), _reported(1, 0.2, {1: 0.9}, stopped_at=1),
            _reported(2, 0.3, {1: 0.5, 2: 0.7, 3: 0.4}, stopped_at=3)]
    history = _History(space)
    history.update(docs[:1])
    trials, losses, fidelities = history.observations(np.arange(1))
    assert trials.tolist() == [0] and losses.tolist() == [1 / 9] and fidelities is None  # nothing stopped: as before
    history.update(docs)
    trials, losses, fidelities = history.observations(np.arange(3))
    assert trials.tolist() == [0, 0, 0, 1, 2, 2]
    assert losses.tolist() == pytest.approx([1.0, 1 / 3, 1 / 9, 0.9, 0.5, 0.4])  # the best report up to each step
    assert fidelities.tolist() == pytest.approx([0.0, 0.5, 1.0, 0.0, 0.0, 0.5])  # log(step) / log(9)


def test_a_stopped_trial_is_judged_against_its_peers_at_the_same_step_not_the_trials_that_went_on() -> None:
    """Loss after s epochs: (x - 0.8)^2 + 1/s. Trials stopped after one epoch near 0.8 beat the full trials'
    first epochs, so the end of training promises most on their side; counted with their own loss as if it
    were final (1.0, far above the full trials' 0.17-0.69), they looked worst and every proposal was 0.51."""
    from optimizer.samplers.gp import GaussianProcessSampler

    def curve(x: float, epochs: int) -> dict[int, float]:
        return {step: (x - 0.8) ** 2 + 1 / step for step in range(1, epochs + 1)}

    docs = [_reported(tid, x, curve(x, 9)) for tid, x in enumerate([0.05, 0.15, 0.25, 0.35, 0.45, 0.55])]
    docs += [_reported(6 + i, x, curve(x, 1), stopped_at=1) for i, x in enumerate([0.7, 0.8, 0.9])]
    sampler = GaussianProcessSampler(Domain(lambda p: 0.0, {"x": hp.uniform("x", 0, 1)}))
    proposals = [sampler.propose(9, seed, docs, [])["x"][0] for seed in range(5)]
    assert all(x > 0.65 for x in proposals), proposals
