"""A scheduler replayed on recorded learning curves: what its rule alone would have stopped.

The early-stopping benchmark's search without stopping keeps every trial's
validation accuracy at each epoch. Replaying a scheduler on those curves, in
the order the trials finished and one at a time, answers a question that a
live run mixes with the sampler's: had the search proposed exactly these
trials, how many epochs would the stopping rule have needed to reach the same
best accuracy, and would it have let the trial that set it run on?

Held fixed, the proposals are not what a sampler would propose with stopping
(it would see other results), so a replay neither bounds a live run from above
nor from below; it isolates the rule. Each trial sees every earlier trial at a
rung, as with one worker; with several, a trial sees fewer.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from caviar.schedulers import Scheduler


@dataclass(frozen=True)
class Replayed:
    """A search replayed: each trial's epochs, and when the best accuracy of the search without stopping fell."""

    epochs: list[int]  # per trial, in order: where the scheduler stopped it, or its full length
    target_trial: int  # the first trial whose full curve reached the target
    target_stopped_at: int | None  # the step the scheduler stopped that trial at; None: it ran on
    to_target: int | None  # epochs (summed, in order) until a replayed trial reached the target; None: never


def replay(scheduler: Scheduler, curves: Sequence[Sequence[float]], target: float) -> Replayed:
    """``scheduler`` judging ``curves`` (per-epoch accuracies, trial ``i`` arriving ``i``-th) against ``target``.

    A trial reports the epoch's negated accuracy at each step, as the benchmark's objective does, and a
    NaN stands for a non-finite report (the scheduler stops it at a rung).
    """
    at_step: dict[int, dict[int, float | None]] = defaultdict(dict)
    epochs: list[int] = []
    for tid, curve in enumerate(curves):
        ran = len(curve)
        for step, accuracy in enumerate(curve, 1):
            at_step[step][tid] = -accuracy if math.isfinite(accuracy) else None
            if scheduler.decides_at(tid, step) and scheduler.decide(tid, step, at_step[step]).stop:
                ran = step
                break
        epochs.append(ran)
    target_trial = next((i for i, curve in enumerate(curves) if _best(curve) >= target), None)
    if target_trial is None:
        raise ValueError(f"no curve reaches the target {target!r}")
    ran = epochs[target_trial]
    spent, to_target = 0, None
    for curve, trained in zip(curves, epochs):
        spent += trained
        if _best(curve[:trained]) >= target:
            to_target = spent
            break
    return Replayed(epochs, target_trial, ran if ran < len(curves[target_trial]) else None, to_target)


def _best(accuracies: Sequence[float]) -> float:
    return max((a for a in accuracies if math.isfinite(a)), default=-math.inf)
