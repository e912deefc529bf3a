"""One suite run over every sampler: valid points, deterministic for a seed, resumable, no duplicates, None branches."""

import itertools
import logging
import math

import pytest
from hyperopt import Domain, hp, space_eval

from caviar.store.local import LocalStore
from optimizer.samplers import ALGORITHMS
from optimizer.samplers._space import translate
from optimizer.search import Search
from tests.optimizer.samplers.test_space import EVERY_KIND, assignment

NESTED = {
    "lr": hp.loguniform("lr", math.log(1e-4), math.log(1e-1)),
    "batch": hp.quniform("batch", 100, 450, 5),
    "first_conv": hp.choice("first_conv", [None, hp.choice("first_conv_size", [3, 4])]),
    "residual": hp.choice("residual", [None, hp.quniform("residual_units", 0.501, 4.499, 1)]),
    "fc": hp.choice("fc", [None, {"units": hp.loguniform("fc_units", -0.6, 0.6), "drop": hp.uniform("fc_drop", 0, 0.6)}]),
}


def loss(params):
    """A loss that depends on every branch, so each sampler has something to learn."""
    value = (math.log10(params["lr"]) + 2.5) ** 2 + abs(params["batch"] - 300) / 100
    value += 0.5 if params["first_conv"] is None else 0.1 * params["first_conv"]
    value += 1.0 if params["residual"] is None else abs(params["residual"] - 3)
    return value + (0.7 if params["fc"] is None else params["fc"]["drop"])


def run(store, algo, seed, evals, batch=3, search=None):
    """Keep ``batch`` trials pending, finish the oldest one at a time (failing every 7th), up to ``evals`` proposed."""
    search = search or Search(store, NESTED, algo, max_evals=evals, seed=seed)
    while search.top_up(batch) or store.count_by_state().get(0):
        doc = store.claim("w")
        result = {"status": "fail"} if doc["tid"] % 7 == 6 else {"status": "ok", "loss": loss(doc["params"])}
        store.finish(doc["tid"], "w", result)
    return search


def points(store):
    return [(d["tid"], d["misc"]["vals"], d["params"]) for d in store.trial_docs()]


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_proposals_are_valid_points_of_the_space_with_none_branches_taken_and_left(algo):
    store = LocalStore()
    run(store, algo, seed=1, evals=40)
    params = translate(Domain(lambda p: 0, NESTED).expr)
    docs = store.trial_docs()
    assert len(docs) == 40
    for doc in docs:
        vals = doc["misc"]["vals"]
        assert set(vals) == {p.label for p in params}
        for p in params:
            assert p.active(vals) == bool(vals[p.label]), (p.label, vals)
        assert doc["params"] == space_eval(NESTED, {k: v[0] for k, v in vals.items() if v})
        assert 100 <= doc["params"]["batch"] <= 450 and 1e-4 <= doc["params"]["lr"] <= 1e-1
    for choice in ("first_conv", "residual", "fc"):
        assert {d["params"][choice] is None for d in docs} == {True, False}, choice


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_the_same_seed_gives_the_same_proposals_and_another_seed_others(algo):
    runs = {}
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        store = LocalStore()
        run(store, algo, seed, evals=30)
        runs[name] = points(store)
    assert runs["a"] == runs["b"]
    assert runs["a"] != runs["c"]


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_a_resumed_search_proposes_what_the_uninterrupted_one_would_have(algo):
    whole = LocalStore()
    run(whole, algo, seed=3, evals=36, batch=1)
    resumed = LocalStore()
    run(resumed, algo, seed=3, evals=20, batch=1)  # stops where the whole run had 20 finished, none pending
    run(resumed, algo, seed=3, evals=36, batch=1)  # a new Search: nothing kept but the store
    assert points(resumed) == points(whole)


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_a_resumed_search_with_pending_trials_proposes_what_the_uninterrupted_one_would_have(algo):
    whole, resumed = LocalStore(), LocalStore()
    run(whole, algo, seed=4, evals=36, batch=4)
    interrupted = Search(resumed, NESTED, algo, max_evals=36, seed=4)
    for _ in range(18):  # the same steps as run(), cut short with 4 trials queued
        interrupted.top_up(4)
        doc = resumed.claim("w")
        result = {"status": "fail"} if doc["tid"] % 7 == 6 else {"status": "ok", "loss": loss(doc["params"])}
        resumed.finish(doc["tid"], "w", result)
    interrupted.top_up(4)
    assert resumed.count_by_state()[0] == 4
    run(resumed, algo, seed=4, evals=36, batch=4)
    assert points(resumed) == points(whole)


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_a_batch_never_holds_the_same_point_twice_and_a_small_space_ends_exhausted(algo):
    store = LocalStore()
    search = Search(store, {"c": hp.choice("c", ["a", "b", "c"]), "k": hp.choice("k", [1, 2])}, algo, max_evals=10)
    assert search.top_up(10) == 6
    assert search.exhausted
    docs = store.trial_docs()
    assert sorted((d["params"]["c"], d["params"]["k"]) for d in docs) == [
        (c, k) for c in "abc" for k in (1, 2)]


# The samplers told about pending trials (the others ignore them: hyperopt's, and random search).
PARALLEL_AWARE = ["tpe-mv", "gp"]
# The samplers that model a translated space (``_space``) and draw what it cannot hold from the prior.
TRANSLATING = ["tpe-mv", "gp"]
BRANIN = {"x1": hp.uniform("x1", -5, 10), "x2": hp.uniform("x2", 0, 15)}


def branin(p):
    x1, x2 = p["x1"], p["x2"]
    return (x2 - 5.1 / (4 * math.pi**2) * x1**2 + 5 / math.pi * x1 - 6) ** 2 + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x1) + 10


@pytest.mark.parametrize("algo", PARALLEL_AWARE)
def test_points_proposed_in_one_top_up_are_no_near_duplicates_of_each_other(algo):
    store = LocalStore()
    search = Search(store, BRANIN, algo, max_evals=60, seed=0)
    for _ in range(40):  # sequential: the model has converged towards the optima
        search.top_up(1)
        doc = store.claim("w")
        store.finish(doc["tid"], "w", {"status": "ok", "loss": branin(doc["params"])})
    assert search.top_up(20) == 20
    batch = [d["params"] for d in store.trial_docs()[40:]]
    unit = [((p["x1"] + 5) / 15, p["x2"] / 15) for p in batch]
    closest = min(math.dist(a, b) / math.sqrt(2) for a, b in itertools.combinations(unit, 2))
    assert closest >= 0.02


@pytest.mark.parametrize("algo", TRANSLATING)
def test_valid_points_of_every_kind_and_one_warning_naming_the_prior_parameters(algo, caplog):
    store = LocalStore()
    with caplog.at_level(logging.WARNING):
        search = Search(store, EVERY_KIND, algo, max_evals=40, seed=2)
        while search.top_up(2):
            while (doc := store.claim("w")) is not None:
                store.finish(doc["tid"], "w", {"status": "ok", "loss": float(doc["params"]["u"] ** 2)})
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [
        f"{algo} cannot model parameters 'expr', 'ln', 'n', 'pc', 'qn': drawn from the hyperopt prior instead"]
    docs = store.trial_docs()
    params = translate(Domain(lambda p: 0, EVERY_KIND).expr)
    for doc in docs:
        vals = doc["misc"]["vals"]
        assert set(vals) == {p.label for p in params}
        for p in params:
            assert p.active(vals) == bool(vals[p.label]), (p.label, vals)
        assert doc["params"] == space_eval(EVERY_KIND, assignment(vals))
        assert 3 <= doc["params"]["ri"] <= 8 and doc["params"]["qlu"] % 4 == 0 and 0 <= doc["params"]["expr"] <= 3
    assert len({d["params"]["n"] for d in docs}) == len(docs)  # the prior parameter varies
    assert {d["params"]["branch"] is None for d in docs} == {True, False}
