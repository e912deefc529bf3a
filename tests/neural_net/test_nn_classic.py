"""The classic example spaces and objectives, trained for one epoch on tiny official-format files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hyperopt import space_eval
from hyperopt.pyll import stochastic

from neural_net import classic
from caviar.errors import CaviarError
from optimizer.grid import grid_points, grid_size
from caviar.objective import evaluate

PAIRS = {
    "mlp1": (classic.MLP1_SPACE, classic.mlp1, "mnist"),
    "mlp2": (classic.MLP2_SPACE, classic.mlp2, "mnist"),
    "cnn": (classic.CNN_SPACE, classic.cnn, "fashion_mnist"),
}


def _point(space: dict) -> dict:
    return stochastic.sample(space, rng=np.random.default_rng(1))


def test_the_grids_have_the_published_sizes_and_the_cnn_space_is_for_tpe() -> None:
    assert grid_size(classic.MLP1_SPACE) == 15 and grid_size(classic.MLP2_SPACE) == 3 * 3 * 3 * 4 * 4
    first = next(grid_points(classic.MLP1_SPACE))
    assert space_eval(classic.MLP1_SPACE, {k: v[0] for k, v in first.items()}) == {
        "nodes": 32, "lr": 0.001, "epochs": 15, "batch_size": 64}
    with pytest.raises(CaviarError, match="'learning_rate'"):
        grid_size(classic.CNN_SPACE)


@pytest.mark.parametrize("name", PAIRS)
def test_each_pair_trains_on_its_data_set_and_scores_the_validation_split(
        name: str, tmp_path: Path, write_dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    space, objective, dataset = PAIRS[name]
    monkeypatch.setenv("HKS_DATA_PATH", str(write_dataset(dataset, tmp_path / dataset, n_train=40, n_test=10)))
    monkeypatch.setenv("HKS_EPOCHS", "1")
    result = evaluate(objective, _point(space))
    assert result["status"] == "ok", result.get("traceback")
    assert result["dataset"] == dataset and result["epochs"] == 1 and len(result["history"]["loss"]) == 1
    assert result["loss"] == -result["accuracy"] and 0.0 <= result["accuracy"] <= 1.0


def test_hks_cv_scores_by_stratified_folds(tmp_path: Path, write_dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HKS_DATA_PATH", str(write_dataset("mnist", tmp_path / "mnist", n_train=60, n_test=10)))
    monkeypatch.setenv("HKS_EPOCHS", "1")
    monkeypatch.setenv("HKS_CV", "2")
    result = classic.mlp1({"nodes": 32, "lr": 0.001, "epochs": 15, "batch_size": 64})
    scores = [split["score"] for split in result["splits"]]
    assert result["folds"] == 2 and len(scores) == 2 and result["loss"] == pytest.approx(-np.mean(scores))
    assert all(len(split["history"]["accuracy"]) == 1 and split["fit_time"] > 0 for split in result["splits"])


def test_settings_default_to_the_pairs_data_and_split_and_env_wins() -> None:
    assert classic.settings_for("mnist", environ={}).dataset == "mnist"
    cnn = classic.settings_for("fashion_mnist", 0.2, environ={})
    assert (cnn.dataset, cnn.validation_split) == ("fashion_mnist", 0.2)
    given = classic.settings_for("fashion_mnist", 0.2, environ={"HKS_DATASET": "mnist", "HKS_VALIDATION_SPLIT": "0.3"})
    assert (given.dataset, given.validation_split) == ("mnist", 0.3)


@pytest.mark.parametrize("raw", ["1", "-2", "two"])
def test_a_bad_hks_cv_is_one_clear_error(raw: str) -> None:
    with pytest.raises(CaviarError, match=f"^HKS_CV must be .*, got '?{raw}'?$"):
        classic.cv_folds({"HKS_CV": raw})


def test_the_classifier_keeps_the_callers_labels() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 8)).astype(np.float32), np.repeat(["cat", "dog", "eel"], 10)
    model = classic.MLP1Classifier(nodes=8, epochs=1).fit(x, y)
    assert model.predict_proba(x).shape == (30, 3) and set(model.predict(x)) <= {"cat", "dog", "eel"}
