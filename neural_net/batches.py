"""The batches a trial trains on: numpy arrays through ``keras.utils.PyDataset``, the same under every backend.

A module of its own, light to import (Keras and numpy), for ``bench/gpu.py``.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from neural_net.datasets import Split
from neural_net.model import COARSE_HEAD, FINE_HEAD


class Batches(keras.utils.PyDataset):
    """Batches of (uint8 images, {head: labels}) of ``split``, in order, or shuffled anew each epoch from ``seed``.

    Epoch ``e``'s order depends on the seed and ``e`` alone, on every backend, so a
    run resumed at ``first_epoch`` sees the orders an uninterrupted run would have.
    """

    def __init__(self, split: Split, batch_size: int, seed: int | None = None, first_epoch: int = 0) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.split, self.batch_size, self.seed = split, batch_size, seed
        self.epoch = first_epoch - 1
        self.order = np.arange(len(split))
        self.on_epoch_end()

    def __len__(self) -> int:
        return math.ceil(len(self.split) / self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        rows = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        labels = {FINE_HEAD: self.split.fine[rows]}
        if self.split.coarse is not None:
            labels[COARSE_HEAD] = self.split.coarse[rows]
        return self.split.x[rows], labels

    def on_epoch_end(self) -> None:
        """Draw the next epoch's order (Keras calls this after each epoch)."""
        self.epoch += 1
        if self.seed is not None:
            self.order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.split))
