"""Cheap objectives and a small space for tests of the stores, the workers and the master.

Workers run in other processes, so the knobs come from the params or from
environment variables that a test puts in the experiment's ``env``.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
from typing import Any

from hyperopt import hp

from caviar.errors import CaviarError
from caviar.family import ModelFamily

# Two top-level parameters and a conditional branch with nested parameters.
SPACE: dict[str, Any] = {
    "x": hp.uniform("x", -3.0, 3.0),
    "model": hp.choice(
        "model",
        [
            {"kind": "linear"},
            {"kind": "poly", "degree": hp.quniform("degree", 2, 4, 1), "scale": hp.loguniform("scale", -1.0, 1.0)},
        ],
    ),
}


def quadratic(params: dict[str, Any]) -> float:
    """(x - 1)^2, plus a penalty for the polynomial branch: minimum 0 at x=1, linear."""
    loss = (params.get("x", 0.0) - 1.0) ** 2
    model = params.get("model") or {}
    if model.get("kind") == "poly":
        loss += 0.1 * model["degree"] * model["scale"]
    return loss


def sleepy(params: dict[str, Any]) -> float:
    """``quadratic`` after sleeping ``params["sleep"]`` or $SLEEPY_SECONDS (default 0.1) seconds."""
    time.sleep(float(params.get("sleep", os.environ.get("SLEEPY_SECONDS", "0.1"))))
    return quadratic(params)


def crash_once(params: dict[str, Any]) -> float:
    """SIGKILLs its own worker the first time (marker file $CRASH_ONCE_MARKER), then acts as ``quadratic``."""
    marker = os.environ["CRASH_ONCE_MARKER"]
    if not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return quadratic(params)


def always_raises(params: dict[str, Any]) -> float:
    """Every trial fails."""
    raise ValueError("always_raises fails on purpose")


def kill_worker(params: dict[str, Any]) -> float:
    """SIGKILLs its own worker for a poison point (``params["poison"]``), else acts as ``quadratic``."""
    if params.get("poison"):
        os.kill(os.getpid(), signal.SIGKILL)
    return quadratic(params)


def with_artifact(params: dict[str, Any]) -> dict[str, Any]:
    """``quadratic`` that also returns a "model" file holding its loss, like a trained network."""
    loss = quadratic(params)
    path = os.path.join(tempfile.mkdtemp(), "model.txt")
    with open(path, "w") as f:
        f.write(repr(loss))
    return {"loss": loss, "artifacts": {"model": path}}


def environment(params: dict[str, Any]) -> dict[str, Any]:
    """Reports what the worker set up: GPU pinning, TensorFlow loaded or not, the experiment's $PROBE."""
    return {
        "loss": 0.0,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "tensorflow_loaded": "tensorflow" in sys.modules,
        "probe": os.environ.get("PROBE"),
    }


def needs_missing_data(params: dict[str, Any]) -> float:
    """Stands for an objective whose data set is missing on this host: a CaviarError."""

    raise CaviarError("no data set here: put it in ml_req/")


def stops_when_asked(params: dict[str, Any]) -> float:
    """Works for ``params["seconds"]`` (default 30) in 0.1 s steps, calling check_stop after each, like an epoch loop."""
    from caviar.objective import check_stop

    deadline = time.monotonic() + float(params.get("seconds", 30))
    while time.monotonic() < deadline:
        time.sleep(0.1)
        check_stop()
    return quadratic(params)


def with_attachments(params: dict[str, Any]) -> dict[str, Any]:
    """``quadratic`` returning hyperopt result attachments (bytes), as hyperopt users' objectives do."""
    loss = quadratic(params)
    return {"loss": loss, "status": "ok", "attachments": {"blob": repr(loss).encode()}}


def oversized(params: dict[str, Any]) -> dict[str, Any]:
    """``quadratic``, with a result over MongoDB's 16 MB document limit when ``params["oversized"]``."""
    result = {"loss": quadratic(params), "status": "ok"}
    return result | {"predictions": "0" * (17 * 2**20)} if params.get("oversized") else result


class _FamilyWithoutData(ModelFamily):
    """A family whose data set is missing on this host: ``prepare`` says so before any trial trains."""

    def prepare(self) -> None:
        raise CaviarError("no data set here: put it in ml_req/")

    def objective(self, params: dict) -> float:
        raise AssertionError("a trial ran although the family's data set is missing")


FAMILY_WITHOUT_DATA = _FamilyWithoutData()
