"""bench/gpu.py runs end to end under JAX (its --quick CPU mode) and benchmarks the demo model of the space."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras

from bench.gpu import MODELS, forward_flops
from neural_net.space import DEMO_PARAMS

ROOT = Path(__file__).resolve().parents[2]


def test_the_bench_copies_the_demo_model_of_the_space() -> None:
    assert MODELS["demo"] == DEMO_PARAMS


def test_quick_bench_under_jax_reports_every_measure(tmp_path: Path) -> None:
    out = tmp_path / "gpu.json"
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run(
        [sys.executable, "-m", "bench.gpu", "--quick", "--models", "demo", "--concurrency", "1", "2", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]

    report = json.loads(out.read_text())
    (run,) = report["runs"]
    assert (run["model"], run["precision"], run["images"]) == ("demo", "float32", 64)
    assert run["images_per_s"] > 0 and run["compile_s"] > 0 and run["steady_epoch_s"] < run["first_epoch_s"]
    assert run["forward_flops_per_image"] > 1e6 and 0 < run["share_of_peak"] < 1
    assert [row["trials"] for row in report["concurrent"]] == [1, 2]
    assert report["concurrent"][0]["images_per_s"] == run["images_per_s"]  # one trial is the run alone
    assert all(row["images_per_s"] > 0 for row in report["concurrent"])
    assert "| demo | float32 |" in done.stdout and "| 2 |" in done.stdout


def test_flops_count_the_convolutions_and_dense_layers() -> None:
    inputs = keras.Input((4, 4, 1))
    x = keras.layers.Conv2D(2, 3, padding="same")(inputs)  # 4*4 positions x 2 filters x 3*3*1 weights
    x = keras.layers.Conv2D(3, 1, strides=2)(x)  # 2*2 positions x 3 filters x 1*1*2 weights
    outputs = keras.layers.Dense(5)(keras.layers.Flatten()(x))  # 12 x 5
    model = keras.Model(inputs, outputs)
    assert forward_flops(model) == 2 * (4 * 4 * 2 * 9 + 2 * 2 * 3 * 2 + 12 * 5)
