"""Write scikit-learn's 1,797 real 8x8 digits as MNIST-format idx files, to run the classic spaces offline.

    python bench/digits_idx.py ml_req/mnist [--test 297]

MNIST cannot be downloaded here; scikit-learn bundles 1,797 real handwritten
digits (8x8, values 0-16). Each is scaled to 0-255, enlarged 3x to 24x24 and
centred in 28x28 like MNIST's, shuffled with a fixed seed, and split into
train and test (``--test`` images) in the four official gzipped idx files, so
``neural_net.classic``'s pairs read them as MNIST (or, written to
``ml_req/fashion-mnist/``, as Fashion-MNIST's files: the same digits, only to
run the Fashion-MNIST CNN's workflow).
"""

from __future__ import annotations

import argparse
import gzip
import struct
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
         "t10k-labels-idx1-ubyte.gz")


def write_idx(path: Path, array: np.ndarray) -> None:
    """One gzipped idx file of unsigned bytes."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def digits_28x28() -> tuple[np.ndarray, np.ndarray]:
    """The digits as (1797, 28, 28) uint8 images and their labels."""
    digits = load_digits()
    small = np.round(digits.images * (255 / 16)).astype(np.uint8)
    images = np.zeros((len(small), 28, 28), dtype=np.uint8)
    images[:, 2:26, 2:26] = np.kron(small, np.ones((3, 3), dtype=np.uint8))
    return images, digits.target.astype(np.uint8)


def write_digits(folder: Path, n_test: int = 297) -> tuple[int, int]:
    """The shuffled digits as the four idx files in ``folder``; the numbers of training and test images."""
    images, labels = digits_28x28()
    order = np.random.default_rng(0).permutation(len(images))
    train, test = order[n_test:], order[:n_test]
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in zip(FILES, (images[train], labels[train], images[test], labels[test])):
        write_idx(folder / name, array)
    return len(train), len(test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--test", type=int, default=297, help="images held out as the test split")
    args = parser.parse_args()
    n_train, n_test = write_digits(args.folder, args.test)
    print(f"{n_train} training and {n_test} test images in {args.folder}/")


if __name__ == "__main__":
    main()
