"""Early stopping for Keras training: report each epoch, stop when told, checkpoint to resume.

``ReportEpochs`` reports the validation accuracy of every epoch through
``caviar.reporting`` (the fine head's, or ``val_accuracy`` for a one-output
model), sets ``model.stop_training`` when the scheduler stops the trial (and
leaves after the next batch when the worker lost the trial's lease), and
otherwise (or when asha pauses the trial, to promote it later) saves the
model's training state as the trial's checkpoint with the history so far.
``resume`` restores that state, when the trial starts again elsewhere (a
promotion included), into the model built anew as for a fresh trial, and returns the
epoch to go on from (``fit(initial_epoch=...)``) and the history of the epochs
before it, so the final history is that of an uninterrupted run, bit for bit.

The training state is every variable a training step reads: the weights, the
batch normalization statistics, the optimizer's (its step count and moments)
and the states of the seed generators that draw dropout masks and flips. A
``.keras`` file (``model.save``) holds no seed generator state, so a model
loaded from one drew the masks and flips of its first epoch again. Hence a
numpy archive of the variables, in the order of ``model.variables`` and then
``model.optimizer.variables``, restored into the model that the trial's own
builder made: compiled as a fresh trial's, with the same variables in the
same order.

Outside a Caviar run (no reporter), reports and checkpoints are no-ops.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import keras
import numpy as np

from caviar import reporting
from caviar.objective import check_stop

log = logging.getLogger(__name__)

MONITORS = ("val_fine_outputs_accuracy", "val_accuracy")


class ReportEpochs(keras.callbacks.Callback):
    """Reports each epoch's validation accuracy, stops training when told, checkpoints otherwise.

    ``history``: the epochs trained before a restart (from ``resume``);
    ``self.history`` is the whole run's, theirs included. ``carried``: files
    that the checkpoint takes along as they are at each checkpoint (those
    present), such as the best epoch's weights that an earlier callback wrote.
    """

    def __init__(self, checkpoint_path: str | Path, history: dict[str, list[float]] | None = None,
                 monitors: tuple[str, ...] = MONITORS, carried: tuple[str | Path, ...] = ()):
        super().__init__()
        self.checkpoint_path = str(checkpoint_path)
        self.history: dict[str, list[float]] = {k: list(v) for k, v in (history or {}).items()}
        self.monitors, self.carried = monitors, carried

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
        go_on = reporting.report(step, float(logs[monitor]))
        if not go_on:
            log.info("stopped by the scheduler after epoch %d (%s %.4f)", step, monitor, logs[monitor])
            self.model.stop_training = True
        if (go_on or reporting.pausing()) and step < self.params.get("epochs", step + 1):  # not after the last
            state = {f"state_{i}": keras.ops.convert_to_numpy(v) for i, v in enumerate(training_state(self.model))}
            files = {f"file_{i}": np.frombuffer(Path(path).read_bytes(), np.uint8)
                     for i, path in enumerate(self.carried) if Path(path).exists()}
            with open(self.checkpoint_path, "wb") as handle:
                np.savez(handle, **state, **files)
            reporting.save_checkpoint(self.checkpoint_path, step, {"history": self.history})


def training_state(model: keras.Model) -> list[keras.Variable]:
    """Every variable a training step of ``model`` reads, seed generators' and optimizer's included."""
    return [*model.variables, *model.optimizer.variables]


def resume(checkpoint_path: str | Path, model: keras.Model,
           carried: tuple[str | Path, ...] = ()) -> tuple[int, dict[str, list[float]]]:
    """Restore the trial's checkpoint into ``model``: the epoch to go on from and the history before it.

    ``model`` is built and compiled as for a fresh trial (same builder, same
    parameters, same random seed); it is left untouched, and (0, {}) returned,
    when the trial has no checkpoint. ``carried``: the same files as
    ``ReportEpochs``', written back where the checkpoint holds them.
    """
    restored = reporting.restore_checkpoint(str(checkpoint_path))
    if restored is None:
        return 0, {}
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    state = training_state(model)
    with np.load(checkpoint_path) as saved:
        values = [saved[f"state_{i}"] for i in range(sum(name.startswith("state_") for name in saved.files))]
        files = {path: saved[f"file_{i}"].tobytes() for i, path in enumerate(carried) if f"file_{i}" in saved.files}
    shapes = [tuple(v.shape) for v in state]
    if shapes != [value.shape for value in values]:
        raise ValueError(f"the checkpoint {checkpoint_path} holds variables of shapes {[v.shape for v in values]}, "
                         f"not this model's {shapes}: not a checkpoint of this model")
    for variable, value in zip(state, values, strict=True):
        variable.assign(value)
    for path, content in files.items():
        Path(path).write_bytes(content)
    log.info("resuming training after epoch %d", restored.step)
    return restored.step, restored.info.get("history", {})
