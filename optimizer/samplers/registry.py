"""Every sampler by its ``--algo`` name: Optuna's multivariate TPE, and hyperopt's own algorithms."""

from __future__ import annotations

from functools import partial
from typing import Callable

from hyperopt import Domain, anneal, rand, tpe

from optimizer.samplers._base import Sampler
from optimizer.samplers.hyperopt_algos import HyperoptSampler
from optimizer.samplers.tpe_mv import MultivariateTPE

SAMPLERS: dict[str, Callable[[Domain], Sampler]] = {
    "tpe-mv": MultivariateTPE,
    "tpe": partial(HyperoptSampler, suggest=tpe.suggest),
    "random": partial(HyperoptSampler, suggest=rand.suggest, history=False),
    "anneal": partial(HyperoptSampler, suggest=anneal.suggest),
}
