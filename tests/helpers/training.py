"""A cheap, deterministic "training" that reports each epoch and checkpoints its state, for early-stopping tests.

Noisy gradient descent on a quadratic: the loss after each epoch depends on
the learning rate and the noise level, and every epoch's noise comes from
``default_rng([seed, epoch])``, so a run resumed from a checkpoint ends with
exactly the history of an uninterrupted one. Knobs come from the environment
(the experiment's ``env`` in the workers): ``TRAIN_EPOCHS`` (default
``EPOCHS``), ``EPOCH_SECONDS`` (a pause per epoch), ``KILL_AT_EPOCH`` with
``KILL_MARKER`` (SIGKILL its own process once, after that epoch's checkpoint).
"""

from __future__ import annotations

import math
import os
import signal
import tempfile
import time
from typing import Any

import numpy as np
from hyperopt import hp

from caviar import reporting

EPOCHS = 9
DIM = 8
BATCHES = 4
SPACE: dict[str, Any] = {
    "lr": hp.loguniform("lr", math.log(0.005), math.log(0.5)),
    "noise": hp.uniform("noise", 0.0, 1.0),
}


def numpy_training(params: dict[str, Any]) -> dict[str, Any]:
    """Train for $TRAIN_EPOCHS epochs, resuming from the trial's checkpoint if it has one."""
    epochs = int(os.environ.get("TRAIN_EPOCHS", EPOCHS))
    seed = int(os.environ.get("HKS_SEED", "0"))
    target = np.linspace(-1.0, 1.0, DIM)
    state = os.path.join(tempfile.mkdtemp(), "state.npy")
    weights, history, start = np.zeros(DIM), [], 0
    restored = reporting.restore_checkpoint(state)
    if restored is not None:
        weights, history, start = np.load(state), list(restored.info["history"]), restored.step
    for epoch in range(start, epochs):
        rng = np.random.default_rng([seed, epoch])
        for _ in range(BATCHES):
            weights = weights - params["lr"] * ((weights - target) + params["noise"] * rng.normal(size=DIM))
        history.append(float(np.sum((weights - target) ** 2)))
        time.sleep(float(os.environ.get("EPOCH_SECONDS", "0")))
        go_on = reporting.report(epoch + 1, history[-1])
        if go_on or reporting.pausing():  # a paused trial keeps the step it stopped at, to be promoted from
            np.save(state, weights)
            reporting.save_checkpoint(state, epoch + 1, {"history": history})
        if not go_on:
            raise reporting.TrialStopped()
        _maybe_die(epoch + 1)
    return {"loss": history[-1], "history": {"loss": history}}


numpy_training.max_steps = EPOCHS  # type: ignore[attr-defined]


def _maybe_die(epoch: int) -> None:
    """SIGKILL this process once at $KILL_AT_EPOCH (the marker file remembers it happened)."""
    if os.environ.get("KILL_AT_EPOCH") != str(epoch):
        return
    marker = os.environ["KILL_MARKER"]
    if not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)


def nan_at_first_epoch(params: dict[str, Any]) -> dict[str, Any]:
    """Diverges at once: reports NaN, and stops when told to."""
    for epoch in range(1, EPOCHS + 1):
        if not reporting.report(epoch, float("nan")):
            raise reporting.TrialStopped()
    return {"loss": float("nan")}


nan_at_first_epoch.max_steps = EPOCHS  # type: ignore[attr-defined]
