"""tpe-mv specifics: a batch proposed at once spreads out (constant liar)."""

import itertools
import math

from hyperopt import hp

from caviar.store.local import LocalStore
from optimizer.search import Search

BRANIN = {"x1": hp.uniform("x1", -5, 10), "x2": hp.uniform("x2", 0, 15)}


def branin(p):
    x1, x2 = p["x1"], p["x2"]
    return (x2 - 5.1 / (4 * math.pi**2) * x1**2 + 5 / math.pi * x1 - 6) ** 2 + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x1) + 10


def test_points_proposed_in_one_top_up_are_no_near_duplicates_of_each_other():
    store = LocalStore()
    search = Search(store, BRANIN, "tpe-mv", max_evals=70, seed=0)
    for _ in range(40):  # sequential: TPE has converged towards the optima
        search.top_up(1)
        doc = store.claim("w")
        store.finish(doc["tid"], "w", {"status": "ok", "loss": branin(doc["params"])})
    assert search.top_up(30) == 30
    batch = [d["params"] for d in store.trial_docs()[40:]]
    unit = [((p["x1"] + 5) / 15, p["x2"] / 15) for p in batch]
    closest = min(math.dist(a, b) / math.sqrt(2) for a, b in itertools.combinations(unit, 2))
    assert closest >= 0.02
