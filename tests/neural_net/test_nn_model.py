"""Every option of CIFAR_SPACE builds a model that trains; scaling, heads, flips, precision and plots behave."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
from hyperopt.pyll.stochastic import sample

from neural_net.model import (
    BASE_L2, BASE_LEARNING_RATE, BN_MOMENTUM, COARSE_HEAD, DIAGRAM_DPI, DIAGRAM_MAX_INCHES, FINE_HEAD, build_model,
    gpu_capabilities, inference_model, plot, precision_policy,
)
from neural_net.space import CIFAR_SPACE, DEMO_PARAMS

# A tiny point of the space: 4 base filters, 20 fully connected units, 8x8 images.
TINY: dict[str, Any] = {
    "lr_rate_mult": 1.0,
    "l2_weight_reg_mult": 1.0,
    "batch_size": 8.0,
    "optimizer": "Adam",
    "coarse_labels_weight": 0.3,
    "conv_dropout_drop_proba": 0.1,
    "fc_dropout_drop_proba": 0.2,
    "use_BN": False,
    "first_conv": None,
    "residual": None,
    "conv_hiddn_units_mult": 0.1,
    "nb_conv_pool_layers": 2,
    "conv_pool_res_start_idx": 0.0,
    "pooling_type": "max",
    "conv_kernel_size": 3.0,
    "res_conv_kernel_size": 3.0,
    "fc_units_1_mult": 0.02,
    "one_more_fc": None,
    "activation": "relu",
}
SHAPE, N_FINE, N_COARSE = (8, 8, 3), 6, 3


def _batch(n: int = 8, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, *SHAPE), dtype=np.uint8)
    return x, {FINE_HEAD: rng.integers(0, N_FINE, n), COARSE_HEAD: rng.integers(0, N_COARSE, n)}


def _layers(model: keras.Model, kind: type) -> list[keras.layers.Layer]:
    return [layer for layer in model.layers if type(layer) is kind]


def _hidden_dense_units(model: keras.Model) -> list[int]:
    return [layer.units for layer in _layers(model, keras.layers.Dense) if layer.name not in (FINE_HEAD, COARSE_HEAD)]


CASES: list[dict[str, Any]] = [
    {},
    {"pooling_type": "avg", "first_conv": 3},
    {"pooling_type": "all_conv", "first_conv": 4, "use_BN": True},
    {"pooling_type": "inception", "one_more_fc": 0.03, "activation": "elu"},
    {"residual": 1.0, "use_BN": True},
    {"residual": 2.0, "optimizer": "Nadam", "nb_conv_pool_layers": 3, "conv_pool_res_start_idx": 1.0},
    {"residual": 3.0, "optimizer": "RMSprop", "res_conv_kernel_size": 2.0, "conv_kernel_size": 4.0},
    {"residual": 4.0, "use_BN": True, "conv_pool_res_start_idx": 1.0},
]


@pytest.mark.parametrize("changes", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()) or "base")
def test_every_option_builds_and_trains_a_step(changes: dict[str, Any]) -> None:
    params = {**TINY, **changes}
    model = build_model(params, SHAPE, N_FINE, N_COARSE)
    x, y = _batch()
    logs = model.train_on_batch(x, y, return_dict=True)
    assert np.isfinite(logs["loss"]) and {f"{FINE_HEAD}_accuracy", f"{COARSE_HEAD}_accuracy"} <= set(logs)

    blocks = params["nb_conv_pool_layers"]
    res_blocks = 0 if params["residual"] is None else blocks - int(params["conv_pool_res_start_idx"])
    assert len(_layers(model, keras.layers.Add)) == res_blocks * int(params["residual"] or 0)
    convs = _layers(model, keras.layers.Conv2D)
    if params["first_conv"] is not None:
        assert (convs[0].filters, convs[0].kernel_size) == (16, (params["first_conv"],) * 2)
    else:
        assert (convs[0].filters, convs[0].kernel_size) == (4, (int(params["conv_kernel_size"]),) * 2)
    assert convs[-1].filters in (4 * 2 ** (blocks - 1), int(4 * 2 ** (blocks - 1) * 0.4 + 1))  # doubles per block
    expected_pooling = {"max": keras.layers.MaxPooling2D, "avg": keras.layers.AveragePooling2D,
                        "all_conv": keras.layers.Conv2D, "inception": keras.layers.Concatenate}[params["pooling_type"]]
    assert _layers(model, expected_pooling)
    assert sum(conv.strides == (2, 2) for conv in convs) == {"all_conv": blocks, "inception": 2 * blocks}.get(
        params["pooling_type"], 0
    )
    norms = _layers(model, keras.layers.BatchNormalization)
    assert bool(norms) is params["use_BN"] and all(norm.momentum == BN_MOMENTUM for norm in norms)
    assert _hidden_dense_units(model) == [20] + ([int(750 * params["one_more_fc"])] if params["one_more_fc"] else [])
    assert convs[0].activation.__name__ == params["activation"]
    assert type(model.optimizer).__name__ == params["optimizer"]


def test_multipliers_scale_the_base_constants() -> None:
    params = {**TINY, "lr_rate_mult": 2.0, "l2_weight_reg_mult": 0.5, "conv_hiddn_units_mult": 0.2,
              "fc_units_1_mult": 0.05, "conv_dropout_drop_proba": 0.25, "fc_dropout_drop_proba": 0.4}
    model = build_model(params, SHAPE, N_FINE, N_COARSE)
    assert float(model.optimizer.learning_rate) == pytest.approx(2.0 * BASE_LEARNING_RATE)
    conv = _layers(model, keras.layers.Conv2D)[0]
    assert conv.filters == 8 and float(conv.kernel_regularizer.l2) == pytest.approx(0.5 * BASE_L2)
    assert _hidden_dense_units(model) == [50]
    assert sorted({layer.rate for layer in _layers(model, keras.layers.Dropout)}) == [0.25, 0.4]
    assert model.get_compile_config()["loss_weights"] == {FINE_HEAD: 1.0, COARSE_HEAD: 0.3}


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_points_sampled_from_the_space_build_at_full_size(seed: int) -> None:
    params = sample(CIFAR_SPACE, rng=np.random.default_rng(seed))
    model = build_model(params)
    assert model.output[FINE_HEAD].shape == (None, 100) and model.output[COARSE_HEAD].shape == (None, 20)


def test_heads_are_softmax_and_flips_only_happen_in_training() -> None:
    keras.utils.set_random_seed(0)
    model = build_model(TINY, SHAPE, N_FINE, N_COARSE)
    x, _ = _batch(16)
    first, second = model.predict(x, verbose=0), model.predict(x, verbose=0)
    for name, n in ((FINE_HEAD, N_FINE), (COARSE_HEAD, N_COARSE)):
        assert first[name].shape == (16, n)
        np.testing.assert_allclose(first[name].sum(axis=1), 1.0, rtol=1e-5)
        np.testing.assert_array_equal(first[name], second[name])
    flip = _layers(model, keras.layers.RandomFlip)[0]
    x = x.astype(np.float32)
    assert np.array_equal(flip(x, training=False), x)
    flipped = np.asarray(flip(x, training=True))
    assert any(np.array_equal(flipped[i], x[i, :, ::-1]) and not np.array_equal(flipped[i], x[i]) for i in range(16))


def test_no_flip_layer_when_flips_change_the_class() -> None:
    assert not _layers(build_model(TINY, SHAPE, N_FINE, N_COARSE, flip=False), keras.layers.RandomFlip)


def test_fine_only_model_reports_the_same_metric_names() -> None:
    model = build_model(TINY, SHAPE, N_FINE, 0)
    x, y = _batch()
    assert list(model.output) == [FINE_HEAD]
    logs = model.train_on_batch(x, {FINE_HEAD: y[FINE_HEAD]}, return_dict=True)
    assert set(logs) == {"loss", f"{FINE_HEAD}_accuracy", f"{FINE_HEAD}_loss"}


def test_same_seed_same_weights() -> None:
    keras.utils.set_random_seed(3)
    first = build_model(TINY, SHAPE, N_FINE, N_COARSE).get_weights()
    keras.utils.set_random_seed(3)
    second = build_model(TINY, SHAPE, N_FINE, N_COARSE).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


@pytest.mark.parametrize(("policy", "compute", "loss_scaling"),
                         [("mixed_float16", "float16", True), ("mixed_bfloat16", "bfloat16", False)])
def test_mixed_precision_keeps_the_heads_in_float32(policy: str, compute: str, loss_scaling: bool) -> None:
    try:
        model = build_model({**TINY, "use_BN": True}, SHAPE, N_FINE, N_COARSE, precision=policy)
        assert _layers(model, keras.layers.Conv2D)[0].compute_dtype == compute
        assert all(model.output[name].dtype == "float32" for name in (FINE_HEAD, COARSE_HEAD))
        assert (type(model.optimizer).__name__ == "LossScaleOptimizer") is loss_scaling
        x, y = _batch()
        assert np.isfinite(model.train_on_batch(x, y, return_dict=True)["loss"])
    finally:
        keras.config.set_dtype_policy("float32")


@pytest.mark.parametrize(("capabilities", "policy"), [
    ([], "float32"),                          # a CPU
    ([(9, 0)], "mixed_bfloat16"),             # Hopper (H100, H200)
    ([(8, 0), (8, 6)], "mixed_bfloat16"),     # Ampere
    ([(7, 5)], "mixed_float16"),              # Turing: no bfloat16 units
    ([(9, 0), (7, 0)], "mixed_float16"),      # one old GPU decides
])
def test_precision_policy_follows_the_gpus(capabilities: list[tuple[int, int]], policy: str) -> None:
    assert precision_policy(capabilities) == policy


def test_default_precision_is_that_of_the_gpus_the_backend_sees() -> None:
    build_model(TINY, SHAPE, N_FINE, N_COARSE)
    assert keras.config.dtype_policy().name == precision_policy(gpu_capabilities())


def test_the_model_scales_raw_images_itself() -> None:
    model = build_model(TINY, SHAPE, N_FINE, N_COARSE)
    x, _ = _batch()
    assert model.input.dtype == "uint8"
    np.testing.assert_allclose(model.get_layer("scale")(x), x / 255 - 0.5, atol=1e-6)


def test_inference_model_survives_saving_with_the_fine_head_alone(tmp_path: Path) -> None:
    model = build_model({**TINY, "residual": 1.0, "use_BN": True}, SHAPE, N_FINE, N_COARSE)
    x, y = _batch()
    model.train_on_batch(x, y)
    inference_model(model).save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    probabilities = loaded.predict(x, verbose=0)
    assert probabilities.shape == (len(x), N_FINE)
    np.testing.assert_allclose(probabilities, model.predict(x, verbose=0)[FINE_HEAD], rtol=1e-5, atol=1e-6)


def test_unknown_pooling_type_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown pooling_type 'median'"):
        build_model({**TINY, "pooling_type": "median"}, SHAPE, N_FINE, N_COARSE)


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


@pytest.mark.parametrize(("dataset", "shape", "heads"), [
    ("cifar10", "32×32×3", {FINE_HEAD: 10}),
    ("mnist", "28×28×1", {FINE_HEAD: 10}),
    ("cifar100", "32×32×3", {FINE_HEAD: 100, COARSE_HEAD: 20}),
])
def test_plot_draws_the_searched_data_set_at_a_browsable_size_without_system_graphviz(
        dataset: str, shape: str, heads: dict[str, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no system dot, nor anything else
    assert shutil.which("dot") is None
    monkeypatch.setenv("HKS_DATASET", dataset)
    path = tmp_path / "model_demo.png"

    graph = plot(DEMO_PARAMS, path)

    labels = [node.get("label").strip('"') for node in graph.get_nodes() if node.get("label")]
    assert labels[0] == f"InputLayer  {shape}"
    assert sorted(label for label in labels if label.split(":")[0] in (FINE_HEAD, COARSE_HEAD)) == sorted(
        f"{name}: Dense  {n}" for name, n in heads.items()
    )
    width, height = _png_size(path)
    assert max(width, height) <= DIAGRAM_DPI * DIAGRAM_MAX_INCHES and min(width, height) >= 200
