"""The scale benchmark with ``--reports``: trials report a learning curve, and both systems stop some of them."""

from __future__ import annotations

import argparse
import pickle
import re

from bench import scale


def test_both_systems_stop_trials_and_count_them_as_finished(tmp_path) -> None:
    output = tmp_path / "scale.md"
    assert scale.main(["--trials", "40", "--window", "20", "--workers", "2", "--algos", "random", "--payloads",
                       "small", "--systems", "caviar", "optuna-journal", "--reports", "--output", str(output)]) == 0
    text = output.read_text()
    assert "reporting 9 steps, stopped by ASHA / successive halving at steps 1 and 3" in text
    rows = re.findall(r"^\| (caviar|optuna-journal) \| \w+ \| small \| ([\d.]+) \| ([\d.]+) \|", text, re.M)
    assert [row[0] for row in rows] == ["caviar", "optuna-journal"]  # two windows each: all 40 trials counted


def test_the_reporting_objective_is_stopped_by_asha(tmp_path) -> None:
    args = argparse.Namespace(trials=30, reports=True, timeout=300.0)
    assert len(scale.run_embedded(args, str(tmp_path), "random", "small")) == 30
    with open(tmp_path / "embedded-random-small-results" / "results.pkl", "rb") as f:
        results = [t["result"] for t in pickle.load(f).trials]
    stopped = [r["stopped_at"] for r in results if r.get("stopped")]
    assert stopped and set(stopped) <= {1, 3} and len(stopped) < 30
    assert all(r["status"] == "ok" for r in results)
