"""The runner's reporter on real stores: what lands in the trial, who is stopped, and outages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from caviar import reporting
from caviar.errors import CaviarError
from caviar.family import FunctionFamily
from caviar.runner import run_trial
from caviar.runner.reports import TrialReporter
from caviar.schedulers import CONFIG_ENV
from caviar.schedulers.asha import Asha
from caviar.store import TrialStore
from caviar.store.local import LocalStore
from caviar.store.mongo import MongoStore
from tests.helpers import objectives, training
from tests.helpers.server import NxServer
from tests.helpers.trials import enqueue_points, trial_doc

ASHA = {"name": "asha", "min_epochs": 1, "reduction_factor": 3, "max_epochs": training.EPOCHS}
POINT = {"lr": 0.05, "noise": 0.5}


def doc_of(store: TrialStore, tid: int) -> dict[str, Any]:
    return next(d for d in store.trial_docs() if d["tid"] == tid)


@pytest.fixture
def asha(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_ENV, json.dumps(ASHA))


def test_outside_a_run_reports_go_nowhere_and_nothing_stops(tmp_path: Path) -> None:
    assert reporting.report(1, 0.5) and not reporting.should_stop()
    assert reporting.restore_checkpoint(str(tmp_path / "x")) is None
    reporting.save_checkpoint(str(tmp_path / "missing"), 1)
    with pytest.raises(ValueError, match="-1"):
        reporting.report(-1, 0.5)
    with pytest.raises(ValueError, match="1.5"):
        reporting.report(1.5, 0.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="'high'"):
        reporting.report(1, "high")  # type: ignore[arg-type]


def test_a_trial_behind_its_rung_is_stopped_and_finishes_ok(asha: None) -> None:
    store = LocalStore()
    leaders = enqueue_points(store, [{"lead": 1.0}, {"lead": 2.0}])
    for tid in leaders:
        store.claim("peer")
        assert store.report(tid, "peer", 1, 0.0)
    [tid] = enqueue_points(store, [POINT])
    doc = store.claim("w")
    result, _ = run_trial(store, doc, training.numpy_training, "w", 30.0)
    first = doc_of(store, tid)["reports"]["1"]
    assert result["status"] == "ok" and result["stopped"] is True and result["stopped_at"] == 1
    assert result["loss"] == first > 0.0
    stored = doc_of(store, tid)
    assert list(stored["reports"]) == ["1"]
    assert stored["decisions"] == {"1": {"stop": True, "peers": 3, "cutoff": 0.0, "scheduler": "asha"}}
    assert store.get_checkpoint(tid, "/nonexistent/never-written") is None  # dropped when the trial ended


def test_a_paused_trial_keeps_its_checkpoint_and_its_promotion_resumes_from_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(CONFIG_ENV, json.dumps(ASHA | {"promote": True}))
    store = LocalStore(artifact_dir=str(tmp_path))
    [tid] = enqueue_points(store, [POINT])
    result, _ = run_trial(store, store.claim("w"), training.numpy_training, "w", 30.0)
    assert result["stopped"] and result["stopped_at"] == 1 and result["paused"]  # alone: no place at its rung yet
    assert store.finish(tid, "w", result)
    assert store.get_checkpoint(tid, str(tmp_path / "kept"))[0] == 1
    parent = doc_of(store, tid)
    [child] = store.new_tids(1)
    store.enqueue([trial_doc(child, POINT) | {"continues": {"tid": tid, "step": 1, "reports": parent["reports"]}}])
    monkeypatch.setenv(CONFIG_ENV, json.dumps(ASHA))  # no more pauses: it runs to the end
    result, _ = run_trial(store, store.claim("w"), training.numpy_training, "w", 30.0)
    assert result["resumed_from"] == 1 and result["history"] == training.numpy_training(POINT)["history"]
    assert sorted(doc_of(store, child)["reports"], key=int) == [str(e) for e in range(2, training.EPOCHS + 1)]
    assert store.get_checkpoint(tid, str(tmp_path / "gone")) is None  # the promotion dropped its parent's


def test_without_promotions_a_stopped_trial_saves_no_checkpoint_of_its_last_step(
    asha: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    store = LocalStore(artifact_dir=str(tmp_path))
    for tid in enqueue_points(store, [{"lead": 1.0}, {"lead": 2.0}]):
        store.claim("peer")
        assert store.report(tid, "peer", 1, 0.0)
    enqueue_points(store, [POINT])
    doc = store.claim("w")
    saved: list[int] = []
    monkeypatch.setattr(store, "put_checkpoint", lambda tid, owner, path, step, info=None: saved.append(step) or True)
    result, _ = run_trial(store, doc, training.numpy_training, "w", 30.0)
    assert result["stopped_at"] == 1 and "paused" not in result and saved == []


def test_the_first_trial_at_each_rung_runs_to_the_end(asha: None) -> None:
    store = LocalStore()
    [tid] = enqueue_points(store, [POINT])
    result, _ = run_trial(store, store.claim("w"), training.numpy_training, "w", 30.0)
    assert "stopped" not in result and result["history"]["loss"] == training.numpy_training(POINT)["history"]["loss"]
    stored = doc_of(store, tid)
    assert sorted(stored["reports"], key=int) == [str(e) for e in range(1, training.EPOCHS + 1)]
    assert sorted(stored["decisions"], key=int) == ["1", "3"]  # the rungs below the last epoch
    assert not any(d["stop"] for d in stored["decisions"].values())


def test_an_objective_that_never_reports_is_untouched(asha: None) -> None:
    store = LocalStore()
    [tid] = enqueue_points(store, [{"x": 3.0}])
    result, _ = run_trial(store, store.claim("w"), objectives.quadratic, "w", 30.0)
    assert result["status"] == "ok" and result["loss"] == 4.0 and "stopped" not in result
    assert "reports" not in doc_of(store, tid)


def test_a_nan_report_stops_the_trial_which_fails_without_a_score(asha: None) -> None:
    store = LocalStore()
    [tid] = enqueue_points(store, [POINT])
    result, _ = run_trial(store, store.claim("w"), training.nan_at_first_epoch, "w", 30.0)
    assert result["status"] == "fail" and "stopped at step 1 without a finite report" in result["error"]
    assert doc_of(store, tid)["reports"] == {"1": None}


def test_a_maximized_score_is_stored_as_its_negative_loss() -> None:
    def accuracy(params: dict[str, Any]) -> float:
        reporting.report(1, 0.75)
        return -0.75

    accuracy.maximize = True  # type: ignore[attr-defined]
    store = LocalStore()
    [tid] = enqueue_points(store, [POINT])
    run_trial(store, store.claim("w"), FunctionFamily(accuracy), "w", 30.0)
    assert doc_of(store, tid)["reports"] == {"1": -0.75}


def test_a_bad_scheduler_configuration_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONFIG_ENV, '{"name": "asha", "reduction_factor": 1}')
    store = LocalStore()
    enqueue_points(store, [POINT])
    with pytest.raises(CaviarError, match="reduction_factor must be an integer of at least 2, got 1"):
        run_trial(store, store.claim("w"), training.numpy_training, "w", 30.0)


def test_reports_during_an_outage_wait_and_land_when_the_store_is_back(
    restartable_mongo: NxServer, tmp_path: Path
) -> None:
    store = MongoStore(restartable_mongo.url + "/outage", "outage", timeout_seconds=1.0)
    [tid] = enqueue_points(store, [POINT])
    reporter = TrialReporter(store, store.claim("w"), "w", Asha(max_epochs=9), maximize=False)
    assert reporter.report(1, 0.5)
    restartable_mongo.stop()
    assert reporter.report(2, 0.4)  # the store is down: the trial goes on
    assert reporter.report(3, 0.3)  # a rung, but no decision can be taken: goes on
    state = tmp_path / "state"
    state.write_text("epoch 3")
    reporter.save_checkpoint(str(state), 3)  # skipped, not raised
    restartable_mongo.start()
    assert reporter.report(4, 0.2)
    assert doc_of(store, tid)["reports"] == {"1": 0.5, "2": 0.4, "3": 0.3, "4": 0.2}
    result = reporter.close({"status": "ok", "loss": 0.2})
    assert "stopped" not in result
