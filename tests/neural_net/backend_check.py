"""A very short training of a tiny model, saved and reloaded: what every Keras backend must get right.

Keras fixes its backend per process, so the tests call ``run`` in their own
process (TensorFlow) and ``python -m tests.neural_net.backend_check FOLDER``
under ``KERAS_BACKEND=jax``, which prints the same summary as JSON. Each run
compiles its model anew (seconds under JAX), so the subprocess trains once and
the determinism of a seed is shown in process.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import keras
import numpy as np

from neural_net.batches import Batches
from neural_net.datasets import Split
from neural_net.model import build_model, gpu_capabilities, inference_model, precision_policy
from neural_net.train import prediction_scores
from tests.neural_net.test_nn_model import TINY

SHAPE, N_FINE, N_COARSE, N_IMAGES = (8, 8, 3), 4, 2, 24


def train_once(path: Path) -> dict[str, Any]:
    """One epoch on random uint8 images, with flips and shuffling; the inference model saved to ``path``."""
    rng = np.random.default_rng(0)
    fine = rng.integers(0, N_FINE, N_IMAGES).astype(np.int32)
    split = Split(rng.integers(0, 256, (N_IMAGES, *SHAPE), dtype=np.uint8), fine, fine % N_COARSE)
    keras.utils.set_random_seed(0)
    model = build_model(TINY, SHAPE, N_FINE, N_COARSE)
    batches, checks = Batches(split, 8, seed=0), Batches(split, 8)
    history = model.fit(batches, steps_per_epoch=len(batches), validation_data=checks, validation_steps=len(checks),
                        epochs=1, shuffle=False, verbose=0).history
    inference_model(model).save(path)
    probabilities = keras.saving.load_model(path).predict(split.x, verbose=0)
    return {
        "history": {key: [float(value) for value in values] for key, values in history.items()},
        "reloaded_accuracy": prediction_scores(probabilities, split.fine, "reloaded")["reloaded_accuracy"],
    }


def run(folder: Path, times: int) -> dict[str, Any]:
    """Train ``times`` times from the same seed, and say under which backend and dtype policy."""
    return {
        "backend": keras.config.backend(),
        "runs": [train_once(folder / f"model_{i}.keras") for i in range(times)],
        "policy": keras.config.dtype_policy().name,
        "expected_policy": precision_policy(gpu_capabilities()),
    }


if __name__ == "__main__":
    print(json.dumps(run(Path(sys.argv[1]), times=1)))
