"""Image data sets read from their official files: CIFAR-100, CIFAR-10, MNIST and Fashion-MNIST.

The archives are read in place (nothing is extracted to disk), so the same
file serves every worker and a half-extracted folder can never be mistaken for
data. Where a data set's file(s) are looked up, first found wins:

1. ``Settings.data_path`` (``HKS_DATA_PATH``): the archive itself, or a folder
   holding the data set's file(s);
2. ``ml_req/`` under the working directory (the seed's place); the loose idx
   files of MNIST and Fashion-MNIST go in ``ml_req/mnist/`` and
   ``ml_req/fashion-mnist/`` since both data sets use the same file names;
3. Keras' download cache, ``$KERAS_HOME/datasets`` or ``~/.keras/datasets``
   (Keras 3 keeps a downloaded CIFAR archive there as
   ``cifar-100-python-target_archive``; Keras' own ``mnist.npz`` is not read);
4. a download from the official URL into that cache, unless ``HKS_OFFLINE=1``.

Only CIFAR-100 has coarse labels: for the other data sets ``coarse_names`` is
empty and ``Split.coarse`` is None, so the model gets the fine head only.

Images stay raw uint8, as in the files: the model scales them itself (see
``neural_net.model``), so that a saved model takes the data set's images as
they are. A ``DatasetSpec`` also knows the shape and classes its files hold,
so a model of the data set can be built (or drawn) without reading them.

Trials score on a validation split carved from the training set; the test
split is kept for the final evaluation of the best model.
"""

from __future__ import annotations

import functools
import gzip
import logging
import os
import pickle
import struct
import tarfile
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from caviar.errors import CaviarError
from neural_net.settings import Settings

log = logging.getLogger(__name__)

Downloader = Callable[[str, Path], None]


@dataclass(frozen=True, eq=False)
class Split:
    """Images (N, H, W, C) with their int32 labels; ``coarse`` is None without coarse labels."""

    x: np.ndarray
    fine: np.ndarray
    coarse: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.x)

    def take(self, index: slice | np.ndarray) -> Split:
        """The images (and their labels) selected by ``index``."""
        return Split(self.x[index], self.fine[index], None if self.coarse is None else self.coarse[index])


class Official(NamedTuple):
    """What a data set's official files hold: uint8 images, labels and class names."""

    train: Split
    test: Split
    fine_names: tuple[str, ...]
    coarse_names: tuple[str, ...]


@dataclass(frozen=True)
class DatasetSpec:
    """Where a data set's official files come from and how they are read."""

    name: str
    title: str
    files: tuple[str, ...]
    base_url: str
    read: Callable[[Sequence[Path]], Official]
    input_shape: tuple[int, ...]
    n_fine: int
    n_coarse: int = 0
    folder: str = ""  # under ml_req/ and the Keras cache, for data sets of several loose files
    keras_archive: str | None = None  # Keras 3's name for the downloaded archive in its cache
    flip: bool = True  # whether a left-right mirror image still shows the same class


@dataclass(frozen=True, eq=False)
class Data:
    """A data set ready to train on: raw uint8 images, int32 labels, all read-only."""

    spec: DatasetSpec
    train: Split
    validation: Split
    test: Split
    fine_names: tuple[str, ...]
    coarse_names: tuple[str, ...]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])

    @property
    def n_fine(self) -> int:
        return len(self.fine_names)

    @property
    def n_coarse(self) -> int:
        return len(self.coarse_names)


def training_pool(data: Data) -> Split:
    """The training and validation images together, in that order: what cross-validation folds and a refit use."""
    coarse = None if data.train.coarse is None else np.concatenate([data.train.coarse, data.validation.coarse])
    return Split(np.concatenate([data.train.x, data.validation.x]),
                 np.concatenate([data.train.fine, data.validation.fine]), coarse)


def _unpickle(tar: tarfile.TarFile, member: str) -> dict[str, Any]:
    """One of the Python-2 pickles of a CIFAR archive, with its bytes keys made str."""
    handle = tar.extractfile(member)
    if handle is None:
        raise KeyError(f"{member} is not a file")
    batch = pickle.load(handle, encoding="bytes")
    return {key.decode() if isinstance(key, bytes) else key: value for key, value in batch.items()}


def _cifar_images(batch: dict[str, Any]) -> np.ndarray:
    """(N, 3072) rows, R plane then G then B, to (N, 32, 32, 3) images."""
    return np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def _labels(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.int32)


def _names(values: Sequence[bytes | str]) -> tuple[str, ...]:
    return tuple(v.decode() if isinstance(v, bytes) else str(v) for v in values)


def read_cifar100(paths: Sequence[Path]) -> Official:
    """Read ``cifar-100-python.tar.gz``: fine and coarse labels and their names."""
    with tarfile.open(paths[0], "r:*") as tar:
        meta = _unpickle(tar, "cifar-100-python/meta")
        train, test = (_unpickle(tar, f"cifar-100-python/{name}") for name in ("train", "test"))
    train_split, test_split = (
        Split(_cifar_images(batch), _labels(batch["fine_labels"]), _labels(batch["coarse_labels"]))
        for batch in (train, test)
    )
    return Official(train_split, test_split, _names(meta["fine_label_names"]), _names(meta["coarse_label_names"]))


def read_cifar10(paths: Sequence[Path]) -> Official:
    """Read ``cifar-10-python.tar.gz``: five training batches and a test batch."""
    with tarfile.open(paths[0], "r:*") as tar:
        meta = _unpickle(tar, "cifar-10-batches-py/batches.meta")
        train = [_unpickle(tar, f"cifar-10-batches-py/data_batch_{i}") for i in range(1, 6)]
        test = _unpickle(tar, "cifar-10-batches-py/test_batch")
    train_split = Split(
        np.concatenate([_cifar_images(batch) for batch in train]),
        np.concatenate([_labels(batch["labels"]) for batch in train]),
    )
    return Official(train_split, Split(_cifar_images(test), _labels(test["labels"])), _names(meta["label_names"]), ())


def read_idx(path: Path) -> np.ndarray:
    """Read one gzipped idx file of unsigned bytes (the MNIST format) into an array of its shape."""
    with gzip.open(path, "rb") as handle:
        raw = handle.read()
    zeros, type_code, ndim = struct.unpack_from(">HBB", raw)
    if zeros != 0 or type_code != 0x08:
        raise ValueError("not an idx file of unsigned bytes (bad magic number)")
    shape = struct.unpack_from(f">{ndim}I", raw, 4)
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def read_idx_set(paths: Sequence[Path], names: tuple[str, ...]) -> Official:
    """Read the four idx files of MNIST or Fashion-MNIST (train images, labels, then test)."""
    train_x, train_y, test_x, test_y = (read_idx(path) for path in paths)
    return Official(Split(train_x[..., None], _labels(train_y)), Split(test_x[..., None], _labels(test_y)), names, ())


IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
FASHION_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            "cifar100", "CIFAR-100", ("cifar-100-python.tar.gz",), "https://www.cs.toronto.edu/~kriz/",
            read_cifar100, (32, 32, 3), 100, 20, keras_archive="cifar-100-python-target_archive",
        ),
        DatasetSpec(
            "cifar10", "CIFAR-10", ("cifar-10-python.tar.gz",), "https://www.cs.toronto.edu/~kriz/",
            read_cifar10, (32, 32, 3), 10, keras_archive="cifar-10-batches-py-target_archive",
        ),
        # yann.lecun.com no longer serves the files; this is Google's mirror of them.
        DatasetSpec(
            "mnist", "MNIST", IDX_FILES, "https://storage.googleapis.com/cvdf-datasets/mnist/",
            functools.partial(read_idx_set, names=tuple(str(d) for d in range(10))), (28, 28, 1), 10, folder="mnist", flip=False,
        ),
        # The same files as the official S3 bucket, over https, where Keras fetches them.
        DatasetSpec(
            "fashion_mnist", "Fashion-MNIST", IDX_FILES, "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
            functools.partial(read_idx_set, names=FASHION_NAMES), (28, 28, 1), 10, folder="fashion-mnist",
        ),
    )
}


def dataset_spec(name: str) -> DatasetSpec:
    """The data set called ``name``, or a CaviarError listing the known ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise CaviarError(f"unknown data set {name!r} (HKS_DATASET): choose one of {', '.join(DATASETS)}") from None


def keras_cache() -> Path:
    """Keras' download cache: ``$KERAS_HOME/datasets``, else ``~/.keras/datasets``."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "datasets"


def download(url: str, target: Path) -> None:
    """Fetch ``url`` into ``target`` with a progress bar; an interrupted download leaves no ``target``."""
    # Imported here only: training needs no tqdm (bench/gpu.py runs without).
    from tqdm import tqdm

    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    log.info("downloading %s to %s", url, target)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
            size = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=size, unit="B", unit_scale=True, desc=target.name) as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    bar.update(len(chunk))
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def locate(spec: DatasetSpec, data_path: str | None = None, offline: bool = False,
           fetch: Downloader = download) -> tuple[Path, ...]:
    """The paths of ``spec``'s files, looked up in the order of this module's docstring."""
    if data_path:
        given = Path(data_path).expanduser()
        paths = tuple(given / name for name in spec.files) if given.is_dir() else (given,)
        if len(paths) != len(spec.files) or not all(path.is_file() for path in paths):
            raise CaviarError(f"HKS_DATA_PATH {given} does not hold {spec.title}: expected {' '.join(spec.files)}")
        return paths
    local, cache = Path("ml_req") / spec.folder, keras_cache() / spec.folder
    for folder in (local, cache):
        if all((folder / name).is_file() for name in spec.files):
            return tuple(folder / name for name in spec.files)
    if spec.keras_archive and (cache / spec.keras_archive).is_file():
        return (cache / spec.keras_archive,)
    hint = f"put {' '.join(spec.files)} in {local}/ or point HKS_DATA_PATH at it"
    if offline:
        raise CaviarError(
            f"{spec.title} not found in {local}/ nor in {cache}/ and downloads are off (HKS_OFFLINE): {hint}"
        )
    for name in spec.files:
        if not (cache / name).is_file():
            url = spec.base_url + name
            try:
                fetch(url, cache / name)
            except OSError as err:  # URLError, timeouts, a full disk
                raise CaviarError(
                    f"{spec.title} not found and downloading {url} failed ({_one_line(err)}): {hint}"
                ) from err
    return tuple(cache / name for name in spec.files)


def load(settings: Settings, fetch: Downloader = download) -> Data:
    """The data set of ``settings``, read once per process while its files and settings stay the same."""
    spec = dataset_spec(settings.dataset)
    paths = locate(spec, settings.data_path, settings.offline, fetch)
    stamps = tuple((str(path.resolve()), path.stat().st_mtime_ns, path.stat().st_size) for path in paths)
    return _load(spec.name, stamps, settings.dataset_size, settings.validation_split, settings.seed)


# One entry: a worker trains on one data set (CIFAR-100 takes about 180 MB).
@functools.lru_cache(maxsize=1)
def _load(name: str, stamps: tuple[tuple[str, int, int], ...], size: int | None, validation_split: float,
          seed: int) -> Data:
    """Read, check, truncate and split; keyed on the files' path, mtime and size."""
    spec = DATASETS[name]
    paths = [Path(stamp[0]) for stamp in stamps]
    try:
        official = spec.read(paths)
        _check(official, spec)
    except Exception as err:  # whatever a damaged file raises, the user must replace it
        files = ", ".join(map(str, paths))
        raise CaviarError(
            f"cannot read {spec.title} from {files} ({type(err).__name__}: {_one_line(err)}): "
            "it is damaged or not the official file, replace it with a fresh copy"
        ) from err
    train = official.train.take(slice(0, size))
    n_validation = max(1, round(len(train) * validation_split))
    if n_validation >= len(train):
        raise CaviarError(
            f"HKS_VALIDATION_SPLIT {validation_split} leaves no training images out of {len(train)} (DATASET_SIZE)"
        )
    order = np.random.default_rng(seed).permutation(len(train))
    data = Data(
        spec=spec,
        train=_frozen(train.take(np.sort(order[n_validation:]))),
        validation=_frozen(train.take(np.sort(order[:n_validation]))),
        test=_frozen(official.test),
        fine_names=official.fine_names,
        coarse_names=official.coarse_names,
    )
    log.info(
        "%s from %s: %d training, %d validation, %d test images of shape %s",
        spec.title, paths[0].parent, len(data.train), len(data.validation), len(data.test), data.input_shape,
    )
    return data


def _check(official: Official, spec: DatasetSpec) -> None:
    """Raise ValueError where the files' contents do not fit together or not ``spec`` (a damaged or foreign file)."""
    n_fine, n_coarse = len(official.fine_names), len(official.coarse_names)
    if (n_fine, n_coarse) != (spec.n_fine, spec.n_coarse):
        raise ValueError(f"{n_fine} fine and {n_coarse} coarse classes named, expected {spec.n_fine} and {spec.n_coarse}")
    for split_name, split in (("train", official.train), ("test", official.test)):
        labels = [(split.fine, n_fine)] + ([] if split.coarse is None else [(split.coarse, n_coarse)])
        if split.x.shape[1:] != spec.input_shape or not len(split) or any(len(y) != len(split) for y, _ in labels):
            raise ValueError(f"{split_name} images {split.x.shape} do not match their labels or {spec.input_shape}")
        if any(y.min() < 0 or y.max() >= n for y, n in labels):
            raise ValueError(f"{split_name} labels outside the classes named in the metadata")


def _frozen(split: Split) -> Split:
    """A read-only copy of ``split``, as the cached arrays serve every trial."""
    frozen = Split(split.x.copy(), split.fine.copy(), None if split.coarse is None else split.coarse.copy())
    for array in (frozen.x, frozen.fine, frozen.coarse):
        if array is not None:
            array.setflags(write=False)
    return frozen
