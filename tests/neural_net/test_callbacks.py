"""The Keras side of early stopping on a tiny model: reports, a clean stop, and resuming to the same history."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from caviar import reporting
from neural_net.callbacks import ReportEpochs, resume

EPOCHS = 4


class KeepsEverything(reporting.Reporter):
    """An in-memory reporter: keeps reports and the latest checkpoint, stops after ``stop_at``."""

    def __init__(self, folder: Path, stop_at: int | None = None):
        self.folder, self.stop_at = folder, stop_at
        self.reports: list[tuple[int, float]] = []
        self.checkpoint: tuple[int, dict[str, Any]] | None = None

    def report(self, step: int, value: float) -> bool:
        self.reports.append((step, value))
        return not self.should_stop()

    def should_stop(self) -> bool:
        return self.stop_at is not None and any(step >= self.stop_at for step, _ in self.reports)

    def save_checkpoint(self, path: str, step: int, info: dict[str, Any] | None = None) -> None:
        shutil.copyfile(path, self.folder / "kept.keras")
        self.checkpoint = (step, info or {})

    def restore_checkpoint(self, dest: str) -> reporting.Checkpoint | None:
        if self.checkpoint is None:
            return None
        shutil.copyfile(self.folder / "kept.keras", dest)
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


class WorkerDied(Exception):
    pass


class DieAfter(keras.callbacks.Callback):
    """Ends training abruptly after ``epochs`` epochs, as a killed worker would (after the checkpoint)."""

    def __init__(self, epochs: int):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if epoch + 1 == self.epochs:
            raise WorkerDied()


def train(model: keras.Model, *callbacks: keras.callbacks.Callback, initial_epoch: int = 0) -> None:
    x, y = data()
    model.fit(x, y, validation_data=(x[:16], y[:16]), batch_size=16, epochs=EPOCHS, initial_epoch=initial_epoch,
              shuffle=False, verbose=0, callbacks=list(callbacks))


def test_reports_every_epoch_and_stops_cleanly_when_told(tmp_path: Path) -> None:
    reporter = KeepsEverything(tmp_path, stop_at=2)
    callback = ReportEpochs(tmp_path / "ckpt.keras")
    with reporting.reporting_to(reporter):
        train(tiny_model(), callback)
    assert [step for step, _ in reporter.reports] == [1, 2]
    assert [value for _, value in reporter.reports] == callback.history["val_accuracy"]
    assert len(callback.history["loss"]) == 2
    assert reporter.checkpoint is not None and reporter.checkpoint[0] == 1  # none after the stop


def test_a_run_resumed_from_its_checkpoint_ends_like_an_uninterrupted_one(tmp_path: Path) -> None:
    whole = ReportEpochs(tmp_path / "a.keras")
    uninterrupted = tiny_model()
    train(uninterrupted, whole)

    reporter = KeepsEverything(tmp_path)
    with reporting.reporting_to(reporter):
        with pytest.raises(WorkerDied):
            train(tiny_model(), ReportEpochs(tmp_path / "b.keras"), DieAfter(2))
        model, initial_epoch, history = resume(tmp_path / "c.keras")
        assert model is not None and initial_epoch == 2 == reporter.checkpoint[0]
        second = ReportEpochs(tmp_path / "c.keras", history)
        train(model, second, initial_epoch=initial_epoch)
    assert second.history.keys() == whole.history.keys()
    for key, values in whole.history.items():
        np.testing.assert_allclose(second.history[key], values, rtol=1e-5, err_msg=key)
    for resumed, straight in zip(model.get_weights(), uninterrupted.get_weights()):
        np.testing.assert_allclose(resumed, straight, rtol=1e-5, atol=1e-6)


def test_outside_a_run_training_is_unchanged(tmp_path: Path) -> None:
    callback = ReportEpochs(tmp_path / "ckpt.keras")
    train(tiny_model(), callback)
    assert len(callback.history["val_accuracy"]) == EPOCHS
    assert resume(tmp_path / "ckpt.keras") == (None, 0, {})
