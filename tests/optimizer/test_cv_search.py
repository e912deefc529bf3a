"""The classic 45-fit grid through the command line: 15 candidates x 3 folds, killed and resumed, refit, predicted."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sklearn import model_selection
from sklearn.neighbors import KNeighborsClassifier

from tests.helpers.estimators import load_digits_xy
from tests.helpers.results import finished_trials
from tests.helpers.server import env_for_subprocess
from tests.neural_net.conftest import write_idx_set

ROOT = Path(__file__).resolve().parents[2]
GRID = ["--algo", "grid", "--cv", "3", "--objective", "neural_net.classic:mlp1", "--max-evals", "15",
        "--epochs", "1", "--no-plots"]


def _optimizer(workdir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "optimizer", *args]


def _run(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_optimizer(workdir, *args), cwd=workdir, env=env_for_subprocess({"HKS_OFFLINE": "1"}),
                          capture_output=True, text=True, timeout=900, check=False)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """ml_req/mnist/ holds 90 training and 12 test images in the official idx format."""
    write_idx_set(tmp_path / "ml_req" / "mnist", n_train=90, n_test=12)
    return tmp_path


@pytest.mark.timeout(1500)  # 45 fits, killed and resumed, a refit and three tool runs on shared cores
def test_the_45_fit_grid_resumes_after_sigkill_to_the_same_15_candidates_then_refits_and_predicts(
        workdir: Path) -> None:
    proc = subprocess.Popen(_optimizer(workdir, *GRID), cwd=workdir, env=env_for_subprocess({"HKS_OFFLINE": "1"}),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    pkl = workdir / "results" / "results.pkl"
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None and not (pkl.exists() and len(finished_trials(workdir)) >= 2):
        time.sleep(0.2)
    assert proc.poll() is None, f"the search ended before it could be killed: {proc.stderr.read()[-3000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    before = finished_trials(workdir)
    assert 2 <= len(before) < 15

    resumed = _run(workdir, *GRID)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = finished_trials(workdir)
    points = [(t["result"]["space"]["nodes"], t["result"]["space"]["lr"]) for t in after]
    assert len(after) == 15 and sorted(points) == sorted(
        (n, lr) for n in (32, 64, 128, 256, 512) for lr in (0.001, 0.002, 0.003))
    assert all(t["result"]["status"] == "ok" and len(t["result"]["splits"]) == 3 for t in after)
    assert [t["result"] for t in after[:len(before)]] == [t["result"] for t in before]
    assert "grid of 15 points" in resumed.stderr

    with open(workdir / "results" / "cv_results.csv") as handle:
        rows = list(csv.DictReader(handle))
    means = [float(r["mean_test_score"]) for r in rows]
    assert len(rows) == 15 and [float(r["param_nodes"]) for r in rows] == [t["result"]["space"]["nodes"] for t in
                                                                            sorted(after, key=lambda t: t["tid"])]
    assert means == pytest.approx([-t["result"]["loss"] for t in sorted(after, key=lambda t: t["tid"])])
    assert [int(r["rank_test_score"]) for r in rows] == [1 + sum(m > mean for m in means) for mean in means]

    best = json.loads((workdir / "results" / "best.json").read_text())
    assert best["refit"]["tid"] == best["tid"] and best["refit"]["train_images"] == 90
    assert 0.0 <= best["refit"]["test_fine_accuracy"] <= 1.0
    assert Path(best["refit"]["model"]).name == "best_model_refit.keras"
    shown = json.loads(_run(workdir, "best", "--json").stdout)
    assert shown["cv_results"]["mean_test_score"] == pytest.approx(means)

    predicted = _run(workdir, "predict", "--input", "ml_req/mnist/t10k-images-idx3-ubyte.gz", "--out", "pred.csv")
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    lines = (workdir / "pred.csv").read_text().splitlines()
    assert lines[0] == "id,label" and [line.split(",")[0] for line in lines[1:]] == [str(i) for i in range(12)]
    assert all(0 <= int(line.split(",")[1]) < 10 for line in lines[1:])
    np.save(workdir / "bad.npy", np.zeros((2, 5, 5), dtype=np.uint8))
    refused = _run(workdir, "predict", "--input", "bad.npy", "--out", "pred.csv")
    assert refused.returncode == 1 and "the model takes (28, 28, 1)" in refused.stderr


def test_refit_is_off_without_cv_and_can_be_asked_for(workdir: Path) -> None:
    plain = ["--algo", "grid", "--objective", "neural_net.classic:mlp1", "--max-evals", "1", "--epochs", "1",
             "--no-plots"]
    first = _run(workdir, *plain)
    assert first.returncode == 0, first.stderr[-3000:]
    results = workdir / "results"
    assert "refit" not in json.loads((results / "best.json").read_text())
    assert not (results / "cv_results.csv").exists() and (results / "best_model.keras").exists()
    asked = _run(workdir, *plain[:-4], "2", "--epochs", "1", "--no-plots", "--refit")
    assert asked.returncode == 0, asked.stderr[-3000:]
    assert json.loads((results / "best.json").read_text())["refit"]["epochs"] == 1
    assert (results / "best_model_refit.keras").exists()


def test_a_cli_grid_with_cv_ranks_as_scikit_learns_grid_search_on_the_same_folds(tmp_path: Path) -> None:
    result = _run(tmp_path, "--algo", "grid", "--space", "tests.helpers.estimators:KNN_SPACE", "--objective",
                  "tests.helpers.estimators:knn_cv", "--no-plots")
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "results" / "cv_results.csv") as handle:
        ours = {(int(r["param_n_neighbors"]), r["param_weights"]): r for r in csv.DictReader(handle)}
    X, y = load_digits_xy()
    theirs = model_selection.GridSearchCV(
        KNeighborsClassifier(), {"n_neighbors": [1, 3, 5, 7], "weights": ["uniform", "distance"]},
        cv=model_selection.StratifiedKFold(3, shuffle=True, random_state=0)).fit(X, y).cv_results_
    assert len(ours) == 8
    for i, params in enumerate(theirs["params"]):
        row = ours[(params["n_neighbors"], params["weights"])]
        assert int(row["rank_test_score"]) == theirs["rank_test_score"][i], params
        assert float(row["mean_test_score"]) == pytest.approx(theirs["mean_test_score"][i], abs=1e-12)
        assert float(row["std_test_score"]) == pytest.approx(theirs["std_test_score"][i], abs=1e-12)
