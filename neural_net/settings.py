"""Run settings of the CNN family, read from the environment at each call.

Workers are long-lived processes configured by their environment (Docker,
Makefile), so the objective reads its settings from ``os.environ`` every time
instead of at import: a changed variable takes effect on the next trial.

``SETTINGS`` declares each one once (flag, variable, default, meaning): the
command line offers them as flags and records them in the experiment, and
``Settings.from_env`` reads them. Besides these, ``HKS_SEED`` (the search's
seed) seeds the validation split, the weights, the shuffling and the flips, and
``HKS_OFFLINE=1`` never downloads a missing data set.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from caviar.config import positive_int
from caviar.errors import CaviarError
from caviar.family import Setting

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")
T = TypeVar("T", int, float)


def fraction(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 1.0:
        raise ValueError
    return value


def dataset_name(text: str) -> str:
    return text.strip().lower()


def image_count(text: str) -> int | None:
    value = int(text)
    if value < 0:
        raise ValueError
    return value or None  # 0: all of them


def fold_count(text: str) -> int:
    value = int(text)
    if value == 1 or value < 0:
        raise ValueError
    return value


fraction.__name__ = "a number between 0 and 1 (exclusive)"
fold_count.__name__ = "0 (off) or a number of folds of at least 2"
dataset_name.__name__ = "a data set name"
image_count.__name__ = "a number of images (0: all)"

DATASET_NAMES = ("cifar100", "cifar10", "mnist", "fashion_mnist")
SETTINGS = (
    Setting("--dataset", "HKS_DATASET", "cifar100", dataset_name, "data set", DATASET_NAMES),
    Setting("--data-path", "HKS_DATA_PATH", None, str,
            "the data set's archive, or a folder holding its file(s); unset: ml_req/, then Keras' cache"),
    Setting("--epochs", "HKS_EPOCHS", 10, positive_int,
            "training epochs per trial (the seed's 100 on a GPU; 10 ranks architectures at a tenth of it)"),
    Setting("--dataset-size", "DATASET_SIZE", None, image_count,
            "keep only the first N training images (quick CPU runs); unset or 0: all"),
    Setting("--validation-split", "HKS_VALIDATION_SPLIT", 0.1, fraction,
            "share of the training images held out to score trials"),
    Setting("--cv", "HKS_CV", 0, fold_count,
            "score each point by stratified K-fold cross-validation over the training and validation images "
            "(K trainings per trial, seeded by --seed) instead of the validation split; 0: off"),
)
_BY_ENV = {setting.env: setting for setting in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """What a trial trains on and for how long; hashable, so it can key caches."""

    dataset: str = _BY_ENV["HKS_DATASET"].default
    data_path: str | None = _BY_ENV["HKS_DATA_PATH"].default
    dataset_size: int | None = _BY_ENV["DATASET_SIZE"].default
    validation_split: float = _BY_ENV["HKS_VALIDATION_SPLIT"].default
    epochs: int = _BY_ENV["HKS_EPOCHS"].default
    seed: int = 0
    offline: bool = False
    cv: int = _BY_ENV["HKS_CV"].default

    def __post_init__(self) -> None:
        if self.dataset_size is not None and self.dataset_size < 2:
            raise CaviarError(f"DATASET_SIZE must be at least 2, got {self.dataset_size}")
        if not 0.0 < self.validation_split < 1.0:
            raise CaviarError(f"HKS_VALIDATION_SPLIT must be between 0 and 1 (exclusive), got {self.validation_split}")
        if self.epochs < 1:
            raise CaviarError(f"HKS_EPOCHS must be at least 1, got {self.epochs}")
        if self.cv == 1 or self.cv < 0:
            raise CaviarError(f"HKS_CV must be 0 (off) or at least 2 folds, got {self.cv}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from ``environ`` (default ``os.environ``); bad values raise CaviarError."""
        env = os.environ if environ is None else environ
        return cls(
            dataset=_BY_ENV["HKS_DATASET"].read(env),
            data_path=_BY_ENV["HKS_DATA_PATH"].read(env),
            dataset_size=_BY_ENV["DATASET_SIZE"].read(env),
            validation_split=_BY_ENV["HKS_VALIDATION_SPLIT"].read(env),
            epochs=_BY_ENV["HKS_EPOCHS"].read(env),
            cv=_BY_ENV["HKS_CV"].read(env),
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
