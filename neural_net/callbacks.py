"""Early stopping for Keras training: report each epoch, stop when told, checkpoint to resume.

``ReportEpochs`` reports the validation accuracy of every epoch through
``caviar.reporting`` (the fine head's, or ``val_accuracy`` for a one-output
model), sets ``model.stop_training`` when the scheduler stops the trial (and
leaves after the next batch when the worker lost the trial's lease), and
otherwise saves the model (``.keras``: weights and optimizer state) as the
trial's checkpoint with the history so far. ``resume`` loads that checkpoint
back when the trial starts again elsewhere, with the epoch to go on from
(``fit(initial_epoch=...)``) and the history of the epochs before it, so the
final history is that of an uninterrupted run.

Outside a Caviar run (no reporter), reports and checkpoints are no-ops.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import keras

from caviar import reporting
from caviar.objective import check_stop

log = logging.getLogger(__name__)

MONITORS = ("val_fine_outputs_accuracy", "val_accuracy")


class ReportEpochs(keras.callbacks.Callback):
    """Reports each epoch's validation accuracy, stops training when told, checkpoints otherwise.

    ``history``: the epochs trained before a restart (from ``resume``);
    ``self.history`` is the whole run's, theirs included.
    """

    def __init__(self, checkpoint_path: str | Path, history: dict[str, list[float]] | None = None,
                 monitors: tuple[str, ...] = MONITORS):
        super().__init__()
        self.checkpoint_path = str(checkpoint_path)
        self.history: dict[str, list[float]] = {k: list(v) for k, v in (history or {}).items()}
        self.monitors = monitors

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        check_stop()  # a worker that lost the trial's lease leaves after this batch, recording nothing

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        for key, value in logs.items():
            self.history.setdefault(key, []).append(float(value))
        monitor = next((m for m in self.monitors if m in logs), None)
        if monitor is None:
            raise KeyError(f"none of {list(self.monitors)} in this epoch's logs {sorted(logs)}: "
                           "give the model validation data and an accuracy metric")
        step = epoch + 1
        if not reporting.report(step, float(logs[monitor])):
            log.info("stopped by the scheduler after epoch %d (%s %.4f)", step, monitor, logs[monitor])
            self.model.stop_training = True
            return
        if step < self.params.get("epochs", step + 1):  # the last epoch needs no checkpoint
            self.model.save(self.checkpoint_path)
            reporting.save_checkpoint(self.checkpoint_path, step, {"history": self.history})


def resume(checkpoint_path: str | Path) -> tuple[keras.Model | None, int, dict[str, list[float]]]:
    """The trial's checkpointed model, the epoch to go on from and the history before it; (None, 0, {}) if none."""
    restored = reporting.restore_checkpoint(str(checkpoint_path))
    if restored is None:
        return None, 0, {}
    log.info("resuming training after epoch %d", restored.step)
    return keras.models.load_model(str(checkpoint_path)), restored.step, restored.info.get("history", {})
