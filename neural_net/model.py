"""One point of ``neural_net.space.CIFAR_SPACE`` as a Keras 3 functional model.

Each block of the architecture is a small function that takes a tensor and
returns a tensor, parametrized by the trial's hyperparameters (``params``, the
dict hyperopt samples). Values arrive as hyperopt gives them: kernel sizes and
unit counts as floats (``3.0``), which are rounded here.

Differences from the seed, on purpose:

- the heads are softmax (the seed's sigmoid heads gave no distribution over classes);
- the random left-right flip is a ``RandomFlip`` layer, active in training only
  (the seed also flipped at test time, in a Lambda layer that could not be saved);
- the inception reduction's first branch is one strided convolution (the seed
  built another one and threw it away);
- batch normalization follows ``use_BN`` alone (the seed also normalized after
  residual units without it) and uses a momentum of 0.9 (see ``BN_MOMENTUM``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf
from keras import KerasTensor

from caviar.errors import CaviarError

Params = Mapping[str, Any]

FINE_HEAD = "fine_outputs"
COARSE_HEAD = "coarse_outputs"
BASE_CONV_FILTERS = 40  # doubled after each conv+pool block
FIRST_CONV_FILTERS = 16
FC_UNITS = 1000
SECOND_FC_UNITS = 750
BASE_L2 = 0.0007
BASE_LEARNING_RATE = 0.001
# Keras' default 0.99 leaves the inference statistics of batch normalization
# far from the batches' after the few hundred steps of a short trial, which
# scored BN models near chance on validation; 0.9 settles in about 50 steps.
BN_MOMENTUM = 0.9
OPTIMIZERS = {"Adam": keras.optimizers.Adam, "Nadam": keras.optimizers.Nadam, "RMSprop": keras.optimizers.RMSprop}


def _int(value: Any) -> int:
    """Round a hyperopt number (``quniform`` gives floats like 2.0) to an int."""
    return round(float(value))


def head_names(n_coarse: int) -> tuple[str, ...]:
    """The model's outputs: the fine head, and the coarse head where there are coarse labels."""
    return (FINE_HEAD, COARSE_HEAD) if n_coarse else (FINE_HEAD,)


def l2(params: Params) -> keras.regularizers.Regularizer:
    """The trial's weight decay: the seed's base L2 times ``l2_weight_reg_mult``."""
    return keras.regularizers.L2(BASE_L2 * float(params["l2_weight_reg_mult"]))


def conv(x: KerasTensor, filters: int, params: Params, kernel_size: int | None = None, strides: int = 1,
         activation: str | None = None) -> KerasTensor:
    """A 'same'-padded convolution, by default of the trial's kernel size and activation."""
    return keras.layers.Conv2D(
        filters,
        _int(params["conv_kernel_size"]) if kernel_size is None else kernel_size,
        strides=strides,
        padding="same",
        activation=params["activation"] if activation is None else activation,
        kernel_regularizer=l2(params),
    )(x)


def bn(x: KerasTensor, params: Params) -> KerasTensor:
    """Batch normalization where the trial uses it (``use_BN``)."""
    return keras.layers.BatchNormalization(momentum=BN_MOMENTUM)(x) if params["use_BN"] else x


def dropout(x: KerasTensor, rate: float) -> KerasTensor:
    return keras.layers.Dropout(float(rate))(x)


def residual(x: KerasTensor, filters: int, params: Params) -> KerasTensor:
    """``params["residual"]`` stacked units: a linear 1x1 projection plus a convolution of ``res_conv_kernel_size``."""
    for _ in range(_int(params["residual"])):
        shortcut = conv(x, filters, params, kernel_size=1, activation="linear")
        branch = conv(
            dropout(x, params["conv_dropout_drop_proba"]), filters, params,
            kernel_size=_int(params["res_conv_kernel_size"]),
        )
        x = bn(keras.layers.Add()([shortcut, branch]), params)
    return x


def conv_pooling(x: KerasTensor, filters: int, params: Params) -> KerasTensor:
    """Halve the resolution with a linear stride-2 convolution (all-convolutional net, arXiv:1412.6806)."""
    return bn(conv(x, filters, params, kernel_size=3, strides=2, activation="linear"), params)


def inception_reduction(x: KerasTensor, filters: int, params: Params) -> KerasTensor:
    """Halve the resolution with three concatenated branches, after Inception-v4's reduction (arXiv:1602.07261)."""
    narrow, wide = int(filters * 0.33 + 1), int(filters * 0.4 + 1)
    strided = conv_pooling(x, wide, params)
    deep = conv(conv(x, narrow, params, kernel_size=1), wide, params, kernel_size=3)
    deep = conv_pooling(deep, wide, params)
    pooled = keras.layers.MaxPooling2D(3, strides=2, padding="same")(conv(x, wide, params, kernel_size=1))
    return keras.layers.Concatenate()([strided, deep, pooled])


def pooling(x: KerasTensor, filters: int, params: Params) -> KerasTensor:
    """Halve the resolution the trial's way (``pooling_type``)."""
    kind = params["pooling_type"]
    if kind == "max":
        return keras.layers.MaxPooling2D(2, padding="same")(x)
    if kind == "avg":
        return keras.layers.AveragePooling2D(2, padding="same")(x)
    if kind == "all_conv":
        return conv_pooling(x, filters, params)
    if kind == "inception":
        return inception_reduction(x, filters, params)
    raise ValueError(f"unknown pooling_type {kind!r}: expected max, avg, all_conv or inception")


def dense(x: KerasTensor, units: int, params: Params) -> KerasTensor:
    """A fully connected layer followed by the trial's fully connected dropout."""
    x = keras.layers.Dense(units, activation=params["activation"], kernel_regularizer=l2(params))(x)
    return dropout(x, params["fc_dropout_drop_proba"])


def head(x: KerasTensor, n_classes: int, name: str, params: Params) -> KerasTensor:
    """A softmax classifier, computed in float32 even under mixed precision."""
    return keras.layers.Dense(n_classes, activation="softmax", kernel_regularizer=l2(params), name=name,
                              dtype="float32")(x)


def _metrics(heads: tuple[str, ...]) -> dict[str, list[Any]]:
    """Accuracy per head, reported as ``{head}_accuracy`` and ``{head}_loss`` however many heads.

    Keras prefixes metric names with the output's name only when a model has
    several outputs, so a one-head model names its metrics itself.
    """
    if len(heads) > 1:
        return {name: ["accuracy"] for name in heads}
    (name,) = heads
    return {name: [keras.metrics.SparseCategoricalAccuracy(name=f"{name}_accuracy"),
                   keras.metrics.SparseCategoricalCrossentropy(name=f"{name}_loss")]}


def build_model(params: Params, input_shape: tuple[int, ...] = (32, 32, 3), n_fine: int = 100, n_coarse: int = 20,
                *, flip: bool = True, mixed_precision: bool | None = None) -> keras.Model:
    """Build and compile the CNN of ``params`` with a fine head and, if ``n_coarse``, a coarse head.

    ``flip`` adds random left-right flips (training only); ``mixed_precision``
    defaults to whether TensorFlow sees a GPU, where float16 doubles throughput.
    Labels are class ids (sparse), the outputs a dict keyed by head name.
    """
    if mixed_precision is None:
        mixed_precision = bool(tf.config.list_physical_devices("GPU"))
    keras.config.set_dtype_policy("mixed_float16" if mixed_precision else "float32")

    inputs = keras.Input(input_shape, name="images")
    x = keras.layers.RandomFlip("horizontal")(inputs) if flip else inputs
    if params["first_conv"] is not None:
        x = conv(x, FIRST_CONV_FILTERS, params, kernel_size=_int(params["first_conv"]))

    filters = max(1, int(BASE_CONV_FILTERS * float(params["conv_hiddn_units_mult"])))
    for block in range(_int(params["nb_conv_pool_layers"])):
        x = bn(conv(x, filters, params), params)
        if params["residual"] is not None and block >= _int(params["conv_pool_res_start_idx"]):
            x = residual(x, filters, params)
        x = dropout(pooling(x, filters, params), params["conv_dropout_drop_proba"])
        filters *= 2

    x = keras.layers.Flatten()(x)
    x = dense(x, max(1, int(FC_UNITS * float(params["fc_units_1_mult"]))), params)
    if params["one_more_fc"] is not None:
        x = dense(x, max(1, int(SECOND_FC_UNITS * float(params["one_more_fc"]))), params)

    heads = head_names(n_coarse)
    sizes = {FINE_HEAD: n_fine, COARSE_HEAD: n_coarse}
    weights = {FINE_HEAD: 1.0, COARSE_HEAD: float(params["coarse_labels_weight"])}
    model = keras.Model(inputs, {name: head(x, sizes[name], name, params) for name in heads}, name="caviar_cnn")
    model.compile(
        optimizer=OPTIMIZERS[params["optimizer"]](learning_rate=BASE_LEARNING_RATE * float(params["lr_rate_mult"])),
        loss={name: "sparse_categorical_crossentropy" for name in heads},
        loss_weights={name: weights[name] for name in heads},
        metrics=_metrics(heads),
    )
    return model


def plot(params: Params, path: str | Path, input_shape: tuple[int, ...] = (32, 32, 3), n_fine: int = 100,
         n_coarse: int = 20) -> None:
    """Draw the model of ``params`` with its tensor shapes to ``path`` (model_demo.png, model_best.png)."""
    model = build_model(params, input_shape, n_fine, n_coarse)
    try:
        keras.utils.plot_model(model, to_file=str(path), show_shapes=True)
    except ImportError as err:
        raise CaviarError(f"drawing {path} needs pydot and Graphviz's dot (apt-get install graphviz): {err}") from err
