"""The tools beside a search (status, best, plot, export, rebuild) and one search per folder, as a user runs them."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

from hyperopt import Trials, fmin, hp, tpe

from caviar.output.results import ResultsDir
from caviar.store.local import LocalStore
from tests.helpers.results import finished_trials
from tests.helpers.trials import enqueue_points
from tests.helpers.waiting import wait_until
from tests.optimizer.test_cli import command, env_for, one_error_line, project, run  # noqa: F401 - fixture


def tool(project: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "optimizer", *args], cwd=project, env=env_for(project, **extra),
                          capture_output=True, text=True, timeout=120)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def trial_files(results: Path) -> list[str]:
    return sorted(p for p in os.listdir(results) if "_tid" in p)


def test_the_tools_never_change_the_folder_and_the_search_repairs_it(project: Path, tmp_path: Path) -> None:
    assert run(project, "--max-evals", "3").returncode == 0
    results = project / "results"
    names = trial_files(results)
    (results / names[0]).unlink()  # a SIGKILL between results.pkl and this JSON
    (results / "000000.100000_tid00042_trial.json").write_text("{}")  # e.g. a search writing it right now
    (results / ".tmp-x1results.pkl").write_bytes(b"half")
    before = snapshot(results)
    for args in (["status"], ["status", "--json"], ["best"], ["best", "--json"],
                 ["plot", "--out", str(tmp_path / "plots")], ["export", "--out", str(tmp_path / "m.keras")]):
        done = tool(project, *args)
        assert done.returncode == (1 if args[0] == "export" else 0), done.stderr  # a function keeps no model
        assert snapshot(results) == before, args

    again = run(project, "--max-evals", "3")
    assert again.returncode == 0 and "nothing to do" in again.stderr, again.stderr
    assert trial_files(results) == names
    assert not [p for p in os.listdir(results) if p.startswith(".tmp-")]


def test_a_damaged_results_pkl_is_rebuilt_by_one_command(project: Path) -> None:
    assert run(project, "--max-evals", "3").returncode == 0
    results = project / "results"
    trials = finished_trials(project)
    (results / "results.pkl").write_bytes(b"\x80\x04damaged")
    line = one_error_line(run(project, "--max-evals", "4"))
    assert "python -m optimizer rebuild --results-dir results" in line
    refused = tool(project, "rebuild", "--results-dir", "results")
    assert refused.returncode == 1 and "pass --replace" in one_error_line(refused)
    assert (results / "results.pkl").read_bytes() == b"\x80\x04damaged"
    rebuilt = tool(project, "rebuild", "--results-dir", "results", "--replace")
    assert rebuilt.returncode == 0 and "3 finished trials" in rebuilt.stdout, rebuilt.stderr
    assert [(t["tid"], t["result"], t["misc"]["vals"]) for t in finished_trials(project)] == [
        (t["tid"], t["result"], t["misc"]["vals"]) for t in trials]
    assert run(project, "--max-evals", "4").returncode == 0 and len(finished_trials(project)) == 4


def test_a_search_with_other_settings_is_refused_in_one_line(project: Path) -> None:
    assert run(project, "--max-evals", "2", "--seed", "3").returncode == 0
    before = snapshot(project / "results")
    line = one_error_line(run(project, "--max-evals", "4", "--seed", "4"))
    assert line == ("error: results/ holds another search (HKS_SEED '3' there, '4' now); start a new folder "
                    "with --results-dir NEW")
    assert snapshot(project / "results") == before
    assert run(project, "--max-evals", "2", "--seed", "4", "--results-dir", "other").returncode == 0


def test_a_foreign_results_pkl_is_adopted_only_with_adopt(project: Path) -> None:
    trials = Trials()
    fmin(lambda p: (p["x"] - 1) ** 2, {"x": hp.uniform("x", -5, 5)}, tpe.suggest, 3, trials=trials,
         show_progressbar=False, rstate=__import__("numpy").random.default_rng(0))
    (project / "results").mkdir()
    (project / "results" / "results.pkl").write_bytes(pickle.dumps(trials))
    before = snapshot(project / "results")
    line = one_error_line(run(project, "--max-evals", "4"))
    assert "has no experiment.json" in line and "--adopt" in line
    assert snapshot(project / "results") == before


def test_a_second_search_in_a_busy_folder_is_refused(project: Path) -> None:
    first = subprocess.Popen(command("--max-evals", "100"), cwd=project, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env=env_for(project, USER_OBJECTIVE_SLEEP="2"))
    try:
        wait_until(lambda: (project / "results" / "results.pkl").exists(), 60, "a first finished trial")
        second = run(project, "--max-evals", "100")
        assert first.poll() is None, "the first search ended too early for this test"
        assert one_error_line(second) == ("error: another search is running in results/; wait for it to end, "
                                          "or start a new folder with --results-dir NEW")
    finally:
        first.kill()
        first.wait()


def test_status_of_an_embedded_search_shows_its_running_trial_and_its_metric(project: Path) -> None:
    first = subprocess.Popen(command("--max-evals", "100"), cwd=project, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env=env_for(project, USER_OBJECTIVE_SLEEP="2"))
    try:
        wait_until(lambda: (project / "results" / "results.pkl").exists(), 60, "a first finished trial")
        seen: list[dict] = []

        def running() -> bool:
            seen.append(json.loads(tool(project, "status", "--json").stdout))
            return seen[-1]["running"] == 1
        wait_until(running, 60, "status to show the running trial", interval=0.2)
        table = tool(project, "status").stdout
    finally:
        first.kill()
        first.wait()
    status = seen[-1]
    [trial] = status["running_trials"]
    assert trial["tid"] >= 1 and trial["owner"] == f"embedded (pid {first.pid})"
    assert status["metric"] == "loss" and status["maximize"] is False
    assert status["best"]["score"] >= 0  # a loss, not minus a loss
    assert "trial  epoch  last score  running for" in table and "embedded (pid" in table and " loss " in table
    assert "no live workers" not in table
    killed = json.loads(tool(project, "status", "--json").stdout)
    assert killed["running"] == 0  # the search is gone: nothing is running


def test_ctrl_c_ends_status_watch_quietly(project: Path) -> None:
    assert run(project, "--max-evals", "1").returncode == 0
    watch = subprocess.Popen([sys.executable, "-m", "optimizer", "status", "--watch", "0.2"], cwd=project,
                             env=env_for(project), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "finished 1/1" in watch.stdout.readline() + watch.stdout.readline()
    watch.send_signal(signal.SIGINT)
    out, err = watch.communicate(timeout=30)
    assert watch.returncode == 0 and err == "", err


def test_best_shows_the_test_set_metrics(tmp_path: Path) -> None:
    store = LocalStore("local")
    enqueue_points(store, [{"x": 1.0}, {"x": 2.0}])
    for loss in (-0.5, -0.7):
        doc = store.claim("w")
        store.finish(doc["tid"], "w", {"status": "ok", "loss": loss})
    results = ResultsDir(str(tmp_path), {"metric": "accuracy", "maximize": True})
    results.prepare({"space": "s:S", "objective": "s:f"}, {"metric": "accuracy", "maximize": True})
    best = results.update(store.trial_docs())
    results.write_best(best, {"test": {"test_fine_accuracy": 0.6512}})
    shown = subprocess.run([sys.executable, "-m", "optimizer", "best", "--results-dir", str(tmp_path)],
                           env=env_for(tmp_path), capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("best trial 1: accuracy 0.7000")
    assert "test set" in shown.stdout and "test_fine_accuracy             0.6512" in shown.stdout
    as_json = subprocess.run([sys.executable, "-m", "optimizer", "best", "--json", "--results-dir", str(tmp_path)],
                             env=env_for(tmp_path), capture_output=True, text=True, timeout=60)
    assert json.loads(as_json.stdout)["test"] == {"test_fine_accuracy": 0.6512}
