"""One point of ``neural_net.space.CIFAR_SPACE`` as a Keras 3 functional model.

Each block of the architecture is a small function that takes a tensor and
returns a tensor, parametrized by the trial's hyperparameters (``params``, the
dict hyperopt samples). Values arrive as hyperopt gives them: kernel sizes and
unit counts as floats (``3.0``), which are rounded here.

The model takes the data set's raw uint8 images and scales them itself (a
``Rescaling`` layer to the seed's [-0.5, 0.5]); for prediction,
``inference_model`` keeps the fine head alone, so the file a trial saves
(``model.keras``) is used as::

    model = keras.saving.load_model("best_model.keras")
    probabilities = model.predict(raw_uint8_images)  # (N, fine classes)

and scores on raw images the accuracy the search reported. Only Keras 3 APIs
are used, so it trains under ``KERAS_BACKEND`` tensorflow, jax or torch; mixed
precision (see ``precision_policy``) is on where the backend sees a GPU.

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

import importlib
import logging
import shutil
import sysconfig
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
from keras import KerasTensor

from neural_net.datasets import dataset_spec
from neural_net.settings import Settings
from caviar.errors import CaviarError

if TYPE_CHECKING:  # Keras imports pydot when it draws: training needs no pydot (bench/gpu.py runs without)
    import pydot

log = logging.getLogger(__name__)

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
# The first GPUs with bfloat16 matrix units (Ampere); older ones get float16 with loss scaling.
BF16_COMPUTE_CAPABILITY = (8, 0)
# Diagrams: one line per layer, at most this many inches at this dpi (2400 px) on the long side.
DIAGRAM_DPI = 80
DIAGRAM_MAX_INCHES = 30
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


def precision_policy(capabilities: Sequence[tuple[int, int]]) -> str:
    """The Keras dtype policy for GPUs of these CUDA compute capabilities (none: a CPU).

    Mixed precision roughly doubles a GPU's matrix throughput; bfloat16 needs no
    loss scaling but only exists from Ampere on, so every GPU must have it.
    """
    if not capabilities:
        return "float32"
    return "mixed_bfloat16" if min(capabilities) >= BF16_COMPUTE_CAPABILITY else "mixed_float16"


def gpu_capabilities() -> list[tuple[int, int]]:
    """The compute capabilities of the CUDA GPUs that the Keras backend sees.

    Asked of the backend's own module, which Keras has already imported.
    """
    backend = keras.config.backend()
    module = importlib.import_module(backend)
    if backend == "jax":
        return [_capability(device.compute_capability) for device in module.devices() if device.platform == "gpu"]
    if backend == "torch":
        return [tuple(module.cuda.get_device_capability(i)) for i in range(module.cuda.device_count())]
    if backend == "tensorflow":
        details = module.config.experimental.get_device_details
        return [tuple(details(gpu)["compute_capability"]) for gpu in module.config.list_physical_devices("GPU")]
    return []  # numpy, openvino: no GPU training


def _capability(text: str) -> tuple[int, int]:
    """JAX's ``"9.0"`` as ``(9, 0)``."""
    major, minor = text.split(".")
    return int(major), int(minor)


def build_model(params: Params, input_shape: tuple[int, ...] = (32, 32, 3), n_fine: int = 100, n_coarse: int = 20,
                *, flip: bool = True, precision: str | None = None) -> keras.Model:
    """Build and compile the CNN of ``params`` with a fine head and, if ``n_coarse``, a coarse head.

    The input is raw uint8 images of ``input_shape``. ``flip`` adds random
    left-right flips (training only); ``precision`` is a Keras dtype policy,
    by default ``precision_policy`` of the GPUs the backend sees. Labels are
    class ids (sparse), the outputs a dict keyed by head name.
    """
    keras.config.set_dtype_policy(precision or precision_policy(gpu_capabilities()))

    inputs = keras.Input(input_shape, dtype="uint8", name="images")
    x = keras.layers.Rescaling(1 / 255, offset=-0.5, name="scale")(inputs)
    if flip:
        x = keras.layers.RandomFlip("horizontal")(x)
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


def inference_model(model: keras.Model) -> keras.Model:
    """The fine head of ``model`` alone, sharing its layers: raw images in, class probabilities out."""
    return keras.Model(model.input, model.output[FINE_HEAD], name="caviar_classifier")


def dot_program() -> str:
    """The ``dot`` of graphviz-pure (a dependency, a Rust port of Graphviz): no system Graphviz needed."""
    beside_python = Path(sysconfig.get_path("scripts")) / "graphviz-pure"
    found = str(beside_python) if beside_python.is_file() else shutil.which("graphviz-pure")
    if found is None:
        raise CaviarError(f"graphviz-pure is neither in {beside_python.parent} nor on PATH: pip install graphviz-pure")
    return found


def layer_label(layer: keras.layers.Layer) -> str:
    """One short line: the head's name for a head, the layer's kind, its output shape without the batch."""
    shape = "×".join(str(size) for size in layer.output.shape[1:])
    prefix = f"{layer.name}: " if layer.name in (FINE_HEAD, COARSE_HEAD) else ""
    return f"{prefix}{type(layer).__name__}  {shape}"


def model_graph(model: keras.Model) -> pydot.Dot:
    """Keras' graph of ``model`` with a one-line box per layer, so that a 100-layer model stays legible."""
    graph = keras.utils.model_to_dot(model, dpi=DIAGRAM_DPI)
    layers = {str(id(layer)): layer for layer in model.layers}  # model_to_dot names nodes by id(layer)
    for node in graph.get_nodes():
        if node.get_name() in layers:
            node.set("label", layer_label(layers[node.get_name()]))
            node.set("shape", "box")
            node.set("fontsize", "10")
            node.set("height", "0.2")
            node.set("margin", "0.03")
    graph.set("size", f"{DIAGRAM_MAX_INCHES},{DIAGRAM_MAX_INCHES}")  # shrinks a larger graph to fit
    graph.set("ranksep", "0.2")
    graph.set("nodesep", "0.1")
    for edge in graph.get_edges():
        edge.set("arrowsize", "0.5")
    return graph


def plot(params: Params, path: str | Path) -> pydot.Dot:
    """Draw the model of ``params`` for the searched data set (``HKS_DATASET``) to the PNG ``path``.

    Returns the graph drawn. The model's input and heads are the data set's,
    and the picture at most ``DIAGRAM_MAX_INCHES`` at ``DIAGRAM_DPI`` on its
    long side, so that a browser shows it whole.
    """
    spec = dataset_spec(Settings.from_env().dataset)
    model = build_model(params, spec.input_shape, spec.n_fine, spec.n_coarse, flip=spec.flip, precision="float32")
    graph = model_graph(model)
    graph.write(str(path), prog=dot_program(), format="png")
    log.info("drew the %s model of %d layers to %s", spec.title, len(model.layers), path)
    return graph
