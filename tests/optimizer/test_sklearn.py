"""Caviar's GridSearchCV / RandomizedSearchCV: scikit-learn's results and contract, run as trials."""

from __future__ import annotations

import numpy as np
import pytest
from hyperopt import hp
from scipy.stats import loguniform
from sklearn import model_selection
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.utils.estimator_checks import check_estimator

from caviar.errors import CaviarError
from optimizer.sklearn import GridSearchCV, RandomizedSearchCV
from caviar.store import DONE
from tests.helpers.trials import whole_reads

X, Y = load_iris(return_X_y=True)
CV = StratifiedKFold(3, shuffle=True, random_state=0)
GRID = {"C": [0.01, 0.1, 1.0, 10.0], "fit_intercept": [True, False]}
COLUMNS = ("mean_test_score", "std_test_score", "split0_test_score", "split2_test_score",
           "mean_train_score", "split1_train_score")


def _same_results(ours: model_selection.GridSearchCV, theirs: model_selection.GridSearchCV) -> None:
    assert set(ours.cv_results_) == set(theirs.cv_results_)
    for column in COLUMNS:
        np.testing.assert_allclose(ours.cv_results_[column], theirs.cv_results_[column], rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(ours.cv_results_["rank_test_score"], theirs.cv_results_["rank_test_score"])
    assert ours.cv_results_["params"] == theirs.cv_results_["params"]
    np.testing.assert_array_equal(ours.cv_results_["param_C"], theirs.cv_results_["param_C"])
    assert (ours.best_index_, ours.best_params_, ours.best_score_) == (
        theirs.best_index_, theirs.best_params_, theirs.best_score_)


def test_grid_results_equal_scikit_learns_on_the_same_folds() -> None:
    kwargs = {"cv": CV, "return_train_score": True}
    ours = GridSearchCV(LogisticRegression(max_iter=1000), GRID, **kwargs).fit(X, Y)
    theirs = model_selection.GridSearchCV(LogisticRegression(max_iter=1000), GRID, **kwargs).fit(X, Y)
    _same_results(ours, theirs)
    assert ours.n_splits_ == 3 and ours.refit_time_ >= 0
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X))
    assert ours.score(X, Y) == theirs.score(X, Y)
    assert [d["state"] for d in ours.trials_] == [DONE] * 8
    assert all(len(d["result"]["splits"]) == 3 for d in ours.trials_)


def test_random_search_draws_scikit_learns_candidates_from_scipy_distributions() -> None:
    space = {"C": loguniform(1e-3, 1e2), "fit_intercept": [True, False]}
    kwargs = {"n_iter": 5, "cv": CV, "random_state": 7, "return_train_score": True, "scoring": "neg_log_loss"}
    ours = RandomizedSearchCV(LogisticRegression(max_iter=1000), space, **kwargs).fit(X, Y)
    theirs = model_selection.RandomizedSearchCV(LogisticRegression(max_iter=1000), space, **kwargs).fit(X, Y)
    _same_results(ours, theirs)


def test_processes_with_a_factory_path_give_the_sequential_results() -> None:
    grid = {"n_neighbors": [1, 5, 15], "weights": ["uniform", "distance"]}
    parallel = GridSearchCV("tests.helpers.estimators:make_knn", grid, cv=CV, n_jobs=2).fit(X, Y)
    theirs = model_selection.GridSearchCV(KNeighborsClassifier(), grid, cv=CV).fit(X, Y)
    np.testing.assert_allclose(parallel.cv_results_["mean_test_score"], theirs.cv_results_["mean_test_score"])
    assert parallel.best_params_ == theirs.best_params_
    assert isinstance(parallel.best_estimator_, KNeighborsClassifier)


def test_a_grid_with_nested_hyperopt_choices_evaluates_only_active_parameters() -> None:
    grid = {"n_neighbors": hp.choice("n_neighbors", [1, 7]),
            "weights": hp.choice("weights", ["uniform", "distance"]), "p": hp.quniform("p", 1, 2, 1)}
    search = GridSearchCV(KNeighborsClassifier(), grid, cv=CV).fit(X, Y)
    assert len(search.cv_results_["params"]) == 8
    expected = {(("n_neighbors", k), ("p", p), ("weights", w))
                for k in (1, 7) for w in ("uniform", "distance") for p in (1.0, 2.0)}
    assert {tuple(sorted(p.items())) for p in search.cv_results_["params"]} == expected
    assert search.trials_[0]["misc"]["vals"] == {"n_neighbors": [0], "p": [1.0], "weights": [0]}


def test_tpe_proposes_n_iter_candidates_from_hyperopt_distributions() -> None:
    space = {"C": hp.loguniform("C", -4, 3), "fit_intercept": [True, False]}
    search = RandomizedSearchCV(LogisticRegression(max_iter=1000), space, n_iter=6, cv=CV, algo="tpe",
                                random_state=0).fit(X, Y)
    assert len(search.trials_) == 6 and len({d["params"]["C"] for d in search.trials_}) == 6
    assert search.best_score_ == max(search.cv_results_["mean_test_score"])
    with pytest.raises(CaviarError, match="'C' is a scipy.stats distribution"):
        RandomizedSearchCV(LogisticRegression(), {"C": loguniform(1e-3, 1)}, algo="tpe", cv=CV).fit(X, Y)


def test_a_model_based_search_reads_the_whole_store_a_fixed_number_of_times(monkeypatch) -> None:
    """Each candidate is read back alone as it finishes, so n_iter does not multiply the reads of every trial."""
    def search(n_iter: int) -> None:
        found = RandomizedSearchCV(Ridge(), {"alpha": hp.loguniform("alpha", -4, 3)}, n_iter=n_iter, cv=3,
                                   algo="gp", random_state=0).fit(X, Y)
        assert len(found.trials_) == n_iter

    short, long = whole_reads(monkeypatch, search, (3, 15))
    assert short == long


def test_failed_fits_score_error_score_and_raise_when_asked() -> None:
    grid = {"n_neighbors": [3, 500]}
    with pytest.warns(Warning, match="fit of {'n_neighbors': 500} failed"):
        search = GridSearchCV(KNeighborsClassifier(), grid, cv=CV).fit(X, Y)
    assert np.isnan(search.cv_results_["mean_test_score"][1]) and search.cv_results_["rank_test_score"][1] == 2
    with pytest.raises(ValueError, match="n_neighbors"):
        GridSearchCV(KNeighborsClassifier(), grid, cv=CV, error_score="raise").fit(X, Y)


# The checks scikit-learn itself expects its own GridSearchCV and RandomizedSearchCV to fail
# (sklearn/utils/_test_common/instance_generator.py), for the same reasons.
EXPECTED_FAILURES = {
    "check_supervised_y_2d": "a search tags itself single-output whatever it wraps, so a multi-output "
                             "Ridge given a 2-D y is expected to warn and rightly does not",
    "check_requires_y_none": "y=None goes to the wrapped estimator's fit, which fails with its own "
                             "TypeError instead of the message the check looks for",
}


@pytest.mark.parametrize("search", [
    GridSearchCV(Ridge(), {"alpha": [0.1, 1.0]}, cv=2, error_score="raise"),
    RandomizedSearchCV(LogisticRegression(), {"C": [0.1, 1.0]}, n_iter=2, cv=2, error_score="raise", random_state=0),
], ids=lambda search: type(search).__name__)
def test_the_searches_pass_scikit_learns_estimator_checks(search: GridSearchCV) -> None:
    check_estimator(search, expected_failed_checks=EXPECTED_FAILURES)
