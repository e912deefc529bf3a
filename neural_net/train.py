"""The search's default objective: train one architecture and score it on the validation split.

``objective`` (import path ``neural_net.train:objective``) reads its settings
from the environment at each call (see ``neural_net.settings``), trains for
``HKS_EPOCHS`` epochs and returns a hyperopt result whose loss is minus the
best validation accuracy of the fine head. The model of that best epoch is
saved to a fresh temporary ``model.keras`` and returned as an artifact; the
runner keeps the best trial's file and deletes the others. The test split is
only touched by ``evaluate_test``, which the master runs on the final best
model (``objective.evaluate_best``); ``objective.draw`` is ``model.plot``, which
the master uses for model_demo.png and model_best.png.
"""

from __future__ import annotations

import gc
import logging
import math
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf
from hyperopt import STATUS_FAIL, STATUS_OK

from neural_net import datasets
from neural_net.datasets import Data, Split
from neural_net.model import COARSE_HEAD, FINE_HEAD, build_model, head_names, plot
from neural_net.settings import Settings
from caviar.objective import ARTIFACTS_KEY, to_plain

log = logging.getLogger(__name__)

EVAL_BATCH_SIZE = 256


def batches(split: Split, batch_size: int, shuffle_seed: int | None = None) -> tf.data.Dataset:
    """A tf.data pipeline of (images, {head: labels}); shuffled anew each epoch when given a seed."""
    labels = {FINE_HEAD: split.fine}
    if split.coarse is not None:
        labels[COARSE_HEAD] = split.coarse
    pipeline = tf.data.Dataset.from_tensor_slices((split.x, labels))
    if shuffle_seed is not None:
        pipeline = pipeline.shuffle(len(split), seed=shuffle_seed, reshuffle_each_iteration=True)
    return pipeline.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def _fresh_session() -> None:
    """Drop the previous trial's models and graphs so memory does not grow across trials."""
    keras.backend.clear_session()
    gc.collect()


def objective(params: dict[str, Any]) -> dict[str, Any]:
    """Train the architecture ``params`` on the settings' data set and return a hyperopt result.

    A diverging trial (non-finite loss) returns a failed result with its
    history; any other error (out of memory included) is raised after the
    Keras session is cleared, and ``caviar.objective.evaluate`` records it
    as a failed trial.
    """
    settings = Settings.from_env()
    data = datasets.load(settings)
    model_dir = Path(tempfile.mkdtemp())  # "tmp…": caviar.runner.discard_artifacts removes such folders whole
    result: dict[str, Any] = {"status": STATUS_FAIL}
    try:
        _fresh_session()
        keras.utils.set_random_seed(settings.seed)
        result = _train(params, settings, data, model_dir / "model.keras")
    finally:
        _fresh_session()
        if result["status"] != STATUS_OK:
            shutil.rmtree(model_dir, ignore_errors=True)
    return result


def _train(params: dict[str, Any], settings: Settings, data: Data, model_path: Path) -> dict[str, Any]:
    """Fit, saving the best epoch's model to ``model_path``, and summarize the history."""
    model = build_model(params, data.input_shape, data.n_fine, data.n_coarse, flip=data.spec.flip)
    heads = head_names(data.n_coarse)
    batch_size = int(params["batch_size"])
    log.info(
        "training %d parameters on %d %s images (%d for validation), %d epochs, batches of %d",
        model.count_params(), len(data.train), data.spec.title, len(data.validation), settings.epochs, batch_size,
    )
    start = time.monotonic()
    history = model.fit(
        batches(data.train, batch_size, shuffle_seed=settings.seed),
        validation_data=batches(data.validation, batch_size),
        epochs=settings.epochs,
        shuffle=False,  # the pipeline shuffles itself; Keras would only warn that it cannot
        verbose=1 if sys.stdout.isatty() else 2,
        callbacks=[
            keras.callbacks.TerminateOnNaN(),
            keras.callbacks.ModelCheckpoint(
                model_path, monitor=f"val_{FINE_HEAD}_accuracy", mode="max", save_best_only=True
            ),
        ],
    ).history
    history = {key: [float(value) for value in values] for key, values in history.items()}
    common = {
        "history": history,
        "space": to_plain(dict(params)),
        "n_params": int(model.count_params()),
        "train_seconds": time.monotonic() - start,
        "dataset": data.spec.name,
        "train_images": len(data.train),
        "validation_images": len(data.validation),
        "epochs": len(history["loss"]),
    }
    if not all(math.isfinite(value) for values in history.values() for value in values):
        log.warning("trial diverged: non-finite loss")
        return {"status": STATUS_FAIL, "error": "training diverged: the loss became NaN or infinite", **common}

    scores = summarize(history, heads)
    best = scores["fine_best_accuracy"]
    return {
        "loss": -best,
        "status": STATUS_OK,
        **scores,
        **common,
        "model_name": f"model_{best:.4f}_{uuid.uuid4().hex[:6]}",
        ARTIFACTS_KEY: {"model": str(model_path)},
    }


def summarize(history: dict[str, list[float]], heads: tuple[str, ...]) -> dict[str, float]:
    """Best and last validation accuracy and loss of each head, as ``fine_best_accuracy`` etc."""
    scores: dict[str, float] = {}
    for name in heads:
        prefix = name.removesuffix("_outputs")
        accuracy, loss = history[f"val_{name}_accuracy"], history[f"val_{name}_loss"]
        scores |= {
            f"{prefix}_best_accuracy": max(accuracy),
            f"{prefix}_best_loss": min(loss),
            f"{prefix}_end_accuracy": accuracy[-1],
            f"{prefix}_end_loss": loss[-1],
        }
    return scores


def evaluate_test(model_path: str) -> dict[str, float]:
    """Score a saved model on the test split of the settings' data set: ``test_fine_accuracy`` etc."""
    data = datasets.load(Settings.from_env())
    _fresh_session()
    model = keras.models.load_model(model_path)
    scores = model.evaluate(batches(data.test, EVAL_BATCH_SIZE), return_dict=True, verbose=0)
    return {
        f"test_{name.removesuffix('_outputs')}_{metric}": float(scores[f"{name}_{metric}"])
        for name in head_names(data.n_coarse)
        for metric in ("accuracy", "loss")
    }


# What the master looks for on an objective: the final test of the best model, and model diagrams.
objective.evaluate_best = evaluate_test  # type: ignore[attr-defined]
objective.draw = plot  # type: ignore[attr-defined]
