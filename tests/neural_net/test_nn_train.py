"""The default objective trains on the validation split, returns a storable result and a model for raw images."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
from hyperopt import STATUS_FAIL, STATUS_OK

from caviar.errors import CaviarError
from caviar.objective import evaluate, to_plain
from neural_net import CNN, datasets
from neural_net.batches import Batches
from neural_net.datasets import Split
from neural_net.settings import Settings
from neural_net.space import DEMO_PARAMS
from neural_net.train import evaluate_test, objective, prediction_scores

# DEMO_PARAMS shrunk to run in seconds on a CPU: 4 base filters, 20 fully connected units.
SMALL: dict[str, Any] = {
    **DEMO_PARAMS,
    "batch_size": 16.0,
    "conv_hiddn_units_mult": 0.1,
    "fc_units_1_mult": 0.02,
    "one_more_fc": None,
    "residual": 1.0,
    "conv_pool_res_start_idx": 2.0,
    "first_conv": None,
    "pooling_type": "max",
    "nb_conv_pool_layers": 2,
}
HEAD_METRICS = ["accuracy", "loss"]


@pytest.fixture
def temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the objective's temporary model folders go, to check what is left behind."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def cifar100_env(cifar100_archive: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HKS_DATA_PATH", str(cifar100_archive))
    monkeypatch.setenv("HKS_EPOCHS", "2")
    return cifar100_archive


def test_objective_returns_a_plain_result_and_the_best_model(cifar100_env: Path, temp_dir: Path) -> None:
    result = objective(dict(SMALL))

    assert result["status"] == STATUS_OK
    assert to_plain(result) == result and json.dumps(result)
    history = result["history"]
    for prefix in ("", "val_"):
        for head in ("fine_outputs", "coarse_outputs"):
            for metric in HEAD_METRICS:
                assert len(history[f"{prefix}{head}_{metric}"]) == 2
        assert len(history[f"{prefix}loss"]) == 2
    for head in ("fine", "coarse"):
        accuracy, loss = history[f"val_{head}_outputs_accuracy"], history[f"val_{head}_outputs_loss"]
        assert result[f"{head}_best_accuracy"] == max(accuracy) and result[f"{head}_end_accuracy"] == accuracy[-1]
        assert result[f"{head}_best_loss"] == min(loss) and result[f"{head}_end_loss"] == loss[-1]
    assert result["loss"] == -result["fine_best_accuracy"]
    assert isinstance(result["n_params"], int) and result["n_params"] > 0
    assert result["train_seconds"] > 0 and result["epochs"] == 2 and result["dataset"] == "cifar100"
    assert (result["train_images"], result["validation_images"]) == (108, 12)
    assert re.fullmatch(r"model_\d\.\d{4}_[0-9a-f]{6}", result["model_name"])
    assert result["space"] == SMALL

    model_path = Path(result["artifacts"]["model"])
    assert model_path.name == "model.keras" and model_path.parent.parent == temp_dir
    assert model_path.parent.name.startswith("model-")  # in the runner's scratch folder, when there is one
    # What a user does with the file: raw uint8 images in, the fine head's probabilities out.
    model = keras.saving.load_model(model_path)
    data = datasets.load(Settings.from_env())
    assert data.validation.x.dtype == np.uint8
    probabilities = model.predict(data.validation.x, verbose=0)
    assert probabilities.shape == (12, 100)
    accuracy = np.mean(probabilities.argmax(axis=1) == data.validation.fine)
    assert accuracy == pytest.approx(result["fine_best_accuracy"])  # the best epoch's model
    assert prediction_scores(probabilities, data.validation.fine, "val")["val_loss"] == pytest.approx(
        history["val_fine_outputs_loss"][int(np.argmax(history["val_fine_outputs_accuracy"]))], rel=1e-4)

    test = evaluate_test(str(model_path))
    assert test == pytest.approx(prediction_scores(model.predict(data.test.x, verbose=0), data.test.fine, "test_fine"))
    assert sorted(test) == ["test_fine_accuracy", "test_fine_loss"]
    assert CNN.evaluate_best(str(model_path)) == test


def test_objective_on_a_data_set_without_coarse_labels(tmp_path: Path, write_dataset,
                                                       monkeypatch: pytest.MonkeyPatch, temp_dir: Path) -> None:
    folder = write_dataset("mnist", tmp_path / "mnist", n_train=100, n_test=30)
    monkeypatch.setenv("HKS_DATASET", "mnist")
    monkeypatch.setenv("HKS_DATA_PATH", str(folder))
    monkeypatch.setenv("HKS_EPOCHS", "1")
    monkeypatch.setenv("DATASET_SIZE", "60")
    monkeypatch.setenv("HKS_VALIDATION_SPLIT", "0.25")

    result = evaluate(objective, dict(SMALL))

    assert result["status"] == STATUS_OK, result.get("error")
    assert (result["train_images"], result["validation_images"]) == (45, 15)
    assert "fine_best_accuracy" in result and not [key for key in result if key.startswith("coarse")]
    assert sorted(result["history"]) == sorted(
        f"{prefix}{name}" for prefix in ("", "val_") for name in ("loss", "fine_outputs_accuracy", "fine_outputs_loss")
    )
    test = evaluate_test(result["artifacts"]["model"])
    assert sorted(test) == ["test_fine_accuracy", "test_fine_loss"] and 0.0 <= test["test_fine_accuracy"] <= 1.0


def test_cv_trains_one_model_per_stratified_fold_and_keeps_the_best_folds(
        tmp_path: Path, write_dataset, monkeypatch: pytest.MonkeyPatch, temp_dir: Path) -> None:
    folder = write_dataset("mnist", tmp_path / "mnist", n_train=60, n_test=20)
    for name, value in {"HKS_DATASET": "mnist", "HKS_DATA_PATH": str(folder), "HKS_EPOCHS": "1",
                        "HKS_CV": "2", "HKS_SEED": "3"}.items():
        monkeypatch.setenv(name, value)

    result = evaluate(objective, dict(SMALL))

    assert result["status"] == STATUS_OK, result.get("error")
    scores = [split["score"] for split in result["splits"]]
    assert result["folds"] == 2 and result["loss"] == pytest.approx(-np.mean(scores))
    assert result["std_test_score"] == pytest.approx(np.std(scores)) and result["accuracy"] == np.mean(scores)
    assert [(s["train_images"], s["validation_images"]) for s in result["splits"]] == [(30, 30), (30, 30)]
    assert all(len(s["history"]["val_fine_outputs_accuracy"]) == 1 for s in result["splits"])
    assert [p.name for p in temp_dir.iterdir()] == [Path(result["artifacts"]["model"]).parent.name]
    assert keras.saving.load_model(result["artifacts"]["model"]).output_shape == (None, 10)

    refit = CNN.refit(dict(SMALL), str(tmp_path / "best_model.keras"))
    assert (refit["train_images"], refit["epochs"]) == (60, 1) and 0.0 <= refit["test_fine_accuracy"] <= 1.0
    assert len(CNN.predict(str(tmp_path / "best_model.keras"), str(folder / "t10k-images-idx3-ubyte.gz"))) == 20


def test_a_diverging_trial_fails_alone(cifar100_env: Path, temp_dir: Path) -> None:
    diverged = evaluate(objective, {**SMALL, "lr_rate_mult": 1e12, "use_BN": False})

    assert diverged["status"] == STATUS_FAIL and "diverged" in diverged["error"]
    assert any(np.isnan(diverged["history"]["loss"])) and "artifacts" not in diverged
    assert not list(temp_dir.iterdir())  # its model folder is gone
    healthy = evaluate(objective, dict(SMALL))
    assert healthy["status"] == STATUS_OK and np.isfinite(healthy["loss"])


def test_an_error_clears_the_session_and_leaves_no_files(cifar100_env: Path, temp_dir: Path) -> None:
    with pytest.raises(KeyError, match="SGD"):
        objective({**SMALL, "optimizer": "SGD"})
    assert not list(temp_dir.iterdir())
    assert keras.layers.Dense(1).name == "dense"  # the failed trial's layers were dropped


def test_bad_settings_are_a_caviar_error_before_any_work(cifar100_env: Path, temp_dir: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HKS_EPOCHS", "many")
    with pytest.raises(CaviarError, match="HKS_EPOCHS='many' is not a positive integer"):
        objective(dict(SMALL))
    assert not list(temp_dir.iterdir())


def _split(n: int) -> Split:
    return Split(np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1), np.arange(n, dtype=np.int32),
                 np.arange(n, dtype=np.int32) // 2)


def _epoch(batches: Batches, epoch: int = 0) -> list[int]:
    """The rows of the stream's ``epoch``-th epoch, as Keras fetches them."""
    return [int(label) for i in range(len(batches)) for label in batches[epoch * len(batches) + i][1]["fine_outputs"]]


def test_batches_cover_every_image_once_per_epoch_in_a_seeded_order() -> None:
    split = _split(10)
    first, again = Batches(split, 4, seed=7), Batches(split, 4, seed=7)
    assert len(first) == 3 and [len(first[i][0]) for i in range(3)] == [4, 4, 2]
    assert first.num_batches is None  # endless: fit takes steps_per_epoch=len(batches)
    x, labels = first[0]
    assert x.dtype == np.uint8 and np.array_equal(x[:, 0, 0, 0], labels["fine_outputs"])
    assert np.array_equal(labels["coarse_outputs"], labels["fine_outputs"] // 2)
    epochs = [_epoch(first, e) for e in range(3)]
    assert epochs == [_epoch(again, e) for e in range(3)]  # the same seed, the same orders
    assert all(sorted(rows) == list(range(10)) for rows in epochs)
    assert len({tuple(rows) for rows in epochs}) == 3  # reshuffled each epoch
    assert _epoch(first, 1) == epochs[1]  # whenever, and in whatever order, batches are fetched
    assert _epoch(Batches(split, 4, seed=8)) != epochs[0]
    assert _epoch(Batches(split, 4), 2) == list(range(10))  # validation: in order, every epoch
    resumed = Batches(split, 4, seed=7, first_epoch=2)  # a trial resumed after its second epoch
    assert _epoch(resumed) == epochs[2]


def test_batches_without_coarse_labels_and_a_bad_size() -> None:
    assert list(Batches(Split(np.zeros((3, 1, 1, 1), np.uint8), np.zeros(3, np.int32)), 2)[0][1]) == ["fine_outputs"]
    with pytest.raises(ValueError, match="batch_size must be at least 1, got 0"):
        Batches(_split(3), 0)
