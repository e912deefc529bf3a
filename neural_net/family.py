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


class ImageFamily(ModelFamily):
    """What every family of ``neural_net`` shares: an accuracy, and a saved model that predicts raw images."""

    metric = "accuracy"
    maximize = True
    test_artifact = "model.keras"
    cv_setting = "HKS_CV"

    def predict(self, artifact_path: str, input_path: str) -> list[tuple[int, Any]]:
        """Class ids of the images of ``input_path`` (see ``neural_net.inference``)."""
        from neural_net.inference import predict_file

        return predict_file(artifact_path, input_path)


class CnnFamily(ImageFamily):
    """The searched CNN: score = best validation accuracy of the fine head (or its mean over ``--cv`` folds)."""

    space = "neural_net.space:CIFAR_SPACE"
    settings = SETTINGS
    demo_params = DEMO_PARAMS
    diagrams = True
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

    def refit(self, params: dict[str, Any], out_path: str) -> dict[str, Any]:
        from neural_net.train import refit

        return refit(params, out_path)
