"""Early-stopping schedulers, swappable like Optuna's pruners: ``none``, ``median``, ``asha``, ``hyperband``.

The master picks one (``--scheduler``, default: the model family's
``scheduler``) and records its configuration in the experiment's ``env`` as
``HKS_SCHEDULER_CONFIG`` (JSON), so every worker (which applies that ``env``
before each trial) and the embedded runner build the same scheduler.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from typing import Any

from caviar.config import Parser, positive_int
from caviar.errors import CaviarError
from caviar.family import ModelFamily
from caviar.schedulers._base import Decision, Scheduler
from caviar.schedulers.asha import Asha
from caviar.schedulers.hyperband import Hyperband
from caviar.schedulers.median import MedianScheduler
from caviar.schedulers.none import NoScheduler

SCHEDULERS: dict[str, type[Scheduler]] = {
    cls.name: cls for cls in (NoScheduler, MedianScheduler, Asha, Hyperband)
}
CONFIG_ENV = "HKS_SCHEDULER_CONFIG"

__all__ = ["CONFIG_ENV", "SCHEDULERS", "Decision", "Scheduler", "add_flags", "export", "from_config", "from_env"]


def from_config(config: Mapping[str, Any]) -> Scheduler:
    """The scheduler a ``Scheduler.config()`` describes; a bad one is a CaviarError naming it."""
    knobs = dict(config)
    name = knobs.pop("name", None)
    if name not in SCHEDULERS:
        raise CaviarError(f"unknown scheduler {name!r}: choose one of {', '.join(SCHEDULERS)}")
    try:
        return SCHEDULERS[name](**knobs)
    except (TypeError, ValueError) as err:
        raise CaviarError(f"bad scheduler configuration {dict(config)!r}: {err}") from None


def from_env(environ: Mapping[str, str] | None = None) -> Scheduler:
    """The scheduler recorded for this trial's experiment (``$HKS_SCHEDULER_CONFIG``); unset: none."""
    raw = (os.environ if environ is None else environ).get(CONFIG_ENV, "").strip()
    if not raw:
        return NoScheduler()
    try:
        config = json.loads(raw)
    except ValueError:
        raise CaviarError(f"{CONFIG_ENV}={raw!r} is not JSON") from None
    if not isinstance(config, dict):
        raise CaviarError(f"{CONFIG_ENV}={raw!r} is not a JSON object")
    return from_config(config)


def add_flags(parser: Parser, family: ModelFamily | None) -> None:
    """The early-stopping flags of ``python -m optimizer``, in their own help group."""
    group = parser.add_argument_group("early stopping (objectives that call caviar.reporting.report)")
    default = family.scheduler if family is not None else "none"
    parser.env_option("--scheduler", "HKS_SCHEDULER", default, choices=list(SCHEDULERS), group=group,
                      help="stop bad trials early from their per-epoch reports")
    parser.env_option("--min-epochs", "HKS_MIN_EPOCHS", 1, positive_int, group=group,
                      help="epochs every trial runs before it can be stopped (the first rung)")
    parser.env_option("--reduction-factor", "HKS_REDUCTION_FACTOR", 3, positive_int, group=group,
                      help="asha/hyperband keep one trial in this many at each rung")
    promote = "yes" if family is not None and family.promote else "no"
    parser.env_option("--promote", "HKS_PROMOTE", promote, choices=["yes", "no"], group=group,
                      help="asha pauses the trials it stops, at their checkpoint, and continues those that "
                           "rank among the best as their rung fills up (the ASHA paper's promotions)")


def export(args: argparse.Namespace, family: ModelFamily) -> dict[str, str]:
    """Build the chosen scheduler, put its configuration in the environment, return it to record.

    Call after the family's settings are exported: ``family.max_steps()`` reads them.
    """
    config = {"name": args.scheduler, "min_epochs": args.min_epochs, "reduction_factor": args.reduction_factor,
              "max_epochs": family.max_steps()}
    if args.promote == "yes" and args.scheduler != "none":
        if args.scheduler != "asha":
            raise CaviarError(f"--promote yes needs --scheduler asha, not {args.scheduler!r}")
        config["promote"] = True
    scheduler = from_config(config)
    env = {CONFIG_ENV: json.dumps(scheduler.config(), sort_keys=True)}
    os.environ.update(env)
    return env
