"""The default CIFAR-100 search as a user runs it: `python -m optimizer` over an archive in ml_req/."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.results import finished_trials
from tests.neural_net.conftest import write_cifar100

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def workdir(tmp_path):
    """A fresh folder holding ml_req/cifar-100-python.tar.gz in the official format."""
    write_cifar100(tmp_path / "ml_req", n_train=160, n_test=40)
    return tmp_path


def env_for(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HKS_") and k not in ("MONGO_URL", "DATASET_SIZE")}
    return env | {"PYTHONPATH": str(REPO), "HKS_OFFLINE": "1", "HKS_EPOCHS": "1", "DATASET_SIZE": "120"} | extra


def search(workdir, *args, **extra):
    return subprocess.run([sys.executable, "-m", "optimizer", *args], cwd=workdir, env=env_for(**extra),
                          capture_output=True, text=True, timeout=400)



def test_two_trials_then_resume_to_three(workdir):
    first = search(workdir, "--max-evals", "2")
    assert first.returncode == 0, first.stderr[-3000:]
    results = workdir / "results"
    trial_files = sorted(p for p in os.listdir(results) if "_tid" in p)
    assert len(trial_files) == 2
    for name in ("results.pkl", "best.json", "model_demo.png", "model_best.png", "best_model.keras"):
        assert (results / name).stat().st_size > 0, name
    one = json.loads((results / trial_files[-1]).read_text())
    assert one["result"]["status"] == "ok"
    assert set(one["result"]["history"]) >= {"val_fine_outputs_accuracy", "val_coarse_outputs_accuracy"}
    assert one["result"]["loss"] == -one["result"]["fine_best_accuracy"]
    best = json.loads((results / "best.json").read_text())
    assert set(best["test"]) == {"test_fine_accuracy", "test_fine_loss"}  # the kept model has the fine head only
    assert {"best_so_far.png", "learning_curves.png"} <= set(os.listdir(results / "plots"))
    runs = [p for p in os.listdir(results / "tensorboard") if (results / "tensorboard" / p).is_dir()]
    assert sorted(runs) == sorted(p.split("_tid00000_")[-1].split("_tid00001_")[-1][:-5] for p in trial_files)

    assert all(name.startswith("000000.") for name in trial_files)  # an accuracy, readable and sortable
    before = {p: (results / p).read_bytes() for p in os.listdir(results) if (results / p).is_file()}
    other = search(workdir, "--max-evals", "3", "--dataset", "cifar10")
    assert other.returncode == 1 and other.stderr.strip().splitlines()[-1] == (
        "error: results/ holds another search (HKS_DATASET 'cifar100' there, 'cifar10' now); "
        "start a new folder with --results-dir NEW")
    assert {p: (results / p).read_bytes() for p in os.listdir(results) if (results / p).is_file()} == before

    second = search(workdir, "--max-evals", "3")
    assert second.returncode == 0, second.stderr[-3000:]
    trials = finished_trials(workdir)
    assert len(trials) == 3 and [t["tid"] for t in trials] == [0, 1, 2]
    assert len([p for p in os.listdir(results) if "_tid" in p]) == 3


def test_sigkill_during_training_keeps_the_finished_trials(workdir):
    proc = subprocess.Popen([sys.executable, "-m", "optimizer", "--max-evals", "3"], cwd=workdir, env=env_for(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    pkl = workdir / "results" / "results.pkl"
    deadline = time.time() + 300
    while time.time() < deadline and not pkl.exists():
        time.sleep(0.2)
    time.sleep(2)  # the second trial is building or training now
    assert proc.poll() is None, "the search ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    before = finished_trials(workdir)
    assert len(before) == 1

    result = search(workdir, "--max-evals", "3")
    assert result.returncode == 0, result.stderr[-3000:]
    after = finished_trials(workdir)
    assert len(after) == 3
    assert after[0]["params"] == before[0]["params"] and after[0]["result"] == before[0]["result"]


@pytest.mark.parametrize("content", [b"", b"this is not a tar.gz archive"])
def test_an_unreadable_archive_is_one_clear_line(tmp_path, content):
    (tmp_path / "ml_req").mkdir()
    (tmp_path / "ml_req" / "cifar-100-python.tar.gz").write_bytes(content)
    result = search(tmp_path, "--max-evals", "1")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and "cifar-100-python.tar.gz" in line


def test_no_archive_offline_says_where_to_put_it(tmp_path):
    result = search(tmp_path, "--max-evals", "1")
    assert result.returncode == 1
    assert "ml_req/" in result.stderr.strip().splitlines()[-1]


def test_best_and_export_after_a_search(workdir, tmp_path):
    assert search(workdir, "--max-evals", "1").returncode == 0
    best = subprocess.run([sys.executable, "-m", "optimizer", "best", "--json"], cwd=workdir, env=env_for(),
                          capture_output=True, text=True, timeout=60)
    assert best.returncode == 0, best.stderr
    summary = json.loads(best.stdout)
    assert summary["tid"] == 0 and "pooling_type" in summary["params"]
    out = tmp_path / "exported.keras"
    export = subprocess.run([sys.executable, "-m", "optimizer", "export", "--out", str(out)], cwd=workdir,
                            env=env_for(), capture_output=True, text=True, timeout=60)
    assert export.returncode == 0, export.stderr
    nowhere = subprocess.run([sys.executable, "-m", "optimizer", "export", "--out", "/nonexistent/dir/m.keras"],
                             cwd=workdir, env=env_for(), capture_output=True, text=True, timeout=60)
    assert nowhere.returncode == 1 and "Traceback" not in nowhere.stderr
    assert nowhere.stderr.strip().splitlines()[-1].startswith("error: ")

    import keras
    import numpy as np

    model = keras.models.load_model(out)
    fine = model.predict(np.zeros((2, 32, 32, 3), dtype="uint8"), verbose=0)  # raw images in, probabilities out
    assert fine.shape == (2, 100)
    np.testing.assert_allclose(fine.sum(axis=1), 1.0, rtol=1e-4)
