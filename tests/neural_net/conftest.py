"""Fixtures that write small data sets in their official file formats, and keep tests off the network.

The archives hold random pixels with the official structure: Python-2 style
pickles (protocol 2, bytes keys) of (N, 3072) uint8 rows for CIFAR, gzipped
idx files for MNIST and Fashion-MNIST. Coarse CIFAR-100 labels are
``fine // 5``, a valid fine-to-coarse mapping like the official one.
"""

from __future__ import annotations

import gzip
import io
import pickle
import socket
import struct
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from neural_net import datasets

WriteDataset = Callable[..., Path]


def _add(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def _write_tar(path: Path, folder: str, members: dict[str, object]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        directory = tarfile.TarInfo(folder)
        directory.type = tarfile.DIRTYPE
        tar.addfile(directory)
        for name, content in members.items():
            _add(tar, f"{folder}/{name}", pickle.dumps(content, protocol=2))
    return path


def _cifar_batch(rng: np.random.Generator, n: int, labels: dict[bytes, np.ndarray]) -> dict[bytes, object]:
    return {
        b"batch_label": b"fixture batch",
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"image_{i}.png".encode() for i in range(n)],
        **{key: values.tolist() for key, values in labels.items()},
    }


def write_cifar100(folder: Path, n_train: int = 120, n_test: int = 40, seed: int = 0) -> Path:
    """cifar-100-python.tar.gz with train, test and meta, like the official archive."""
    rng = np.random.default_rng(seed)

    def batch(n: int) -> dict[bytes, object]:
        fine = rng.integers(0, 100, n)
        return _cifar_batch(rng, n, {b"fine_labels": fine, b"coarse_labels": fine // 5})

    meta = {
        b"fine_label_names": [f"fine_{i}".encode() for i in range(100)],
        b"coarse_label_names": [f"coarse_{i}".encode() for i in range(20)],
    }
    return _write_tar(folder / "cifar-100-python.tar.gz", "cifar-100-python",
                      {"meta": meta, "train": batch(n_train), "test": batch(n_test)})


def write_cifar10(folder: Path, n_train: int = 100, n_test: int = 30, seed: int = 0) -> Path:
    """cifar-10-python.tar.gz with five training batches, a test batch and batches.meta."""
    rng = np.random.default_rng(seed)
    per_batch = n_train // 5
    members: dict[str, object] = {
        "batches.meta": {b"label_names": [f"class_{i}".encode() for i in range(10)],
                         b"num_cases_per_batch": per_batch, b"num_vis": 3072},
    }
    for i in range(1, 6):
        members[f"data_batch_{i}"] = _cifar_batch(rng, per_batch, {b"labels": rng.integers(0, 10, per_batch)})
    members["test_batch"] = _cifar_batch(rng, n_test, {b"labels": rng.integers(0, 10, n_test)})
    return _write_tar(folder / "cifar-10-python.tar.gz", "cifar-10-batches-py", members)


def write_idx(path: Path, array: np.ndarray) -> Path:
    """One gzipped idx file of unsigned bytes: magic (0, 0x08, ndim), big-endian dims, data."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())
    return path


def write_idx_set(folder: Path, n_train: int = 100, n_test: int = 30, seed: int = 0) -> Path:
    """The four idx files of MNIST / Fashion-MNIST (28x28 images, labels 0-9) in ``folder``."""
    rng = np.random.default_rng(seed)
    images_train, labels_train, images_test, labels_test = datasets.IDX_FILES
    write_idx(folder / images_train, rng.integers(0, 256, (n_train, 28, 28)))
    write_idx(folder / labels_train, rng.integers(0, 10, n_train))
    write_idx(folder / images_test, rng.integers(0, 256, (n_test, 28, 28)))
    write_idx(folder / labels_test, rng.integers(0, 10, n_test))
    return folder


WRITERS: dict[str, WriteDataset] = {
    "cifar100": write_cifar100,
    "cifar10": write_cifar10,
    "mnist": write_idx_set,
    "fashion_mnist": write_idx_set,
}


def _no_network(*args: object, **kwargs: object) -> None:
    raise AssertionError("tests must not reach the network")


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test downloads, reads the user's Keras cache or ml_req/, or sees the caller's settings."""
    monkeypatch.setattr(socket.socket, "connect", _no_network)
    for name in ("HKS_DATASET", "HKS_DATA_PATH", "DATASET_SIZE", "HKS_VALIDATION_SPLIT", "HKS_EPOCHS", "HKS_SEED"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HKS_OFFLINE", "1")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)


@pytest.fixture
def write_dataset() -> WriteDataset:
    """``write_dataset(name, folder, n_train=..., n_test=..., seed=...)``: the data set's file(s), path returned.

    The path is the archive for CIFAR and the folder of the idx files for MNIST
    and Fashion-MNIST: either is what HKS_DATA_PATH takes.
    """
    return lambda name, folder, **sizes: WRITERS[name](Path(folder), **sizes)


@pytest.fixture(name="write_idx")
def write_idx_fixture() -> Callable[[Path, np.ndarray], Path]:
    """``write_idx(path, array)``: one gzipped idx file, to damage a written data set."""
    return write_idx


@pytest.fixture
def cifar100_archive(tmp_path: Path, write_dataset: WriteDataset) -> Path:
    """A 120-train / 40-test CIFAR-100 archive outside every lookup place."""
    return write_dataset("cifar100", tmp_path / "data")
