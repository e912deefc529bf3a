"""The CIFAR CNN as a model family (``neural_net:CNN``): all that the generic code knows of it.

Importing this module imports neither TensorFlow nor Keras: the master, the
status tools and ``--help`` read the family's settings and metric for free, and
only training, drawing and testing load the heavy modules.
"""

from __future__ import annotations

from typing import Any

from caviar.family import ModelFamily
from neural_net.settings import SETTINGS, Settings
from neural_net.space import DEMO_PARAMS


class CnnFamily(ModelFamily):
    """The searched CNN: score = best validation accuracy of the fine head; the best model is kept."""

    metric = "accuracy"
    maximize = True
    space = "neural_net.space:CIFAR_SPACE"
    settings = SETTINGS
    demo_params = DEMO_PARAMS
    diagrams = True
    test_artifact = "model.keras"
    scheduler = "asha"  # trials report each epoch's validation accuracy (neural_net.callbacks)

    def objective(self, params: dict[str, Any]) -> Any:
        from neural_net.train import objective

        return objective(params)

    def max_steps(self) -> int:
        return Settings.from_env().epochs

    def prepare(self) -> None:
        from neural_net import datasets

        datasets.load(Settings.from_env())

    def draw(self, params: dict[str, Any], path: str) -> None:
        from neural_net.model import plot

        plot(params, path)

    def evaluate_best(self, artifact_path: str) -> dict[str, float]:
        from neural_net.train import evaluate_test

        return evaluate_test(artifact_path)
