"""Estimator factories that spawned processes import by path (``tests.helpers.estimators:make_knn``)."""

from __future__ import annotations

from sklearn.neighbors import KNeighborsClassifier


def make_knn() -> KNeighborsClassifier:
    """A deterministic classifier, built afresh in each process that asks."""
    return KNeighborsClassifier()
