"""Reading back what a search left in its results folder."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any


def finished_trials(folder: Path) -> list[dict[str, Any]]:
    """The trials of ``folder``/results/results.pkl, as hyperopt reads them."""
    with open(folder / "results" / "results.pkl", "rb") as f:
        return pickle.load(f).trials
