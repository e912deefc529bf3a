"""The scheduler interface: whether a running trial goes on, from the losses stored at one step.

Like Optuna's pruners, a scheduler is swappable and stateless: ``decide`` is a
pure function of the losses that the store holds at a step (every trial of
the experiment that reported there, this one included). Whichever worker asks,
after whatever restart, the same reports give the same decision; the runner
records the first decision taken at each step in the trial's document and
reuses it when the trial asks again (a resumed trial), so a decision never
changes once taken.

Losses are minimized (an accuracy is reported as its negative); ``None``
stands for a NaN/inf report, which always stops the trial at a decision step.
"""

from __future__ import annotations

import abc
from dataclasses import asdict, dataclass
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar


@dataclass(frozen=True)
class Decision:
    """What a scheduler decided at one step, with what it compared (kept in the trial's document)."""

    stop: bool
    peers: int  # how many trials' losses at this step were compared, this one included
    cutoff: float | None  # the bar: ASHA's loss to beat, the median's not to exceed (None: nothing to compare with)

    def as_doc(self) -> dict[str, Any]:
        return asdict(self)


class Scheduler(abc.ABC):
    """Decides at some steps whether a trial goes on.

    Knobs: ``min_epochs`` (no trial stops before it), ``reduction_factor``
    (ASHA/Hyperband keep 1 in that many at each rung), ``max_epochs`` (the
    steps a full trial reports; Hyperband needs it to size its brackets).
    """

    name: ClassVar[str]

    def __init__(self, min_epochs: int = 1, reduction_factor: int = 3, max_epochs: int | None = None):
        if isinstance(min_epochs, bool) or not isinstance(min_epochs, int) or min_epochs < 1:
            raise ValueError(f"min_epochs must be a positive integer, got {min_epochs!r}")
        if isinstance(reduction_factor, bool) or not isinstance(reduction_factor, int) or reduction_factor < 2:
            raise ValueError(f"reduction_factor must be an integer of at least 2, got {reduction_factor!r}")
        if max_epochs is not None and (not isinstance(max_epochs, int) or max_epochs < 1):
            raise ValueError(f"max_epochs must be a positive integer or None, got {max_epochs!r}")
        self.min_epochs, self.reduction_factor, self.max_epochs = min_epochs, reduction_factor, max_epochs

    def config(self) -> dict[str, Any]:
        """Everything needed to build the same scheduler elsewhere (recorded in the experiment)."""
        return {"name": self.name, "min_epochs": self.min_epochs, "reduction_factor": self.reduction_factor,
                "max_epochs": self.max_epochs}

    @abc.abstractmethod
    def decides_at(self, tid: int, step: int) -> bool:
        """Whether trial ``tid`` is judged after ``step`` (a rung); other steps always go on."""

    @abc.abstractmethod
    def decide(self, tid: int, step: int, losses: Mapping[int, float | None]) -> Decision:
        """Stop or go on at a rung, from every trial's loss at ``step`` (``losses[tid]`` included)."""

    # A scheduler that promotes pauses the trials it stops (they keep their checkpoint) and later has
    # some continued, from their checkpoint, as trials of their own (``promotions``); others stop for good.
    promotes = False

    def promotions(self, finished: Sequence[dict[str, Any]], pending: Sequence[dict[str, Any]] = ()
                   ) -> list[tuple[dict[str, Any], int]]:
        """The paused trials to continue now, as ``(document, step)``, the most urgent first: a function of
        the trial documents (``reports``, ``result``, ``continues``) that the store holds. ``finished`` is
        a list that only grows (``TrialView.finished``): what was read of it is kept, so the work per call
        grows with what is new; ``pending`` (queued and running trials) is read whole."""
        return []

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config()})"

