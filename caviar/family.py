"""The model-family contract: all that the master, the workers and the output need from a kind of model.

A family bundles an objective with what surrounds it, so that the generic code
never looks inside a model:

- ``objective(params)``: train and score one point (see ``caviar.objective``);
- ``space``: the import path of its default hyperopt space;
- ``settings``: what it reads from the environment (epochs, data set...). The
  command line offers each as a flag, exports it to the environment of every
  trial and records it in the experiment, so workers train alike and a results
  folder is never resumed with other settings;
- ``metric`` / ``maximize``: the name and direction of its score; the stored
  loss is ``-score`` when maximized, so hyperopt always minimizes;
- ``prepare()``: load and check its data once, before anything is written;
- ``draw(params, path)``: a diagram of a point (``diagrams = True``);
- ``evaluate_best(path)``: test-set metrics of the best trial's artifact, a
  self-contained model (preprocessing included) that the objective returned
  as ``artifacts[name]``; ``test_artifact`` is the file name it is read back
  as, ``name`` plus the extension its loader needs (``"model.keras"``);
- ``scheduler`` / ``max_steps()``: the default early stopping of an objective
  that reports per epoch (``caviar.reporting``), and its epochs per trial.
- ``refit(params, out_path)``: the chosen point trained once more on all the
  training data (train + validation), its self-contained model saved to
  ``out_path`` (named like ``test_artifact``), its test-set metrics returned:
  what ``--refit`` runs at the end of a search (default: on when the
  family's ``cv_setting`` is above 1, i.e. when trials scored by K-fold
  cross-validation kept no model trained on everything);
- ``predict(artifact_path, input_path)``: ``(id, label)`` per input of a file
  (the family says which files it reads), with a saved model: what
  ``python -m optimizer predict`` writes as CSV;
- ``cv_setting``: the environment variable of its number of folds, if any.

The CIFAR CNN (``neural_net:CNN``) is one family. Any plain ``module:function``
objective becomes a ``FunctionFamily``: metric "loss", minimized, no settings,
unless the function names its metric (``fn.metric = "accuracy"``,
``fn.maximize = True``) or its default scheduler (``fn.scheduler = "asha"``,
``fn.max_steps = 27``, ``fn.promote = True`` for asha's promotions of an
objective that checkpoints). The search's seed reaches every objective as the
environment variable ``HKS_SEED``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable

from caviar.errors import CaviarError
from caviar.imports import import_attr


@dataclass(frozen=True)
class Setting:
    """One setting of a family: its flag, its environment variable, its default and what it means."""

    flag: str
    env: str
    default: Any
    kind: Callable[[str], Any] = str
    help: str = ""
    choices: tuple[str, ...] | None = None

    def parse(self, raw: str) -> Any:
        """The value of ``raw`` (as given in the environment), or a one-line CaviarError naming it."""
        try:
            value = self.kind(raw.strip())
        except ValueError:
            raise CaviarError(f"{self.env}={raw!r} is not {getattr(self.kind, '__name__', 'valid')}") from None
        if self.choices is not None and value not in self.choices:
            raise CaviarError(f"{self.env}={raw!r} is not one of {', '.join(self.choices)}")
        return value

    def read(self, environ: Mapping[str, str] | None = None) -> Any:
        """The setting's value in ``environ`` (default ``os.environ``); unset or blank gives the default."""
        raw = (os.environ if environ is None else environ).get(self.env, "")
        return self.parse(raw) if raw.strip() else self.default


class ModelFamily:
    """A kind of model to tune; subclasses override ``objective`` and whatever else they offer."""

    metric: str = "loss"
    maximize: bool = False
    space: str | None = None
    settings: tuple[Setting, ...] = ()
    demo_params: dict[str, Any] | None = None
    diagrams: bool = False
    test_artifact: str | None = None
    scheduler: str = "none"  # default early stopping (caviar.schedulers) for objectives that report epochs
    promote: bool = False  # asha's default --promote: the objective checkpoints each step (caviar.reporting)
    cv_setting: str | None = None

    def objective(self, params: dict[str, Any]) -> Any:
        """Train and score one point: a loss, or a hyperopt result dict (see ``caviar.objective``)."""
        raise NotImplementedError

    def __call__(self, params: dict[str, Any]) -> Any:
        return self.objective(params)

    def prepare(self) -> None:
        """Load and check what every trial needs (a data set), once; raise CaviarError if it is missing."""

    def draw(self, params: dict[str, Any], path: str) -> None:
        """Draw the model of ``params`` to the PNG ``path`` (families with ``diagrams = True``)."""
        raise NotImplementedError(f"{type(self).__name__} draws no diagrams")

    def evaluate_best(self, artifact_path: str) -> dict[str, float]:
        """Test-set metrics of the best trial's artifact, fetched to ``artifact_path`` (named ``test_artifact``)."""
        raise NotImplementedError(f"{type(self).__name__} has no test-set evaluation")

    def max_steps(self) -> int | None:
        """Steps (epochs) a full trial reports, from the exported settings; None if unknown (Hyperband needs it)."""
        return None
    def refit(self, params: dict[str, Any], out_path: str) -> dict[str, Any]:
        """Retrain ``params`` on train + validation, save the model to ``out_path``, return test-set metrics."""
        raise NotImplementedError(f"{type(self).__name__} cannot refit a point")

    def predict(self, artifact_path: str, input_path: str) -> list[tuple[Any, Any]]:
        """``(id, label)`` of each input in ``input_path``, predicted by the saved model ``artifact_path``."""
        raise NotImplementedError(f"{type(self).__name__} cannot predict")

    def describe(self) -> dict[str, Any]:
        """What the read-only tools need to know without importing the family: its metric and direction."""
        return {"metric": self.metric, "maximize": self.maximize}


class FunctionFamily(ModelFamily):
    """A user's plain objective function as a family, with the defaults of a loss to minimize."""

    def __init__(self, fn: Callable[[dict[str, Any]], Any]):
        self.fn = fn
        self.metric = str(getattr(fn, "metric", "loss"))
        self.maximize = bool(getattr(fn, "maximize", False))
        self.scheduler = str(getattr(fn, "scheduler", "none"))
        self.promote = bool(getattr(fn, "promote", False))

    def objective(self, params: dict[str, Any]) -> Any:
        return self.fn(params)

    def max_steps(self) -> int | None:
        steps = getattr(self.fn, "max_steps", None)
        return None if steps is None else int(steps)


def load_family(path: str) -> ModelFamily:
    """The family named by ``module:attribute``: a ModelFamily, or any callable objective wrapped as one."""
    obj = import_attr(path, what="objective")
    if isinstance(obj, ModelFamily):
        return obj
    if isinstance(obj, type) and issubclass(obj, ModelFamily):
        return obj()
    if not callable(obj):
        raise CaviarError(f"objective {path!r} is not callable (a {type(obj).__name__})")
    return FunctionFamily(obj)


def score_of(loss: float, describe: Mapping[str, Any]) -> float:
    """The score a user reads (an accuracy, a loss) from the stored loss, given a family's ``describe()``."""
    return -loss if describe.get("maximize") else loss
