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
rung, as with one worker, or (``reached``) the trials that had reached it
before it in the recorded run, whose times a stopping run would shift.
``replay_promoting`` replays ASHA with promotions (``--promote yes``), one
worker: a paused trial may be continued later, when its rung has filled up.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from caviar.schedulers import Asha, Decision, Scheduler


@dataclass(frozen=True)
class Replayed:
    """A search replayed: each trial's epochs, and when the best accuracy of the search without stopping fell."""

    epochs: list[int]  # per trial, in order: where the scheduler stopped it, or its full length
    target_trial: int  # the first trial whose full curve reached the target
    target_stopped_at: int | None  # the step the scheduler stopped that trial at; None: it ran on
    to_target: int | None  # epochs (summed, in order) until a replayed trial reached the target; None: never


def replay(scheduler: Scheduler, curves: Sequence[Sequence[float]], target: float,
           reached: Sequence[Sequence[float]] | None = None) -> Replayed:
    """``scheduler`` judging ``curves`` (per-epoch accuracies, trial ``i`` arriving ``i``-th) against ``target``.

    A trial reports the epoch's negated accuracy at each step, as the benchmark's objective does, and a
    NaN stands for a non-finite report (the scheduler stops it at a rung). Trials reach their steps one
    after the other, or, with ``reached`` (``reached[i][s - 1]``: when trial ``i`` reached step ``s`` in
    the recorded run, several workers overlapping), in that order.
    """
    events = sorted((reached[tid][step - 1] if reached is not None else tid, tid, step)
                    for tid, curve in enumerate(curves) for step in range(1, len(curve) + 1))
    at_step: dict[int, dict[int, float | None]] = defaultdict(dict)
    stopped: dict[int, int] = {}
    for _, tid, step in events:
        if tid in stopped:
            continue
        accuracy = curves[tid][step - 1]
        at_step[step][tid] = -accuracy if math.isfinite(accuracy) else None
        if scheduler.decides_at(tid, step) and scheduler.decide(tid, step, at_step[step]).stop:
            stopped[tid] = step
    epochs = [stopped.get(tid, len(curve)) for tid, curve in enumerate(curves)]
    target_trial = next((i for i, curve in enumerate(curves) if _best(curve) >= target), None)
    if target_trial is None:
        raise ValueError(f"no curve reaches the target {target!r}")
    spent, to_target = 0, None
    for curve, trained in zip(curves, epochs):
        spent += trained
        if _best(curve[:trained]) >= target:
            to_target = spent
            break
    return Replayed(epochs, target_trial, stopped.get(target_trial), to_target)


def replay_promoting(asha: Asha, curves: Sequence[Sequence[float]], target: float) -> Replayed:
    """``replay`` for ASHA with promotions, one worker, as a live search runs it: after each trial ends, the
    paused trials that the rungs now promote (``Asha.promotions``, higher rungs first) are continued first,
    each as a trial of its own from the step after its pause, then the next recorded trial comes. ``epochs``
    counts a recorded trial's continuations with it; the epochs to the target are summed in that order."""
    if not asha.promotes:
        raise ValueError("replay_promoting needs an Asha that promotes")
    finished: list[dict[str, Any]] = []  # the store's documents of the trials ended so far, in that order
    at_step: dict[int, dict[int, float | None]] = defaultdict(dict)
    origin: dict[int, int] = {}  # tid -> the recorded trial it trains (a promotion: its paused trial's)
    trained = [0] * len(curves)
    fresh, promoted, spent, to_target = iter(range(len(curves))), itertools.count(len(curves)), 0, None
    while True:
        due = asha.promotions(finished, [])
        if due:
            parent, paused_at = due[0][0]["tid"], due[0][1]
            tid, first = next(promoted), paused_at + 1
            origin[tid] = origin[parent]
        else:
            tid, parent, first = next(fresh, None), None, 1
            if tid is None:
                break
            origin[tid] = tid
        curve, reports, stop = curves[origin[tid]], {}, None
        for step in range(first, len(curve) + 1):
            loss = -curve[step - 1] if math.isfinite(curve[step - 1]) else None
            at_step[step][tid] = reports[str(step)] = loss
            if asha.decides_at(tid, step) and asha.decide(tid, step, at_step[step]).stop:
                stop = step
                break
        trained[origin[tid]] = step
        spent += step - first + 1
        if to_target is None and _best(curve[:step]) >= target:
            to_target = spent
        result: dict[str, Any] = {"status": "ok"}
        if stop is not None:  # paused with a checkpoint when its report was finite, as ReportEpochs keeps one
            result |= {"stopped": True, "stopped_at": stop, "paused": reports[str(stop)] is not None}
        finished.append({"tid": tid, "reports": reports, "result": result}
                        | ({} if parent is None else {"continues": {"tid": parent}}))
    target_trial = next((i for i, curve in enumerate(curves) if _best(curve) >= target), None)
    if target_trial is None:
        raise ValueError(f"no curve reaches the target {target!r}")
    ended = trained[target_trial]
    return Replayed(trained, target_trial, None if ended == len(curves[target_trial]) else ended, to_target)


class OptunaPruner(Scheduler):
    """An Optuna pruner behind Caviar's scheduler interface, so that a replay judges the same curves by its rule.

    Each trial is a trial of an in-memory study that reports every step's loss and asks ``should_prune``,
    as the benchmark's Optuna processes do; ``decide`` must see every trial's steps in order (as ``replay``
    gives them), since the study keeps what it was told. ``min_epochs`` and ``reduction_factor``, the
    pruner's own, are checked as Caviar's.
    """

    name = "optuna"

    def __init__(self, pruner: Any, min_epochs: int, reduction_factor: int, max_epochs: int):
        import optuna

        super().__init__(min_epochs, reduction_factor, max_epochs)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        # Hyperband places a trial in its bracket by a hash of the study's name and the trial's number: the
        # benchmark's name, so that trial i lands where it did there, and the same on every replay.
        self.study = optuna.create_study(study_name="bench", direction="minimize", pruner=pruner)
        self.trials: dict[int, optuna.Trial] = {}

    def decides_at(self, tid: int, step: int) -> bool:
        return self.max_epochs is None or step < self.max_epochs

    def decide(self, tid: int, step: int, losses: Mapping[int, float | None]) -> Decision:
        if tid not in self.trials:
            self.trials[tid] = self.study.ask()
        loss = losses[tid]
        self.trials[tid].report(math.nan if loss is None else loss, step)
        return Decision(stop=self.trials[tid].should_prune(), peers=len(losses), cutoff=None)


def _best(accuracies: Sequence[float]) -> float:
    return max((a for a in accuracies if math.isfinite(a)), default=-math.inf)
