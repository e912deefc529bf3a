"""OwnTrials: the trials of a store that this process alone runs, read once and then kept current.

The embedded mode and the scikit-learn searches claim and finish every trial
themselves, so after one read of the store they know what changed: the trials
they claimed are pending, the ones they finished are read back one at a
time. A search and a results mirror given ``finished`` and ``pending`` from
here do work per trial that does not grow with the experiment, where reading
``trial_docs()`` for every new trial copied them all (``TrialView`` does the
same for the master over MongoDB, where other processes change the trials).
"""

from __future__ import annotations

from typing import Any

from caviar.store._base import DONE, NEW, TrialStore


class OwnTrials:
    """``finished`` (in the order they finished, a list that only grows) and ``pending`` trials of ``store``."""

    def __init__(self, store: TrialStore):
        self.store = store
        docs = store.trial_docs()
        self.finished: list[dict[str, Any]] = [d for d in docs if d["state"] == DONE]
        self._pending = {d["tid"]: d for d in docs if d["state"] != DONE}

    def pending(self, counts: dict[int, int]) -> list[dict[str, Any]]:
        """The queued and running trials, given the store's ``counts``.

        Queued trials are claimed right after they are proposed; if some wait
        that this process did not claim, the store is read again for them.
        """
        if counts.get(NEW, 0) > sum(d["state"] == NEW for d in self._pending.values()):
            self._pending = {d["tid"]: d for d in self.store.trial_docs() if d["state"] != DONE}
        return list(self._pending.values())

    def claim(self, owner: str) -> dict[str, Any] | None:
        """``store.claim``, the trial then counted as pending."""
        doc = self.store.claim(owner)
        if doc is not None:
            self._pending[doc["tid"]] = doc
        return doc

    def finish(self, tid: int, owner: str, result: dict[str, Any], artifacts: dict[str, str] | None = None) -> bool:
        """``store.finish``; the finished trial is read back and appended to ``finished``."""
        recorded = self.store.finish(tid, owner, result, artifacts)
        doc = self.store.trial(tid)
        if doc is not None and doc["state"] == DONE and self._pending.pop(tid, None) is not None:
            self.finished.append(doc)
        return recorded
