"""Low-discrepancy start-up points: a scrambled Sobol' sequence over the unit cube of a translated space.

i.i.d. random start-up points leave holes and clumps; the first n points of a
scrambled Sobol' sequence fill the cube evenly in every dimension and pair of
dimensions (Optuna's ``QMCSampler`` does the same as a sampler of its own), while
each point stays uniformly distributed. A sampler is handed one seed per proposal,
not one per run, so the scrambling is keyed by something every proposal of a run
can see, for good: the values of the run's first trial (see ``run_key``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.stats import qmc


def sobol_point(dimensions: int, index: int, key: int) -> np.ndarray:
    """Point ``index`` of the Sobol' sequence in ``dimensions`` dimensions, Owen-scrambled by ``key``."""
    engine = qmc.Sobol(dimensions, scramble=True, rng=np.random.default_rng(key))
    if index:
        engine.fast_forward(index)
    return engine.random(1)[0]


def run_key(vals: Mapping[str, list[Any]]) -> int:
    """A seed made from a trial's hyperopt values, the same whether they were read back from a store or not."""
    canonical = json.dumps({label: [float(v) if isinstance(v, (int, float, np.number)) else repr(v) for v in values]
                            for label, values in sorted(vals.items())})
    return int.from_bytes(hashlib.blake2b(canonical.encode(), digest_size=8).digest(), "little")
