"""scikeras' KerasClassifier (Keras 3) inside Caviar's GridSearchCV, like users wrap their Keras models."""

from __future__ import annotations

import keras
import numpy as np
from scikeras.wrappers import KerasClassifier
from sklearn.datasets import load_digits
from sklearn.model_selection import StratifiedKFold

from optimizer.sklearn import GridSearchCV


def _mlp(hidden: int = 8, meta: dict | None = None) -> keras.Model:
    return keras.Sequential([
        keras.Input((meta["n_features_in_"],)),
        keras.layers.Dense(hidden, activation="relu"),
        keras.layers.Dense(meta["n_classes_"], activation="softmax"),
    ])


def test_a_keras_classifier_is_searched_refit_and_predicts_the_callers_labels() -> None:
    x, y = load_digits(return_X_y=True)
    x, y = x[:90] / 16.0, np.array([f"digit {d}" for d in y[:90]])
    classifier = KerasClassifier(model=_mlp, loss="sparse_categorical_crossentropy", optimizer="adam", epochs=1,
                                 verbose=0, random_state=0)
    search = GridSearchCV(classifier, {"model__hidden": [4, 8]}, cv=StratifiedKFold(2, shuffle=True, random_state=0))
    search.fit(x, y)
    assert [p["model__hidden"] for p in search.cv_results_["params"]] == [4, 8]
    assert all(len(d["result"]["splits"]) == 2 for d in search.trials_)
    assert search.best_estimator_.model_.layers[0].units == search.best_params_["model__hidden"]
    assert set(search.predict(x[:10])) <= set(y)
