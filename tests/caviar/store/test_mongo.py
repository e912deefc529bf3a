"""MongoStore beyond the shared conformance suite: experiments side by side, connection errors, plain documents."""

from __future__ import annotations

import datetime
import time
from pathlib import Path
from typing import Any

import pymongo
import pytest
from bson import ObjectId

from caviar.errors import CaviarError
from caviar.store.mongo import MongoStore, TrialView, redact
from caviar.store import DONE, NEW, RUNNING
from tests.helpers.server import NxServer, free_port
from tests.helpers.trials import enqueue_points, trial_doc


def test_experiments_in_one_database_stay_apart(mongo_url: str) -> None:
    a, b = MongoStore(mongo_url, "a"), MongoStore(mongo_url, "b")
    assert enqueue_points(a, [{"x": 1.0}, {"x": 2.0}]) == [0, 1]
    assert enqueue_points(b, [{"x": 3.0}]) == [0]  # tids count per experiment
    assert a.claim("w")["params"] == {"x": 1.0}
    assert b.count_by_state() == {NEW: 1, RUNNING: 0, DONE: 0}
    assert a.count_by_state() == {NEW: 1, RUNNING: 1, DONE: 0}
    assert not b.finish(0, "w", {"status": "ok", "loss": 0.0})  # w holds a's trial 0, not b's
    a.delete_all()
    assert a.trial_docs() == [] and [d["params"] for d in b.trial_docs()] == [{"x": 3.0}]
    assert a.new_tids(1) == [2]  # tids are never reused, even after delete_all


def test_delete_all_removes_the_running_trials_checkpoints_too(mongo_url: str, tmp_path: Path) -> None:
    a, b = MongoStore(mongo_url, "a"), MongoStore(mongo_url, "b")
    (tmp_path / "ckpt").write_bytes(b"weights")
    for store in (a, b):
        enqueue_points(store, [{"x": 1.0}])
        store.claim("w")
        assert store.put_checkpoint(0, "w", str(tmp_path / "ckpt"), 1)
    a.delete_all()
    assert a.get_checkpoint(0, str(tmp_path / "back")) is None
    assert b.get_checkpoint(0, str(tmp_path / "back")) == (1, {})  # the other experiment's stays


def test_step_losses_forget_the_finished_trials_of_an_experiment_deleted_since(mongo_url: str) -> None:
    """A worker's store keeps the finished trials' reports it read; delete_all elsewhere makes it read afresh."""
    a, b = MongoStore(mongo_url, "a"), MongoStore(mongo_url, "b")
    for store, loss in ((a, 0.5), (b, 0.9)):
        first, second = enqueue_points(store, [{"x": 1.0}, {"x": 2.0}])
        store.claim("w")
        assert store.report(first, "w", 1, loss) and store.finish(first, "w", {"status": "ok", "loss": loss})
    a.claim("w")
    assert a.report(1, "w", 1, 0.6)
    reader_a, reader_b = MongoStore(mongo_url, "a"), MongoStore(mongo_url, "b")
    assert reader_a.step_losses(1, 1) == {0: 0.5, 1: 0.6} and reader_b.step_losses(0, 1) == {0: 0.9}
    MongoStore(mongo_url, "a").delete_all()
    [new] = enqueue_points(a, [{"x": 3.0}])
    a.claim("w2")
    assert a.report(new, "w2", 1, 0.3)
    assert reader_a.step_losses(new, 1) == {new: 0.3}
    assert reader_b.step_losses(0, 1) == {0: 0.9}  # the other experiment's are kept


def test_a_worker_without_exp_key_serves_every_experiment(mongo_url: str) -> None:
    a, b = MongoStore(mongo_url, "a"), MongoStore(mongo_url, "b")
    a.put_experiment({"objective": "m:fa"})
    b.put_experiment({"objective": "m:fb"})
    enqueue_points(a, [{"x": 1.0}])
    enqueue_points(b, [{"x": 2.0}])  # the same tid 0 in both experiments
    anywhere = MongoStore(mongo_url)
    docs = [anywhere.claim("w"), anywhere.claim("w")]
    assert anywhere.claim("w") is None
    assert sorted((d["exp_key"], d["tid"]) for d in docs) == [("a", 0), ("b", 0)]
    assert [anywhere.get_experiment(d["exp_key"])["objective"] for d in docs] == [f"m:f{d['exp_key']}" for d in docs]
    last = docs[-1]
    assert anywhere.heartbeat(0, "w")
    assert anywhere.finish(0, "w", {"status": "ok", "loss": 0.5})  # acts on the last claimed trial 0
    store_of = {"a": a, "b": b}
    assert store_of[last["exp_key"]].trial_docs()[0]["state"] == DONE
    assert store_of[docs[0]["exp_key"]].trial_docs()[0]["state"] == RUNNING
    assert sorted((d["exp_key"], d["tid"]) for d in anywhere.trial_docs()) == [("a", 0), ("b", 0)]  # hyperopt's None


def test_an_unreachable_server_is_one_clear_error_fast() -> None:
    url = f"mongodb://127.0.0.1:{free_port()}/caviar"
    start = time.monotonic()
    with pytest.raises(CaviarError) as err:
        MongoStore(url, "e", timeout_seconds=0.5)
    assert time.monotonic() - start < 5
    message = str(err.value)
    assert "\n" not in message and url in message and "Connection refused" in message


def test_bad_urls_are_clear_errors() -> None:
    with pytest.raises(CaviarError, match="bad MongoDB URL"):
        MongoStore("http://localhost/caviar", "e")
    assert redact("mongodb://me:secret@h:1/db") == "mongodb://me:***@h:1/db"


def test_the_database_comes_from_the_url(mongo_url: str, restartable_mongo: NxServer) -> None:
    assert MongoStore(mongo_url, "e").db.name == mongo_url.rsplit("/", 1)[1]
    assert MongoStore(restartable_mongo.url, "e").db.name == "caviar"  # a private server: nothing to clean


def test_a_repeated_enqueue_is_accepted_but_a_clash_is_not(mongo_url: str) -> None:
    store = MongoStore(mongo_url, "e")
    docs = [trial_doc(t, {"x": float(t)}) for t in store.new_tids(2)]
    store.enqueue(docs)
    store.enqueue(docs)  # a retry after an insert whose reply was lost
    assert len(store.trial_docs()) == 2
    with pytest.raises(ValueError, match=r"trials \[1\] already exist"):
        store.enqueue([docs[0], trial_doc(1, {"x": 9.0})])


def test_a_claim_whose_reply_was_lost_can_be_recovered(mongo_url: str) -> None:
    store = MongoStore(mongo_url, "e")
    enqueue_points(store, [{"x": 1.0}, {"x": 2.0}])
    claimed = store.claim("w")
    assert store.held_trial("w") == claimed
    assert store.held_trial("nobody") is None


PLAIN = (str, int, float, bool, type(None))


def assert_plain(value: Any, where: str) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            assert isinstance(k, str), where
            assert_plain(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            assert_plain(v, f"{where}[{i}]")
    else:
        assert isinstance(value, PLAIN), f"{where} holds a {type(value).__name__}"


def test_nothing_but_plain_values_is_stored(mongo_url: str, tmp_path: Path) -> None:
    store = MongoStore(mongo_url, "e")
    store.put_experiment({"objective": "tests.helpers.objectives:quadratic", "env": {"A": "1"}, "max_evals": 3})
    tids = enqueue_points(store, [{"x": 1.0, "model": {"kind": "poly", "degree": 2.0}}, {"x": 2.0}, {"x": 3.0}])
    artifact = tmp_path / "model.txt"
    artifact.write_text("weights")
    store.claim("w")
    store.finish(tids[0], "w", {"status": "ok", "loss": 0.5, "history": {"acc": [0.1, 0.2]}}, {"model": str(artifact)})
    store.claim("w")
    store.requeue_expired(1.0, now=time.time() + 5)
    store.worker_alive("w", {"pid": 1, "gpu": None, "exp_key": "e", "tid": None})
    client = pymongo.MongoClient(mongo_url)
    db = client.get_default_database()
    for name in ("experiments", "trials", "counters", "workers", "artifacts.files"):
        docs = list(db[name].find())
        assert docs, name
        for doc in docs:
            doc_id = doc.pop("_id")
            assert isinstance(doc_id, (str, ObjectId)), name
            if name == "artifacts.files":  # GridFS's own bookkeeping fields
                assert isinstance(doc.pop("uploadDate"), (datetime.datetime, str))
            assert_plain(doc, name)
    client.close()


@pytest.mark.parametrize("refused", [
    {"predictions": "0" * (17 * 2**20)},  # over 16 MB: pymongo's DocumentTooLarge
    {"parameters": 2**70},  # BSON integers have 8 bytes: OverflowError
    {"per_class": {"a\0b": 0.5}},  # a NUL byte in a key: InvalidDocument
], ids=["too-large", "int-over-8-bytes", "nul-in-key"])
def test_a_result_the_database_cannot_hold_is_recorded_as_the_trials_failure(
    mongo_url: str, tmp_path: Path, refused: dict[str, Any]
) -> None:
    store = MongoStore(mongo_url, "e")
    enqueue_points(store, [{"x": 1.0}, {"x": 2.0}])
    artifact = tmp_path / "model.txt"
    artifact.write_text("weights")
    store.claim("w")
    result = {"status": "ok", "loss": 0.5, "attachments": {"blob": b"data"}} | refused
    assert store.finish(0, "w", result, {"model": str(artifact)})
    assert store.finish(0, "w", result, {"model": str(artifact)})  # a retry after a lost reply lands the same
    [doc] = [d for d in store.trial_docs() if d["tid"] == 0]
    assert doc["state"] == DONE and doc["result"]["status"] == "fail", doc["result"]
    assert doc["result"]["error"].startswith("the database refused the trial's result"), doc["result"]
    assert store.attachment_names() == [] and store.fetch_best_artifact("model", str(tmp_path / "back")) is None
    store.claim("w")
    assert store.finish(1, "w", {"status": "ok", "loss": 0.7})  # the next trial is stored as usual
    assert [d["result"] for d in store.trial_docs() if d["tid"] == 1] == [{"status": "ok", "loss": 0.7}]


@pytest.mark.parametrize("exp_key", ["a", None])
def test_a_trial_view_reads_only_what_changed(mongo_url: str, exp_key: str | None) -> None:
    """Finished trials are read once: later reads return only trials changed since (finished ones within the
    visibility slack are skipped by tid within one experiment, by _id across experiments whose tids repeat)."""
    stores = [MongoStore(mongo_url, "a"), MongoStore(mongo_url, "b")]
    for store in stores:
        for tid in enqueue_points(store, [{"x": float(i)} for i in range(6)]):
            store.claim("w")
            assert store.finish(tid, "w", {"status": "ok", "loss": float(tid)})
        enqueue_points(store, [{"x": 9.0}])
    reader = MongoStore(mongo_url, exp_key)
    docs, since = reader.changed_docs(None, {})
    assert len(docs) == (7 if exp_key else 14)
    skip = {d["_id"]: d["tid"] for d in docs if d["state"] == DONE}
    again, since = reader.changed_docs(since, skip)
    assert {d["tid"] for d in again} <= {6}  # at most the queued trials (within the slack), never a finished one
    b = stores[1]
    b.claim("w")
    assert b.finish(6, "w", {"status": "ok", "loss": -1.0})
    changed, _ = reader.changed_docs(since, skip)
    assert [(d["exp_key"], d["tid"], d["state"]) for d in changed if d["state"] == DONE] == (
        [] if exp_key else [("b", 6, DONE)])
    view = TrialView(reader)
    view.refresh()
    assert view.counts() == ({NEW: 1, RUNNING: 0, DONE: 6} if exp_key else {NEW: 1, RUNNING: 0, DONE: 13})
    assert [d["tid"] for d in view.docs()] == (list(range(7)) if exp_key else sorted(list(range(7)) * 2))
    assert [d["tid"] for d in view.pending()] == [6]
    finished = view.finished()
    assert sorted(d["tid"] for d in finished) == (list(range(6)) if exp_key else sorted([*range(6), *range(7)]))
    a = stores[0]
    a.claim("w")
    assert a.finish(6, "w", {"status": "ok", "loss": -2.0})
    view.refresh()
    assert view.finished() is finished and finished[-1]["tid"] == 6 and view.pending() == []  # appended in place
    assert [d["tid"] for d in view.docs()][-1] == 6 and view.docs()[-1]["state"] == DONE


def test_a_store_of_every_experiment_reaches_the_checkpoint_of_the_trial_a_promotion_continues(
    mongo_url: str, tmp_path: Path
) -> None:
    """A worker without --exp-key claims asha's promotion of a trial another worker paused: it resumes from,
    then drops, that trial's checkpoint."""
    keyed = MongoStore(mongo_url, "e1")
    [parent] = enqueue_points(keyed, [{"x": 1.0}])
    assert keyed.claim("a")["tid"] == parent
    (tmp_path / "state").write_bytes(b"epoch 1")
    assert keyed.put_checkpoint(parent, "a", str(tmp_path / "state"), 1, {"history": [0.5]})
    assert keyed.finish(parent, "a", {"status": "ok", "loss": 0.5, "stopped": True, "stopped_at": 1, "paused": True})
    [child] = keyed.new_tids(1)
    keyed.enqueue([trial_doc(child, {"x": 1.0}) | {"continues": {"tid": parent, "step": 1, "reports": {"1": 0.5}}}])
    anyone = MongoStore(mongo_url, None)
    assert anyone.claim("b")["tid"] == child
    assert anyone.get_checkpoint(parent, str(tmp_path / "back")) == (1, {"history": [0.5]})
    assert (tmp_path / "back").read_bytes() == b"epoch 1"
    anyone.discard_checkpoint(parent)
    assert keyed.get_checkpoint(parent, str(tmp_path / "gone")) is None
