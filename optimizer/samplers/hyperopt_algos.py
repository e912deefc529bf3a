"""hyperopt's own algorithms (TPE, random search, annealing) behind the sampler interface."""

from __future__ import annotations

from typing import Any, Callable, Sequence

from hyperopt import Domain, Trials

from optimizer.samplers._base import Doc, Sampler, Vals

Suggest = Callable[..., list[dict[str, Any]]]


class HyperoptSampler(Sampler):
    """Runs a hyperopt ``suggest`` function (e.g. ``hyperopt.tpe.suggest``) on a ``Trials`` of the history.

    hyperopt's TPE models each label independently and counts queued and
    running trials toward its start-up trials: kept as it is for comparison
    and for old experiments. ``history=False`` (random search, which draws
    from the prior alone) skips building the ``Trials``, whose cost grows with
    the experiment.
    """

    def __init__(self, domain: Domain, suggest: Suggest, history: bool = True):
        super().__init__(domain)
        self.suggest, self.history = suggest, history

    def propose(self, tid: int, seed: int, finished: Sequence[Doc], pending: Sequence[Doc]) -> Vals:
        trials = Trials()
        if self.history:
            trials._insert_trial_docs([d | {"exp_key": None} for d in [*finished, *pending]])
            trials.refresh()
        [doc] = self.suggest([tid], self.domain, trials, seed)
        return doc["misc"]["vals"]
