"""scikit-learn's search classes on Caviar workers: two `python -m worker` processes on the test's database."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.model_selection import StratifiedKFold

from caviar.store.mongo import MongoStore
from optimizer.sklearn import GridSearchCV, RandomizedSearchCV
from tests.helpers.estimators import load_digits_xy, make_knn

FACTORY, LOADER = "tests.helpers.estimators:make_knn", "tests.helpers.estimators:load_digits_xy"
GRID = {"n_neighbors": [1, 3, 5], "weights": ["uniform", "distance"]}


def test_a_grid_on_two_workers_equals_the_in_process_search_and_resumes(mongo_url: str, workers) -> None:
    X, y = load_digits_xy()
    cv = StratifiedKFold(3, shuffle=True, random_state=7)
    for _ in range(2):
        workers.start(mongo_url, "--exp-key", "digits", "--poll-seconds", "0.05")
    remote = GridSearchCV(FACTORY, GRID, cv=cv, scoring="accuracy", mongo=mongo_url, exp_key="digits",
                          data=LOADER).fit(X, y)
    local = GridSearchCV(make_knn(), GRID, cv=cv, scoring="accuracy").fit(X, y)

    assert remote.cv_results_["params"] == local.cv_results_["params"]
    for column in ("split0_test_score", "split1_test_score", "split2_test_score", "mean_test_score",
                   "std_test_score", "rank_test_score"):
        np.testing.assert_allclose(remote.cv_results_[column], local.cv_results_[column], err_msg=column)
    assert remote.best_params_ == local.best_params_ and remote.score(X, y) == local.score(X, y)
    trials = MongoStore(mongo_url, "digits").trial_docs()
    assert len(trials) == 6 and all(t["owner"] and t["owner"] != "sklearn-search" for t in trials)
    experiment = MongoStore(mongo_url, "digits").get_experiment()
    assert "pickle" not in str(experiment) and FACTORY in experiment["env"]["CAVIAR_SKLEARN_SEARCH"]

    again = GridSearchCV(FACTORY, GRID, cv=cv, scoring="accuracy", mongo=mongo_url, exp_key="digits",
                         data=LOADER).fit(X, y)
    assert len(MongoStore(mongo_url, "digits").trial_docs()) == 6  # nothing queued twice
    np.testing.assert_allclose(again.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"])


def test_a_randomized_tpe_search_on_a_worker(mongo_url: str, workers, monkeypatch) -> None:
    """Proposed as slots free up; while waiting, the search reads what changed, never the whole experiment."""
    reads: list[int] = []
    whole = MongoStore.trial_docs
    monkeypatch.setattr(MongoStore, "trial_docs", lambda self: reads.append(1) or whole(self))
    X, y = load_digits_xy()
    workers.start(mongo_url, "--exp-key", "tpe", "--poll-seconds", "0.05")
    search = RandomizedSearchCV(FACTORY, {"n_neighbors": list(range(1, 9))}, n_iter=4, cv=3, algo="tpe",
                                random_state=0, mongo=mongo_url, exp_key="tpe", data=LOADER).fit(X, y)
    assert len(search.cv_results_["params"]) == 4 and search.n_splits_ == 3
    assert len({p["n_neighbors"] for p in search.cv_results_["params"]}) == 4
    assert len(reads) == 1  # the results, once, at the end


@pytest.mark.parametrize("kwargs, message", [
    ({"estimator": make_knn()}, "needs estimator='module:factory'"),
    ({"data": None}, "needs estimator='module:factory'"),
    ({"cv": StratifiedKFold(3, shuffle=True, random_state=np.random.RandomState(0))}, "cannot travel to workers"),
    ({"scoring": len}, "give a scorer's name or None"),
])
def test_what_cannot_travel_to_workers_is_refused_before_anything_is_queued(mongo_url: str, kwargs: dict,
                                                                           message: str) -> None:
    X, y = load_digits_xy()
    args = {"estimator": FACTORY, "param_grid": GRID, "cv": 3, "mongo": mongo_url, "exp_key": "bad",
            "data": LOADER} | kwargs
    with pytest.raises(ValueError, match=message):
        GridSearchCV(**args).fit(X, y)
    assert MongoStore(mongo_url, "bad").trial_docs() == []


def test_the_arrays_given_to_fit_must_be_the_loaders(mongo_url: str) -> None:
    X, y = load_digits_xy()
    with pytest.raises(ValueError, match="not what the workers' loader"):
        GridSearchCV(FACTORY, GRID, mongo=mongo_url, exp_key="other", data=LOADER).fit(X[:100], y[:100])
