"""The master (`python -m optimizer --mongo`) with `python -m worker` processes on a real server.

Separate processes throughout, with the cheap objectives of tests/helpers: the
master must finish with exactly max-evals trials whatever is killed or cut off.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

from caviar.files import TEMP_PREFIX
from caviar.output.results import TRIAL_FILE
from caviar.store.mongo import MongoStore
from caviar.store import DONE, vals_key
from tests.conftest import ROOT, Workers
from tests.helpers.server import NxServer, env_for_subprocess, with_database
from tests.helpers.results import finished_trials
from tests.helpers.trials import whole_reads
from tests.helpers.waiting import wait_until
from optimizer.cli import main

SPACE = "tests.helpers.objectives:SPACE"
SLEEPY = "tests.helpers.objectives:sleepy"


def start_master(url: str, exp_key: str, results: Path, max_evals: int, *args: str,
                 log: Path, **env: str) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "optimizer", "--mongo", url, "--exp-key", exp_key, "--space", SPACE,
             "--objective", SLEEPY, "--max-evals", str(max_evals), "--results-dir", str(results), *args],
            cwd=ROOT, env=env_for_subprocess(env), stdout=out, stderr=subprocess.STDOUT,
        )


def check_exactly(url: str, exp_key: str, results: Path, n: int) -> list[dict]:
    """The database and results/results.pkl both hold n finished, distinct trials."""
    docs = MongoStore(url, exp_key).trial_docs()
    assert len(docs) == n and all(d["state"] == DONE for d in docs)
    assert len({d["tid"] for d in docs}) == n
    assert len({vals_key(d["misc"]) for d in docs}) == n, "a point was queued twice"
    with open(results / "results.pkl", "rb") as f:
        trials = pickle.load(f)
    assert sorted(t["tid"] for t in trials.trials) == sorted(d["tid"] for d in docs)
    # One JSON per trial; a temp file a SIGKILL left behind is no trial (the next search removes it).
    assert len([p for p in os.listdir(results) if TRIAL_FILE.search(p) and not p.startswith(TEMP_PREFIX)]) == n
    return docs


def test_one_master_three_workers_finish_exactly_max_evals(mongo_url: str, workers: Workers, tmp_path: Path):
    for _ in range(3):
        workers.start(mongo_url, "--exp-key", "e", "--idle-exit", "3")
    master = start_master(mongo_url, "e", tmp_path / "results", 30, log=tmp_path / "master.log")
    assert master.wait(timeout=120) == 0, (tmp_path / "master.log").read_text()
    docs = check_exactly(mongo_url, "e", tmp_path / "results", 30)
    assert len({d["owner"] for d in docs}) == 3, "every worker should have taken trials"
    assert workers.wait_all(timeout=30) == [0, 0, 0]
    log = (tmp_path / "master.log").read_text()
    assert "done=30/30" in log and "best trial" in log


def test_a_killed_master_restarts_without_duplicates_or_losses(mongo_url: str, workers: Workers, tmp_path: Path):
    for _ in range(2):
        workers.start(mongo_url, "--exp-key", "e", "--idle-exit", "5")
    results, log = tmp_path / "results", tmp_path / "master.log"
    master = start_master(mongo_url, "e", results, 24, "--lease-seconds", "4", log=log)
    store = MongoStore(mongo_url, "e")
    wait_until(lambda: store.count_by_state()[DONE] >= 8, 60, "8 finished trials")
    master.send_signal(signal.SIGKILL)
    master.wait(timeout=10)
    assert store.count_by_state()[DONE] < 24
    again = start_master(mongo_url, "e", results, 24, "--lease-seconds", "4", log=log)  # takes over after 4 s
    assert again.wait(timeout=120) == 0, log.read_text()
    check_exactly(mongo_url, "e", results, 24)


def test_master_and_workers_ride_out_a_database_outage_longer_than_the_lease(
    restartable_mongo: NxServer, workers: Workers, tmp_path: Path
):
    url = with_database(restartable_mongo.url, "outage")
    for _ in range(2):
        workers.start(url, "--exp-key", "e", "--idle-exit", "15", "--lease-seconds", "6",
                      env={"SLEEPY_SECONDS": "0.5"})
    results, log = tmp_path / "results", tmp_path / "master.log"
    # A lease longer than the workers' longest retry pause (5 s), shorter than the outage.
    master = start_master(url, "e", results, 20, "--lease-seconds", "6", log=log)
    store = MongoStore(url, "e")
    wait_until(lambda: store.count_by_state()[DONE] >= 4, 60, "4 finished trials")
    restartable_mongo.stop()
    time.sleep(8)  # longer than the lease, and than the driver's 5 s server selection
    assert master.poll() is None, "the master gave up during the outage"
    restartable_mongo.start()
    assert master.wait(timeout=120) == 0, log.read_text()
    docs = check_exactly(url, "e", results, 20)
    # Heartbeats could not land during the outage: no live trial may be taken from its worker for that.
    assert [d["tid"] for d in docs if d["lease_losses"]] == [], workers.logs()
    text = log.read_text()
    assert text.count("store unreachable") == 1 and "store reachable again" in text


def test_two_experiments_in_one_database_stay_apart(mongo_url: str, workers: Workers, tmp_path: Path):
    for _ in range(2):
        workers.start(mongo_url, "--idle-exit", "4")  # no --exp-key: they serve both experiments
    a = start_master(mongo_url, "a", tmp_path / "a", 10, log=tmp_path / "a.log")
    b = start_master(mongo_url, "b", tmp_path / "b", 14, "--algo", "random", log=tmp_path / "b.log")
    assert a.wait(timeout=120) == 0, (tmp_path / "a.log").read_text()
    assert b.wait(timeout=120) == 0, (tmp_path / "b.log").read_text()
    check_exactly(mongo_url, "a", tmp_path / "a", 10)
    check_exactly(mongo_url, "b", tmp_path / "b", 14)


def test_a_second_master_with_another_objective_is_refused(mongo_url: str, tmp_path: Path):
    store = MongoStore(mongo_url, "e")
    store.put_experiment({"objective": "tests.helpers.objectives:quadratic", "space": SPACE})
    master = start_master(mongo_url, "e", tmp_path / "r", 5, log=tmp_path / "m.log")
    assert master.wait(timeout=60) == 1
    last = (tmp_path / "m.log").read_text().strip().splitlines()[-1]
    assert last.startswith("error: experiment 'e' is another search (objective 'tests.helpers.objectives:quadratic' there")


def test_an_unreachable_database_is_one_clear_line(tmp_path: Path):
    proc = subprocess.run(
        [sys.executable, "-m", "optimizer", "--mongo", "mongodb://127.0.0.1:9/x", "--space", SPACE,
         "--objective", SLEEPY, "--results-dir", str(tmp_path / "r")],
        cwd=ROOT, env=env_for_subprocess(), capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "Traceback" not in proc.stderr
    assert not (tmp_path / "r").exists()


def test_a_master_restarted_after_the_end_still_mirrors_the_results(mongo_url: str, workers: Workers,
                                                                   tmp_path: Path):
    workers.start(mongo_url, "--exp-key", "e", "--idle-exit", "3")
    first = start_master(mongo_url, "e", tmp_path / "first", 6, log=tmp_path / "m.log")
    assert first.wait(timeout=60) == 0
    again = start_master(mongo_url, "e", tmp_path / "again", 6, log=tmp_path / "m.log")
    assert again.wait(timeout=60) == 0, (tmp_path / "m.log").read_text()
    assert "nothing to do" in (tmp_path / "m.log").read_text()
    check_exactly(mongo_url, "e", tmp_path / "again", 6)
    assert (tmp_path / "again" / "best.json").exists() and (tmp_path / "again" / "plots").is_dir()


def test_two_masters_on_one_experiment_never_pass_max_evals(mongo_url: str, workers: Workers, tmp_path: Path):
    for _ in range(3):
        workers.start(mongo_url, "--exp-key", "e", "--idle-exit", "6")
    logs = [tmp_path / "m0.log", tmp_path / "m1.log"]
    masters = [start_master(mongo_url, "e", tmp_path / f"r{i}", 20, log=log) for i, log in enumerate(logs)]
    assert [m.wait(timeout=180) for m in masters] == [0, 0], "\n".join(log.read_text() for log in logs)
    docs = MongoStore(mongo_url, "e").trial_docs()
    assert len(docs) == 20 and all(d["state"] == DONE for d in docs)
    texts = [log.read_text() for log in logs]
    standby = [t for t in texts if "has a live master" in t]
    assert len(standby) == 1, texts  # one line naming the live master; it took over only after the first ended
    assert "standing by until it exits" in standby[0] and "nothing to do" in standby[0]


def test_sigterm_stops_the_master_with_its_mirror_complete(mongo_url: str, workers: Workers, tmp_path: Path):
    workers.start(mongo_url, "--exp-key", "e", "--idle-exit", "5", env={"SLEEPY_SECONDS": "0.3"})
    results, log = tmp_path / "results", tmp_path / "master.log"
    master = start_master(mongo_url, "e", results, 40, log=log)
    store = MongoStore(mongo_url, "e")
    wait_until(lambda: store.count_by_state()[DONE] >= 3, 60, "3 finished trials")
    master.send_signal(signal.SIGTERM)
    assert master.wait(timeout=30) == 143, log.read_text()
    with open(results / "results.pkl", "rb") as f:
        mirrored = {t["tid"] for t in pickle.load(f).trials}
    done = {d["tid"] for d in store.trial_docs() if d["state"] == DONE}
    assert len(mirrored) >= 3 and mirrored <= done
    text = log.read_text()
    assert "stopped by SIGTERM" in text and "Traceback" not in text


def test_max_evals_beyond_what_mongodb_stores_is_one_line_before_anything_is_written(
    mongo_url: str, tmp_path: Path
):
    proc = subprocess.run(
        [sys.executable, "-m", "optimizer", "--mongo", mongo_url, "--space", SPACE, "--objective", SLEEPY,
         "--max-evals", str(2**63), "--results-dir", str(tmp_path / "r")],
        cwd=ROOT, env=env_for_subprocess(), capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2  # the flag's own bound (a million) comes before MongoDB's int64
    assert proc.stderr.strip() == (f"error: argument --max-evals: invalid an integer from 1 to 1000000 value: "
                                   f"'{2**63}' (see python -m optimizer --help)")
    assert not (tmp_path / "r").exists() and MongoStore(mongo_url, "caviar").get_experiment() is None


def test_the_embedded_loop_reads_the_whole_store_a_fixed_number_of_times(tmp_path: Path, monkeypatch) -> None:
    """Each trial is read back alone as it finishes: a longer search reads every trial no more often
    (copying them all for each new trial made the work per trial grow with the experiment)."""
    def search(n: int) -> None:
        assert main(["--space", "tests.helpers.objectives:SPACE", "--objective", "tests.helpers.objectives:quadratic",
                     "--max-evals", str(n), "--algo", "random", "--results-dir", str(tmp_path / f"r{n}" / "results"),
                     "--no-plots", "--no-tensorboard"]) == 0
        assert len(finished_trials(tmp_path / f"r{n}")) == n

    short, long = whole_reads(monkeypatch, search, (4, 24))
    assert short == long
