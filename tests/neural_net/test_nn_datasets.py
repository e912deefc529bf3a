"""The loaders read the official formats, look files up in the documented order and fail in one clear line."""

from __future__ import annotations

import gzip
import io
import pickle
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from neural_net import datasets
from neural_net.datasets import DATASETS, Data, load, locate, read_cifar100
from neural_net.settings import Settings
from caviar.errors import CaviarError


def _rows(x: np.ndarray) -> list[bytes]:
    return sorted(row.tobytes() for row in x)


def test_cifar100_pixels_are_r_then_g_then_b_planes(cifar100_archive: Path) -> None:
    with tarfile.open(cifar100_archive) as tar:
        raw = pickle.load(tar.extractfile("cifar-100-python/train"), encoding="bytes")  # type: ignore[arg-type]
    official = read_cifar100([cifar100_archive])
    row = raw[b"data"][7]
    image = official.train.x[7]
    assert image.shape == (32, 32, 3)
    assert image[0, 1, 0] == row[1]  # red plane, row 0, column 1
    assert image[2, 3, 1] == row[1024 + 2 * 32 + 3]  # green plane
    assert image[31, 31, 2] == row[3071]  # blue plane, last pixel
    assert official.train.fine.tolist() == raw[b"fine_labels"]
    assert official.fine_names[:2] == ("fine_0", "fine_1") and len(official.coarse_names) == 20


def test_cifar100_loads_raw_with_fine_and_coarse_labels(cifar100_archive: Path) -> None:
    data = load(Settings(data_path=str(cifar100_archive)))
    assert (data.n_fine, data.n_coarse, data.input_shape) == (100, 20, (32, 32, 3))
    assert (len(data.train), len(data.validation), len(data.test)) == (108, 12, 40)
    fine_to_coarse: dict[int, set[int]] = {}
    for split in (data.train, data.validation, data.test):
        assert split.x.dtype == np.uint8 and split.x.shape[1:] == (32, 32, 3)
        assert split.fine.dtype == np.int32 and split.coarse is not None
        assert split.fine.min() >= 0 and split.fine.max() < 100
        assert split.coarse.min() >= 0 and split.coarse.max() < 20
        assert not split.x.flags.writeable  # the cached arrays serve every trial
        for fine, coarse in zip(split.fine.tolist(), split.coarse.tolist(), strict=True):
            fine_to_coarse.setdefault(fine, set()).add(coarse)
    assert all(len(coarse) == 1 for coarse in fine_to_coarse.values())


@pytest.mark.parametrize(
    ("name", "shape", "class_name"),
    [("cifar10", (32, 32, 3), "class_3"), ("mnist", (28, 28, 1), "3"), ("fashion_mnist", (28, 28, 1), "Dress")],
)
def test_fine_only_datasets_load(tmp_path: Path, write_dataset, name: str, shape: tuple[int, ...],
                                 class_name: str) -> None:
    path = write_dataset(name, tmp_path / "data", n_train=100, n_test=30)
    data = load(Settings(dataset=name, data_path=str(path)))
    assert (data.n_fine, data.n_coarse, data.input_shape) == (10, 0, shape)
    assert (data.spec.n_fine, data.spec.n_coarse, data.spec.input_shape) == (10, 0, shape)  # known before reading
    assert data.fine_names[3] == class_name and data.coarse_names == ()
    assert (len(data.train), len(data.validation), len(data.test)) == (90, 10, 30)
    for split in (data.train, data.validation, data.test):
        assert split.coarse is None and split.x.dtype == np.uint8
        assert split.fine.min() >= 0 and split.fine.max() < 10
    assert data.spec.flip is (name != "mnist")  # mirrored digits are not digits


def test_dataset_size_keeps_the_first_training_images(cifar100_archive: Path) -> None:
    data = load(Settings(data_path=str(cifar100_archive), dataset_size=50))
    official = read_cifar100([cifar100_archive])
    assert len(data.train) + len(data.validation) == 50 and len(data.validation) == 5
    loaded = np.concatenate([(data.train.x), (data.validation.x)])
    assert _rows(loaded) == _rows(official.train.x[:50])
    assert len(data.test) == 40  # the test split is never truncated


def test_validation_split_is_disjoint_deterministic_and_seeded(cifar100_archive: Path) -> None:
    settings = Settings(data_path=str(cifar100_archive), validation_split=0.25)
    first = load(settings)
    datasets._load.cache_clear()
    again = load(settings)
    assert again is not first
    np.testing.assert_array_equal(first.validation.x, again.validation.x)
    np.testing.assert_array_equal(first.train.fine, again.train.fine)
    assert len(first.validation) == 30
    train_rows, validation_rows = set(_rows(first.train.x)), set(_rows(first.validation.x))
    assert not train_rows & validation_rows
    together = np.concatenate([(first.train.x), (first.validation.x)])
    assert _rows(together) == _rows(read_cifar100([cifar100_archive]).train.x)
    other_seed = load(Settings(data_path=str(cifar100_archive), validation_split=0.25, seed=1))
    assert set(_rows(other_seed.validation.x)) != validation_rows


def test_loaded_once_per_process_until_the_file_changes(tmp_path: Path, write_dataset) -> None:
    path = write_dataset("cifar100", tmp_path / "data", n_train=40, n_test=10)
    settings = Settings(data_path=str(path))
    first = load(settings)
    assert load(settings) is first
    write_dataset("cifar100", tmp_path / "data", n_train=60, n_test=10, seed=1)
    assert len(load(settings).train) == 54


def test_validation_split_must_leave_training_images(cifar100_archive: Path) -> None:
    with pytest.raises(CaviarError, match="leaves no training images"):
        load(Settings(data_path=str(cifar100_archive), dataset_size=2, validation_split=0.9))


def test_lookup_order_explicit_then_ml_req_then_keras_cache(tmp_path: Path, write_dataset,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = write_dataset("cifar100", tmp_path / "explicit", n_train=50, n_test=10)
    write_dataset("cifar100", Path("ml_req"), n_train=40, n_test=10)
    cached = write_dataset("cifar100", tmp_path / "keras_home" / "datasets", n_train=30, n_test=10)

    def train_size(data_path: Path | None = None) -> int:
        data = load(Settings.from_env() if data_path is None else Settings(data_path=str(data_path)))
        return len(data.train) + len(data.validation)

    monkeypatch.setenv("HKS_DATA_PATH", str(explicit))
    assert train_size() == 50
    assert train_size(explicit.parent) == 50  # a folder holding the archive works too
    monkeypatch.delenv("HKS_DATA_PATH")
    assert train_size() == 40
    shutil.rmtree("ml_req")
    assert train_size() == 30
    cached.rename(cached.with_name("cifar-100-python-target_archive"))  # where Keras 3 keeps its download
    assert train_size() == 30


def test_idx_files_are_looked_up_in_their_own_folder(tmp_path: Path, write_dataset) -> None:
    write_dataset("fashion_mnist", Path("ml_req/fashion-mnist"))
    write_dataset("mnist", tmp_path / "keras_home" / "datasets" / "mnist", n_train=60)
    assert locate(DATASETS["fashion_mnist"])[0] == Path("ml_req/fashion-mnist/train-images-idx3-ubyte.gz")
    assert len(load(Settings(dataset="mnist")).train) == 54


def test_missing_offline_says_where_to_put_the_file() -> None:
    with pytest.raises(CaviarError) as error:
        load(Settings(offline=True))
    message = str(error.value)
    assert "ml_req/" in message and "cifar-100-python.tar.gz" in message and "\n" not in message


def test_explicit_path_without_the_data_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CaviarError, match=r"HKS_DATA_PATH .* does not hold CIFAR-100"):
        load(Settings(data_path=str(tmp_path / "nowhere.tar.gz")))
    with pytest.raises(CaviarError, match="does not hold MNIST"):
        load(Settings(dataset="mnist", data_path=str(tmp_path)))


def test_online_downloads_into_the_keras_cache(tmp_path: Path, cifar100_archive: Path) -> None:
    calls: list[tuple[str, Path]] = []

    def fetch(url: str, target: Path) -> None:
        calls.append((url, target))
        target.parent.mkdir(parents=True)
        shutil.copy(cifar100_archive, target)

    data = load(Settings(offline=False), fetch=fetch)
    assert calls == [(
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        tmp_path / "keras_home" / "datasets" / "cifar-100-python.tar.gz",
    )]
    assert isinstance(data, Data) and len(data.test) == 40
    load(Settings(offline=False), fetch=fetch)
    assert len(calls) == 1  # the cached file is found next time


def test_failed_download_says_where_to_put_the_file() -> None:
    def unreachable(url: str, target: Path) -> None:
        raise OSError("Name or service not known")

    with pytest.raises(CaviarError, match=r"downloading https://\S+ failed \(Name or service not known\).*ml_req/"):
        load(Settings(offline=False), fetch=unreachable)


def test_download_writes_the_whole_file_and_no_partial(tmp_path: Path, cifar100_archive: Path) -> None:
    target = tmp_path / "cache" / "cifar-100-python.tar.gz"
    datasets.download(cifar100_archive.as_uri(), target)
    assert target.read_bytes() == cifar100_archive.read_bytes()
    with pytest.raises(OSError):
        datasets.download((tmp_path / "missing.tar.gz").as_uri(), tmp_path / "cache" / "other.tar.gz")
    assert sorted(p.name for p in target.parent.iterdir()) == ["cifar-100-python.tar.gz"]


def _truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garbage(path: Path) -> None:
    path.write_bytes(b"this is not an archive" * 100)


def _without_meta(path: Path) -> None:
    with tarfile.open(path) as tar:
        members = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]  # type: ignore[union-attr]
    with tarfile.open(path, "w:gz") as tar:
        for member, payload in members:
            if not member.name.endswith("meta"):
                tar.addfile(member, None if payload is None else io.BytesIO(payload))


@pytest.mark.parametrize("damage", [_truncated, _garbage, _without_meta])
def test_damaged_cifar_archive_is_a_clear_error(cifar100_archive: Path, damage) -> None:
    damage(cifar100_archive)
    with pytest.raises(CaviarError) as error:
        load(Settings(data_path=str(cifar100_archive)))
    assert str(cifar100_archive) in str(error.value) and "\n" not in str(error.value)


def test_damaged_idx_file_is_a_clear_error(tmp_path: Path, write_dataset) -> None:
    folder = write_dataset("mnist", tmp_path / "mnist")
    with gzip.open(folder / "train-labels-idx1-ubyte.gz", "wb") as handle:
        handle.write(b"\x00\x00\x0d\x01" + b"\x00" * 8)  # float type code: not MNIST's format
    with pytest.raises(CaviarError, match=r"cannot read MNIST from .*train-labels-idx1-ubyte\.gz.*bad magic"):
        load(Settings(dataset="mnist", data_path=str(folder)))


def test_labels_outside_the_named_classes_are_a_clear_error(tmp_path: Path, write_dataset, write_idx) -> None:
    folder = write_dataset("mnist", tmp_path / "mnist", n_train=100)
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.full(100, 12))
    with pytest.raises(CaviarError, match="labels outside the classes"):
        load(Settings(dataset="mnist", data_path=str(folder)))


def test_images_of_another_shape_than_the_data_set_are_a_clear_error(tmp_path: Path, write_dataset,
                                                                     write_idx) -> None:
    folder = write_dataset("mnist", tmp_path / "mnist", n_train=100)
    write_idx(folder / "train-images-idx3-ubyte.gz", np.zeros((100, 32, 32), np.uint8))
    with pytest.raises(CaviarError, match=r"train images \(100, 32, 32, 1\) do not match .*\(28, 28, 1\)"):
        load(Settings(dataset="mnist", data_path=str(folder)))


def test_unknown_dataset_lists_the_known_ones() -> None:
    with pytest.raises(CaviarError, match="choose one of cifar100, cifar10, mnist, fashion_mnist"):
        load(Settings(dataset="imagenet"))


def test_settings_from_env() -> None:
    settings = Settings.from_env({
        "HKS_DATASET": "MNIST", "HKS_DATA_PATH": "/data", "DATASET_SIZE": "500", "HKS_VALIDATION_SPLIT": "0.2",
        "HKS_EPOCHS": "3", "HKS_SEED": "7", "HKS_OFFLINE": "yes",
    })
    assert settings == Settings("mnist", "/data", 500, 0.2, 3, 7, True)
    assert Settings.from_env({}) == Settings("cifar100", None, None, 0.1, 10, 0, False)
    assert Settings.from_env({"DATASET_SIZE": "0", "HKS_EPOCHS": " "}).dataset_size is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"HKS_EPOCHS": "ten"}, "HKS_EPOCHS='ten' is not a positive integer"),
        ({"HKS_EPOCHS": "0"}, "HKS_EPOCHS='0' is not a positive integer"),
        ({"HKS_VALIDATION_SPLIT": "1.5"}, "HKS_VALIDATION_SPLIT='1.5' is not a number between 0 and 1"),
        ({"HKS_VALIDATION_SPLIT": "a tenth"}, "HKS_VALIDATION_SPLIT='a tenth' is not a number between 0 and 1"),
        ({"HKS_DATASET": "svhn"}, "HKS_DATASET='svhn' is not one of cifar100, cifar10, mnist, fashion_mnist"),
        ({"DATASET_SIZE": "1"}, "DATASET_SIZE must be at least 2"),
        ({"HKS_OFFLINE": "maybe"}, "HKS_OFFLINE must be 1 or 0"),
    ],
)
def test_bad_settings_are_one_clear_line(env: dict[str, str], message: str) -> None:
    with pytest.raises(CaviarError, match=message) as error:
        Settings.from_env(env)
    assert "\n" not in str(error.value)
