"""``python -m optimizer`` as a user runs it: a user's own space and objective, resume, crashes, bad input."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.results import finished_trials
from tests.helpers.server import with_database

REPO = Path(__file__).resolve().parents[2]

USER_MODULE = '''
import os, time
from hyperopt import hp

SPACE = {
    "x": hp.uniform("x", -5, 5),
    "model": hp.choice("model", [{"kind": "linear"}, {"kind": "tree", "depth": hp.quniform("depth", 1, 5, 1)}]),
}

def objective(params):
    time.sleep(float(os.environ.get("USER_OBJECTIVE_SLEEP", "0")))
    if params["x"] > 4.0:
        raise ValueError("x too large for this model")
    return {"loss": (params["x"] - 1) ** 2, "status": "ok", "model_name": params["model"]["kind"]}

GRID = {
    "units": hp.choice("units", [8, 16, 32]),
    "model": hp.choice("model", [None, {"depth": hp.quniform("depth", 1, 3, 1)}]),
}

def grid_objective(params):
    depth = params["model"]["depth"] if params["model"] else 0
    return params["units"] / 10 + depth
'''


@pytest.fixture
def project(tmp_path):
    """A user's folder with their own space/objective module, as the cwd of the search."""
    (tmp_path / "usermod.py").write_text(USER_MODULE)
    return tmp_path


def command(*args):
    return [sys.executable, "-m", "optimizer", "--space", "usermod:SPACE", "--objective", "usermod:objective", *args]


def env_for(project, **extra):
    env = dict(os.environ, PYTHONPATH=f"{project}{os.pathsep}{REPO}")
    for key in ("HKS_MAX_EVALS", "MONGO_URL", "HKS_ALGO", "HKS_RESULTS_DIR"):
        env.pop(key, None)
    return env | extra


def run(project, *args, **extra):
    return subprocess.run(command(*args), cwd=project, env=env_for(project, **extra),
                          capture_output=True, text=True, timeout=120)



def test_runs_then_resumes_to_the_new_total(project):
    first = run(project, "--max-evals", "2")
    assert first.returncode == 0, first.stderr
    trials = finished_trials(project)
    assert len(trials) == 2
    jsons = [p for p in os.listdir(project / "results") if p.endswith(".json") and "tid" in p]
    assert len(jsons) == 2 and (project / "results" / "best.json").exists()

    second = run(project, "--max-evals", "3")
    assert second.returncode == 0, second.stderr
    assert "resuming: 2 finished trials" in second.stderr
    again = finished_trials(project)
    assert len(again) == 3
    assert [t["params"] for t in again[:2]] == [t["params"] for t in trials]

    third = run(project, "--max-evals", "3")
    assert third.returncode == 0 and "nothing to do" in third.stderr
    assert len(finished_trials(project)) == 3


def test_failed_trials_count_and_the_search_goes_on(project):
    result = run(project, "--max-evals", "40", "--algo", "random", "--seed", "4")
    assert result.returncode == 0, result.stderr
    trials = finished_trials(project)
    failed = [t for t in trials if t["result"]["status"] == "fail"]
    assert len(trials) == 40 and failed
    assert "x too large" in failed[0]["result"]["error"]
    assert "Traceback" in failed[0]["result"]["traceback"]


def test_sigkill_during_a_trial_loses_only_that_trial(project):
    env = env_for(project, USER_OBJECTIVE_SLEEP="0.4")
    proc = subprocess.Popen(command("--max-evals", "6"), cwd=project, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pkl = project / "results" / "results.pkl"
    deadline = time.time() + 60
    while time.time() < deadline and (not pkl.exists() or len(finished_trials(project)) < 2):
        time.sleep(0.05)
    time.sleep(0.2)  # now inside a trial
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    before = finished_trials(project)
    assert 2 <= len(before) < 6

    result = run(project, "--max-evals", "6")
    assert result.returncode == 0, result.stderr
    after = finished_trials(project)
    assert len(after) == 6
    assert [t["params"] for t in after[: len(before)]] == [t["params"] for t in before]
    assert len({t["tid"] for t in after}) == 6


def one_error_line(result):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    return result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "args, env, code, message",
    [
        (["--max-evals", "0"], {}, 2, "argument --max-evals: invalid an integer from 1 to 1000000 value: '0'"),
        ([], {"HKS_MAX_EVALS": "many"}, 2, "HKS_MAX_EVALS='many' is not an integer from 1 to 1000000"),
        ([], {"HKS_ALGO": "bayes"}, 2, "HKS_ALGO='bayes' is not one of gp, tpe-mv, tpe, random, anneal, grid"),
        (["--objective", "neural_net:CNN"], {"HKS_DATASET": "svhn"}, 2, "HKS_DATASET='svhn' is not one of cifar100"),
        (["--algo", "bayes"], {}, 2, "invalid choice: 'bayes'"),
        (["--lease-seconds", "-1"], {}, 2, "--lease-seconds"),
        (["--bogus"], {}, 2, "unrecognized arguments: --bogus"),
        (["--space", "nomodule_here:SPACE"], {}, 1, "error: cannot import module 'nomodule_here'"),
        (["--objective", "usermod:nothing"], {}, 1, "error: module 'usermod' has no attribute 'nothing'"),
        (["--space", "usermod:objective"], {}, 1, "error: the search space is not a valid hyperopt space"),
    ],
)
def test_bad_input_is_one_clear_line(project, args, env, code, message):
    result = run(project, *args, **env)
    assert result.returncode == code
    assert message in one_error_line(result)
    assert not (project / "results" / "results.pkl").exists()


def test_a_broken_user_space_module(project):
    (project / "badspace.py").write_text("from hyperopt import hp\nSPACE = {'x': hp.uniform('x', 0)}\n")
    line = one_error_line(run(project, "--space", "badspace:SPACE"))
    assert line.startswith("error: the search space cannot be sampled: TypeError")


def test_a_corrupt_results_pickle_is_left_untouched(project):
    (project / "results").mkdir()
    (project / "results" / "results.pkl").write_bytes(b"\x80\x04garbage")
    line = one_error_line(run(project, "--max-evals", "2", "--adopt"))
    assert "cannot read results/results.pkl" in line and "left untouched" in line
    assert (project / "results" / "results.pkl").read_bytes() == b"\x80\x04garbage"
    assert os.listdir(project / "results") == ["results.pkl"]


def test_another_search_in_the_same_results_dir_is_refused(project):
    assert run(project, "--max-evals", "1").returncode == 0
    (project / "other.py").write_text(USER_MODULE)
    result = run(project, "--space", "other:SPACE", "--max-evals", "2")
    assert "holds another search" in one_error_line(result)
    assert len(finished_trials(project)) == 1


def test_unwritable_paths_are_one_clear_line(project):
    (project / "afile").write_text("")
    assert "error: " in one_error_line(run(project, "--results-dir", "afile", "--max-evals", "1"))
    assert run(project, "--max-evals", "2").returncode == 0
    plot = subprocess.run([sys.executable, "-m", "optimizer", "plot", "--out", str(project / "afile" / "x")],
                          cwd=project, env=env_for(project), capture_output=True, text=True, timeout=120)
    assert "error: " in one_error_line(plot)
    export = subprocess.run([sys.executable, "-m", "optimizer", "export", "--out", "/nonexistent/dir/m.keras"],
                            cwd=project, env=env_for(project), capture_output=True, text=True, timeout=120)
    assert one_error_line(export).startswith("error: ")
    assert len(finished_trials(project)) == 2


def test_grid_runs_every_point_once_then_resumes_with_nothing_to_do(project):
    grid = ["--space", "usermod:GRID", "--objective", "usermod:grid_objective", "--algo", "grid"]
    first = run(project, *grid, "--max-evals", "2")
    assert first.returncode == 0, first.stderr
    assert "grid of 12 points: 2 trials to hold" in first.stderr
    second = run(project, *grid, "--max-evals", "100")
    assert second.returncode == 0, second.stderr
    assert "grid of 12 points: 12 trials to hold" in second.stderr
    points = {(t["params"]["units"], (t["params"]["model"] or {}).get("depth")) for t in finished_trials(project)}
    assert points == {(u, d) for u in (8, 16, 32) for d in (None, 1.0, 2.0, 3.0)}
    third = run(project, *grid, "--max-evals", "100")
    assert "nothing to do" in third.stderr and len(finished_trials(project)) == 12


def test_grid_refuses_a_continuous_space_in_one_line(project):
    result = run(project, "--algo", "grid", "--max-evals", "3")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        line for line in result.stderr.strip().splitlines() if line.startswith("error: grid search cannot enumerate 'x'")
    ]


def test_a_database_that_refuses_an_operation_is_one_clear_line(project, mongo_server):
    """An OperationFailure (not a lost connection): a database name over MongoDB's 63 bytes, refused alike by
    MongoDB and nx-27017 when the collections are set up; nothing is written to results/."""
    url = with_database(mongo_server, "d" * 70)
    result = run(project, "--mongo", url, "--exp-key", "e", "--max-evals", "2")
    assert result.returncode == 1
    line = one_error_line(result)
    assert result.stderr.strip() == line
    assert line.startswith(f"error: MongoDB at {url} refused to set up the experiment's collections: ")
    assert "d" * 70 in line and "full error" not in line
    assert not (project / "results").exists()
