"""One behaviour suite for every TrialStore (like Optuna's storage tests): LocalStore and MongoStore."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from caviar.store.local import LocalStore
from caviar.store.mongo import MongoStore
from caviar.store import DONE, MAX_LEASE_LOSSES, NEW, RUNNING, TrialStore
from tests.helpers.trials import enqueue_points, trial_doc

EXP = "conformance"
LEASE = 10.0


class Backend:
    """Opens handles on one experiment of one backend, as separate processes would."""

    def __init__(self, kind: str, tmp_path: Path, url: str | None):
        self.kind, self.url = kind, url
        self.artifact_dir = str(tmp_path / "artifacts")
        self._local = LocalStore(EXP, artifact_dir=self.artifact_dir) if kind == "local" else None

    def open(self) -> TrialStore:
        """Another handle on the same trials (the same object for the in-process store)."""
        return self._local or MongoStore(self.url, EXP)  # type: ignore[arg-type]

    def reopen(self, store: TrialStore) -> TrialStore:
        """The store as a restarted master finds it."""
        if self.kind == "local":
            return LocalStore(EXP, store.trial_docs(), artifact_dir=self.artifact_dir)
        return MongoStore(self.url, EXP)  # type: ignore[arg-type]


@pytest.fixture(params=["local", "mongo"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    url = request.getfixturevalue("mongo_url") if request.param == "mongo" else None
    return Backend(request.param, tmp_path, url)


@pytest.fixture
def store(backend: Backend) -> TrialStore:
    return backend.open()


def expire(store: TrialStore) -> list[int]:
    """Requeue as if every lease ran out."""
    return store.requeue_expired(LEASE, now=time.time() + LEASE + 1)


def by_tid(store: TrialStore, tid: int) -> dict[str, Any]:
    return next(d for d in store.trial_docs() if d["tid"] == tid)


def test_new_tids_are_unique_across_calls_and_restarts(backend: Backend, store: TrialStore) -> None:
    tids = store.new_tids(3) + store.new_tids(2)
    assert len(set(tids)) == 5
    store.enqueue([trial_doc(t, {"x": float(t)}) for t in tids])
    for _ in tids:
        doc = store.claim("w")
        assert store.finish(doc["tid"], "w", {"status": "ok", "loss": 1.0})
    again = backend.reopen(store).new_tids(4)
    assert not set(again) & set(tids)


def test_claim_takes_the_oldest_trial_first(store: TrialStore) -> None:
    tids = store.new_tids(3)
    store.enqueue([trial_doc(t, {"x": float(t)}) for t in reversed(tids)])
    claimed = [store.claim(f"w{i}") for i in range(3)]
    assert [d["tid"] for d in claimed] == tids
    first = claimed[0]
    assert first["state"] == RUNNING and first["owner"] == "w0" and first["exp_key"] == EXP
    assert first["params"] == {"x": float(tids[0])}
    assert isinstance(first["heartbeat"], float) and first["lease_losses"] == 0
    assert store.claim("w3") is None


def test_claim_is_atomic_across_threads(backend: Backend) -> None:
    tids = enqueue_points(backend.open(), [{"x": float(i)} for i in range(40)])
    got: list[int] = []
    lock = threading.Lock()

    def drain(owner: str) -> None:
        handle = backend.open()
        while (doc := handle.claim(owner)) is not None:
            with lock:
                got.append(doc["tid"])

    threads = [threading.Thread(target=drain, args=(f"w{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(got) == sorted(tids)


def test_heartbeat_refreshes_only_the_owners_lease(store: TrialStore) -> None:
    [tid] = enqueue_points(store, [{"x": 0.0}])
    before = store.claim("w")["heartbeat"]
    time.sleep(0.01)
    assert store.heartbeat(tid, "w")
    assert by_tid(store, tid)["heartbeat"] > before
    assert not store.heartbeat(tid, "intruder")
    assert store.finish(tid, "w", {"status": "ok", "loss": 0.5})
    assert not store.heartbeat(tid, "w")


def test_an_expired_lease_goes_back_to_the_queue(store: TrialStore) -> None:
    [tid] = enqueue_points(store, [{"x": 0.0}])
    store.claim("slow")
    assert store.requeue_expired(LEASE) == []  # fresh heartbeat: still leased
    assert expire(store) == [tid]
    doc = by_tid(store, tid)
    assert (doc["state"], doc["owner"], doc["lease_losses"]) == (NEW, None, 1)
    assert store.claim("fast")["tid"] == tid
    assert not store.heartbeat(tid, "slow")
    assert not store.finish(tid, "slow", {"status": "ok", "loss": 9.0})
    assert store.finish(tid, "fast", {"status": "ok", "loss": 1.0})
    doc = by_tid(store, tid)
    assert (doc["state"], doc["owner"], doc["result"]["loss"]) == (DONE, "fast", 1.0)


def test_a_late_result_is_kept_while_the_requeued_trial_waits_unclaimed(store: TrialStore) -> None:
    first, second = enqueue_points(store, [{"x": 0.0}, {"x": 1.0}])
    store.claim("cut-off")
    assert expire(store) == [first]
    assert store.finish(first, "cut-off", {"status": "ok", "loss": 2.0})  # nobody took it: kept
    doc = by_tid(store, first)
    assert (doc["state"], doc["owner"], doc["result"]["loss"]) == (DONE, "cut-off", 2.0)
    assert store.claim("next")["tid"] == second  # the finished trial is not handed out again


def test_a_late_heartbeat_takes_back_an_unclaimed_requeued_trial_but_not_a_released_one(store: TrialStore) -> None:
    [tid] = enqueue_points(store, [{"x": 0.0}])
    store.claim("cut-off")
    expire(store)
    assert store.heartbeat(tid, "cut-off")
    doc = by_tid(store, tid)
    assert (doc["state"], doc["owner"]) == (RUNNING, "cut-off")
    assert not store.heartbeat(tid, "stranger")
    store.release(tid, "cut-off")  # handed back on purpose: a stray beat must not take it again
    assert not store.heartbeat(tid, "cut-off")
    assert not store.finish(tid, "cut-off", {"status": "ok", "loss": 1.0})
    assert by_tid(store, tid)["state"] == NEW


def test_a_trial_that_loses_every_worker_fails_after_three_leases(store: TrialStore) -> None:
    poison, healthy = enqueue_points(store, [{"x": 0.0}, {"x": 1.0}])
    for attempt in range(MAX_LEASE_LOSSES):
        assert store.claim(f"victim{attempt}")["tid"] == poison
        assert expire(store) == [poison]
    doc = by_tid(store, poison)
    assert doc["state"] == DONE and doc["result"]["status"] == "fail"
    assert doc["lease_losses"] == MAX_LEASE_LOSSES and "lost its worker" in doc["result"]["error"]
    assert store.claim("survivor")["tid"] == healthy


def test_concurrent_requeues_count_a_lost_lease_once(backend: Backend) -> None:
    handles = [backend.open() for _ in range(4)]
    [tid] = enqueue_points(handles[0], [{"x": 0.0}])
    handles[0].claim("gone")
    changed: list[int] = []
    barrier = threading.Barrier(len(handles))

    def requeue(handle: TrialStore) -> None:
        barrier.wait(timeout=10)
        changed.extend(expire(handle))

    threads = [threading.Thread(target=requeue, args=(h,)) for h in handles]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert changed == [tid]
    assert by_tid(handles[0], tid)["lease_losses"] == 1


def test_finish_is_for_the_owner_and_may_be_repeated(store: TrialStore) -> None:
    [tid] = enqueue_points(store, [{"x": 0.0}])
    store.claim("owner")
    result = {"status": "ok", "loss": 0.25, "history": {"acc": [0.5, 0.75]}, "duration": 1.5}
    assert not store.finish(tid, "other", result)
    assert by_tid(store, tid)["state"] == RUNNING
    assert store.finish(tid, "owner", result)
    assert store.finish(tid, "owner", result)  # a retry after a write that landed
    assert not store.finish(tid, "owner", result | {"loss": 0.1})
    assert by_tid(store, tid)["result"] == result


def test_release_puts_the_trial_back_without_a_lost_lease(store: TrialStore) -> None:
    [tid] = enqueue_points(store, [{"x": 0.0}])
    store.claim("w")
    store.release(tid, "other")
    assert by_tid(store, tid)["state"] == RUNNING
    store.release(tid, "w")
    doc = by_tid(store, tid)
    assert (doc["state"], doc["owner"], doc["lease_losses"]) == (NEW, None, 0)
    assert store.claim("w2")["tid"] == tid


def test_count_by_state(store: TrialStore) -> None:
    assert store.count_by_state() == {NEW: 0, RUNNING: 0, DONE: 0}
    first, _, _ = enqueue_points(store, [{"x": float(i)} for i in range(3)])
    store.claim("a")
    store.finish(first, "a", {"status": "ok", "loss": 1.0})
    store.claim("b")
    assert store.count_by_state() == {NEW: 1, RUNNING: 1, DONE: 1}


def test_one_trial_reads_as_in_the_whole_list(backend: Backend, store: TrialStore) -> None:
    a, b, c = enqueue_points(store, [{"x": float(i)} for i in range(3)])
    store.claim("w")
    assert store.report(a, "w", 1, 0.5)
    assert store.finish(a, "w", {"status": "ok", "loss": 0.5})
    store.claim("w")
    for tid in (a, b, c):  # finished with reports, running, queued
        assert store.trial(tid) == by_tid(store, tid)
    assert store.trial(a)["state"] == DONE and store.trial(a)["reports"] == {"1": 0.5}
    assert backend.open().trial(c)["state"] == NEW
    assert store.trial(c + 1) is None


def test_only_the_best_trials_artifacts_are_kept(store: TrialStore, tmp_path: Path) -> None:
    assert store.fetch_best_artifact("model", str(tmp_path / "none")) is None
    tids = enqueue_points(store, [{"x": float(i)} for i in range(4)])

    def run(tid: int, loss: float | None) -> None:
        path = tmp_path / f"model{tid}.txt"
        path.write_text(f"trial {tid}")
        store.claim("w")
        result = {"status": "ok", "loss": loss} if loss is not None else {"status": "fail", "error": "boom"}
        assert store.finish(tid, "w", result, {"model": str(path)})

    def best_model() -> str:
        dest = tmp_path / "best.txt"
        tid = store.fetch_best_artifact("model", str(dest))
        assert dest.read_text() == f"trial {tid}"
        return dest.read_text()

    run(tids[0], 1.0)
    assert best_model() == f"trial {tids[0]}"
    run(tids[1], 2.0)  # worse: not kept
    run(tids[2], None)  # failed: not kept
    assert best_model() == f"trial {tids[0]}"
    run(tids[3], 0.5)
    assert best_model() == f"trial {tids[3]}"
    assert store.fetch_best_artifact("plot", str(tmp_path / "plot")) is None


def test_experiment_document_round_trip(store: TrialStore) -> None:
    assert store.get_experiment() is None
    store.put_experiment({"objective": "tests.helpers.objectives:quadratic", "env": {"A": "1"}, "max_evals": 5})
    store.put_experiment({"max_evals": 7})
    doc = store.get_experiment()
    assert doc["_id"] == EXP
    assert (doc["objective"], doc["env"], doc["max_evals"]) == ("tests.helpers.objectives:quadratic", {"A": "1"}, 7)


def test_live_workers(store: TrialStore) -> None:
    store.worker_alive("host:1", {"pid": 1, "gpu": "0", "exp_key": EXP, "tid": 3})
    [worker] = store.live_workers(60)
    assert (worker["_id"], worker["pid"], worker["gpu"], worker["tid"]) == ("host:1", 1, "0", 3)
    assert isinstance(worker["heartbeat"], float) and worker["host"]
    time.sleep(0.05)
    assert store.live_workers(0.01) == []
    store.worker_alive("host:2", {"pid": 2})
    store.worker_gone("host:1")
    assert [w["_id"] for w in store.live_workers(60)] == ["host:2"]


def test_a_taken_tid_is_refused(store: TrialStore) -> None:
    [tid] = enqueue_points(store, [{"x": 0.0}])
    with pytest.raises(ValueError, match="already exist"):
        store.enqueue([trial_doc(tid, {"x": 5.0})])
    assert [d["params"] for d in store.trial_docs()] == [{"x": 0.0}]


# -- early stopping: reports, decisions, checkpoints ---------------------------

def test_reports_land_in_the_trial_for_its_owner_only(backend: Backend, store: TrialStore) -> None:
    a, b, c = enqueue_points(store, [{"x": float(i)} for i in range(3)])
    store.claim("wa")
    store.claim("wb")
    assert store.report(a, "wa", 1, 0.5) and store.report(a, "wa", 2, 0.25)
    assert store.report(a, "wa", 2, 0.25)  # a retried report is harmless
    assert store.report(b, "wb", 1, None)  # a NaN report is kept as missing
    assert not store.report(b, "intruder", 1, 0.0)
    assert not store.report(c, "wa", 1, 0.0)  # queued, nobody's
    assert by_tid(store, a)["reports"] == {"1": 0.5, "2": 0.25}
    other = backend.open()
    assert other.step_losses(a, 1) == {a: 0.5, b: None}
    assert other.step_losses(b, 2) == {a: 0.25}
    assert other.step_losses(a, 7) == {}
    assert store.finish(a, "wa", {"status": "ok", "loss": 0.25})
    assert not store.report(a, "wa", 3, 0.1)
    assert by_tid(store, a)["reports"] == {"1": 0.5, "2": 0.25}


def test_step_losses_follow_trials_as_they_run_finish_and_are_requeued(backend: Backend, store: TrialStore) -> None:
    """One reader asked again and again (a worker deciding trial after trial) sees what a fresh one sees, though
    a store may keep what it read of the finished trials."""
    a, b, c = enqueue_points(store, [{"x": float(i)} for i in range(3)])
    store.claim("wa")
    store.claim("wb")
    assert store.report(a, "wa", 1, 0.5) and store.report(b, "wb", 1, 0.7)
    reader = backend.open()
    assert reader.step_losses(a, 1) == {a: 0.5, b: 0.7}
    assert store.finish(a, "wa", {"status": "ok", "loss": 0.5})
    store.claim("wc")
    assert store.report(c, "wc", 1, 0.1) and store.report(b, "wb", 2, 0.6)
    assert reader.step_losses(a, 1) == {a: 0.5, b: 0.7, c: 0.1}
    assert reader.step_losses(b, 2) == {b: 0.6}
    assert store.report(b, "wb", 3, 0.4) and store.finish(b, "wb", {"status": "ok", "loss": 0.4})
    assert expire(store) == [c]  # requeued with its report, waiting for another worker
    assert reader.step_losses(c, 1) == {a: 0.5, b: 0.7, c: 0.1} == backend.open().step_losses(c, 1)
    assert reader.step_losses(b, 3) == {b: 0.4}


def test_the_first_decision_at_a_step_is_kept(backend: Backend, store: TrialStore) -> None:
    [tid] = enqueue_points(store, [{"x": 0.0}])
    store.claim("w")
    assert store.decide(tid, "intruder", 1, {"stop": True}) is None
    assert store.decide(tid, "w", 1, {"stop": False, "peers": 1, "cutoff": 0.5}) == {"stop": False, "peers": 1, "cutoff": 0.5}
    assert backend.open().decide(tid, "w", 1, {"stop": True}) == {"stop": False, "peers": 1, "cutoff": 0.5}
    assert expire(store) == [tid]
    store.claim("w2")  # resumed elsewhere: asks again and gets the same answer
    assert store.decide(tid, "w2", 1, {"stop": True})["stop"] is False
    assert store.decide(tid, "w2", 3, {"stop": True})["stop"] is True
    assert by_tid(store, tid)["decisions"] == {"1": {"stop": False, "peers": 1, "cutoff": 0.5}, "3": {"stop": True}}


def test_the_latest_checkpoint_survives_a_lost_worker(backend: Backend, store: TrialStore, tmp_path: Path) -> None:
    [tid, other] = enqueue_points(store, [{"x": 0.0}, {"x": 1.0}])
    store.claim("w")
    dest = tmp_path / "restored"
    assert store.get_checkpoint(tid, str(dest)) is None
    for step in (1, 2, 3):
        path = tmp_path / f"state{step}"
        path.write_text(f"after epoch {step}")
        assert store.put_checkpoint(tid, "w", str(path), step, {"history": list(range(step))})
    assert not store.put_checkpoint(tid, "intruder", str(path), 9)
    assert expire(store) == [tid]
    assert store.claim("w2")["tid"] == tid
    assert backend.open().get_checkpoint(tid, str(dest)) == (3, {"history": [0, 1, 2]})
    assert dest.read_text() == "after epoch 3"
    assert store.get_checkpoint(other, str(dest)) is None
    store.discard_checkpoint(tid)
    assert store.get_checkpoint(tid, str(tmp_path / "gone")) is None
    assert not (tmp_path / "gone").exists()
