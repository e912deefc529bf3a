"""Artifacts: a scratch folder per trial, deleted alone; files elsewhere never deleted; bad values fail one trial."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from caviar.objective import trial_dir
from caviar.runner import discard_artifacts, run_trial
from caviar.store.local import LocalStore
from tests.conftest import ROOT
from tests.helpers.trials import enqueue_points


def run_one(store: LocalStore, objective: Any) -> dict[str, Any]:
    """Claim, run, finish and clean up one trial as the embedded master does; return its stored result."""
    doc = store.claim("w")
    result, artifacts = run_trial(store, doc, objective, "w", 60.0)
    assert store.finish(doc["tid"], "w", result, artifacts)
    discard_artifacts(artifacts)
    return store.trial_docs()[doc["tid"]]["result"]


def test_an_artifact_in_a_shared_temp_folder_is_copied_and_nothing_there_deleted(tmp_path: Path) -> None:
    shared = tmp_path / "tmp"  # stands for the system's temp folder: its name starts with "tmp"
    shared.mkdir()
    (shared / "someone_elses_file").write_text("keep me")
    model = shared / "m.pkl"

    def objective(params: dict[str, Any]) -> dict[str, Any]:
        model.write_text("weights")
        return {"loss": 0.5, "artifacts": {"model": str(model)}}

    store = LocalStore("a", artifact_dir=str(tmp_path / "results"))
    enqueue_points(store, [{"x": 1.0}])
    assert run_one(store, objective)["status"] == "ok"
    assert (shared / "someone_elses_file").read_text() == "keep me" and model.read_text() == "weights"
    assert store.fetch_best_artifact("model", str(tmp_path / "out.pkl")) == 0
    assert (tmp_path / "out.pkl").read_text() == "weights"


def test_the_trial_scratch_folder_holds_the_artifact_and_goes_after_the_trial(tmp_path: Path) -> None:
    seen = []

    def objective(params: dict[str, Any]) -> dict[str, Any]:
        folder = Path(trial_dir())
        seen.append(folder)
        (folder / "model.txt").write_text(f"x={params['x']}")
        return {"loss": params["x"], "artifacts": {"model": folder / "model.txt"}}

    store = LocalStore("a", artifact_dir=str(tmp_path / "results"))
    enqueue_points(store, [{"x": 1.0}, {"x": 2.0}])
    assert run_one(store, objective)["status"] == run_one(store, objective)["status"] == "ok"
    assert len(set(seen)) == 2 and not any(folder.exists() for folder in seen)
    assert store.fetch_best_artifact("model", str(tmp_path / "best.txt")) == 0
    assert (tmp_path / "best.txt").read_text() == "x=1.0"
    assert "CAVIAR_TRIAL_DIR" not in os.environ


@pytest.mark.parametrize(
    "artifacts, reason",
    [
        ("model.keras", "artifacts must be a dict {name: file path}, not str 'model.keras'"),
        ({"model": "/nonexistent/m.keras"}, "artifact 'model': '/nonexistent/m.keras' is no file"),
        ({"model": "FOLDER"}, "is a folder, a file is needed"),
        ({"../escape": "FILE"}, "artifact name '../escape' is not letters"),
        ({"model": 3}, "artifact 'model': 3 is not a file path"),
        ({"model": ""}, "artifact 'model': '' is not a file path"),
    ],
)
def test_a_bad_artifacts_value_fails_that_trial_only(tmp_path: Path, artifacts: Any, reason: str) -> None:
    (tmp_path / "file").write_text("x")
    if isinstance(artifacts, dict):
        artifacts = {k: {"FOLDER": str(tmp_path), "FILE": str(tmp_path / "file")}.get(v, v) for k, v in artifacts.items()}
    store = LocalStore("a", artifact_dir=str(tmp_path / "results"))
    enqueue_points(store, [{"x": 1.0}, {"x": 2.0}])
    result = run_one(store, lambda params: {"loss": 0.1, "artifacts": artifacts})
    assert result["status"] == "fail" and reason in result["error"], result
    assert run_one(store, lambda params: 0.2)["status"] == "ok"  # the search goes on
    assert (tmp_path / "file").exists() and store.fetch_best_artifact("model", str(tmp_path / "o")) is None


CRASH_WHILE_KEEPING = textwrap.dedent('''
    import os, sys
    from caviar.store.local import LocalStore
    from tests.helpers.trials import enqueue_points

    results, work = sys.argv[1], sys.argv[2]
    store = LocalStore("a", artifact_dir=results)
    enqueue_points(store, [{"x": 0.0}, {"x": 1.0}])
    armed = False

    def crash_before_the_pointer(event, args):
        # SIGKILL stand-in: die the moment the pointer of the second best is opened for writing.
        if armed and event == "open" and "best_model.json" in str(args[0]):
            os._exit(9)

    sys.addaudithook(crash_before_the_pointer)
    for tid, loss in ((0, 0.5), (1, 0.1)):
        path = os.path.join(work, f"model{tid}.txt")
        with open(path, "w") as f:
            f.write(f"model of trial {tid}")
        doc = store.claim("w")
        armed = tid == 1
        store.finish(doc["tid"], "w", {"status": "ok", "loss": loss}, {"model": path})
''')


def test_a_crash_while_keeping_a_new_best_never_pairs_a_model_with_the_wrong_trial(tmp_path: Path) -> None:
    results, work = tmp_path / "results", tmp_path / "work"
    work.mkdir()
    crashed = subprocess.run([sys.executable, "-c", CRASH_WHILE_KEEPING, str(results), str(work)], cwd=ROOT,
                             env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=60)
    assert crashed.returncode == 9, crashed.stderr
    kept = LocalStore("a", artifact_dir=str(results)).fetch_best_artifact("model", str(tmp_path / "out.txt"))
    if kept is not None:  # a pointer survived: it must name the trial whose model the file is
        assert (tmp_path / "out.txt").read_text() == f"model of trial {kept}"
    assert kept is None or json.loads((results / "best_model.json").read_text())["tid"] == kept
