"""Proposals: hyperopt's algorithms over a store, never past max-evals, never a duplicate point."""

import pytest
from hyperopt import hp, tpe

from caviar.errors import CaviarError
from caviar.store.local import LocalStore
from optimizer.samplers import ALGORITHMS, DEFAULT_ALGORITHM
from optimizer.samplers.registry import SAMPLERS
from optimizer.samplers.hyperopt_algos import HyperoptSampler
from optimizer.search import Search
from neural_net.space import CIFAR_SPACE
from caviar.store import DONE, NEW, vals_key

SPACE = {
    "x": hp.uniform("x", -3, 3),
    "branch": hp.choice("branch", [{"kind": "a"}, {"kind": "b", "depth": hp.quniform("depth", 1, 4, 1)}]),
}


def finish_all(store, loss=lambda p: p["x"] ** 2):
    while (doc := store.claim("w")) is not None:
        store.finish(doc["tid"], "w", {"status": "ok", "loss": loss(doc["params"])})


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_each_algorithm_fills_exactly_max_evals(algo):
    store = LocalStore()
    search = Search(store, SPACE, algo, max_evals=25, seed=1)
    while search.top_up(3):
        finish_all(store)
    assert store.count_by_state() == {NEW: 0, 1: 0, DONE: 25}
    docs = store.trial_docs()
    assert len({vals_key(d["misc"]) for d in docs}) == 25
    assert [d["tid"] for d in docs] == list(range(25))


def test_params_are_concrete_plain_values_with_conditional_branches():
    store = LocalStore()
    Search(store, SPACE, "random", max_evals=30, seed=3).top_up(30)
    branches = {d["params"]["branch"]["kind"] for d in store.trial_docs()}
    assert branches == {"a", "b"}
    for doc in store.trial_docs():
        assert isinstance(doc["params"]["x"], float)
        if doc["params"]["branch"]["kind"] == "b":
            assert doc["params"]["branch"]["depth"] in (1.0, 2.0, 3.0, 4.0)
            assert doc["misc"]["vals"]["depth"] != []
        else:
            assert doc["misc"]["vals"]["depth"] == []


class Recording(HyperoptSampler):
    """hyperopt's TPE, noting what it is told at each proposal."""

    calls: list[tuple[list[float], list[int]]] = []

    def propose(self, tid, seed, finished, pending):
        self.calls.append((sorted(d["result"]["loss"] for d in finished), [d["tid"] for d in pending]))
        return super().propose(tid, seed, finished, pending)


def test_the_sampler_sees_every_finished_result_and_every_pending_trial(monkeypatch):
    monkeypatch.setitem(SAMPLERS, "recording", lambda domain: Recording(domain, tpe.suggest))
    Recording.calls = []
    store = LocalStore()
    search = Search(store, {"x": hp.uniform("x", -10, 10)}, "recording", max_evals=30, seed=0)
    while search.top_up(1):
        finish_all(store)
    expected = sorted(d["result"]["loss"] for d in store.trial_docs()[:29])
    assert len(Recording.calls) == 30
    assert Recording.calls[-1] == (expected, [])
    search.max_evals = 33
    assert search.top_up(3) == 3
    assert [pending for _, pending in Recording.calls[-3:]] == [[], [30], [30, 31]]


def test_a_small_discrete_space_is_never_repeated_and_ends_exhausted():
    store = LocalStore()
    search = Search(store, {"c": hp.choice("c", ["a", "b", "c"])}, "random", max_evals=10)
    queued = search.top_up(10)
    assert queued == 3
    assert search.exhausted
    assert sorted(d["params"]["c"] for d in store.trial_docs()) == ["a", "b", "c"]


def test_queue_target_counts_queued_trials_only_and_respects_remaining():
    store = LocalStore()
    search = Search(store, SPACE, "random", max_evals=5)
    assert search.top_up(2) == 2
    assert search.top_up(2) == 0
    store.claim("w")
    assert search.top_up(2) == 1
    assert search.top_up(10) == 2  # 3 outstanding + 2 = 5 = max_evals
    assert search.top_up(10) == 0


def test_gp_is_the_default_algorithm():
    assert DEFAULT_ALGORITHM == "gp" and DEFAULT_ALGORITHM in ALGORITHMS


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_default_space_proposes_every_seed_hyperparameter(algo):
    store = LocalStore()
    Search(store, CIFAR_SPACE, algo, max_evals=1).top_up(1)
    assert set(store.trial_docs()[0]["params"]) == set(CIFAR_SPACE)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"algo": "grid"}, "unknown algorithm"),
        ({"max_evals": 0}, "at least 1"),
        ({"space": {"x": hp.uniform("x", 0, 1), "y": hp.uniform("x", 0, 1)}}, "not a valid hyperopt space"),
    ],
)
def test_bad_settings_are_clear_errors(kwargs, message):
    args = {"space": SPACE, "algo": "tpe", "max_evals": 3} | kwargs
    with pytest.raises(CaviarError, match=message):
        Search(LocalStore(), args["space"], args["algo"], args["max_evals"])


def test_every_algorithm_the_cli_offers_is_registered():
    assert tuple(SAMPLERS) == ALGORITHMS and DEFAULT_ALGORITHM in ALGORITHMS


@pytest.mark.parametrize("algo", ALGORITHMS)
def test_histories_kept_by_the_caller_give_the_proposals_read_from_the_store(algo):
    """The master passes the finished trials as a list that only grows (TrialView.finished) and the pending
    ones: the proposals, the duplicates refused and the end of a small space are those of a store read."""
    space = {"c": hp.choice("c", list(range(6))), "x": hp.quniform("x", 0, 2, 1)}
    read, kept = LocalStore(), LocalStore()
    by_store = Search(read, space, algo, max_evals=30, seed=4)
    by_caller = Search(kept, space, algo, max_evals=30, seed=4)
    finished: list = []
    while True:
        queued = by_store.top_up(2)
        pending = [d for d in kept.trial_docs() if d["state"] != DONE]
        assert by_caller.top_up(2, finished=finished, pending=pending) == queued
        if not queued:
            break
        for store in (read, kept):
            doc = store.claim("w")
            store.finish(doc["tid"], "w", {"status": "ok", "loss": float(doc["params"]["c"])})
        finished.append(next(d for d in kept.trial_docs() if d["tid"] == doc["tid"]))
    assert [d["misc"]["vals"] for d in read.trial_docs()] == [d["misc"]["vals"] for d in kept.trial_docs()]
    assert len({vals_key(d["misc"]) for d in kept.trial_docs()}) == len(kept.trial_docs()) <= 18
    assert by_caller.exhausted and by_store.exhausted  # (TPE may give up before the last of the 18 points)


def test_asha_promotions_are_queued_before_new_points_and_carry_every_earlier_report():
    from caviar.schedulers.asha import Asha

    store = LocalStore()
    search = Search(store, {"x": hp.uniform("x", 0, 1)}, "random", max_evals=10, seed=0,
                    scheduler=Asha(min_epochs=1, reduction_factor=3, max_epochs=9, promote=True))

    def run(losses, paused_at):
        doc = store.claim("w")
        for step, loss in losses.items():
            store.report(doc["tid"], "w", step, loss)
        store.finish(doc["tid"], "w", {"status": "ok", "loss": min(losses.values()), "stopped": True,
                                       "stopped_at": paused_at, "paused": True})
        return doc

    assert search.top_up(3) == 3
    first = [run({1: loss}, 1) for loss in (0.5, 0.2, 0.9)]
    assert search.top_up(2) == 2
    promoted, fresh = sorted((d for d in store.trial_docs() if d["state"] == NEW), key=lambda d: d["tid"])
    assert promoted["continues"] == {"tid": first[1]["tid"], "step": 1, "reports": {"1": 0.2}}
    assert promoted["params"] == first[1]["params"] and "continues" not in fresh
    assert store.claim("w")["tid"] == promoted["tid"]  # the promotion first
    for step, loss in ((2, 0.15), (3, 0.1)):
        store.report(promoted["tid"], "w", step, loss)
    store.finish(promoted["tid"], "w", {"status": "ok", "loss": 0.1, "stopped": True, "stopped_at": 3, "paused": True})
    run({1: 0.3, 2: 0.3, 3: 0.3}, 3)  # the fresh point: rung 3 now holds two trials, no place yet
    assert search.top_up(1) == 1 and "continues" not in store.trial_docs()[-1]
    run({1: 0.4, 2: 0.4, 3: 0.4}, 3)  # a third at rung 3: the promotion holds its one place
    assert search.top_up(1) == 1
    again = store.trial_docs()[-1]
    assert again["continues"] == {"tid": promoted["tid"], "step": 3, "reports": {"1": 0.2, "2": 0.15, "3": 0.1}}
    assert [d["tid"] for d in store.trial_docs()] == list(range(7)) and store.count_by_state()[NEW] == 1
