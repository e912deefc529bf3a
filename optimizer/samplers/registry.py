"""Every sampler by its ``--algo`` name: a Gaussian process, Optuna's multivariate TPE, and hyperopt's own algorithms."""

from __future__ import annotations

from functools import partial
from typing import Callable

from hyperopt import Domain, anneal, rand, tpe

from optimizer.samplers._base import Sampler
from optimizer.samplers.gp import GaussianProcessSampler
from optimizer.samplers.hyperopt_algos import HyperoptSampler
from optimizer.samplers.tpe_mv import MultivariateTPE

SAMPLERS: dict[str, Callable[[Domain], Sampler]] = {
    "gp": GaussianProcessSampler,
    "tpe-mv": MultivariateTPE,
    "tpe": partial(HyperoptSampler, suggest=tpe.suggest),
    "random": partial(HyperoptSampler, suggest=rand.suggest, history=False),
    "anneal": partial(HyperoptSampler, suggest=anneal.suggest),
}
