"""The Keras side of early stopping: reports, a clean stop, and resuming to the same history, bit for bit."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from caviar import reporting
from neural_net.callbacks import ReportEpochs, resume
from neural_net.train import objective
from tests.neural_net.test_nn_train import SMALL

EPOCHS = 4


class WorkerDied(Exception):
    pass


class KeepsEverything(reporting.Reporter):
    """An in-memory reporter: keeps reports and the latest checkpoint, stops after ``stop_at``.

    With ``die_after``, training ends abruptly right after that epoch's
    checkpoint is kept, as when its worker is killed.
    """

    def __init__(self, folder: Path, stop_at: int | None = None, die_after: int | None = None):
        self.folder, self.stop_at, self.die_after = folder, stop_at, die_after
        self.reports: list[tuple[int, float]] = []
        self.checkpoint: tuple[int, dict[str, Any]] | None = None

    def report(self, step: int, value: float) -> bool:
        self.reports.append((step, value))
        return not self.should_stop()

    def should_stop(self) -> bool:
        return self.stop_at is not None and any(step >= self.stop_at for step, _ in self.reports)

    def save_checkpoint(self, path: str, step: int, info: dict[str, Any] | None = None) -> None:
        shutil.copyfile(path, self.folder / "kept")
        self.checkpoint = (step, info or {})
        if step == self.die_after:
            self.die_after = None  # the trial's next run goes on
            raise WorkerDied()

    def restore_checkpoint(self, dest: str) -> reporting.Checkpoint | None:
        if self.checkpoint is None:
            return None
        shutil.copyfile(self.folder / "kept", dest)
        return reporting.Checkpoint(*self.checkpoint)


def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype("float32")
    return x, (x[:, 0] + x[:, 1] > 0).astype("int32")


def tiny_model() -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def train(model: keras.Model, *callbacks: keras.callbacks.Callback, initial_epoch: int = 0) -> None:
    x, y = data()
    model.fit(x, y, validation_data=(x[:16], y[:16]), batch_size=16, epochs=EPOCHS, initial_epoch=initial_epoch,
              shuffle=False, verbose=0, callbacks=list(callbacks))


def test_reports_every_epoch_and_stops_cleanly_when_told(tmp_path: Path) -> None:
    reporter = KeepsEverything(tmp_path, stop_at=2)
    callback = ReportEpochs(tmp_path / "ckpt.npz")
    with reporting.reporting_to(reporter):
        train(tiny_model(), callback)
    assert [step for step, _ in reporter.reports] == [1, 2]
    assert [value for _, value in reporter.reports] == callback.history["val_accuracy"]
    assert len(callback.history["loss"]) == 2
    assert reporter.checkpoint is not None and reporter.checkpoint[0] == 1  # none after the stop


def test_a_run_resumed_from_its_checkpoint_ends_like_an_uninterrupted_one(tmp_path: Path) -> None:
    whole = ReportEpochs(tmp_path / "a.npz")
    uninterrupted = tiny_model()
    train(uninterrupted, whole)

    reporter = KeepsEverything(tmp_path, die_after=2)
    with reporting.reporting_to(reporter):
        with pytest.raises(WorkerDied):
            train(tiny_model(), ReportEpochs(tmp_path / "b.npz"))
        model = tiny_model()
        initial_epoch, history = resume(tmp_path / "c.npz", model)
        assert initial_epoch == 2 == reporter.checkpoint[0]
        second = ReportEpochs(tmp_path / "c.npz", history)
        train(model, second, initial_epoch=initial_epoch)
    assert second.history == whole.history
    for resumed, straight in zip(model.get_weights(), uninterrupted.get_weights(), strict=True):
        np.testing.assert_array_equal(resumed, straight)


class Pauses(KeepsEverything):
    """Stopped by asha with promotions: the checkpoint of the step it stopped at is wanted."""

    def pausing(self) -> bool:
        return self.should_stop()


def test_a_paused_run_keeps_the_epoch_it_stopped_at_and_its_promotion_ends_like_an_uninterrupted_one(
    tmp_path: Path,
) -> None:
    whole = ReportEpochs(tmp_path / "a.npz")
    train(tiny_model(), whole)

    paused = Pauses(tmp_path, stop_at=2)
    with reporting.reporting_to(paused):
        train(tiny_model(), ReportEpochs(tmp_path / "b.npz"))
    assert [step for step, _ in paused.reports] == [1, 2] and paused.checkpoint[0] == 2

    promoted = KeepsEverything(tmp_path)
    promoted.checkpoint = paused.checkpoint
    with reporting.reporting_to(promoted):
        model = tiny_model()
        initial_epoch, history = resume(tmp_path / "c.npz", model)
        again = ReportEpochs(tmp_path / "c.npz", history)
        train(model, again, initial_epoch=initial_epoch)
    assert initial_epoch == 2 and [step for step, _ in promoted.reports] == [3, 4]
    assert again.history == whole.history


def test_a_cnn_trial_killed_after_an_epoch_resumes_to_the_uninterrupted_history_bit_for_bit(
        cifar100_archive: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The real objective and model: dropout, batch normalization, random flips, shuffled batches.

    Each of them drew differently after a restart: the flips' and dropout's seed
    generators started again from their first state, and the shuffled order
    raced Keras' prefetching of the next epoch.
    """
    monkeypatch.setenv("HKS_DATA_PATH", str(cifar100_archive))
    monkeypatch.setenv("HKS_EPOCHS", "3")
    params = dict(SMALL)
    assert params["use_BN"] and params["conv_dropout_drop_proba"] and params["fc_dropout_drop_proba"]

    uninterrupted = objective(params)

    reporter = KeepsEverything(tmp_path, die_after=1)
    with reporting.reporting_to(reporter):
        with pytest.raises(WorkerDied):
            objective(params)
        resumed = objective(params)
    assert [step for step, _ in reporter.reports] == [1, 2, 3]
    assert resumed["history"] == uninterrupted["history"]
    assert len(resumed["history"]["loss"]) == 3
    # The trial's model is its best epoch's, whichever side of the restart that epoch was on.
    artifacts = [keras.saving.load_model(run["artifacts"]["model"]) for run in (uninterrupted, resumed)]
    for resumed_weights, straight in zip(artifacts[1].get_weights(), artifacts[0].get_weights(), strict=True):
        np.testing.assert_array_equal(resumed_weights, straight)
def test_outside_a_run_training_is_unchanged(tmp_path: Path) -> None:
    callback = ReportEpochs(tmp_path / "ckpt.npz")
    train(tiny_model(), callback)
    assert len(callback.history["val_accuracy"]) == EPOCHS
    assert resume(tmp_path / "ckpt.npz", tiny_model()) == (0, {})


def test_a_checkpoint_of_another_model_is_refused(tmp_path: Path) -> None:
    with reporting.reporting_to(KeepsEverything(tmp_path, die_after=1)):
        with pytest.raises(WorkerDied):
            train(tiny_model(), ReportEpochs(tmp_path / "a.npz"))
        other = keras.Sequential([keras.Input((6,)), keras.layers.Dense(2, activation="softmax")])
        other.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        with pytest.raises(ValueError, match="not a checkpoint of this model"):
            resume(tmp_path / "b.npz", other)
