"""Intermediate reports: how an objective says how it is doing, and learns whether to go on.

Any objective (a plain function or a model family) may call, once per step
(an epoch):

    from caviar import reporting

    def objective(params):
        for epoch in range(1, 6):
            loss = train_one_epoch(...)
            if not reporting.report(epoch, loss):    # the scheduler says: stop
                raise reporting.TrialStopped()       # or return a result as usual
        return loss

``report`` records the value in the trial's document (both store backends) and
asks the experiment's scheduler (``--scheduler``) whether the trial goes on.
Values are in the objective's own direction: a loss for a minimized objective,
an accuracy for one with ``maximize = True``. A NaN/inf value is recorded as
missing and always stops the trial when the scheduler decides at that step.

A stopped trial is not a failure: it finishes ok, with ``"stopped": true`` and
the step it stopped at; raising ``TrialStopped`` lets the runner fill in the
loss (the best value reported). Outside a run (a unit test, a notebook) or
with ``--scheduler none`` nothing is stopped and ``report`` returns True.

Checkpoints let a trial resume where it stopped (its worker died, the embedded
search was interrupted): ``save_checkpoint(path, step, info)`` keeps a copy of
the file (only the latest per trial) with plain ``info`` (e.g. the history so
far), and ``restore_checkpoint(dest)`` copies it back and returns what was
saved. The checkpoint is deleted when the trial ends, unless the trial pauses:
with ``--promote yes`` ASHA stops a trial that does not yet hold a place at its
rung, and it may later be continued from there; ``pausing()`` is then True, and
an objective that checkpoints saves the step it stopped at as it would any other.

The current trial's reporter is context-local (``contextvars``): a thread that
the objective starts does not inherit it and reports nowhere.
"""

from __future__ import annotations

import abc
import contextlib
import contextvars
import math
import operator
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping


class TrialStopped(Exception):
    """Raised by an objective told to stop: the runner records a stopped, not a failed, trial."""


@dataclass(frozen=True)
class Checkpoint:
    """A restored checkpoint: the step it was saved after and the plain ``info`` saved with it."""

    step: int
    info: dict[str, Any] = field(default_factory=dict)


class Reporter(abc.ABC):
    """Where reports of the running trial go; the runner installs one per trial."""

    @abc.abstractmethod
    def report(self, step: int, value: float) -> bool:
        """Record ``value`` at ``step``; True when the trial should go on."""

    @abc.abstractmethod
    def should_stop(self) -> bool:
        """Whether the scheduler has stopped this trial."""

    @abc.abstractmethod
    def save_checkpoint(self, path: str, step: int, info: dict[str, Any] | None = None) -> None:
        """Keep the file ``path`` as this trial's checkpoint after ``step``."""

    @abc.abstractmethod
    def restore_checkpoint(self, dest: str) -> Checkpoint | None:
        """Copy this trial's checkpoint to ``dest``; None when it has none."""

    def pausing(self) -> bool:
        """Whether the trial was stopped to be continued later: a checkpoint of its last step is still wanted."""
        return False


_current: contextvars.ContextVar[Reporter | None] = contextvars.ContextVar("caviar_reporter", default=None)


@contextlib.contextmanager
def reporting_to(reporter: Reporter) -> Iterator[Reporter]:
    """Make ``reporter`` the current trial's for the code inside the ``with``."""
    token = _current.set(reporter)
    try:
        yield reporter
    finally:
        _current.reset(token)


def current() -> Reporter | None:
    """The reporter of the running trial, if any."""
    return _current.get()


def check_step(step: Any) -> int:
    """A step is a non-negative integer (an epoch count); anything else is a caller's bug."""
    try:
        number = operator.index(step)  # ints and numpy integers, not floats or bools' look-alikes
    except TypeError:
        number = -1
    if isinstance(step, bool) or number < 0:
        raise ValueError(f"step must be a non-negative integer, got {step!r}")
    return number


def finite_or_none(value: Any) -> float | None:
    """The reported value as a float, None for NaN/inf; a non-number is refused."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"reported value must be a number, got {value!r}") from None
    return number if math.isfinite(number) else None


def stored_reports(doc: Mapping[str, Any]) -> dict[int, float | None]:
    """A trial document's reports by step: the store keeps them as ``reports: {"<step>": loss or None}``."""
    return {int(step): loss for step, loss in (doc.get("reports") or {}).items()}


def report(step: int, value: float) -> bool:
    """Report ``value`` at ``step`` for the running trial; True: go on, False: the trial should stop."""
    step = check_step(step)
    finite_or_none(value)
    reporter = _current.get()
    return True if reporter is None else reporter.report(step, value)


def should_stop() -> bool:
    """Whether the running trial has been told to stop (False outside a run)."""
    reporter = _current.get()
    return False if reporter is None else reporter.should_stop()


def save_checkpoint(path: str, step: int, info: dict[str, Any] | None = None) -> None:
    """Keep ``path`` (a file) as the running trial's checkpoint after ``step``; no-op outside a run."""
    step = check_step(step)
    reporter = _current.get()
    if reporter is not None:
        reporter.save_checkpoint(path, step, info)


def pausing() -> bool:
    """Whether the running trial stopped where it may be promoted from (False outside a run): save the
    checkpoint of the step just reported, as if it went on."""
    reporter = _current.get()
    return False if reporter is None else reporter.pausing()


def restore_checkpoint(dest: str) -> Checkpoint | None:
    """Copy the running trial's checkpoint to ``dest`` and return its step and info; None if there is none."""
    reporter = _current.get()
    return None if reporter is None else reporter.restore_checkpoint(dest)
