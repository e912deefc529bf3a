"""Test problems of the quality benchmark, each as a hyperopt space and the same space in Optuna's words.

Every problem has a known optimum, so a run is scored by its *regret* (best loss
so far minus the optimum), and a ``unit`` encoding of a point (numbers scaled to
[0, 1], log-scaled where the space is, categories as labels) to measure how close
two proposals are.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from typing import Any, Callable

import optuna
from hyperopt import hp

Params = dict[str, Any]

BRANIN_OPTIMUM = 0.397887357729739
HARTMANN6_OPTIMUM = -3.32236801141551
_HARTMANN_A = [[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]]
_HARTMANN_P = [[0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886], [0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991],
               [0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650], [0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381]]
_HARTMANN_ALPHA = [1.0, 1.2, 3.0, 3.2]


@dataclasses.dataclass(frozen=True)
class Problem:
    """A space (hyperopt and Optuna), its objective on the concrete params, the optimum, and a unit encoding."""

    name: str
    space: Callable[[], Any]  # a hyperopt space, built fresh
    suggest: Callable[[optuna.Trial], Params]  # the same space, define-by-run
    loss: Callable[[Params], float]
    optimum: float
    unit: Callable[[Params], dict[str, float | str]]


def branin(p: Params) -> float:
    x1, x2 = p["x1"], p["x2"]
    return ((x2 - 5.1 / (4 * math.pi**2) * x1**2 + 5 / math.pi * x1 - 6) ** 2
            + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x1) + 10)


def hartmann6(p: Params) -> float:
    x = [p[f"x{i}"] for i in range(6)]
    return -sum(alpha * math.exp(-sum(a * (xj - pj) ** 2 for a, xj, pj in zip(row, x, prow)))
                for alpha, row, prow in zip(_HARTMANN_ALPHA, _HARTMANN_A, _HARTMANN_P))


# The conditional space, shaped like neural_net.space.CIFAR_SPACE: log-uniform, q-uniform, choices,
# and nested choices whose first branch is None. The optimum (0) is inside the deepest branches.
OPTIMIZERS = ["Adam", "Nadam", "RMSprop"]
POOLING = ["max", "avg", "all_conv", "inception"]


def cnn_space() -> dict[str, Any]:
    return {
        "lr_rate_mult": hp.loguniform("lr_rate_mult", -0.5, 0.5),
        "l2_mult": hp.loguniform("l2_mult", math.log(1e-5), math.log(1e-2)),
        "batch_size": hp.quniform("batch_size", 100, 450, 5),
        "optimizer": hp.choice("optimizer", OPTIMIZERS),
        "dropout": hp.uniform("dropout", 0.0, 0.6),
        "first_conv": hp.choice("first_conv", [None, hp.choice("first_conv_size", [3, 4])]),
        "residual": hp.choice("residual", [None, hp.quniform("residual_units", 1 - 0.499, 4 + 0.499, 1)]),
        "one_more_fc": hp.choice("one_more_fc", [None, hp.loguniform("fc_units_2_mult", -0.6, 0.6)]),
        "pooling_type": hp.choice("pooling_type", POOLING),
    }


def cnn_suggest(t: optuna.Trial) -> Params:
    first = t.suggest_categorical("first_conv", ["none", "conv"])
    residual = t.suggest_categorical("residual", ["none", "res"])
    fc = t.suggest_categorical("one_more_fc", ["none", "fc"])
    return {
        "lr_rate_mult": t.suggest_float("lr_rate_mult", math.exp(-0.5), math.exp(0.5), log=True),
        "l2_mult": t.suggest_float("l2_mult", 1e-5, 1e-2, log=True),
        "batch_size": float(t.suggest_int("batch_size", 100, 450, step=5)),
        "optimizer": t.suggest_categorical("optimizer", OPTIMIZERS),
        "dropout": t.suggest_float("dropout", 0.0, 0.6),
        "first_conv": None if first == "none" else t.suggest_categorical("first_conv_size", [3, 4]),
        "residual": None if residual == "none" else float(t.suggest_int("residual_units", 1, 4)),
        "one_more_fc": None if fc == "none" else t.suggest_float("fc_units_2_mult", math.exp(-0.6), math.exp(0.6),
                                                                 log=True),
        "pooling_type": t.suggest_categorical("pooling_type", POOLING),
    }


def cnn_loss(p: Params) -> float:
    """0 at lr x1.2, l2 3e-4, batch 250, Nadam, dropout 0.25, a 4-wide first conv, 3 residual units,
    a second fc layer x1.3 wide, inception pooling; every None branch costs something."""
    loss = 4 * (math.log(p["lr_rate_mult"]) - math.log(1.2)) ** 2
    loss += 0.3 * (math.log10(p["l2_mult"]) - math.log10(3e-4)) ** 2
    loss += ((p["batch_size"] - 250) / 200) ** 2
    loss += {"Adam": 0.2, "Nadam": 0.0, "RMSprop": 0.4}[p["optimizer"]]
    loss += 3 * (p["dropout"] - 0.25) ** 2
    loss += {None: 0.3, 3: 0.1, 4: 0.0}[p["first_conv"]]
    loss += 0.5 if p["residual"] is None else 0.15 * abs(p["residual"] - 3)
    loss += 0.2 if p["one_more_fc"] is None else 2 * (math.log(p["one_more_fc"]) - math.log(1.3)) ** 2
    return loss + {"max": 0.1, "avg": 0.2, "all_conv": 0.3, "inception": 0.0}[p["pooling_type"]]


def _scaled(value: float, low: float, high: float, log: bool = False) -> float:
    if log:
        value, low, high = math.log(value), math.log(low), math.log(high)
    return (value - low) / (high - low)


def cnn_unit(p: Params) -> dict[str, float | str]:
    unit: dict[str, float | str] = {
        "lr_rate_mult": _scaled(p["lr_rate_mult"], math.exp(-0.5), math.exp(0.5), log=True),
        "l2_mult": _scaled(p["l2_mult"], 1e-5, 1e-2, log=True),
        "batch_size": _scaled(p["batch_size"], 100, 450),
        "optimizer": p["optimizer"], "dropout": _scaled(p["dropout"], 0, 0.6), "pooling_type": p["pooling_type"],
    }
    if p["first_conv"] is not None:
        unit["first_conv"] = str(p["first_conv"])
    if p["residual"] is not None:
        unit["residual"] = _scaled(p["residual"], 1, 4)
    if p["one_more_fc"] is not None:
        unit["one_more_fc"] = _scaled(p["one_more_fc"], math.exp(-0.6), math.exp(0.6), log=True)
    return unit


PROBLEMS = {
    "branin": Problem(
        "branin",
        lambda: {"x1": hp.uniform("x1", -5, 10), "x2": hp.uniform("x2", 0, 15)},
        lambda t: {"x1": t.suggest_float("x1", -5, 10), "x2": t.suggest_float("x2", 0, 15)},
        branin, BRANIN_OPTIMUM,
        lambda p: {"x1": (p["x1"] + 5) / 15, "x2": p["x2"] / 15},
    ),
    "hartmann6": Problem(
        "hartmann6",
        lambda: {f"x{i}": hp.uniform(f"x{i}", 0, 1) for i in range(6)},
        lambda t: {f"x{i}": t.suggest_float(f"x{i}", 0, 1) for i in range(6)},
        hartmann6, HARTMANN6_OPTIMUM,
        lambda p: dict(p),
    ),
    "cnn-like": Problem("cnn-like", cnn_space, cnn_suggest, cnn_loss, 0.0, cnn_unit),
}


def rms_distance(a: dict[str, float | str], b: dict[str, float | str]) -> float:
    """Root mean square distance of two unit-encoded points over the union of their parameters.

    A parameter only one point has (another branch), or a different category, counts 1.
    """
    keys = a.keys() | b.keys()
    total = 0.0
    for k in keys:
        if k not in a or k not in b:
            total += 1.0
        elif isinstance(a[k], str) or isinstance(b[k], str):
            total += float(a[k] != b[k])
        else:
            total += (a[k] - b[k]) ** 2
    return math.sqrt(total / len(keys))


# Module-level spaces and objectives, for real master and worker processes (``--space bench.problems:branin_space
# --objective bench.problems:branin_sleepy``; ``attr`` gives the prefix of a problem).
branin_space = PROBLEMS["branin"].space()
hartmann6_space = PROBLEMS["hartmann6"].space()
cnn_like_space = PROBLEMS["cnn-like"].space()


def attr(problem: str) -> str:
    """The prefix of a problem's module-level space and objective: ``cnn-like`` -> ``cnn_like``."""
    return problem.replace("-", "_")


def eval_seconds(params: Params) -> float:
    """A pseudo-random evaluation time in 0.05-0.3 s, a function of the point (the same in every process)."""
    return random.Random(repr(sorted(params.items()))).uniform(0.05, 0.3)


def _after_sleep(problem: str, params: Params) -> float:
    time.sleep(eval_seconds(params))
    return PROBLEMS[problem].loss(params)


def branin_sleepy(params: Params) -> float:
    return _after_sleep("branin", params)


def hartmann6_sleepy(params: Params) -> float:
    return _after_sleep("hartmann6", params)


def cnn_like_sleepy(params: Params) -> float:
    return _after_sleep("cnn-like", params)
