"""Class predictions of a saved model on a file of images: what ``python -m optimizer predict`` writes.

A saved model (a trial's ``model.keras`` or the refit ``best_model.keras``)
takes raw uint8 images of its data set's shape. Inputs are read from:

- a ``.npy`` file of uint8 images, shaped (N, H, W, C) like the model's input,
  or (N, H, W) for one-channel images (MNIST, Fashion-MNIST);
- a data set's official test file: MNIST's or Fashion-MNIST's
  ``t10k-images-idx3-ubyte.gz`` (any gzipped idx file of images), or the
  CIFAR-10 / CIFAR-100 archive (its test batch).

Each image gets the index of its most probable class (the data set's class
ids: the digit for MNIST, 0-9 in the official order for Fashion-MNIST and
CIFAR-10, the fine label for CIFAR-100), with its id: its row in the input,
from 0.
"""

from __future__ import annotations

import logging
import tarfile
from pathlib import Path

import keras
import numpy as np

from caviar.errors import CaviarError
from neural_net.datasets import DATASETS, read_idx

log = logging.getLogger(__name__)

PREDICT_BATCH_SIZE = 256


def read_images(path: str | Path, shape: tuple[int, ...]) -> np.ndarray:
    """The uint8 images of ``path`` (see the module's docstring) as (N, *shape), or a CaviarError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CaviarError(f"no input file {path}")
    if path.suffix == ".npy":
        images = np.load(path, allow_pickle=False)
    elif tarfile.is_tarfile(path):
        images = _archive_test_images(path, shape)
    else:
        try:
            images = read_idx(path)
        except (OSError, ValueError) as err:
            raise CaviarError(f"{path} is neither a .npy array, an idx file nor a CIFAR archive ({err})") from None
    if images.dtype != np.uint8:
        raise CaviarError(f"{path} holds {images.dtype} values: the model takes raw uint8 images (0-255)")
    if images.shape[1:] == shape[:-1] and shape[-1] == 1:
        images = images[..., None]
    if images.ndim != len(shape) + 1 or images.shape[1:] != shape:
        raise CaviarError(f"{path} holds images of shape {images.shape[1:]}, the model takes {shape}")
    return images


def _archive_test_images(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """The test images of an official single-archive data set (CIFAR) of images shaped ``shape``."""
    for spec in DATASETS.values():
        if len(spec.files) == 1 and spec.input_shape == shape:
            try:
                return spec.read([path]).test.x
            except (KeyError, OSError, ValueError):  # the other CIFAR's archive
                continue
    raise CaviarError(f"{path} is an archive but not a CIFAR-10 or CIFAR-100 one of {shape} images")


def predict_file(model_path: str, input_path: str) -> list[tuple[int, int]]:
    """(id, class id) of each image of ``input_path``, predicted by the saved model ``model_path``."""
    model = keras.saving.load_model(model_path)
    images = read_images(input_path, tuple(model.input_shape[1:]))
    log.info("predicting %d images of %s with %s", len(images), input_path, model_path)
    probabilities = np.asarray(model.predict(images, batch_size=PREDICT_BATCH_SIZE, verbose=0))
    return list(enumerate(probabilities.argmax(axis=1).tolist()))
