"""The cross-validation helper and the cv_results table, against scikit-learn's own numbers."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier

from caviar.cv import (
    cross_validate,
    cv_results,
    rank_scores,
    stratified_folds,
    write_cv_results,
)
from caviar.errors import CaviarError
from caviar.objective import STATUS_FAIL
from caviar.runner import run_trial
from caviar.schedulers import CONFIG_ENV
from caviar.store import DONE, best_doc
from caviar.store.local import LocalStore
from tests.helpers.trials import enqueue_points

X, Y = load_iris(return_X_y=True)


def _knn_folds(k: int):
    def fold(train: np.ndarray, test: np.ndarray) -> dict:
        model = KNeighborsClassifier(n_neighbors=k).fit(X[train], Y[train])
        return {"score": model.score(X[test], Y[test]), "history": {"n": [len(train)]}}
    return fold


def test_folds_are_scikit_learns_shuffled_stratified_folds() -> None:
    ours = stratified_folds(Y, 4, seed=3)
    theirs = StratifiedKFold(4, shuffle=True, random_state=3).split(X, Y)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(ours, theirs, strict=True))
    with pytest.raises(CaviarError, match="cannot split 150 labels into 60 stratified folds"):
        stratified_folds(Y, 60, seed=0)


def test_a_score_metric_gives_minus_the_mean_and_keeps_each_fold() -> None:
    result = cross_validate(_knn_folds(5), Y, k=3, seed=0)
    scores = [s["score"] for s in result["splits"]]
    assert result["mean_test_score"] == pytest.approx(np.mean(scores))
    assert result["loss"] == pytest.approx(-np.mean(scores))
    assert result["std_test_score"] == pytest.approx(np.std(scores))
    assert [s["history"] for s in result["splits"]] == [{"n": [100]}] * 3
    assert all(s["fit_time"] >= 0 for s in result["splits"]) and result["status"] == "ok"


def test_a_loss_metric_gives_the_mean_and_a_nan_fold_fails_the_trial() -> None:
    losses = iter([0.5, 0.25])
    result = cross_validate(lambda train, test: next(losses), Y, k=2, seed=0, greater_is_better=False)
    assert result["loss"] == pytest.approx(0.375)
    failed = cross_validate(lambda train, test: math.nan, Y, k=2, seed=0)
    assert failed["status"] == STATUS_FAIL and len(failed["splits"]) == 2


def _without_times(result: dict) -> dict:
    return {k: v for k, v in result.items() if "fit_time" not in k} | {
        "splits": [{k: v for k, v in s.items() if k != "fit_time"} for s in result["splits"]]}


def test_reporting_outside_a_run_changes_nothing() -> None:
    plain = cross_validate(_knn_folds(5), Y, k=3, seed=0)
    reported = cross_validate(_knn_folds(5), Y, k=3, seed=0, report=True, maximize=True)
    assert _without_times(reported) == _without_times(plain) and "stopped" not in reported


@pytest.mark.parametrize("maximize", [True, False])
def test_a_candidate_behind_its_first_fold_rung_stops_with_its_partial_result(
    monkeypatch: pytest.MonkeyPatch, maximize: bool
) -> None:
    monkeypatch.setenv(CONFIG_ENV, json.dumps({"name": "asha", "min_epochs": 1, "reduction_factor": 3,
                                               "max_epochs": 3}))
    store = LocalStore()
    for tid in enqueue_points(store, [{"k": 1}, {"k": 2}]):  # two candidates whose first fold scored 1.0
        store.claim("peer")
        assert store.report(tid, "peer", 1, -1.0)

    def objective(params: dict[str, Any]) -> dict[str, Any]:
        return cross_validate(_knn_folds(params["k"]), Y, k=3, seed=0, report=True, maximize=maximize)

    objective.maximize = maximize  # type: ignore[attr-defined]
    [tid] = enqueue_points(store, [{"k": 5}])
    result, _ = run_trial(store, store.claim("w"), objective, "w", 30.0)
    first = cross_validate(_knn_folds(5), Y, k=3, seed=0)["splits"][0]["score"]
    assert first < 1.0
    assert result["status"] == "ok" and result["stopped"] is True and result["stopped_at"] == 1
    assert [s["score"] for s in result["splits"]] == [first] and result["loss"] == -first
    doc = next(d for d in store.trial_docs() if d["tid"] == tid)
    assert doc["reports"] == {"1": -first}  # stored as a loss whichever direction the objective reports in
    assert cv_results([_doc(1, {"k": 1}, {"splits": [{"score": 0.9}] * 3}), _doc(2, {"k": 5}, result)])[
        "rank_test_score"] == [1, 2]


def _doc(tid: int, params: dict, result: dict) -> dict:
    return {"tid": tid, "state": DONE, "params": params, "result": result}


def test_the_best_trial_is_one_that_trained_every_fold_when_there_is_one() -> None:
    complete = _doc(1, {"k": 1}, {"status": "ok", "loss": -0.9, "splits": [{"score": 0.9}] * 3})
    partial = _doc(2, {"k": 5}, {"status": "ok", "loss": -0.98, "splits": [{"score": 0.98}], "stopped": True})
    assert best_doc([partial, complete]) is complete and best_doc([partial]) is partial


def test_the_table_ranks_like_scikit_learn_and_writes_csv(tmp_path: Path) -> None:
    docs = [_doc(t, {"k": k, "net": {"w": w}}, cross_validate(_knn_folds(k), Y, k=3, seed=0))
            for t, (k, w) in enumerate([(1, 4), (5, 8), (5, 8), (15, 2)])]
    docs.append(_doc(4, {"k": 0}, {"status": STATUS_FAIL, "error": "boom"}))
    table = cv_results(docs)
    means = table["mean_test_score"]
    assert means[1] == means[2] and math.isnan(means[4])
    assert table["rank_test_score"] == rank_scores(np.array(means)).tolist()
    assert table["rank_test_score"][1] == table["rank_test_score"][2] and table["rank_test_score"][4] == 5
    assert table["param_net.w"] == [4, 8, 8, 2, None]
    assert table["split2_test_score"][0] == docs[0]["result"]["splits"][2]["score"]
    with open(write_cv_results(table, tmp_path / "cv.csv")) as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 5 and float(rows[3]["mean_test_score"]) == pytest.approx(means[3])


def test_ranks_share_the_smallest_rank_on_ties_and_put_nan_last() -> None:
    assert rank_scores(np.array([0.5, 0.9, 0.5, np.nan])).tolist() == [2, 1, 2, 4]
    assert rank_scores(np.array([0.5, 0.9, 0.5]), greater_is_better=False).tolist() == [1, 3, 1]
