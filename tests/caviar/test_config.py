"""Logging set-up: a CPU-only run prints no TensorFlow error line; a GPU machine still shows CUDA errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from caviar.config import NVIDIA_DRIVER, tensorflow_log_level
from tests.conftest import ROOT

PROBE = ("from caviar.config import configure_logging; configure_logging(False); "
         "import tensorflow as tf; print(len(tf.config.list_physical_devices('GPU')))")


def test_tensorflow_errors_are_hidden_only_without_a_gpu_driver(tmp_path: Path) -> None:
    driver = tmp_path / "version"
    assert tensorflow_log_level(str(driver)) == "3"
    driver.write_text("NVRM version: 550\n")
    assert tensorflow_log_level(str(driver)) == "2"


def test_a_run_prints_no_tensorflow_error_line() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "CUDA_VISIBLE_DEVICES")}
    probe = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env | {"PYTHONPATH": str(ROOT)},
                           capture_output=True, text=True, timeout=300)
    assert probe.returncode == 0, probe.stderr
    errors = [line for line in probe.stderr.splitlines() if re.match(r"[EF]\d{4} ", line)]
    assert errors == [], errors
    gpus = int(probe.stdout.split()[-1])
    assert (gpus > 0) == os.path.exists(NVIDIA_DRIVER)  # a GPU machine still sees its GPUs
