"""The benchmark's objective and search space, shared by every system compared.

``sleep_objective`` stands for a trial whose work costs no CPU: it sleeps
``$BENCH_SLEEP`` seconds (default 0.2) and returns a deterministic loss of the
parameters. Whatever a run takes beyond ``trials x sleep / workers`` is the
coordination overhead of the system under test.

When ``$BENCH_TIMES_DIR`` is set, each call appends ``start end`` (epoch
seconds) to ``<dir>/<pid>.txt``: a record written alike by every system (no
database round trip), from which the benchmark derives the steady-state span
(first trial's start to last trial's end) and the idle gap between two trials of
one worker process.

``reporting_objective`` does the same after reporting a learning curve of
``STEPS`` steps, stopping when the scheduler says so (Optuna's counterpart:
``optuna_reports``): what deciding costs, per trial, as the experiment grows.

``SPACE`` (hyperopt, built on first access) and ``optuna_params`` (Optuna)
describe the same four parameters.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

ACTIVATIONS = ["relu", "elu", "tanh"]


def hyperopt_space() -> dict[str, Any]:
    """The space as hyperopt expressions (``SPACE``)."""
    from hyperopt import hp

    return {
        "x": hp.uniform("x", -5.0, 5.0),
        "lr": hp.loguniform("lr", math.log(1e-4), math.log(1e-1)),
        "units": hp.quniform("units", 16, 256, 16),
        "activation": hp.choice("activation", ACTIVATIONS),
    }


def __getattr__(name: str) -> Any:
    # SPACE is built on first use, so Optuna's processes never import hyperopt
    # (its import time would count against Optuna's start-up).
    if name == "SPACE":
        space = globals()["SPACE"] = hyperopt_space()
        return space
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def sleep_seconds() -> float:
    """How long one trial sleeps: ``$BENCH_SLEEP`` or 0.2 s."""
    return float(os.environ.get("BENCH_SLEEP", "0.2"))


def loss_of(params: dict[str, Any]) -> float:
    """A smooth loss with its minimum at x=1, lr=10^-2.5, units=128, activation=elu."""
    return (
        (float(params["x"]) - 1.0) ** 2
        + (math.log10(float(params["lr"])) + 2.5) ** 2
        + ((float(params["units"]) - 128.0) / 128.0) ** 2
        + (0.0 if params["activation"] == "elu" else 0.1)
    )


def _record(start: float, end: float) -> None:
    folder = os.environ.get("BENCH_TIMES_DIR")
    if folder:
        with open(os.path.join(folder, f"{os.getpid()}.txt"), "a", encoding="ascii") as f:
            f.write(f"{start:.6f} {end:.6f}\n")


def payload() -> dict[str, Any]:
    """Extra result fields: none, or with ``$BENCH_PAYLOAD=cnn`` a CNN-sized training history
    (10 metrics x 100 epochs, as the CNN objective returns), to measure document size."""
    if os.environ.get("BENCH_PAYLOAD") != "cnn":
        return {}
    return {"history": {f"metric_{m}": [1.0 / (1 + m + e) for e in range(100)] for m in range(10)}}


def sleep_objective(params: dict[str, Any]) -> dict[str, Any]:
    """Sleep ``sleep_seconds()``, then return the point's loss (a hyperopt result dict) and ``payload()``."""
    start = time.time()
    seconds = sleep_seconds()
    if seconds:
        time.sleep(seconds)
    loss = loss_of(params)
    _record(start, time.time())
    return {"loss": loss, "status": "ok"} | payload()


STEPS = 9  # reports per trial of reporting_objective: ASHA (1/3) decides at steps 1 and 3


def curve(params: dict[str, Any], step: int) -> float:
    """The loss reported at ``step``: the point's final loss, worse the earlier the step."""
    return loss_of(params) * (1.0 + 1.0 / step)


def reporting_objective(params: dict[str, Any]) -> dict[str, Any]:
    """``sleep_objective`` after reporting ``curve`` at steps 1..``STEPS``; a trial told to stop ends there, with
    its best reported loss."""
    from caviar import reporting

    for step in range(1, STEPS + 1):
        if not reporting.report(step, curve(params, step)):
            raise reporting.TrialStopped()
    return sleep_objective(params)


reporting_objective.scheduler, reporting_objective.max_steps = "asha", STEPS  # type: ignore[attr-defined]


def optuna_reports(trial: Any, params: dict[str, Any]) -> bool:
    """``reporting_objective``'s reports in an Optuna trial; False once its pruner says stop."""
    for step in range(1, STEPS + 1):
        trial.report(curve(params, step), step)
        if trial.should_prune():
            return False
    return True


def optuna_params(trial: Any) -> dict[str, Any]:
    """``SPACE`` asked of an Optuna trial."""
    return {
        "x": trial.suggest_float("x", -5.0, 5.0),
        "lr": trial.suggest_float("lr", 1e-4, 1e-1, log=True),
        "units": float(trial.suggest_int("units", 16, 256, step=16)),
        "activation": trial.suggest_categorical("activation", ACTIVATIONS),
    }
