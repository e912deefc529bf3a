"""tpe-mv specifics: low-discrepancy start-up points, a batch proposed at once spreads out (constant liar),
otherwise Optuna's TPE."""

import itertools
import math

import optuna
from hyperopt import hp
from optuna.search_space.group_decomposed import _GroupDecomposedSearchSpace

from caviar.store.local import LocalStore
from optimizer.samplers.tpe_mv import N_STARTUP_TRIALS
from optimizer.search import Search, proposal_seed
from tests.optimizer.samplers.test_conformance import NESTED, loss

BRANIN = {"x1": hp.uniform("x1", -5, 10), "x2": hp.uniform("x2", 0, 15)}


def branin(p):
    x1, x2 = p["x1"], p["x2"]
    return (x2 - 5.1 / (4 * math.pi**2) * x1**2 + 5 / math.pi * x1 - 6) ** 2 + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x1) + 10


def test_points_proposed_in_one_top_up_are_no_near_duplicates_of_each_other():
    store = LocalStore()
    search = Search(store, BRANIN, "tpe-mv", max_evals=70, seed=0)
    for _ in range(40):  # sequential: TPE has converged towards the optima
        search.top_up(1)
        doc = store.claim("w")
        store.finish(doc["tid"], "w", {"status": "ok", "loss": branin(doc["params"])})
    assert search.top_up(30) == 30
    batch = [d["params"] for d in store.trial_docs()[40:]]
    unit = [((p["x1"] + 5) / 15, p["x2"] / 15) for p in batch]
    closest = min(math.dist(a, b) / math.sqrt(2) for a, b in itertools.combinations(unit, 2))
    assert closest >= 0.02


def test_on_a_plain_space_tpe_mv_proposes_after_its_start_up_exactly_what_optunas_tpe_does_with_the_same_seeds():
    """Past its start-up points, tpe-mv adds nothing of its own to Optuna's TPE."""
    space = {f"x{i}": hp.uniform(f"x{i}", 0, 1) for i in range(3)}
    store = LocalStore()
    search = Search(store, space, "tpe-mv", max_evals=25, seed=3)
    study = optuna.create_study()
    dists = {f"x{i}": optuna.distributions.FloatDistribution(0, 1) for i in range(3)}
    for tid in range(25):
        search.top_up(1)
        doc = store.claim("w")
        x = [doc["params"][f"x{i}"] for i in range(3)]
        loss = sum((v - 0.3) ** 2 for v in x)
        store.finish(doc["tid"], "w", {"status": "ok", "loss": loss})
        if tid < N_STARTUP_TRIALS:
            study.add_trial(optuna.trial.create_trial(params=dict(zip(dists, x)), distributions=dists, value=loss))
            continue
        study.sampler = optuna.samplers.TPESampler(multivariate=True, group=True, constant_liar=True,
                                                   seed=proposal_seed(3, tid, 0))
        trial = study.ask()
        assert [trial.suggest_float(f"x{i}", 0, 1) for i in range(3)] == x
        study.tell(trial, loss)


def _unit_points(store):
    return [((d["params"]["x1"] + 5) / 15, d["params"]["x2"] / 15) for d in store.trial_docs()]


def test_start_up_points_after_the_first_are_a_scrambled_sobol_net_keyed_by_the_first():
    """Points 1-7 of a Sobol' net of 8 (0 is the first trial) fall in 7 different eighths of each axis:
    i.i.d. points would do so with probability 8!/8^7/1 ~ 2%; another first point scrambles another net."""
    runs = []
    for seed in (0, 1):
        store = LocalStore()
        Search(store, BRANIN, "tpe-mv", max_evals=8, seed=seed).top_up(8)
        runs.append(_unit_points(store))
        for axis in (0, 1):
            assert len({int(8 * p[axis]) for p in runs[-1][1:8]}) == 7
    assert runs[0][1:] != runs[1][1:]


def test_start_up_points_depend_on_the_tid_and_the_first_point_only():
    """Neither the finishing order nor an interruption with trials pending changes the start-up design."""
    one_by_one = LocalStore()
    search = Search(one_by_one, BRANIN, "tpe-mv", max_evals=N_STARTUP_TRIALS, seed=5)
    for _ in range(N_STARTUP_TRIALS):
        search.top_up(1)
        doc = one_by_one.claim("w")
        one_by_one.finish(doc["tid"], "w", {"status": "ok", "loss": branin(doc["params"])})
    resumed = LocalStore()
    Search(resumed, BRANIN, "tpe-mv", max_evals=N_STARTUP_TRIALS, seed=5).top_up(4)
    Search(resumed, BRANIN, "tpe-mv", max_evals=N_STARTUP_TRIALS, seed=5).top_up(N_STARTUP_TRIALS)
    assert resumed.count_by_state()[0] == N_STARTUP_TRIALS
    assert _unit_points(resumed) == _unit_points(one_by_one)


def test_the_kept_parameter_groups_are_optunas_so_proposals_are_unchanged_by_keeping_them():
    """tpe-mv keeps ``group``'s decomposition up to date instead of recomputing it from every trial."""
    store = LocalStore()
    search = Search(store, NESTED, "tpe-mv", max_evals=60, seed=2)
    sampler = search.sampler
    checked = 0
    while search.top_up(3) or store.count_by_state().get(0):
        doc = store.claim("w")
        result = {"status": "fail"} if doc["tid"] % 7 == 6 else {"status": "ok", "loss": loss(doc["params"])}
        store.finish(doc["tid"], "w", result)
        kept = sampler._groups.calculate(sampler.study).search_spaces
        assert kept == _GroupDecomposedSearchSpace(True).calculate(sampler.study).search_spaces
        checked += len(kept) > 1
    assert checked > 20  # the branches made several groups
