"""The model trains, is saved and reloaded the same way under TensorFlow (this process) and JAX (a subprocess)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import keras
import pytest

from tests.neural_net.backend_check import run

ROOT = Path(__file__).resolve().parents[2]


def _jax(folder: Path) -> dict[str, Any]:
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-m", "tests.neural_net.backend_check", str(folder)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_a_short_training_under_each_backend(backend: str, tmp_path: Path) -> None:
    if backend == "tensorflow":
        assert keras.config.backend() == "tensorflow"  # the suite's own backend
    summary = run(tmp_path, times=2) if backend == "tensorflow" else _jax(tmp_path)

    assert summary["backend"] == backend and summary["policy"] == summary["expected_policy"]
    first, *again = summary["runs"]
    assert all(run["history"] == first["history"] for run in again)  # the seed fixes weights, flips, shuffling
    assert all(math.isfinite(value) for values in first["history"].values() for value in values)
    assert first["reloaded_accuracy"] == pytest.approx(first["history"]["val_fine_outputs_accuracy"][0])
