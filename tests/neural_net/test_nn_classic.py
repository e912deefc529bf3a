"""The classic example spaces and objectives, trained for one epoch on tiny official-format files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hyperopt import space_eval
from hyperopt.pyll import stochastic

from caviar.errors import CaviarError
from caviar.family import load_family
from caviar.objective import evaluate
from caviar.runner import run_trial
from caviar.schedulers import CONFIG_ENV
from caviar.store.local import LocalStore
from neural_net import classic
from neural_net.settings import SETTINGS, Settings
from optimizer.grid import grid_points, grid_size
from tests.helpers.trials import enqueue_points

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
    assert Path(result["artifacts"]["model"]).is_file()  # the best fold's model


def test_with_hks_cv_asha_stops_a_candidate_after_a_low_first_fold(
        tmp_path: Path, write_dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    assert classic.mlp1.scheduler == "none" and classic.mlp1.max_steps() is None
    monkeypatch.setenv("HKS_DATA_PATH", str(write_dataset("mnist", tmp_path / "mnist", n_train=90, n_test=10)))
    monkeypatch.setenv("HKS_EPOCHS", "1")
    monkeypatch.setenv("HKS_CV", "3")
    assert classic.mlp1.max_steps() == 3
    monkeypatch.setenv(CONFIG_ENV, json.dumps({"name": "asha", "min_epochs": 1, "reduction_factor": 3,
                                               "max_epochs": classic.mlp1.max_steps()}))
    store = LocalStore()
    for tid in enqueue_points(store, [{"nodes": 1}, {"nodes": 2}]):  # two candidates whose first fold scored 1.0
        store.claim("peer")
        assert store.report(tid, "peer", 1, -1.0)
    [tid] = enqueue_points(store, [{"nodes": 32, "lr": 0.001, "epochs": 15, "batch_size": 64}])
    result, _ = run_trial(store, store.claim("w"), classic.mlp1, "w", 60.0)
    assert result["status"] == "ok" and result["stopped"] is True and result["stopped_at"] == 1
    assert len(result["splits"]) == 1 and result["loss"] == -result["splits"][0]["score"]
    assert next(d for d in store.trial_docs() if d["tid"] == tid)["reports"] == {"1": result["loss"]}


def test_settings_default_to_the_pairs_data_and_split_and_env_wins() -> None:
    assert classic.settings_for("mnist", environ={}).dataset == "mnist"
    cnn = classic.settings_for("fashion_mnist", 0.2, environ={})
    assert (cnn.dataset, cnn.validation_split) == ("fashion_mnist", 0.2)
    given = classic.settings_for("fashion_mnist", 0.2, environ={"HKS_DATASET": "mnist", "HKS_VALIDATION_SPLIT": "0.3"})
    assert (given.dataset, given.validation_split) == ("mnist", 0.3)


@pytest.mark.parametrize("raw", ["1", "-2", "two"])
def test_a_bad_hks_cv_is_one_clear_error(raw: str) -> None:
    with pytest.raises(CaviarError, match=f"^HKS_CV='{raw}' is not 0 \\(off\\) or a number of folds"):
        Settings.from_env({"HKS_CV": raw})


def test_the_pairs_are_families_with_the_cnn_settings_and_their_own_defaults() -> None:
    assert load_family("neural_net.classic:mlp1") is classic.mlp1
    for family in (classic.mlp1, classic.mlp2, classic.cnn):
        assert (family.metric, family.maximize, family.cv_setting) == ("accuracy", True, "HKS_CV")
        assert [s.flag for s in family.settings] == [s.flag for s in SETTINGS]
        assert {s.env: s for s in family.settings}["HKS_CV"] is {s.env: s for s in SETTINGS}["HKS_CV"]
    defaults = {s.env: s.default for s in classic.cnn.settings}
    assert (defaults["HKS_DATASET"], defaults["HKS_VALIDATION_SPLIT"], defaults["HKS_EPOCHS"]) == (
        "fashion_mnist", 0.2, None)
    assert classic.mlp2.space == "neural_net.classic:MLP2_SPACE"


def test_a_trial_keeps_its_model_and_a_refit_trains_on_everything_then_predicts(
        tmp_path: Path, write_dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = write_dataset("mnist", tmp_path / "mnist", n_train=40, n_test=10)
    monkeypatch.setenv("HKS_DATA_PATH", str(folder))
    monkeypatch.setenv("HKS_EPOCHS", "1")
    point = {"nodes": 32, "lr": 0.001, "epochs": 15, "batch_size": 64}
    result = classic.mlp1(point)
    kept = result["artifacts"]["model"]
    assert classic.mlp1.evaluate_best(kept)["test_fine_accuracy"] >= 0.0

    refit = classic.mlp1.refit(point, str(tmp_path / "best_model.keras"))
    assert refit["train_images"] == 40 and refit["epochs"] == 1 and 0.0 <= refit["test_fine_accuracy"] <= 1.0
    official = classic.mlp1.predict(str(tmp_path / "best_model.keras"), str(folder / "t10k-images-idx3-ubyte.gz"))
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    np.save(tmp_path / "three.npy", images)
    from_npy = classic.mlp1.predict(str(tmp_path / "best_model.keras"), str(tmp_path / "three.npy"))
    assert [i for i, _ in official] == list(range(10)) and [i for i, _ in from_npy] == [0, 1, 2]
    assert all(0 <= label < 10 for _, label in official + from_npy)
    np.save(tmp_path / "floats.npy", images.astype(np.float32))
    with pytest.raises(CaviarError, match="holds float32 values"):
        classic.mlp1.predict(str(tmp_path / "best_model.keras"), str(tmp_path / "floats.npy"))
    np.save(tmp_path / "small.npy", images[:, :8, :8])
    with pytest.raises(CaviarError, match=r"shape \(8, 8\), the model takes \(28, 28, 1\)"):
        classic.mlp1.predict(str(tmp_path / "best_model.keras"), str(tmp_path / "small.npy"))


def test_the_classifier_keeps_the_callers_labels() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 8)).astype(np.float32), np.repeat(["cat", "dog", "eel"], 10)
    model = classic.MLP1Classifier(nodes=8, epochs=1).fit(x, y)
    assert model.predict_proba(x).shape == (30, 3) and set(model.predict(x)) <= {"cat", "dog", "eel"}
