"""Search algorithms: each a ``Sampler`` (see ``_base``), registered in ``registry`` under the name ``--algo`` takes.

This module names them only, so that the command line (``--help``, flag checks)
starts without importing hyperopt's algorithms or Optuna.
"""

# What the CLI offers (``choices=ALGORITHMS, default=DEFAULT_ALGORITHM``); ``registry.SAMPLERS`` has one per name.
ALGORITHMS: tuple[str, ...] = ("gp", "tpe-mv", "tpe", "random", "anneal")
DEFAULT_ALGORITHM = "gp"

__all__ = ["ALGORITHMS", "DEFAULT_ALGORITHM"]
