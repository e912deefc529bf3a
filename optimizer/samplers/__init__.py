"""Search algorithms: each a ``Sampler`` (see ``_base``), registered here under the name ``--algo`` takes."""

from __future__ import annotations

from functools import partial
from typing import Callable

from hyperopt import Domain, anneal, rand, tpe

from optimizer.samplers._base import Doc, Sampler, Vals
from optimizer.samplers.hyperopt_algos import HyperoptSampler
from optimizer.samplers.tpe_mv import MultivariateTPE

SAMPLERS: dict[str, Callable[[Domain], Sampler]] = {
    "tpe-mv": MultivariateTPE,
    "tpe": partial(HyperoptSampler, suggest=tpe.suggest),
    "random": partial(HyperoptSampler, suggest=rand.suggest),
    "anneal": partial(HyperoptSampler, suggest=anneal.suggest),
}
# What the CLI offers (``choices=ALGORITHMS, default=DEFAULT_ALGORITHM``).
ALGORITHMS: tuple[str, ...] = tuple(SAMPLERS)
DEFAULT_ALGORITHM = "tpe-mv"

__all__ = ["ALGORITHMS", "DEFAULT_ALGORITHM", "SAMPLERS", "Doc", "Sampler", "Vals"]
