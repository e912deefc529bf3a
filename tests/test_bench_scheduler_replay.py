"""Replaying a scheduler on recorded learning curves: the epochs it would have spent, the target's trial's fate."""

from __future__ import annotations

import json
import math

import pytest

from bench import early_stopping
from bench.scheduler_replay import OptunaPruner, replay, replay_promoting
from caviar.schedulers import from_config
from caviar.schedulers.asha import Asha

EPOCHS = 9


def rising(first: float, last: float) -> list[float]:
    """A learning curve of EPOCHS epochs from ``first`` to ``last``."""
    return [first + (last - first) * i / (EPOCHS - 1) for i in range(EPOCHS)]


# Trial 0 is alone at its rungs and runs on; 1 is worse at epoch 1; 2 beats 0 at epochs 1 and 3 and sets 0.6;
# 3 starts below 2 at epoch 1 (only the best of 4 holds a place) and would have reached 0.7.
CURVES = [[0.1] * EPOCHS, [0.05] * EPOCHS, rising(0.2, 0.6), rising(0.15, 0.7)]


def test_asha_stops_what_its_rule_says_and_counts_the_epochs_to_the_target() -> None:
    replayed = replay(Asha(1, 3, EPOCHS), CURVES[:3], target=0.6)
    assert replayed.epochs == [9, 1, 9]
    assert (replayed.target_trial, replayed.target_stopped_at, replayed.to_target) == (2, None, 19)


def test_a_target_whose_trial_the_rule_stopped_is_never_reached() -> None:
    replayed = replay(Asha(1, 3, EPOCHS), CURVES, target=0.7)
    assert replayed.epochs == [9, 1, 9, 1]
    assert (replayed.target_trial, replayed.target_stopped_at, replayed.to_target) == (3, 1, None)
    assert replay(Asha(1, 3, EPOCHS), CURVES, target=0.6).to_target == 19  # a lower target: trial 2's


def test_a_non_finite_accuracy_stops_the_trial_at_its_rung_and_an_unreached_target_is_refused() -> None:
    replayed = replay(from_config({"name": "asha", "min_epochs": 1, "reduction_factor": 3, "max_epochs": EPOCHS}),
                      [[math.nan] * EPOCHS, CURVES[2]], target=0.6)
    assert replayed.epochs == [1, 9] and replayed.to_target == 10
    with pytest.raises(ValueError, match="no curve reaches the target 0.9"):
        replay(Asha(1, 3, EPOCHS), CURVES, target=0.9)


def test_with_promotions_a_paused_trial_is_continued_once_its_rung_has_filled_up() -> None:
    # With promotions nobody holds a place among fewer than 3: trials 0 and 1 pause at epoch 1, trial 2 is not the
    # best of 3 and pauses too; now the rung has 3 and one place, trial 0's: it is promoted (a trial of its own,
    # from epoch 2) and pauses again at epoch 3, alone there. Epochs in order: 1, 1, 1, then 2, reading 0.4.
    curves = [rising(0.3, 0.7), [0.1] * EPOCHS, [0.05] * EPOCHS]
    replayed = replay_promoting(Asha(1, 3, EPOCHS, promote=True), curves, target=curves[0][2])
    assert replayed.epochs == [3, 1, 1]
    assert (replayed.target_trial, replayed.target_stopped_at, replayed.to_target) == (0, 3, 5)
    assert replay_promoting(Asha(1, 3, EPOCHS, promote=True), curves, target=0.3).to_target == 1
    with pytest.raises(ValueError, match="needs an Asha that promotes"):
        replay_promoting(Asha(1, 3, EPOCHS), curves, target=0.3)


def test_with_the_recorded_times_a_trial_is_judged_against_those_that_reached_its_rung_before_it() -> None:
    curves = [[0.5] * EPOCHS, [0.1] * EPOCHS]
    assert replay(Asha(1, 3, EPOCHS), curves, target=0.5).epochs == [9, 1]  # one after the other
    # Trial 1, on a faster worker, reached epochs 1 and 3 before trial 0 reached epoch 1: alone there, it ran on.
    reached = [[10.0 * step for step in range(1, EPOCHS + 1)], [1.0 * step for step in range(1, EPOCHS + 1)]]
    assert replay(Asha(1, 3, EPOCHS), curves, target=0.5, reached=reached).epochs == [9, 9]


def test_optunas_pruners_judge_the_same_curves_through_a_study_of_their_own() -> None:
    # Successive halving stops what ASHA stops here (no ties). Hyperband places a trial by a hash of the study's
    # name and the trial's number, the same on every replay: here each trial alone in its bracket, or in the
    # one that never stops, so all run on.
    def pruner(kind: str) -> OptunaPruner:
        return OptunaPruner(early_stopping.optuna_pruner(kind, 1, 3, EPOCHS), 1, 3, EPOCHS)

    assert replay(pruner("sh"), CURVES, target=0.7).epochs == [9, 1, 9, 1]
    assert replay(pruner("sh"), [[0.1] * EPOCHS] * 2, target=0.1).epochs == [9, 9]  # a tie goes on
    assert [replay(pruner("hb"), CURVES, target=0.7).epochs for _ in range(2)] == [[9, 9, 9, 9]] * 2


def runs_json(tmp_path, system: str = "caviar-none", history: bool = True, duration: bool = True) -> str:
    trials = [{"epochs_trained": EPOCHS, "val_accuracy": max(curve), "test_accuracy": 0.0, "end_time": 10.0 + i,
               **({"val_history": curve} if history else {}), **({"duration": 9.0} if duration else {})}
              for i, curve in enumerate(CURVES)]
    path = tmp_path / "x-runs.json"
    path.write_text(json.dumps([[{"system": system, "start": 0.0, "wall": 20.0, "trials": trials, "seed": 5}]]))
    return str(path)


def test_the_replay_command_tables_each_rule_over_the_recorded_searches(tmp_path) -> None:
    output = tmp_path / "replay.md"
    assert early_stopping.main(["replay", runs_json(tmp_path), "--scheduler", "asha", "median", "optuna-sh",
                                "--min-epochs", "1",
                                "9", "--reduction-factor", "3", "4", "--output", str(output)]) == 0
    text = output.read_text()
    # 1/3: trial 3, which set the target, stopped at epoch 1: never reached; 9/3: no rung before the end
    assert "| asha 1/3 | 1 | 0 | 0 | 0 | never | never | 5.00 |" in text
    assert "| asha 1/3 | x-runs.json | 5 | 0.7000 | 36 of 36 | never | trial 4 of 4, stopped at epoch 1 | 1: 2, 9: 2 |" in text
    assert "| asha 9/3 | 1 | 1 | 0 | 0 | 1.00 | 1.00 | 9.00 |" in text and "| asha 1/4 |" in text
    # optuna-sh: the same stops as asha on these curves
    assert "| optuna-sh 1/3 | 1 | 0 | 0 | 0 | never | never | 5.00 |" in text
    # median, from epoch 1: fewer than 4 others at every step, so nothing stops; it has no reduction factor
    assert "| median 1 | 1 | 1 | 0 | 0 | 1.00 | 1.00 | 9.00 |" in text and "median 1/" not in text


def test_asha_with_promotions_is_replayed_one_trial_after_the_other(tmp_path) -> None:
    output = tmp_path / "replay.md"
    assert early_stopping.main(["replay", runs_json(tmp_path), "--scheduler", "asha-promote",
                                "--output", str(output)]) == 0
    # Trials 0 and 1 pause alone at epoch 1, trial 2 goes on (the best of 3) and pauses alone at epoch 3, trial 3
    # is not the best of 4: with one place at epoch 1, held by trial 2, nothing is promoted.
    assert ("| asha-promote 1/3 | x-runs.json | 5 | 0.7000 | 36 of 36 | never | trial 4 of 4, stopped at epoch 1 "
            "| 1: 3, 3: 1 |") in output.read_text()
    with pytest.raises(SystemExit, match="^error: --scheduler asha-promote is replayed with --order finished only"):
        early_stopping.main(["replay", runs_json(tmp_path), "--scheduler", "asha-promote", "--order", "recorded",
                             "--output", str(tmp_path / "o.md")])
    assert not (tmp_path / "o.md").exists()


def test_the_recorded_order_replays_trials_that_overlapped(tmp_path) -> None:
    output = tmp_path / "replay.md"
    # Each trial lasted 9 s and ended 1 s after the one before: trial 1 reached epoch 1 before trial 0 reached
    # epoch 3, and so on; trial 3 still met trial 2 at epoch 1 (0.15 against 0.2) and stopped there.
    assert early_stopping.main(["replay", runs_json(tmp_path), "--order", "recorded", "--output", str(output)]) == 0
    text = output.read_text()
    assert "when it did in the recorded run" in text
    assert "| asha 1/3 | x-runs.json | 5 | 0.7000 | 36 of 36 | never | trial 4 of 4, stopped at epoch 1 |" in text


@pytest.mark.parametrize(("system", "history", "duration", "order", "message"), [
    ("optuna-sh", True, True, "finished", "no caviar-none run in .*x-runs.json: nothing to replay"),
    ("caviar-none", False, True, "finished", "x-runs.json: seed 5's trials have no val_history"),
    ("caviar-none", True, False, "recorded", "x-runs.json: seed 5's trials have no duration: replay them with "
                                             "--order finished"),
])
def test_a_file_the_replay_cannot_use_is_refused_in_one_line(tmp_path, system: str, history: bool, duration: bool,
                                                              order: str, message: str) -> None:
    with pytest.raises(SystemExit, match=f"^error: {message}"):
        early_stopping.main(["replay", runs_json(tmp_path, system, history, duration), "--order", order,
                             "--output", str(tmp_path / "o.md")])
    assert not (tmp_path / "o.md").exists()


@pytest.mark.parametrize("scheduler", ["asha", "optuna-sh"])
def test_a_bad_rule_is_refused_in_one_line_echoing_it(tmp_path, scheduler: str) -> None:
    with pytest.raises(SystemExit, match="^error: .*reduction_factor.* 1"):
        early_stopping.main(["replay", runs_json(tmp_path), "--scheduler", scheduler, "--reduction-factor", "1",
                             "--output", str(tmp_path / "o.md")])
