"""The early-stopping benchmark's data: the held-out validation images are new, the training set unchanged.

Reads the real CIFAR-10 subset in ../shared/data, as the benchmark does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest

from bench import early_stopping


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    monkeypatch.setenv("BENCH_DATA", str(early_stopping.DATA))
    monkeypatch.setenv("BENCH_IMAGES", "500")
    early_stopping.data.cache_clear()
    yield monkeypatch
    early_stopping.data.cache_clear()


def rows(x: np.ndarray) -> set[bytes]:
    return {image.tobytes() for image in x}


def test_held_out_validation_keeps_the_training_set_and_shares_no_image_with_it(env: pytest.MonkeyPatch) -> None:
    env.setenv("BENCH_VALIDATION_IMAGES", "0")
    split = early_stopping.data()
    assert (len(split.train), len(split.validation)) == (400, 100)
    early_stopping.data.cache_clear()
    env.setenv("BENCH_VALIDATION_IMAGES", "300")
    held_out = early_stopping.data()
    assert len(held_out.validation) == 300
    np.testing.assert_array_equal(held_out.train.x, split.train.x)
    np.testing.assert_array_equal(held_out.train.fine, split.train.fine)
    assert not rows(held_out.validation.x) & (rows(split.train.x) | rows(split.validation.x))
    assert len(set(held_out.validation.fine.tolist())) == 10


def test_more_held_out_images_than_the_batches_hold_is_refused(env: pytest.MonkeyPatch) -> None:
    env.setenv("BENCH_VALIDATION_IMAGES", "9600")
    with pytest.raises(SystemExit, match="^error: .*9600"):
        early_stopping.data()


def test_too_many_held_out_images_stop_the_benchmark_before_any_system_runs(env: pytest.MonkeyPatch,
                                                                            tmp_path) -> None:
    """Checked once in the benchmark's own process, not in each worker's first trial."""
    env.setenv("BENCH_VALIDATION_IMAGES", "0")  # restored afterwards: main() sets the BENCH_ variables
    env.setenv("BENCH_EPOCHS", "9")
    output = tmp_path / "out.md"
    with pytest.raises(SystemExit, match="^error: .*9600"):
        early_stopping.main(["--images", "500", "--validation-images", "9600", "--output", str(output)])
    assert not output.exists()


@pytest.mark.parametrize("min_epochs", ["0", "10"])
def test_a_first_rung_outside_the_epochs_is_refused_before_any_system_runs(tmp_path, min_epochs: str) -> None:
    output = tmp_path / "out.md"
    with pytest.raises(SystemExit, match=f"^error: --min-epochs .*9.*got {min_epochs}$"):
        early_stopping.main(["--epochs", "9", "--min-epochs", min_epochs, "--output", str(output)])
    assert not output.exists()


def test_retrain_trains_each_systems_configuration_again_with_its_own_seed_and_others(env: pytest.MonkeyPatch,
                                                                                    tmp_path) -> None:
    """Its own training seed gives the trial's accuracy again (so the others measure the seed's share in it);
    a stopping system's configuration is its best full-length trial within a third of caviar-none's epochs."""
    import json

    for name, value in (("BENCH_VALIDATION_IMAGES", "300"), ("BENCH_EPOCHS", "1"), ("HKS_SEED", "3")):
        env.setenv(name, value)  # restored afterwards: main() sets them
    env.setattr(early_stopping, "EPOCHS", 1)
    params = {"filters": 8, "blocks": 1, "dense": 32, "dropout": 0.1, "lr": 3e-3, "batch_size": 64}
    own = early_stopping.train(params, [])["val_accuracy"]

    def trial(accuracy: float, **changes: object) -> dict:
        return {"val_accuracy": accuracy, "val_history": [accuracy], "epochs_trained": 1, "params": params | changes}

    none = [trial(own - 0.05, dense=64), trial(own), trial(own - 0.01, dense=128)]
    asha = [trial(0.5, blocks=2), trial(0.9, filters=16)]  # only the first within a third of 3 epochs
    runs = tmp_path / "x-runs.json"

    def write() -> None:
        runs.write_text(json.dumps([[{"system": system, "seed": 3, "start": 0, "wall": 1, "trials": trials}
                                     for system, trials in (("caviar-none", none), ("caviar-asha", asha))]]))

    write()
    output = tmp_path / "retrained.md"
    args = ["--epochs", "1", "--images", "500", "--validation-images", "300"]
    assert early_stopping.main([*args, "retrain", str(runs), "--training-seeds", "7", "--output", str(output)]) == 0
    rows = [[cell.strip() for cell in line.strip("|").split("|")]
            for line in output.read_text().splitlines() if line.startswith("| 3 |")]
    assert [row[:3] for row in rows] == [["3", "caviar-none", "3"], ["3", "caviar-asha", "1"]]
    assert "dense 32" in rows[0][3] and rows[0][4] == rows[0][5] == f"{own:.4f}"
    assert "blocks 2" in rows[1][3] and rows[1][4] == "0.5000"

    asha[0].pop("params")
    write()
    with pytest.raises(SystemExit, match="^error: .*caviar-asha.*params"):
        early_stopping.main([*args, "retrain", str(runs), "--output", str(output)])


@pytest.mark.parametrize("content", ["{not json", '{"seed": 0}', "[[]]", '[[{"system": "caviar-none"}]]'])
def test_a_file_that_is_not_a_runs_json_is_refused_in_one_line(tmp_path, content: str) -> None:
    runs = tmp_path / "x-runs.json"
    runs.write_text(content)
    for command in ("summarize", "retrain"):
        with pytest.raises(SystemExit, match=f"^error: {runs}: not the -runs.json"):
            early_stopping.main([command, str(runs), "--output", str(tmp_path / "out.md")])
    assert not (tmp_path / "out.md").exists()


def test_summarize_shows_the_systems_of_one_seed_from_several_files_side_by_side(tmp_path) -> None:
    def run(system: str, accuracies: list[float], epochs: int) -> dict:
        trials = [{"epochs_trained": epochs, "val_accuracy": a, "test_accuracy": a - 0.1, "end_time": 100.0 + i}
                  for i, a in enumerate(accuracies)]
        return {"system": system, "start": 0.0, "wall": 500.0, "trials": trials, "seed": 4}  # ran on past them

    first, added = tmp_path / "a-runs.json", tmp_path / "b-runs.json"
    first.write_text(json.dumps([[run("caviar-none", [0.3, 0.5], 9)]]))
    added.write_text(json.dumps([[run("optuna-sh", [0.2, 0.55, 0.1], 3)]]))
    output = tmp_path / "out.md"
    assert early_stopping.main(["summarize", str(first), str(added), "--output", str(output)]) == 0
    text = output.read_text()
    assert "Seed 4: target: best validation accuracy of caviar-none = 0.5000" in text and text.count("Seed 4") == 1
    # measured against the first file; wall: to the end of its last trial counted (102 s), not the whole run's
    assert "| optuna-sh | 3 (3 stopped) | 9 | 102 | 0.5500 | 6 (2 trials) |" in text
    with pytest.raises(SystemExit, match=f"^error: {first}: seed 4 of caviar-none is in an earlier file too"):
        early_stopping.main(["summarize", str(added), str(first), str(first), "--output", str(output)])
