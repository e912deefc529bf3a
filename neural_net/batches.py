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
    """An endless stream of batches of (uint8 images, {head: labels}) of ``split``, epoch after epoch.

    ``len()`` is the number of batches of one epoch: pass it to ``fit`` as
    ``steps_per_epoch`` (``validation_steps``). Each epoch is in order, or
    shuffled from ``seed``; the stream starts at epoch ``first_epoch``.

    Batch ``i`` of the stream depends on ``i``, the seed and ``first_epoch``
    alone, on every backend, so a run resumed at ``first_epoch`` sees the
    batches an uninterrupted run would have. The order is not drawn in
    ``on_epoch_end``: Keras creates the next epoch's iterator, and TensorFlow
    and JAX start fetching from it, before it calls that hook, so which
    batches still got the previous epoch's order was a race between threads.
    """

    def __init__(self, split: Split, batch_size: int, seed: int | None = None, first_epoch: int = 0) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.split, self.batch_size, self.seed, self.first_epoch = split, batch_size, seed, first_epoch
        self._drawn: tuple[int, np.ndarray] | None = None  # the latest epoch's order: a shuffle costs ~1 ms per 50,000

    def __len__(self) -> int:
        return math.ceil(len(self.split) / self.batch_size)

    @property
    def num_batches(self) -> None:
        """None: endless, for Keras (``len()`` still gives one epoch's batches)."""
        return None

    def __getitem__(self, index: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        epoch, batch = divmod(index, len(self))
        rows = self.order(self.first_epoch + epoch)[batch * self.batch_size:(batch + 1) * self.batch_size]
        labels = {FINE_HEAD: self.split.fine[rows]}
        if self.split.coarse is not None:
            labels[COARSE_HEAD] = self.split.coarse[rows]
        return self.split.x[rows], labels

    def order(self, epoch: int) -> np.ndarray:
        """The rows of ``split`` in epoch ``epoch``'s order."""
        if self.seed is None:
            return np.arange(len(self.split))
        drawn = self._drawn
        if drawn is None or drawn[0] != epoch:
            drawn = self._drawn = epoch, np.random.default_rng([self.seed, epoch]).permutation(len(self.split))
        return drawn[1]
