"""Exhaustive grids over hyperopt spaces: every point of a space with finitely many values.

A grid search over a hyperopt space needs no second way of writing spaces:
``hp.choice`` lists (nested choices included, where only the active branch's
sub-parameters vary), ``hp.pchoice``, ``hp.randint`` and the q-distributions
with bounds (``quniform``, ``uniformint``, ``qloguniform``) have finitely many
values. Each point is given in hyperopt's own ``misc`` layout (``vals`` and
``idxs`` per label, ``[]`` for an inactive label), so ``hyperopt.space_eval``,
the trial store and TPE read grid trials exactly like sampled ones.

The values are those hyperopt itself can draw: a q-distribution's value is
``np.round(x / q) * q`` for x in its range, so ``quniform(3, 5, 2)`` only ever
yields 4.0 (its ends 3 and 5 round to 4 under numpy's half-to-even rounding).
Points come in a stable order: the space's labels in hyperopt's order (dict
keys sorted), the last label varying fastest, a choice's options in order.

``GridSearch`` queues the points into a trial store as a ``Searcher`` (the
master's interface, ``top_up``), skipping points already stored, for ``--algo grid``.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
from hyperopt.pyll import Apply, as_apply, dfs

from caviar.errors import CaviarError
from caviar.schedulers import Scheduler
from optimizer.search import Searcher, concrete_params
from caviar.store import NEW, TrialStore, vals_key

log = logging.getLogger(__name__)

Assignment = dict[str, Any]
# hyperopt's misc "cmd" of a trial proposed for an fmin-style domain.
MISC_CMD = ("domain_attachment", "FMinIter_Domain")


def _literal(node: Apply, label: str = "") -> Any:
    if node.name != "literal":
        where = f" of {label!r}" if label else ""
        raise CaviarError(f"grid search needs constant bounds{where}, got a computed {node.name} expression")
    return node.obj


def _values(label: str, dist: Apply) -> list[Any]:
    """The finitely many values hyperopt can draw for ``label``, or a CaviarError naming it."""
    if dist.name == "categorical":  # hp.pchoice: categorical(pos_args(p...), upper)
        return list(range(len(dist.pos_args[0].pos_args)))
    if dist.name not in ("randint", "quniform", "qloguniform"):
        raise CaviarError(
            f"grid search cannot enumerate {label!r}: hp.{dist.name} has infinitely many values; "
            "use hp.choice or a bounded q-distribution (quniform, qloguniform, randint)"
        )
    args = [_literal(a, label) for a in dist.pos_args] + [_literal(v, label) for _, v in dist.named_args]
    if dist.name == "randint":
        low, high = (0, args[0]) if len(args) == 1 else args[:2]
        return list(range(int(low), int(high)))
    low, high, q = args[:3]
    if dist.name == "qloguniform":
        low, high = math.exp(low), math.exp(high)
    return [float(step * q) for step in range(int(np.round(low / q)), int(np.round(high / q)) + 1)]


def _merge(parts: tuple[Assignment, ...]) -> Assignment | None:
    """One assignment from those of sibling sub-expressions; None if a shared label disagrees."""
    merged: Assignment = {}
    for part in parts:
        for label, value in part.items():
            if merged.setdefault(label, value) != value:
                return None
    return merged


def _assignments(node: Apply, memo: dict[int, list[Assignment]]) -> list[Assignment]:
    """Every assignment of the labels that ``node`` depends on, in grid order."""
    if id(node) in memo:
        return memo[id(node)]
    if node.name == "hyperopt_param":
        label = _literal(node.pos_args[0])
        points = [{label: v} for v in _values(label, node.pos_args[1])]
    elif node.name == "switch" and node.pos_args[0].name == "hyperopt_param":
        index, options = node.pos_args[0], node.pos_args[1:]
        label = _literal(index.pos_args[0])
        points = []
        for choice in _assignments(index, memo):
            merged = (_merge((choice, sub)) for sub in _assignments(options[choice[label]], memo))
            points.extend(p for p in merged if p is not None)
    else:
        children = [_assignments(child, memo) for child in node.inputs()]
        points = [p for p in map(_merge, itertools.product(*children)) if p is not None]
    memo[id(node)] = points
    return points


def _labels(node: Apply) -> list[str]:
    """Every label of the space, in hyperopt's order (that of ``Domain.params``)."""
    return [_literal(n.pos_args[0]) for n in dfs(node) if n.name == "hyperopt_param"]


def grid_points(space: Any) -> Iterator[dict[str, list[Any]]]:
    """Each point of ``space`` as hyperopt's ``misc["vals"]``: ``{label: [value]}``, ``[]`` if inactive.

    Raises CaviarError naming the first label with infinitely many values.
    """
    expr = as_apply(space)
    labels = list(dict.fromkeys(_labels(expr)))
    for point in _assignments(expr, {}):
        yield {label: [point[label]] if label in point else [] for label in labels}


def grid_size(space: Any) -> int:
    """How many points ``grid_points(space)`` yields, counted without building them.

    Sums over a choice's options and multiplies across sub-expressions; a label
    used in several places makes sub-expressions dependent, so such a space is
    counted by enumeration instead.
    """
    labels: list[str] = []

    def count(node: Apply) -> int:  # a tree walk: a node reached twice is counted twice
        if node.name == "hyperopt_param":
            labels.append(_literal(node.pos_args[0]))
            return len(_values(labels[-1], node.pos_args[1]))
        if node.name == "switch" and node.pos_args[0].name == "hyperopt_param":
            return sum(count(option) for option in node.pos_args[1:1 + count(node.pos_args[0])])
        return math.prod(count(child) for child in node.inputs())

    n = count(as_apply(space))
    return n if len(labels) == len(set(labels)) else sum(1 for _ in grid_points(space))


def grid_misc(vals: dict[str, list[Any]], tid: int) -> dict[str, Any]:
    """The full hyperopt ``misc`` of a grid point for trial ``tid`` (active labels index the trial)."""
    return {
        "tid": tid,
        "cmd": MISC_CMD,
        "workdir": None,
        "idxs": {label: [tid] if v else [] for label, v in vals.items()},
        "vals": {label: list(v) for label, v in vals.items()},
    }


def grid_doc(tid: int, vals: dict[str, list[Any]], params: Any) -> dict[str, Any]:
    """A NEW trial document of a grid point, in hyperopt's layout plus its concrete ``params``."""
    return {
        "tid": tid, "spec": None, "result": {"status": "new"}, "misc": grid_misc(vals, tid), "params": params,
        "state": NEW, "owner": None, "book_time": None, "refresh_time": None, "version": 0,
    }


class GridSearch(Searcher):
    """Queues every point of a space into a store, in grid order.

    Points already in the store (any state) are skipped, so a resumed or
    restarted master goes on where the queue stopped, and several masters
    never queue a point twice. ``max_evals`` caps the number of trials (the
    whole grid by default); ``exhausted`` turns True once every point is queued.
    """

    def __init__(self, store: TrialStore, space: Any, max_evals: int | None = None,
                 scheduler: Scheduler | None = None):
        self.store, self.space, self.scheduler = store, space, scheduler
        self.size = grid_size(space)
        self.max_evals = self.size if max_evals is None else min(max_evals, self.size)
        if self.max_evals < 1:
            raise CaviarError(f"max-evals must be at least 1, not {max_evals}")
        self._points = grid_points(space)
        self.exhausted = False

    def _new_docs(self, wanted: int, finished: list[dict[str, Any]], pending: list[dict[str, Any]]
                  ) -> list[dict[str, Any]]:
        seen = {vals_key(d["misc"]) for d in [*finished, *pending]}
        new_docs: list[dict[str, Any]] = []
        while len(new_docs) < wanted:
            vals = next(self._points, None)
            if vals is None:
                self.exhausted = True
                log.info("every point of the grid is queued")
                break
            if vals_key({"vals": vals}) in seen:
                continue
            [tid] = self.store.new_tids(1)
            new_docs.append(grid_doc(tid, vals, concrete_params(self.space, grid_misc(vals, tid))))
        return new_docs
