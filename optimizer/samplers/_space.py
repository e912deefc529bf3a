"""A hyperopt space seen as a flat list of labelled parameters with their activation conditions.

Samplers that are not hyperopt's own (Optuna's TPE) need each label's
distribution as an Optuna distribution and the choices that switch it on. The
translation keeps hyperopt's *values* (the ``misc["vals"]`` a trial document
holds) exactly, so ``hyperopt.space_eval`` gives the objective the same concrete
parameters whatever sampler proposed the point:

- ``uniform`` / ``loguniform``: a float (log-scaled for loguniform);
- ``quniform`` / ``qloguniform``: the integer ``k`` of the value ``k * q``;
- ``choice``: the option's index; ``randint``: the integer itself.

Anything else (``normal``, ``lognormal`` and their q-forms, ``pchoice`` whose
option weights Optuna cannot hold, a distribution whose bounds are pyll
expressions) is a *prior* parameter: drawn from its hyperopt prior.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any, Mapping

import numpy as np
from hyperopt.pyll import Apply
from hyperopt.pyll.stochastic import sample as pyll_sample
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution


@dataclasses.dataclass(frozen=True)
class Param:
    """One hyperopt label: how Optuna sees it (None: drawn from its prior) and when it is active."""

    label: str
    node: Apply  # the hyperopt distribution node, e.g. uniform(0, 1)
    distribution: BaseDistribution | None
    # Active when any of these conjunctions of (choice label, option index) holds; () is "always".
    conditions: frozenset[tuple[tuple[str, int], ...]]
    q: float | None = None  # quantised kinds: the Optuna value is k, the hyperopt value k * q

    def active(self, vals: Mapping[str, list[Any]]) -> bool:
        """Whether the choices already made in ``vals`` switch this parameter on."""
        return any(all(vals.get(label) == [index] for label, index in conj) for conj in self.conditions)

    def to_optuna(self, value: Any) -> Any:
        """The Optuna value of a hyperopt value (clamped into range: stored floats may be off by an ulp)."""
        dist = self.distribution
        if isinstance(dist, CategoricalDistribution):
            return int(value)
        if isinstance(dist, IntDistribution):
            k = int(round(value / self.q)) if self.q else int(value)
            return min(max(k, dist.low), dist.high)
        assert isinstance(dist, FloatDistribution)
        return min(max(float(value), dist.low), dist.high)

    def to_hyperopt(self, value: Any) -> Any:
        """The hyperopt value (what ``misc["vals"]`` holds) of an Optuna value."""
        if self.q:
            return float(value * self.q)
        return int(value) if isinstance(self.distribution, (CategoricalDistribution, IntDistribution)) else float(value)

    def sample_prior(self, rng: np.random.Generator) -> Any:
        """A draw from the hyperopt prior, for parameters Optuna cannot model."""
        return np.asarray(pyll_sample(self.node, rng=rng)).item()


def _literal_args(node: Apply) -> list[float] | None:
    """The node's positional and keyword arguments as numbers, or None when one is an expression."""
    names = {"uniform": ("low", "high"), "loguniform": ("low", "high"), "quniform": ("low", "high", "q"),
             "qloguniform": ("low", "high", "q"), "randint": ("low", "high")}.get(node.name)
    args = list(node.pos_args) + [v for _, v in node.named_args]
    if names is None or not all(a.name == "literal" and isinstance(a.obj, (int, float)) for a in args):
        return None
    values = {n: a.obj for n, a in zip(names, node.pos_args)} | {k: v.obj for k, v in node.named_args}
    if node.name == "randint" and "high" not in values:  # randint(upper)
        values = {"low": 0, "high": values["low"]}
    return [values[n] for n in names] if set(values) == set(names) else None


def _distribution(node: Apply, is_choice: bool) -> tuple[BaseDistribution | None, float | None]:
    """Optuna's view of a hyperopt distribution node (and its q), or (None, None) if it has none."""
    args = _literal_args(node)
    if args is None:
        return None, None
    if node.name == "randint":
        low, high = (int(a) for a in args)
        return (CategoricalDistribution(list(range(low, high))) if is_choice else IntDistribution(low, high - 1)), None
    if node.name == "uniform":
        return FloatDistribution(args[0], args[1]), None
    if node.name == "loguniform":
        return FloatDistribution(math.exp(args[0]), math.exp(args[1]), log=True), None
    low, high, q = args
    if node.name == "qloguniform":
        low, high = math.exp(low), math.exp(high)
    k_low, k_high = int(np.round(low / q)), int(np.round(high / q))
    return IntDistribution(k_low, k_high, log=node.name == "qloguniform" and k_low >= 1), q


Conjunction = tuple[tuple[str, int], ...]


def _walk(expr: Apply, conj: Conjunction, found: dict[str, tuple[Apply, set[Conjunction]]], choices: set[str]) -> None:
    """Collect each label's distribution node and the choices leading to it (parents first)."""
    if expr.name == "switch":
        index, *options = expr.pos_args
        _walk(index, conj, found, choices)
        label = index.arg["label"].obj
        choices.add(label)
        for i, option in enumerate(options):
            _walk(option, conj + ((label, i),), found, choices)
    elif expr.name == "hyperopt_param":
        node = expr.arg["obj"]
        found.setdefault(expr.arg["label"].obj, (node, set()))[1].add(conj)
        _walk(node, conj, found, choices)
    else:
        for child in expr.inputs():
            _walk(child, conj, found, choices)


def warn_prior(log: logging.Logger, algo: str, params: list[Param]) -> None:
    """One warning naming the parameters ``algo`` cannot model (drawn from their prior), if any."""
    prior = [p.label for p in params if p.distribution is None]
    if prior:
        log.warning("%s cannot model %s %s: drawn from the hyperopt prior instead", algo,
                    "parameter" if len(prior) == 1 else "parameters", ", ".join(map(repr, prior)))


def translate(expr: Apply) -> list[Param]:
    """Every label of a hyperopt space (``hyperopt.Domain(...).expr``), parents before their children.

    (hyperopt's own ``expr_to_config`` fails on ``hp.pchoice``, hence this walk.)
    """
    found: dict[str, tuple[Apply, set[Conjunction]]] = {}
    choices: set[str] = set()
    _walk(expr, (), found, choices)
    params = []
    for label, (node, conditions) in found.items():
        dist, q = _distribution(node, label in choices)
        params.append(Param(label, node, dist, frozenset(conditions), q))
    return params
