"""Queue trials directly (no optimizer), in the hyperopt layout every store expects."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import pytest

from caviar.store import TrialStore
from caviar.store.local import LocalStore


def trial_doc(tid: int, params: dict[str, Any]) -> dict[str, Any]:
    """A new trial whose point is ``params`` (one hyperopt label per key)."""
    return {
        "tid": tid,
        "spec": None,
        "result": {"status": "new"},
        "misc": {
            "tid": tid,
            "cmd": ["domain_attachment", "FMinIter_Domain"],
            "workdir": None,
            "idxs": {label: [tid] for label in params},
            "vals": {label: [value] for label, value in params.items()},
        },
        "version": 0,
        "book_time": None,
        "refresh_time": None,
        "params": params,
    }


def enqueue_points(store: TrialStore, points: list[dict[str, Any]]) -> list[int]:
    """Queue one trial per point with fresh tids; returns the tids in order."""
    tids = store.new_tids(len(points))
    store.enqueue([trial_doc(tid, point) for tid, point in zip(tids, points)])
    return tids


def whole_reads(monkeypatch: pytest.MonkeyPatch, run: Callable[[int], None], sizes: Sequence[int]) -> list[int]:
    """How often ``run(n)`` reads every trial of a LocalStore (``trial_docs``), for each n of ``sizes``."""
    reads: list[int] = []
    whole = LocalStore.trial_docs
    monkeypatch.setattr(LocalStore, "trial_docs", lambda self: reads.append(1) or whole(self))
    counts = []
    for n in sizes:
        reads.clear()
        run(n)
        counts.append(len(reads))
    return counts
