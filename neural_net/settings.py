"""Run settings of the default objective, read from the environment at each call.

Workers are long-lived processes configured by their environment (Docker,
Makefile), so the objective reads its settings from ``os.environ`` every time
instead of at import: a changed variable takes effect on the next trial.

| variable | default | meaning |
|---|---|---|
| ``HKS_DATASET`` | ``cifar100`` | ``cifar100``, ``cifar10``, ``mnist`` or ``fashion_mnist`` |
| ``HKS_DATA_PATH`` | unset | the data set's archive, or a folder holding its file(s); beats every other place |
| ``DATASET_SIZE`` | unset or 0: all | keep only the first N training images (quick runs) |
| ``HKS_VALIDATION_SPLIT`` | ``0.1`` | share of the training images held out to score trials |
| ``HKS_EPOCHS`` | ``10`` | epochs per trial (the seed's 100 on a GPU; 10 ranks architectures at a tenth of it) |
| ``HKS_SEED`` | ``0`` | seeds the validation split, the weights, the shuffling and the flips |
| ``HKS_OFFLINE`` | ``0`` | ``1`` never downloads a missing data set |
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from optimizer.errors import CaviarError

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")
T = TypeVar("T", int, float)


@dataclass(frozen=True)
class Settings:
    """What a trial trains on and for how long; hashable, so it can key caches."""

    dataset: str = "cifar100"
    data_path: str | None = None
    dataset_size: int | None = None
    validation_split: float = 0.1
    epochs: int = 10
    seed: int = 0
    offline: bool = False

    def __post_init__(self) -> None:
        if self.dataset_size is not None and self.dataset_size < 2:
            raise CaviarError(f"DATASET_SIZE must be at least 2, got {self.dataset_size}")
        if not 0.0 < self.validation_split < 1.0:
            raise CaviarError(f"HKS_VALIDATION_SPLIT must be between 0 and 1 (exclusive), got {self.validation_split}")
        if self.epochs < 1:
            raise CaviarError(f"HKS_EPOCHS must be at least 1, got {self.epochs}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from ``environ`` (default ``os.environ``); bad values raise CaviarError."""
        env = os.environ if environ is None else environ
        return cls(
            dataset=env.get("HKS_DATASET", "").strip().lower() or cls.dataset,
            data_path=env.get("HKS_DATA_PATH", "").strip() or None,
            dataset_size=_number(int, "DATASET_SIZE", env, 0) or None,
            validation_split=_number(float, "HKS_VALIDATION_SPLIT", env, cls.validation_split),
            epochs=_number(int, "HKS_EPOCHS", env, cls.epochs),
            seed=_number(int, "HKS_SEED", env, cls.seed),
            offline=_flag("HKS_OFFLINE", env),
        )


def _number(kind: Callable[[str], T], name: str, env: Mapping[str, str], default: T) -> T:
    """One numeric variable, or ``default`` when it is unset or blank."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return kind(raw)
    except ValueError:
        raise CaviarError(f"{name} must be {'an integer' if kind is int else 'a number'}, got {raw!r}") from None


def _flag(name: str, env: Mapping[str, str]) -> bool:
    """One on/off variable; unset is off."""
    raw = env.get(name, "")
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise CaviarError(f"{name} must be 1 or 0 (true/false), got {raw!r}")
