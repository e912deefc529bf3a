"""The search's default objective: train one architecture and score it on the validation split.

``objective`` (what the family ``neural_net:CNN`` trains) reads its settings
from the environment at each call (see ``neural_net.settings``), trains for
``HKS_EPOCHS`` epochs and returns a hyperopt result whose loss is minus the
best validation accuracy of the fine head. The model of that best epoch, as
``model.inference_model`` (raw uint8 images in, fine class probabilities
out), is saved to a fresh temporary ``model.keras`` and returned as an
artifact; the runner keeps the best trial's file and deletes the others. The
test split is only touched by ``evaluate_test``, which the master runs on the
final best model (``CNN.evaluate_best``) exactly as a user would:
``predict`` on the raw test images.

With ``HKS_CV=K`` (``--cv K``) a trial trains K models instead, one per
stratified fold of the training and validation images together (seeded by
``HKS_SEED``, so every trial of a search sees the same folds): its score is the
mean over the folds of each fold's best held-out accuracy, its result keeps
each fold's score and history (``caviar.cv.cross_validate``), and the model of
its best fold is its artifact. Folds are built one at a time, so a trial holds
one fold's copy of the images beside the data set, and takes K times as long.
``refit`` trains the chosen point once more on all of those images, for
``HKS_EPOCHS`` epochs, and scores it on the test split.

Batches come from ``neural_net.batches.Batches``, a ``keras.utils.PyDataset``
of numpy arrays, so training needs no TensorFlow and runs under every Keras
backend.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import math
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np

from caviar.cv import cross_validate
from caviar.errors import CaviarError
from caviar.objective import ARTIFACTS_KEY, STATUS_FAIL, STATUS_OK, TRIAL_DIR_ENV, to_plain
from neural_net import datasets
from neural_net.batches import Batches
from neural_net.callbacks import ReportEpochs, resume
from neural_net.datasets import Data, Split, training_pool
from neural_net.model import FINE_HEAD, build_model, head_names, inference_model
from neural_net.settings import Settings

log = logging.getLogger(__name__)

EVAL_BATCH_SIZE = 256


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
    if settings.cv:
        return _cross_validated(params, settings, data)
    return _trained(params, settings, data)


def _trained(params: dict[str, Any], settings: Settings, data: Data) -> dict[str, Any]:
    """Train on ``data.train``, scored on ``data.validation``; the model is kept only if the trial is ok."""
    # In the runner's scratch folder of the trial, which it deletes after the trial; called by hand, a temp folder.
    model_dir = Path(tempfile.mkdtemp(prefix="model-", dir=os.environ.get(TRIAL_DIR_ENV)))
    result: dict[str, Any] = {"status": STATUS_FAIL}
    try:
        _fresh_session()
        keras.utils.set_random_seed(settings.seed)
        result = _train(params, settings, data, model_dir / "model.keras", resumable=not settings.cv)
    finally:
        _fresh_session()
        if result["status"] != STATUS_OK:
            shutil.rmtree(model_dir, ignore_errors=True)
    return result


def _train(params: dict[str, Any], settings: Settings, data: Data, model_path: Path,
           resumable: bool = True) -> dict[str, Any]:
    """Fit, saving the best epoch's inference model to ``model_path``, and summarize the history.

    A ``resumable`` run reports each epoch (so a scheduler can stop it) and checkpoints it, and
    goes on from the trial's last checkpoint if it has one (its worker died, or the search was
    interrupted). The folds of a cross-validated trial do neither: their epochs are not the trial's.
    """
    checkpoint, best_weights = model_path.with_name("checkpoint.npz"), model_path.with_name("best.weights.h5")
    monitor = f"val_{FINE_HEAD}_accuracy"
    model = build_model(params, data.input_shape, data.n_fine, data.n_coarse, flip=data.spec.flip)
    initial_epoch, earlier = resume(checkpoint, model, (best_weights,)) if resumable else (0, {})
    reports = [ReportEpochs(checkpoint, earlier, carried=(best_weights,))] if resumable else []
    heads = head_names(data.n_coarse)
    batch_size = int(params["batch_size"])
    log.info(
        "training %d parameters on %d %s images (%d for validation), %d epochs, batches of %d",
        model.count_params(), len(data.train), data.spec.title, len(data.validation), settings.epochs, batch_size,
    )
    start = time.monotonic()
    history = _fit(model, data.train, batch_size, settings, data.validation, [
        keras.callbacks.ModelCheckpoint(  # before ReportEpochs, which carries its file in the checkpoint
            best_weights, monitor=monitor, mode="max", save_best_only=True, save_weights_only=True,
            initial_value_threshold=max(earlier[monitor]) if earlier else None,  # the best before a restart
        ),
        *reports,
    ], initial_epoch)
    if reports:  # the epochs before a restart included
        history = reports[0].history
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

    model.load_weights(best_weights)
    inference_model(model).save(model_path)
    best_weights.unlink()
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


def _fit(model: keras.Model, train: Split, batch_size: int, settings: Settings, validation: Split | None = None,
         callbacks: list[keras.callbacks.Callback] | None = None, initial_epoch: int = 0) -> dict[str, list[float]]:
    """The one training loop of trials and refits: ``settings.epochs`` epochs, stopped by a NaN loss."""
    batches = Batches(train, batch_size, seed=settings.seed, first_epoch=initial_epoch)
    checks = None if validation is None else Batches(validation, batch_size)
    history = model.fit(
        batches,
        steps_per_epoch=len(batches),
        validation_data=checks,
        validation_steps=None if checks is None else len(checks),
        epochs=settings.epochs,
        initial_epoch=initial_epoch,
        shuffle=False,  # the batches shuffle themselves
        verbose=1 if sys.stdout.isatty() else 2,
        callbacks=[keras.callbacks.TerminateOnNaN(), *(callbacks or [])],
    ).history
    return {key: [float(value) for value in values] for key, values in history.items()}


def _cross_validated(params: dict[str, Any], settings: Settings, data: Data) -> dict[str, Any]:
    """One trial by K-fold cross-validation; the best fold's model is the artifact, the others are deleted."""
    pool = training_pool(data)
    models: list[Path | None] = []

    def fold(train: np.ndarray, test: np.ndarray) -> dict[str, Any]:
        log.info("fold %d of %d", len(models) + 1, settings.cv)
        fold_data = dataclasses.replace(data, train=pool.take(train), validation=pool.take(test))
        outcome = _trained(params, settings, fold_data)
        models.append(Path(outcome[ARTIFACTS_KEY]["model"]) if outcome["status"] == STATUS_OK else None)
        return {"score": outcome.get("fine_best_accuracy", math.nan), "history": outcome["history"],
                "epochs": outcome["epochs"], "train_images": len(train), "validation_images": len(test)}

    with discarded_on_error(models):
        result = cross_validate(fold, pool.fine, k=settings.cv, seed=settings.seed)
    result |= {"space": to_plain(dict(params)), "dataset": data.spec.name, "folds": settings.cv,
               "accuracy": result["mean_test_score"]}
    return keep_best_fold(result, models)


@contextlib.contextmanager
def discarded_on_error(models: list[Path | None]) -> Iterator[None]:
    """Delete the folders of the folds' saved models if cross-validation stops with an error."""
    try:
        yield
    except BaseException:
        for path in models:
            if path is not None:
                shutil.rmtree(path.parent, ignore_errors=True)
        raise


def keep_best_fold(result: dict[str, Any], models: list[Path | None]) -> dict[str, Any]:
    """A cross-validated result with its best fold's saved model (each in a "tmp…" folder) as its artifact.

    The other folds' folders are deleted, and all of them for a failed result.
    """
    scores = [split["score"] for split in result["splits"]]
    best = int(np.nanargmax(scores)) if any(map(math.isfinite, scores)) else None
    for i, path in enumerate(models):
        if path is not None and (i != best or result["status"] != STATUS_OK):
            shutil.rmtree(path.parent, ignore_errors=True)
    if result["status"] == STATUS_OK and best is not None and models[best] is not None:
        result[ARTIFACTS_KEY] = {"model": str(models[best])}
    return result


def refit(params: dict[str, Any], out_path: str) -> dict[str, Any]:
    """Train ``params`` on the training and validation images together, save its inference model, test it.

    The chosen point's final model: ``HKS_EPOCHS`` epochs (no held-out images,
    so no best epoch to pick), saved to ``out_path`` and scored as
    ``evaluate_test`` scores. A diverging fit raises a CaviarError.
    """
    settings = Settings.from_env()
    data = datasets.load(settings)
    pool = training_pool(data)
    _fresh_session()
    keras.utils.set_random_seed(settings.seed)
    model = build_model(params, data.input_shape, data.n_fine, data.n_coarse, flip=data.spec.flip)
    log.info("refitting %s on %d %s images, %d epochs", params, len(pool), data.spec.title, settings.epochs)
    start = time.monotonic()
    history = _fit(model, pool, int(params["batch_size"]), settings)
    if not all(math.isfinite(value) for values in history.values() for value in values):
        raise CaviarError(f"the refit of {params} diverged: the loss became NaN or infinite")
    inference_model(model).save(out_path)
    _fresh_session()
    return {"train_images": len(pool), "epochs": len(history["loss"]), "train_seconds": time.monotonic() - start,
            **evaluate_test(out_path)}


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


def evaluate_test(model_path: str, settings: Settings | None = None) -> dict[str, float]:
    """Score a saved model on the raw test images of the data set (of ``settings``, default the environment's).

    As a user of the file would; returns ``test_fine_accuracy`` and
    ``test_fine_loss`` (the mean cross-entropy).
    """
    data = datasets.load(settings or Settings.from_env())
    _fresh_session()
    model = keras.saving.load_model(model_path)
    probabilities = np.asarray(model.predict(data.test.x, batch_size=EVAL_BATCH_SIZE, verbose=0), dtype=np.float64)
    return prediction_scores(probabilities, data.test.fine, "test_fine")


def prediction_scores(probabilities: np.ndarray, labels: np.ndarray, prefix: str) -> dict[str, float]:
    """``{prefix}_accuracy`` and ``{prefix}_loss`` (mean cross-entropy) of class probabilities against labels."""
    picked = probabilities[np.arange(len(labels)), labels]
    return {
        f"{prefix}_accuracy": float(np.mean(probabilities.argmax(axis=1) == labels)),
        f"{prefix}_loss": float(-np.mean(np.log(np.clip(picked, 1e-7, 1.0)))),
    }

