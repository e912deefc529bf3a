"""The sampler interface: one abstract class, one small module per algorithm.

Like Optuna's samplers, a sampler only proposes points; ``Search`` owns the
store, the trial ids, the seeds and the refusal of duplicates. A sampler is
told the experiment as two plain sequences of hyperopt-style trial documents:

- ``finished``: DONE trials (``result["status"]`` "ok" with a ``loss``, or
  "fail"), in tid order. It only ever grows, so a sampler may keep what it
  learnt from earlier calls and look only at the documents it has not seen
  (the master keeps an append-only history of finished trials);
- ``pending``: queued and running trials, *including* the proposals made
  earlier in the same top-up, so a parallel-aware sampler can steer away
  from points that are already being evaluated.

A proposal is hyperopt's ``misc["vals"]``: every label of the space mapped to
``[value]`` when active and ``[]`` when a choice switched it off; seeded by the
caller so that a resumed search proposes what an uninterrupted one would have.
"""

from __future__ import annotations

import abc
import math
from typing import Any, Sequence

from hyperopt import Domain

Doc = dict[str, Any]
Vals = dict[str, list[Any]]


class Sampler(abc.ABC):
    """Proposes points of one hyperopt space (given as a ``hyperopt.Domain``)."""

    def __init__(self, domain: Domain):
        self.domain = domain

    @abc.abstractmethod
    def propose(self, tid: int, seed: int, finished: Sequence[Doc], pending: Sequence[Doc]) -> Vals:
        """The point for trial ``tid``: the same arguments (and seed) always give the same point."""


def finished_loss(doc: Doc) -> float | None:
    """A finished trial's loss, or None when it failed (or its loss is not a finite number)."""
    result = doc["result"]
    loss = result.get("loss")
    if result.get("status") != "ok" or not isinstance(loss, (int, float)) or not math.isfinite(loss):
        return None
    return float(loss)
