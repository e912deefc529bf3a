"""Trackers fed with real finished trial documents, read back with TensorBoard's and MLflow's own readers."""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hyperopt import hp
from tensorboard.backend.event_processing.plugin_event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.util import tensor_util

from caviar.store.local import LocalStore
from caviar.objective import failure
from optimizer.search import Search
from caviar.store import DONE
from caviar.output.tracking import (
    TRIAL_MARKER,
    MlflowTracker,
    TensorBoardTracker,
    default_mlflow_uri,
    scalar_params,
    make_trackers,
    run_name,
    summary_metrics,
)

SPACE = {
    "lr": hp.loguniform("lr", -5, 0),
    "use_bn": hp.choice("use_bn", [False, True]),
    "block": hp.choice("block", [
        {"kind": "conv", "filters": hp.choice("filters", [16, 32]), "extra": None},
        {"kind": "dense", "units": hp.quniform("units", 8, 64, 8), "extra": hp.choice("extra", [None, 2])},
    ]),
}
EPOCHS = 3
N_OK = 4
STOPPED = 1  # the trial a scheduler stopped early
CONTINUES = 2  # asha's promotion of STOPPED


def finished_docs() -> list[dict[str, Any]]:
    """A real search's finished trials: N_OK with a 3-epoch history (STOPPED's stopped after 2), then one failed."""
    store = LocalStore("tracking-test")
    search = Search(store, SPACE, "random", N_OK + 1, seed=3)
    for i in range(N_OK + 1):
        search.top_up(1)
        doc = store.claim("owner")
        if i == N_OK:
            result = failure("ValueError: this architecture does not fit")
        else:
            epochs = 2 if i == STOPPED else EPOCHS
            acc = [0.1 * (i + 1) + 0.05 * e for e in range(epochs)]
            result = {
                "status": "ok", "loss": -max(acc), "fine_best_accuracy": max(acc), "n_params": 1000 + i,
                "history": {"val_fine_outputs_accuracy": acc, "loss": [2.0 - 0.3 * e for e in range(epochs)]},
                "model_name": f"model_{max(acc):.4f}_t{i}",
            }
            if i == STOPPED:  # paused by asha with promotions; CONTINUES goes on from it
                result |= {"stopped": True, "stopped_at": epochs, "paused": True}
        assert store.finish(doc["tid"], "owner", result)
    docs = store.trial_docs()
    assert [d["state"] for d in docs] == [DONE] * (N_OK + 1)
    docs[CONTINUES]["continues"] = {"tid": docs[STOPPED]["tid"], "step": 2, "reports": {}}
    kinds = [d["params"]["block"]["kind"] for d in docs[:N_OK]]
    assert {"conv", "dense"} <= set(kinds), kinds  # both branches of the conditional choice
    return docs


@pytest.fixture(autouse=True)
def restore_mlflow_http_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """MlflowTracker sets these process-wide; each test starts without them and leaves none behind."""
    for name in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    return finished_docs()


def test_flatten_params_dots_nested_keys_and_keeps_scalar_types() -> None:
    flat = scalar_params({"a": {"b": None, "c": {"d": True}}, "e": 3, "f": [1, 2], "g": "x"})
    assert flat == {"a.b": "None", "a.c.d": True, "e": 3, "f.0": 1, "f.1": 2, "g": "x"}


def test_summary_metrics_has_the_result_fields_and_best_and_final_validation_accuracy(docs: list[dict]) -> None:
    metrics = summary_metrics(docs[0]["result"])
    acc = docs[0]["result"]["history"]["val_fine_outputs_accuracy"]
    assert metrics["best/val_fine_outputs_accuracy"] == max(acc)
    assert metrics["final/val_fine_outputs_accuracy"] == acc[-1]
    assert metrics["result/loss"] == -max(acc) and metrics["result/n_params"] == 1000
    assert summary_metrics(docs[-1]["result"]) == {}


def read_run(path: Path) -> EventAccumulator:
    acc = EventAccumulator(str(path))
    acc.Reload()
    return acc


def scalars(acc: EventAccumulator, tag: str) -> list[tuple[int, float]]:
    return [(e.step, float(tensor_util.make_ndarray(e.tensor_proto))) for e in acc.Tensors(tag)]


def assert_per_epoch(series: list[tuple[int, float]], expected: list[float]) -> None:
    """One point per epoch, step = epoch index (TensorBoard keeps float32)."""
    assert [step for step, _ in sorted(series)] == list(range(len(expected)))
    assert [value for _, value in sorted(series)] == pytest.approx(expected, rel=1e-6)


def test_tensorboard_writes_scalars_hparams_and_the_experiment_config(tmp_path: Path, docs: list[dict]) -> None:
    logdir = tmp_path / "tensorboard"
    tracker = TensorBoardTracker(str(logdir))
    for doc in docs:
        tracker.trial_finished(doc)
    tracker.close()

    runs = sorted(p.parent.name for p in logdir.glob(f"*/{TRIAL_MARKER}"))
    assert runs == sorted(run_name(d) for d in docs)
    assert run_name(docs[-1]) == f"trial_{docs[-1]['tid']:05d}"
    for doc in docs:
        acc = read_run(logdir / run_name(doc))
        content = acc.PluginTagToContent(hparams_metadata.PLUGIN_NAME)[hparams_metadata.SESSION_START_INFO_TAG]
        session = hparams_metadata.parse_session_start_info_plugin_data(content)
        hparams = {k: v.WhichOneof("kind") for k, v in session.hparams.items()}
        assert session.group_name == run_name(doc)
        assert hparams["status"] == "string_value" and hparams["use_bn"] == "bool_value"
        assert session.hparams["stopped"].bool_value == (doc is docs[STOPPED])
        assert hparams["lr"] == "number_value" and hparams["block.kind"] == "string_value"
        if doc is docs[-1]:
            assert session.hparams["status"].string_value == "fail"
            assert acc.Tags()["tensors"] == [hparams_metadata.SESSION_START_INFO_TAG]
            continue
        history = doc["result"]["history"]["val_fine_outputs_accuracy"]
        assert_per_epoch(scalars(acc, "val_fine_outputs_accuracy"), history)
        assert_per_epoch(scalars(acc, "loss"), doc["result"]["history"]["loss"])
        assert_per_epoch(scalars(acc, "best/val_fine_outputs_accuracy"), [max(history)])
        assert session.hparams["status"].string_value == "ok"

    root_events = list(logdir.glob("events.out.tfevents.*"))
    assert len(root_events) == 1
    content = read_run(logdir).PluginTagToContent(hparams_metadata.PLUGIN_NAME)[hparams_metadata.EXPERIMENT_TAG]
    experiment = hparams_metadata.parse_experiment_plugin_data(content)
    infos = {h.name: h for h in experiment.hparam_infos}
    assert {"status", "lr", "use_bn", "block.kind", "block.filters", "block.units"} <= set(infos)
    assert list(infos["status"].domain_discrete) and infos["use_bn"].HasField("domain_discrete")
    extra = infos["block.extra"]  # "None" or 2: no domain, so no dashboard filter hides either
    assert not extra.HasField("domain_discrete") and not extra.HasField("domain_interval")
    assert infos["lr"].differs and infos["status"].differs and infos["stopped"].differs and not infos["block.filters"].differs
    lrs = [d["params"]["lr"] for d in docs]
    assert (infos["lr"].domain_interval.min_value, infos["lr"].domain_interval.max_value) == (min(lrs), max(lrs))
    metrics = [m.name.tag for m in experiment.metric_infos]
    assert metrics[:3] == ["result/loss", "best/val_fine_outputs_accuracy", "final/val_fine_outputs_accuracy"]


def test_tensorboard_resume_writes_no_trial_twice(tmp_path: Path, docs: list[dict]) -> None:
    logdir = tmp_path / "tensorboard"
    first = TensorBoardTracker(str(logdir))
    for doc in docs[:2]:
        first.trial_finished(doc)
    half_written = logdir / run_name(docs[2])  # a crash between the events and the marker
    half_written.mkdir()
    (half_written / "events.out.tfevents.0.crashed").write_bytes(b"")
    before = {p: p.stat().st_mtime_ns for p in logdir.glob("*/events.out.tfevents.*")}

    resumed = TensorBoardTracker(str(logdir))
    for doc in docs:
        resumed.trial_finished(doc)

    for doc in docs:
        assert len(list((logdir / run_name(doc)).glob("events.out.tfevents.*"))) == 1
    assert not (half_written / "events.out.tfevents.0.crashed").exists()
    for path, mtime in before.items():
        if path.parent != half_written:
            assert path.stat().st_mtime_ns == mtime
    assert len(list(logdir.glob("events.out.tfevents.*"))) == 1


def test_tensorboard_failure_is_a_warning(tmp_path: Path, docs: list[dict], caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    tracker = TensorBoardTracker(str(blocker / "tensorboard"))
    with caplog.at_level(logging.WARNING, logger="caviar.output.tracking"):
        tracker.trial_finished(docs[0])
    assert "TensorBoard: could not record trial" in caplog.text


def draw_stub(params: dict[str, Any], path: str) -> None:
    if params["block"]["kind"] == "dense":
        raise RuntimeError("cannot draw dense blocks")
    Path(path).write_bytes(b"\x89PNG fake diagram")


def test_mlflow_logs_a_parent_run_with_a_child_per_trial_and_resumes(
    tmp_path: Path, docs: list[dict], caplog: pytest.LogCaptureFixture
) -> None:
    from mlflow import MlflowClient

    uri, artifacts = default_mlflow_uri(str(tmp_path))
    tracker = MlflowTracker(uri, "exp-a", draw_stub, artifacts)
    with caplog.at_level(logging.WARNING, logger="caviar.output.tracking"):
        for doc in docs[:3]:
            tracker.trial_finished(doc)
        tracker.close()
        resumed = MlflowTracker(uri, "exp-a", draw_stub, artifacts)
        for doc in docs:
            resumed.trial_finished(doc)
        resumed.close()
    assert "off for the rest" not in caplog.text

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("exp-a")
    assert experiment.artifact_location == artifacts
    runs = client.search_runs([experiment.experiment_id])
    [parent] = [r for r in runs if r.data.tags.get("caviar.role") == "parent"]
    assert parent.info.run_name == "exp-a" and parent.info.status == "FINISHED"
    children = {int(r.data.tags["caviar.tid"]): r for r in runs if r is not parent}
    assert sorted(children) == [d["tid"] for d in docs]
    for doc in docs:
        run = children[doc["tid"]]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.info.run_name == run_name(doc)
        assert run.data.params["lr"] == str(doc["params"]["lr"])
        assert run.data.params["block.kind"] == doc["params"]["block"]["kind"]
        assert run.data.params["block.extra"] == str(doc["params"]["block"]["extra"])
        artifacts_logged = [a.path for a in client.list_artifacts(run.info.run_id)]
        if doc is docs[-1]:
            assert run.info.status == "FAILED" and run.data.tags["caviar.status"] == "fail"
            assert "does not fit" in run.data.tags["caviar.error"] and artifacts_logged == []
            continue
        assert run.info.status == "FINISHED" and run.data.tags["caviar.status"] == "ok"
        if doc is docs[STOPPED]:  # a finished run, tagged so that it can be told from the full ones
            tags = run.data.tags
            assert (tags["stopped"], tags["stopped_at"], tags["paused"]) == ("true", "2", "true")
        else:
            assert not {"stopped", "stopped_at", "paused"} & set(run.data.tags)
        assert run.data.tags.get("continues") == (str(docs[STOPPED]["tid"]) if doc is docs[CONTINUES] else None)
        history = client.get_metric_history(run.info.run_id, "val_fine_outputs_accuracy")
        expected = doc["result"]["history"]["val_fine_outputs_accuracy"]
        assert_per_epoch([(m.step, m.value) for m in history], expected)
        assert len(client.get_metric_history(run.info.run_id, "loss")) == len(expected)
        assert run.data.metrics["result/fine_best_accuracy"] == pytest.approx(max(expected))
        assert run.data.metrics["result/loss"] == pytest.approx(doc["result"]["loss"])
        drawable = doc["params"]["block"]["kind"] == "conv"
        assert artifacts_logged == (["model.png"] if drawable else [])
    assert "could not draw the model" in caplog.text


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_tracking_server_is_one_warning_and_quick(
    docs: list[dict], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    uri = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    start = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="caviar.output.tracking"):
        [mlflow_tracker] = [t for t in make_trackers(str(tmp_path), "exp", None, draw_stub)
                            if isinstance(t, MlflowTracker)]
        for doc in docs:
            mlflow_tracker.trial_finished(doc)
        mlflow_tracker.close()
    assert time.monotonic() - start < 10
    assert mlflow_tracker.tracking_uri == uri
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"
    warnings = [r for r in caplog.records if "MLflow tracking" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING


def test_make_trackers_picks_tensorboard_and_mlflow_as_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    kinds = lambda trackers: [type(t).__name__ for t in trackers]  # noqa: E731
    assert kinds(make_trackers(str(tmp_path), "e", None, None)) == ["TensorBoardTracker"]
    [_, local] = make_trackers(str(tmp_path), "e", True, None)
    assert local.tracking_uri == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    assert kinds(make_trackers(str(tmp_path), "e", None, None)) == ["TensorBoardTracker", "MlflowTracker"]
    assert kinds(make_trackers(str(tmp_path), "e", False, None)) == ["TensorBoardTracker"]
    assert kinds(make_trackers(str(tmp_path), "e", False, None, tensorboard=False)) == []
    [auto] = make_trackers(str(tmp_path), "e", False, None)
    [always] = make_trackers(str(tmp_path), "e", False, None, tensorboard=True)
    assert auto.history_only and not always.history_only

    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if the [mlflow] extra were not installed
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None if name == "mlflow" else object())
    with caplog.at_level(logging.WARNING, logger="caviar.output.tracking"):
        assert kinds(make_trackers(str(tmp_path), "e", True, None)) == ["TensorBoardTracker"]
    assert "mlflow is not installed" in caplog.text
    assert not os.path.exists(tmp_path / "mlflow.db")


def test_tensorboard_by_default_skips_trials_without_curves(tmp_path: Path) -> None:
    tracker = TensorBoardTracker(str(tmp_path / "tb"), history_only=True)
    doc = {"tid": 0, "state": 2, "params": {"x": 1.0}, "result": {"status": "ok", "loss": 0.5}}
    tracker.trial_finished(doc)
    assert not (tmp_path / "tb").exists()
    tracker.trial_finished(doc | {"result": doc["result"] | {"history": {"val_accuracy": [0.1, 0.2]}}})
    assert (tmp_path / "tb").exists()
