"""The classic Keras tuning examples as built-in search spaces with their objectives.

Users of scikit-learn's ``GridSearchCV`` around Keras MLPs, or of hyperopt's
``fmin`` around a small Fashion-MNIST CNN, find their setups here unchanged,
to run as Caviar searches::

    python -m optimizer --algo grid --cv 3 --objective neural_net.classic:mlp1
    python -m optimizer --algo grid --objective neural_net.classic:mlp2
    python -m optimizer --algo tpe --objective neural_net.classic:cnn

``mlp1``, ``mlp2`` and ``cnn`` are model families (``ClassicFamily``): their
space is the default ``--space``, their settings are the flags of
``neural_net.settings`` (``--cv``, ``--data-path``, ``--dataset-size``...),
and they refit (``--refit``) and predict like the CIFAR CNN. Called as plain
functions (``classic.mlp1(params)``) they run one trial.

| pair | data (default) | space |
|---|---|---|
| ``MLP1_SPACE``/``mlp1`` | MNIST | one hidden layer: ``nodes`` x ``lr`` (15 points), RMSprop, 15 epochs, batches of 64 |
| ``MLP2_SPACE``/``mlp2`` | MNIST | two hidden layers and dropout, ``batch_size`` and ``epochs`` searched (432 points), Adam |
| ``CNN_SPACE``/``cnn`` | Fashion-MNIST | two conv+pool blocks, dense, dropout; TPE space (``learning_rate`` is continuous) |

Settings are those of ``neural_net.settings`` (``HKS_DATA_PATH``,
``DATASET_SIZE``, ``HKS_SEED``...), read at each call, with these
differences, so that each example runs as it was published:

- ``HKS_DATASET`` unset means the pair's data set above (not CIFAR-100);
- the CNN holds out 20% of the training images unless ``HKS_VALIDATION_SPLIT`` is set;
- epochs are the space's (``epochs`` of each point); ``HKS_EPOCHS``, when set, caps them for quick runs;
- ``HKS_CV=K`` (``--cv K``, K >= 2) scores a point by stratified K-fold cross-validation
  over all training images (train and validation split together) instead of
  the validation split, with ``caviar.cv.cross_validate``; the result keeps
  each fold's accuracy, history and fit time. After each fold but the last,
  the trial reports the running mean accuracy at step = fold number (1..K),
  so ``--scheduler asha`` can stop a candidate whose first fold(s) rank low
  among the others' same folds: its result keeps the folds it trained and
  says ``stopped``. Without ``HKS_CV`` the trials report nothing, and the
  default scheduler is ``none``.

A trial keeps its model (raw uint8 images in, class probabilities out) as its
artifact: with ``HKS_CV``, its best fold's, as the CIFAR CNN does. Each of
those saw part of the training images only: ``refit`` trains the chosen point
on all of them, for the point's epochs, and scores it on the test split.

A trial's loss is minus the accuracy of the final model on the held-out
images (on average over the folds with ``HKS_CV``), as scikit-learn scores a
fit. Trials never read the test split.

Keras 3 only (numpy arrays, no TensorFlow API), so the models train on the
TensorFlow, JAX and PyTorch backends alike. ``MLP1Classifier`` is the
one-hidden-layer model as a scikit-learn classifier, for ``GridSearchCV``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import keras
import numpy as np
from hyperopt import hp
from sklearn.base import BaseEstimator, ClassifierMixin

from caviar.cv import cross_validate
from caviar.family import Setting
from caviar.objective import ARTIFACTS_KEY, STATUS_OK, to_plain
from neural_net import datasets
from neural_net.datasets import training_pool
from neural_net.family import ImageFamily
from neural_net.settings import SETTINGS, Settings
from neural_net.train import discarded_on_error, evaluate_test, keep_best_fold

log = logging.getLogger(__name__)

Builder = Callable[..., keras.Model]  # (params, input_shape, n_classes, scale=...) -> compiled model
# The tutorials divide the images by 255 before fitting; the models here do it themselves, so that a
# saved model takes the data set's raw uint8 images (as neural_net.model's CNN does).
PIXEL_SCALE = 1 / 255
EVAL_BATCH_SIZE = 256

MLP1_SPACE: dict[str, Any] = {
    "nodes": hp.choice("nodes", [32, 64, 128, 256, 512]),
    "lr": hp.choice("lr", [0.001, 0.002, 0.003]),
    "epochs": 15,
    "batch_size": 64,
}
MLP2_SPACE: dict[str, Any] = {
    "hidden_layer_one": hp.choice("hidden_layer_one", [256, 512, 784]),
    "hidden_layer_two": hp.choice("hidden_layer_two", [128, 256, 512]),
    "dropout": hp.choice("dropout", [0.3, 0.4, 0.5]),
    "batch_size": hp.choice("batch_size", [4, 8, 16, 32]),
    "epochs": hp.choice("epochs", [10, 20, 30, 40]),
}
# hyperopt rounds quniform(3, 5, 2) to 4 only, as in the original example.
CNN_SPACE: dict[str, Any] = {
    "first_conv": hp.choice("first_conv", [32, 64]),
    "second_conv": hp.choice("second_conv", [32, 64, 128]),
    "kernel": hp.quniform("kernel", 3, 5, 2),
    "pool": hp.quniform("pool", 2, 3, 1),
    "dropout": hp.quniform("dropout", 0.3, 0.7, 0.1),
    "learning_rate": hp.loguniform("learning_rate", -5, 0),
    "dense_1": hp.choice("dense_1", [64, 128, 256]),
    "optimizer": hp.choice("optimizer", ["Adadelta", "Adam"]),
    "epochs": 15,
    "batch_size": 128,
}


def build_mlp1(params: Mapping[str, Any], input_shape: tuple[int, ...], n_classes: int,
               scale: float | None = PIXEL_SCALE) -> keras.Model:
    """Flatten, one ReLU hidden layer of ``nodes``, softmax; RMSprop at ``lr``."""
    model = keras.Sequential([
        *_inputs(input_shape, scale),
        keras.layers.Flatten(),
        keras.layers.Dense(int(params["nodes"]), activation="relu"),
        keras.layers.Dense(n_classes, activation="softmax"),
    ])
    return _compiled(model, keras.optimizers.RMSprop(float(params["lr"])))


def build_mlp2(params: Mapping[str, Any], input_shape: tuple[int, ...], n_classes: int,
               scale: float | None = PIXEL_SCALE) -> keras.Model:
    """Flatten, two ReLU hidden layers each followed by dropout, softmax; Adam."""
    dropout = float(params["dropout"])
    model = keras.Sequential([
        *_inputs(input_shape, scale),
        keras.layers.Flatten(),
        keras.layers.Dense(int(params["hidden_layer_one"]), activation="relu"),
        keras.layers.Dropout(dropout),
        keras.layers.Dense(int(params["hidden_layer_two"]), activation="relu"),
        keras.layers.Dropout(dropout),
        keras.layers.Dense(n_classes, activation="softmax"),
    ])
    return _compiled(model, keras.optimizers.Adam())


def build_cnn(params: Mapping[str, Any], input_shape: tuple[int, ...], n_classes: int,
              scale: float | None = PIXEL_SCALE) -> keras.Model:
    """Two conv+max-pool blocks, a ReLU dense layer, dropout, softmax; Adadelta or Adam.

    The convolutions pad ("same"), so that every kernel and pool size of the space fits 28x28 images.
    """
    kernel, pool = int(params["kernel"]), int(params["pool"])
    model = keras.Sequential([
        *_inputs(input_shape, scale),
        keras.layers.Conv2D(int(params["first_conv"]), kernel, activation="relu", padding="same"),
        keras.layers.MaxPooling2D(pool),
        keras.layers.Conv2D(int(params["second_conv"]), kernel, activation="relu", padding="same"),
        keras.layers.MaxPooling2D(pool),
        keras.layers.Flatten(),
        keras.layers.Dense(int(params["dense_1"]), activation="relu"),
        keras.layers.Dropout(float(params["dropout"])),
        keras.layers.Dense(n_classes, activation="softmax"),
    ])
    optimizers = {"Adadelta": keras.optimizers.Adadelta, "Adam": keras.optimizers.Adam}
    if params["optimizer"] not in optimizers:
        raise ValueError(f"optimizer {params['optimizer']!r} is not one of {', '.join(optimizers)}")
    return _compiled(model, optimizers[params["optimizer"]](float(params["learning_rate"])))


def _inputs(input_shape: tuple[int, ...], scale: float | None) -> list[keras.layers.Layer]:
    """The input, then the pixels scaled by ``scale`` (None: features taken as they are)."""
    return [keras.Input(input_shape)] + ([keras.layers.Rescaling(scale)] if scale is not None else [])


def _compiled(model: keras.Model, optimizer: keras.optimizers.Optimizer) -> keras.Model:
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def fit(build: Builder, params: Mapping[str, Any], train: tuple[np.ndarray, np.ndarray], n_classes: int,
        epochs: int, seed: int) -> tuple[keras.Model, dict[str, Any], float]:
    """A fresh model of ``params`` trained on ``train``, with its history and fit time."""
    keras.backend.clear_session()  # the previous fit's graphs would pile up across trials
    keras.utils.set_random_seed(seed)
    x, y = train
    model = build(params, tuple(x.shape[1:]), n_classes)
    start = time.perf_counter()
    history = model.fit(x, y, batch_size=int(params["batch_size"]), epochs=epochs, shuffle=True, verbose=0)
    return model, to_plain(history.history), time.perf_counter() - start


def fit_and_score(build: Builder, params: Mapping[str, Any], train: tuple[np.ndarray, np.ndarray],
                  test: tuple[np.ndarray, np.ndarray], n_classes: int, epochs: int, seed: int,
                  path: Path) -> dict[str, Any]:
    """Train a fresh model of ``params`` on ``train`` and save it to ``path``; its accuracy on ``test``,
    history and fit time. The folder of ``path`` is removed if the fit fails."""
    try:
        model, history, fit_time = fit(build, params, train, n_classes, epochs, seed)
        _, accuracy = model.evaluate(*test, batch_size=EVAL_BATCH_SIZE, verbose=0)
        model.save(path)
    except BaseException:
        shutil.rmtree(path.parent, ignore_errors=True)
        raise
    return {"score": float(accuracy), "history": history, "fit_time": fit_time}


def settings_for(dataset: str, validation_split: float | None = None,
                 environ: Mapping[str, str] | None = None) -> Settings:
    """``Settings.from_env`` with this pair's data set (and validation split) where the variable is unset."""
    env = os.environ if environ is None else environ
    settings = Settings.from_env(env)
    if not env.get("HKS_DATASET", "").strip():
        settings = dataclasses.replace(settings, dataset=dataset)
    if validation_split is not None and not env.get("HKS_VALIDATION_SPLIT", "").strip():
        settings = dataclasses.replace(settings, validation_split=validation_split)
    return settings


def _model_path() -> Path:
    """A fresh ``model.keras`` path in a "tmp…" folder, which the runner deletes whole once it is stored."""
    return Path(tempfile.mkdtemp()) / "model.keras"


def _epochs(params: Mapping[str, Any], settings: Settings) -> int:
    """The point's epochs, capped by ``HKS_EPOCHS`` when it is set."""
    epochs = int(params["epochs"])
    return min(epochs, settings.epochs) if os.environ.get("HKS_EPOCHS", "").strip() else epochs


def run(build: Builder, params: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """One trial: score ``params`` on the validation split, or by cross-validation with ``HKS_CV``."""
    data = datasets.load(settings)
    epochs = _epochs(params, settings)
    common = {"space": to_plain(dict(params)), "dataset": data.spec.name, "epochs": epochs}
    if settings.cv:
        pool = training_pool(data)
        log.info("%d-fold cross-validation of %s on %d %s images, %d epochs",
                 settings.cv, params, len(pool), data.spec.title, epochs)
        models: list[Path | None] = []

        def fold(train: np.ndarray, test: np.ndarray) -> dict[str, Any]:
            models.append(_model_path())
            return fit_and_score(build, params, (pool.x[train], pool.fine[train]), (pool.x[test], pool.fine[test]),
                                 data.n_fine, epochs, settings.seed, models[-1])

        with discarded_on_error(models):
            result = cross_validate(fold, pool.fine, k=settings.cv, seed=settings.seed, report=True, maximize=True)
        return keep_best_fold(result | common | {"accuracy": result["mean_test_score"], "folds": settings.cv}, models)
    log.info("training %s on %d %s images, %d epochs", params, len(data.train), data.spec.title, epochs)
    model_path = _model_path()
    fold = fit_and_score(build, params, (data.train.x, data.train.fine), (data.validation.x, data.validation.fine),
                         data.n_fine, epochs, settings.seed, model_path)
    return {"loss": -fold["score"], "status": STATUS_OK, "accuracy": fold["score"], "history": fold["history"],
            "fit_time": fold["fit_time"], ARTIFACTS_KEY: {"model": str(model_path)}, **common}


def pair_settings(dataset: str, validation_split: float | None) -> tuple[Setting, ...]:
    """``neural_net.settings.SETTINGS`` with a pair's defaults: its data set and split, the space's epochs."""
    defaults = {"HKS_DATASET": dataset, "HKS_EPOCHS": None}
    if validation_split is not None:
        defaults["HKS_VALIDATION_SPLIT"] = validation_split
    epochs_help = "cap on the space's epochs per fit (quick runs); unset: the space's"
    return tuple(
        dataclasses.replace(s, default=defaults[s.env], **({"help": epochs_help} if s.env == "HKS_EPOCHS" else {}))
        if s.env in defaults else s
        for s in SETTINGS
    )


class ClassicFamily(ImageFamily):
    """One space/objective pair as a model family; calling it runs one trial (``mlp1(params)``)."""

    scheduler = "none"  # early stopping only when asked (--scheduler): trials report folds (HKS_CV), not epochs

    def __init__(self, name: str, build: Builder, dataset: str, validation_split: float | None = None):
        self.name, self.build, self.dataset, self.validation_split = name, build, dataset, validation_split
        self.space = f"neural_net.classic:{name.upper()}_SPACE"
        self.settings = pair_settings(dataset, validation_split)

    def __repr__(self) -> str:
        return f"neural_net.classic:{self.name}"

    def current(self) -> Settings:
        """The settings of a call: the environment's, with this pair's defaults."""
        return settings_for(self.dataset, self.validation_split)

    def objective(self, params: dict[str, Any]) -> dict[str, Any]:
        return run(self.build, params, self.current())

    def max_steps(self) -> int | None:
        """K with ``HKS_CV``: a trial reports once per fold; None otherwise (it reports nothing)."""
        return self.current().cv or None

    def prepare(self) -> None:
        datasets.load(self.current())

    def evaluate_best(self, artifact_path: str) -> dict[str, float]:
        return evaluate_test(artifact_path, self.current())

    def refit(self, params: dict[str, Any], out_path: str) -> dict[str, Any]:
        """Train ``params`` on the training and validation images for its epochs, save it, score the test split."""
        settings = self.current()
        data = datasets.load(settings)
        pool = training_pool(data)
        epochs = _epochs(params, settings)
        log.info("refitting %s on %d %s images, %d epochs", params, len(pool), data.spec.title, epochs)
        model, _, fit_time = fit(self.build, params, (pool.x, pool.fine), data.n_fine, epochs, settings.seed)
        model.save(out_path)
        return {"train_images": len(pool), "epochs": epochs, "fit_time": fit_time,
                **evaluate_test(out_path, settings)}


mlp1 = ClassicFamily("mlp1", build_mlp1, "mnist")
mlp2 = ClassicFamily("mlp2", build_mlp2, "mnist")
cnn = ClassicFamily("cnn", build_cnn, "fashion_mnist", validation_split=0.2)


class MLP1Classifier(ClassifierMixin, BaseEstimator):
    """The one-hidden-layer MLP as a scikit-learn classifier, for ``GridSearchCV`` (theirs or ours).

    Takes (n_samples, n_features) arrays and any class labels; picklable
    before fitting, so scikit-learn's and Caviar's process pools can send it.
    """

    def __init__(self, nodes: int = 64, lr: float = 0.001, epochs: int = 15, batch_size: int = 64, seed: int = 0):
        self.nodes, self.lr, self.epochs, self.batch_size, self.seed = nodes, lr, epochs, batch_size, seed

    def fit(self, X: Any, y: Any) -> MLP1Classifier:
        x = np.asarray(X, dtype=np.float32)
        self.classes_, codes = np.unique(np.asarray(y), return_inverse=True)
        self.n_features_in_ = x.shape[1]
        keras.utils.set_random_seed(self.seed)
        self.model_ = build_mlp1({"nodes": self.nodes, "lr": self.lr}, tuple(x.shape[1:]), len(self.classes_),
                                 scale=None)
        self.model_.fit(x, codes, batch_size=self.batch_size, epochs=self.epochs, shuffle=True, verbose=0)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        return np.asarray(self.model_.predict(np.asarray(X, dtype=np.float32), batch_size=EVAL_BATCH_SIZE, verbose=0))

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
