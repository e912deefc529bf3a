"""The master: proposals (search), the master loops, its command line, and hyperopt's MongoTrials drop-in.

``from optimizer import MongoTrials`` gives the drop-in for hyperopt's MongoTrials.
"""

from typing import Any

from caviar.imports import defer_submodule

__all__ = ["MongoTrials"]

# Before anything imports hyperopt: its unused ATPE module costs 0.4 s of start-up (see defer_submodule).
defer_submodule("hyperopt.atpe")


def __getattr__(name: str) -> Any:
    # Imported on first use, so `python -m optimizer --help` and the workers stay light.
    if name == "MongoTrials":
        from optimizer.trials import MongoTrials

        return MongoTrials
    raise AttributeError(f"module 'optimizer' has no attribute {name!r}")
