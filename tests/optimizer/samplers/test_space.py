"""Translating hyperopt spaces for Optuna: every kind keeps the concrete params the objective receives."""


import numpy as np
import pytest
from hyperopt import Domain, Trials, hp, rand, space_eval
from hyperopt.pyll import scope
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from optimizer.samplers._space import translate
from neural_net.space import CIFAR_SPACE

EVERY_KIND = {
    "u": hp.uniform("u", -2, 3),
    "qu": hp.quniform("qu", 0.501, 4.499, 1),
    "lu": hp.loguniform("lu", -3, 1),
    "qlu": hp.qloguniform("qlu", 1, 5, 4),
    "ri": hp.randint("ri", 3, 9),
    "ui": hp.uniformint("ui", 2, 7),
    "branch": hp.choice("branch", [
        None,
        {"width": hp.quniform("width", 16, 256, 16), "inner": hp.choice("inner", [None, hp.uniform("drop", 0, 0.5)])},
    ]),
    "n": hp.normal("n", 0, 1),
    "ln": hp.lognormal("ln", 0, 1),
    "qn": hp.qnormal("qn", 0, 10, 2),
    "pc": hp.pchoice("pc", [(0.2, "a"), (0.8, {"deep": hp.uniform("deep", 1, 2)})]),
    "expr": hp.uniform("expr", 0, scope.add(1, 2)),  # a bound that is a pyll expression
}
PRIOR = {"n", "ln", "qn", "pc", "expr"}


def hyperopt_points(space, n, seed=0):
    """``n`` hyperopt ``vals`` drawn by hyperopt's random search."""
    domain, trials = Domain(lambda p: 0, space), Trials()
    docs = rand.suggest(list(range(n)), domain, trials, seed)
    return domain, [d["misc"]["vals"] for d in docs]


def assignment(vals):
    return {label: v[0] for label, v in vals.items() if v}


def test_each_kind_gets_the_expected_optuna_distribution():
    domain = Domain(lambda p: 0, EVERY_KIND)
    params = {p.label: p for p in translate(domain.expr)}
    assert {label for label, p in params.items() if p.distribution is None} == PRIOR
    assert params["u"].distribution == FloatDistribution(-2, 3)
    assert params["lu"].distribution == FloatDistribution(np.exp(-3), np.exp(1), log=True)
    assert (params["qu"].distribution, params["qu"].q) == (IntDistribution(1, 4), 1)
    assert (params["width"].distribution, params["width"].q) == (IntDistribution(1, 16), 16)
    assert (params["qlu"].distribution, params["qlu"].q) == (IntDistribution(1, 37, log=True), 4)
    assert params["ri"].distribution == IntDistribution(3, 8)
    assert params["branch"].distribution == CategoricalDistribution([0, 1])
    assert params["drop"].conditions == frozenset({(("branch", 1), ("inner", 1))})
    assert params["deep"].conditions == frozenset({(("pc", 1),)})
    assert params["u"].conditions == frozenset({()})


@pytest.mark.parametrize("space", [EVERY_KIND, CIFAR_SPACE], ids=["every-kind", "cifar"])
def test_hyperopt_values_round_trip_through_optuna_to_the_same_concrete_params(space):
    domain, points = hyperopt_points(space, 300)
    params = translate(domain.expr)
    for vals in points:
        back = {}
        for p in params:
            value = vals[p.label]
            if value and p.distribution is not None:
                internal = p.to_optuna(value[0])
                assert p.distribution._contains(p.distribution.to_internal_repr(internal))
                back[p.label] = [p.to_hyperopt(internal)]
            else:
                back[p.label] = value
            assert p.active(vals) == bool(value), (p.label, vals)
        assert back == vals
        assert space_eval(space, assignment(back)) == space_eval(space, assignment(vals))
