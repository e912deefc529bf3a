"""Estimator factories and data loaders that other processes import by path (``tests.helpers.estimators:make_knn``)."""

from __future__ import annotations

from typing import Any

import numpy as np
from hyperopt import hp
from sklearn.datasets import load_digits
from sklearn.neighbors import KNeighborsClassifier

from caviar.cv import cross_validate


def make_knn() -> KNeighborsClassifier:
    """A deterministic classifier, built afresh in each process that asks."""
    return KNeighborsClassifier()


def load_digits_xy() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 real 8x8 digits: the data loader a search on workers names by path."""
    return load_digits(return_X_y=True)


KNN_SPACE = {"n_neighbors": hp.choice("n_neighbors", [1, 3, 5, 7]),
             "weights": hp.choice("weights", ["uniform", "distance"])}


def knn_cv(params: dict[str, Any]) -> dict[str, Any]:
    """A deterministic objective for ``--algo grid``: 3 stratified folds (seed 0) of a KNN on the digits."""
    X, y = load_digits_xy()
    return cross_validate(lambda train, test: KNeighborsClassifier(**params).fit(X[train], y[train])
                          .score(X[test], y[test]), y, k=3, seed=0)


knn_cv.metric, knn_cv.maximize = "accuracy", True  # type: ignore[attr-defined]
