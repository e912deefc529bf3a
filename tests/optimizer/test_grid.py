"""The grid over hyperopt spaces: exactly the points hyperopt can draw, in its own misc layout."""

from __future__ import annotations

import numpy as np
import pytest
from hyperopt import Trials, fmin, hp, rand, space_eval

from caviar.errors import CaviarError
from optimizer.grid import GridSearch, grid_misc, grid_points, grid_size
from caviar.store.local import LocalStore
from caviar.store import vals_key

NESTED = {
    "model": hp.choice("model", [
        None,
        {"kind": "knn", "k": hp.choice("k", [1, 3, 5])},
        {"kind": "net", "kernel": hp.quniform("kernel", 2, 4, 1),
         "pool": hp.choice("pool", [None, hp.randint("size", 2, 4)])},
    ]),
    "units": hp.qloguniform("units", 0, 1.2, 1),
    "opt": hp.pchoice("opt", [(0.2, "sgd"), (0.8, "adam")]),
    "width": hp.uniformint("width", 1, 2),
    "constant": 7,
}


def _sampled(space: object, n: int) -> set[object]:
    """The distinct points of ``n`` random draws by hyperopt itself."""
    trials = Trials()
    fmin(lambda params: 0.0, space, algo=rand.suggest, max_evals=n, trials=trials,
         rstate=np.random.default_rng(0), show_progressbar=False)
    return {vals_key(t["misc"]) for t in trials.trials}


def test_the_grid_is_every_point_hyperopt_draws_and_no_other() -> None:
    points = list(grid_points(NESTED))
    # model: 1 + 3 + 3 kernels x (1 + 2 sizes) = 13; units: 1..3; opt: 2; width: 2
    assert len(points) == 13 * 3 * 2 * 2 == grid_size(NESTED)
    keys = [vals_key({"vals": p}) for p in points]
    assert len(set(keys)) == len(keys)
    assert _sampled(NESTED, 500) <= set(keys)
    small = {"model": NESTED["model"], "width": NESTED["width"]}
    assert _sampled(small, 1000) == {vals_key({"vals": p}) for p in grid_points(small)}


def test_inactive_labels_are_empty_like_hyperopts_documents_and_space_eval_reads_a_point() -> None:
    point = next(p for p in grid_points(NESTED) if p["model"] == [1])
    assert point == {"model": [1], "k": [point["k"][0]], "kernel": [], "pool": [], "size": [],
                     "units": point["units"], "opt": point["opt"], "width": point["width"]}
    misc = grid_misc(point, tid=4)
    assert misc["idxs"]["kernel"] == [] and misc["idxs"]["k"] == [4] and misc["vals"] == point
    params = space_eval(NESTED, {label: v[0] for label, v in point.items() if v})
    assert params["model"] == {"kind": "knn", "k": 1} and params["constant"] == 7


def test_the_order_is_stable_with_the_last_label_fastest() -> None:
    space = {"a": hp.choice("a", [10, 20]), "b": hp.choice("b", ["x", "y", "z"])}
    assert [(p["a"][0], p["b"][0]) for p in grid_points(space)] == [(a, b) for a in (0, 1) for b in (0, 1, 2)]
    assert list(grid_points(space)) == list(grid_points(space))


def test_q_values_are_the_ones_hyperopt_rounds_to() -> None:
    assert [p["kernel"] for p in grid_points({"kernel": hp.quniform("kernel", 3, 5, 2)})] == [[4.0]]
    assert [p["d"][0] for p in grid_points(hp.quniform("d", 0.3, 0.7, 0.1))] == [k * 0.1 for k in range(3, 8)]


def test_a_label_used_twice_is_counted_consistently() -> None:
    shared = hp.choice("s", [1, 2, 3])
    space = {"x": shared, "y": [shared, hp.choice("t", [0, 1])]}
    assert grid_size(space) == len(list(grid_points(space))) == 6


@pytest.mark.parametrize("dist", [hp.uniform("lr", 0, 1), hp.loguniform("lr", -5, 0), hp.normal("lr", 0, 1),
                                  hp.qnormal("lr", 0, 1, 1)])
def test_a_continuous_distribution_is_refused_with_its_label(dist: object) -> None:
    space = {"a": hp.choice("a", [1, {"lr": dist}])}
    with pytest.raises(CaviarError, match=r"cannot enumerate 'lr': hp\.\w+ has infinitely many values"):
        list(grid_points(space))
    with pytest.raises(CaviarError, match="'lr'"):
        grid_size(space)


def test_grid_search_queues_each_point_once_and_a_restart_skips_the_stored_ones() -> None:
    space = {"a": hp.choice("a", [1, 2, 3]), "b": hp.choice("b", [None, hp.quniform("c", 1, 2, 1)])}
    store = LocalStore()
    search = GridSearch(store, space)
    assert (search.size, search.top_up(4), search.top_up(4)) == (9, 4, 0)
    for _ in range(2):
        doc = store.claim("worker")
        store.finish(doc["tid"], "worker", {"status": "ok", "loss": 0.0})
    restarted = LocalStore(docs=store.trial_docs())  # a restart keeps the finished trials only
    resumed = GridSearch(restarted, space)
    assert resumed.top_up(100) == 7 and resumed.remaining(restarted.count_by_state()) == 0
    docs = restarted.trial_docs()
    assert sorted(vals_key(d["misc"]) for d in docs) == sorted(vals_key({"vals": p}) for p in grid_points(space))
    assert all(d["params"] == space_eval(space, {k: v[0] for k, v in d["misc"]["vals"].items() if v}) for d in docs)
    assert all(d["misc"]["idxs"]["c"] == ([d["tid"]] if d["misc"]["vals"]["c"] else []) for d in docs)


def test_grid_search_stops_at_max_evals() -> None:
    search = GridSearch(LocalStore(), {"a": hp.choice("a", list(range(10)))}, max_evals=3)
    assert search.top_up(100) == 3 and not search.exhausted and search.top_up(100) == 0
    with pytest.raises(CaviarError, match="max-evals must be at least 1, not 0"):
        GridSearch(LocalStore(), {"a": hp.choice("a", [1])}, max_evals=0)
