"""tpe-mv specifics: it is Optuna's TPE, groups kept incrementally (its batches spread out: test_conformance)."""

import optuna
from hyperopt import hp
from optuna.search_space.group_decomposed import _GroupDecomposedSearchSpace

from caviar.store.local import LocalStore
from optimizer.search import Search, proposal_seed
from tests.optimizer.samplers.test_conformance import NESTED, loss

def test_on_a_plain_space_tpe_mv_proposes_exactly_what_optunas_tpe_does_with_the_same_per_trial_seeds():
    """tpe-mv adds nothing of its own to Optuna's TPE (the Hartmann-6 gap of bench/results was noise)."""
    space = {f"x{i}": hp.uniform(f"x{i}", 0, 1) for i in range(3)}
    store = LocalStore()
    search = Search(store, space, "tpe-mv", max_evals=25, seed=3)
    study = optuna.create_study()
    for tid in range(25):
        search.top_up(1)
        doc = store.claim("w")
        loss = sum((doc["params"][f"x{i}"] - 0.3) ** 2 for i in range(3))
        store.finish(doc["tid"], "w", {"status": "ok", "loss": loss})
        study.sampler = optuna.samplers.TPESampler(multivariate=True, group=True, constant_liar=True,
                                                   seed=proposal_seed(3, tid, 0))
        trial = study.ask()
        assert [trial.suggest_float(f"x{i}", 0, 1) for i in range(3)] == [doc["params"][f"x{i}"] for i in range(3)]
        study.tell(trial, loss)


def test_the_kept_parameter_groups_are_optunas_so_proposals_are_unchanged_by_keeping_them():
    """tpe-mv keeps ``group``'s decomposition up to date instead of recomputing it from every trial."""
    store = LocalStore()
    search = Search(store, NESTED, "tpe-mv", max_evals=60, seed=2)
    sampler = search.sampler
    checked = 0
    while search.top_up(3) or store.count_by_state().get(0):
        doc = store.claim("w")
        result = {"status": "fail"} if doc["tid"] % 7 == 6 else {"status": "ok", "loss": loss(doc["params"])}
        store.finish(doc["tid"], "w", result)
        kept = sampler._groups.calculate(sampler.study).search_spaces
        assert kept == _GroupDecomposedSearchSpace(True).calculate(sampler.study).search_spaces
        checked += len(kept) > 1
    assert checked > 20  # the branches made several groups
