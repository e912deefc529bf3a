"""OwnTrials: a store's trials read once, then kept current through this process's own claims and finishes."""

from __future__ import annotations

from caviar.store import DONE, RUNNING
from caviar.store.local import LocalStore
from caviar.store.own_trials import OwnTrials
from tests.helpers.trials import enqueue_points


def test_finished_trials_come_in_the_order_they_finished_as_the_store_holds_them() -> None:
    store = LocalStore()
    a, b = enqueue_points(store, [{"x": 0.0}, {"x": 1.0}])
    trials = OwnTrials(store)
    assert trials.claim("w")["tid"] == a and trials.claim("w")["tid"] == b
    assert [d["tid"] for d in trials.pending(store.count_by_state())] == [a, b]
    assert store.report(b, "w", 1, 0.5)
    assert trials.finish(b, "w", {"status": "ok", "loss": 0.5})
    assert trials.finish(a, "w", {"status": "ok", "loss": 1.0})
    assert [d["tid"] for d in trials.finished] == [b, a]
    assert trials.finished[0] == store.trial(b) and trials.finished[0]["reports"] == {"1": 0.5}
    assert trials.pending(store.count_by_state()) == []


def test_a_resumed_store_starts_with_its_finished_trials_and_a_repeated_finish_adds_nothing() -> None:
    first = LocalStore()
    [tid] = enqueue_points(first, [{"x": 0.0}])
    first.claim("w")
    first.finish(tid, "w", {"status": "ok", "loss": 0.0})
    trials = OwnTrials(LocalStore("local", first.trial_docs()))
    assert [(d["tid"], d["state"]) for d in trials.finished] == [(tid, DONE)]
    [later] = enqueue_points(trials.store, [{"x": 1.0}])
    trials.claim("w")
    assert trials.finish(later, "w", {"status": "ok", "loss": 1.0})
    assert trials.finish(later, "w", {"status": "ok", "loss": 1.0})  # the store accepts it again...
    assert [d["tid"] for d in trials.finished] == [tid, later]  # ...but it is finished once


def test_trials_queued_behind_its_back_are_read_as_pending() -> None:
    store = LocalStore()
    trials = OwnTrials(store)
    a, b = enqueue_points(store, [{"x": 0.0}, {"x": 1.0}])  # queued, never claimed through ``trials``
    assert sorted(d["tid"] for d in trials.pending(store.count_by_state())) == [a, b]
    trials.claim("w")
    assert {d["tid"]: d["state"] for d in trials.pending(store.count_by_state())}[a] == RUNNING
