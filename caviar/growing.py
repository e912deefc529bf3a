"""Reading a list that only grows (``TrialView.finished``, ``OwnTrials.finished``) a piece at a time.

The master, the samplers and the schedulers keep what they learnt from the
finished trials and look only at those finished since, so that their work per
trial does not grow with the experiment.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class NewItems:
    """``take`` returns what was appended since the last call; given another list, it starts that one from
    the beginning."""

    def __init__(self) -> None:
        self._items: Sequence[Any] | None = None
        self._read = 0

    def take(self, items: Sequence[Any]) -> list[Any]:
        if items is not self._items:
            self._items, self._read = items, 0
        new, self._read = list(items[self._read:]), len(items)
        return new
