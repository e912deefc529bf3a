"""Estimator factories and data loaders that other processes import by path (``tests.helpers.estimators:make_knn``)."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits
from sklearn.neighbors import KNeighborsClassifier


def make_knn() -> KNeighborsClassifier:
    """A deterministic classifier, built afresh in each process that asks."""
    return KNeighborsClassifier()


def load_digits_xy() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 real 8x8 digits: the data loader a search on workers names by path."""
    return load_digits(return_X_y=True)
