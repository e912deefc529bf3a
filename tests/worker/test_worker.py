"""``python -m worker`` as separate processes: crashes, signals, poison trials, database outages, flags."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from caviar.store.mongo import MongoStore
from caviar.store import DONE, NEW, RUNNING
from tests.conftest import ROOT, Workers
from tests.helpers.server import NxServer, env_for_subprocess, free_port, with_database
from tests.helpers.trials import enqueue_points
from tests.helpers.waiting import wait_until
from worker.__main__ import main
from worker.service import EXIT_INTERRUPTED

HELPERS = "tests.helpers.objectives"


def experiment(url: str, exp_key: str, objective: str, **env: str) -> MongoStore:
    """A store on a fresh experiment whose workers run ``tests.helpers.objectives:<objective>``."""
    store = MongoStore(url, exp_key)
    store.put_experiment({"objective": f"{HELPERS}:{objective}", "env": env})
    return store


def points(n: int, **extra: Any) -> list[dict[str, Any]]:
    return [{"x": float(i), **extra} for i in range(n)]


def pid_of(doc: dict[str, Any]) -> int:
    return int(doc["owner"].split(":")[1])


def finished(store: MongoStore, n: int) -> bool:
    return store.count_by_state()[DONE] == n


def stop(workers: Workers, procs: list[subprocess.Popen[bytes]]) -> list[int]:
    """SIGTERM the given workers and return their exit codes."""
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    try:
        return [proc.wait(timeout=20) for proc in procs]
    except subprocess.TimeoutExpired:
        raise AssertionError(f"a worker ignored SIGTERM\n{workers.logs()}") from None


def test_a_killed_workers_trial_is_finished_by_another_after_the_lease(
    mongo_url: str, workers: Workers, tmp_path: Path
) -> None:
    store = experiment(mongo_url, "crash", "crash_once", CRASH_ONCE_MARKER=str(tmp_path / "crashed"))
    first, *_ = enqueue_points(store, points(4))
    victim = workers.start(mongo_url, "--exp-key", "crash", "--lease-seconds", "2")
    assert victim.wait(timeout=30) == -signal.SIGKILL, workers.logs()
    survivor = workers.start(mongo_url, "--exp-key", "crash", "--lease-seconds", "2")
    wait_until(lambda: finished(store, 4), 30, "all trials to finish")
    assert stop(workers, [survivor]) == [0]
    docs = store.trial_docs()
    assert all(d["result"]["status"] == "ok" and pid_of(d) == survivor.pid for d in docs)
    assert [d["lease_losses"] for d in docs if d["tid"] == first] == [1]


def test_sigterm_lets_the_current_trial_finish_then_exits(mongo_url: str, workers: Workers) -> None:
    store = experiment(mongo_url, "term", "sleepy", SLEEPY_SECONDS="1.0")
    enqueue_points(store, points(3))
    worker = workers.start(mongo_url, "--exp-key", "term")
    wait_until(lambda: store.count_by_state()[RUNNING] == 1, 20, "a trial to start")
    assert stop(workers, [worker]) == [0], workers.logs()
    assert store.count_by_state() == {NEW: 2, RUNNING: 0, DONE: 1}
    [done] = [d for d in store.trial_docs() if d["state"] == DONE]
    assert done["result"]["status"] == "ok" and pid_of(done) == worker.pid


def test_a_second_sigterm_hands_the_trial_back_at_once(mongo_url: str, workers: Workers) -> None:
    store = experiment(mongo_url, "term2", "sleepy", SLEEPY_SECONDS="60")
    [tid] = enqueue_points(store, points(1))
    worker = workers.start(mongo_url, "--exp-key", "term2")
    wait_until(lambda: store.count_by_state()[RUNNING] == 1, 20, "the trial to start")
    worker.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=10) == EXIT_INTERRUPTED, workers.logs()
    [doc] = store.trial_docs()
    assert (doc["tid"], doc["state"], doc["owner"], doc["lease_losses"]) == (tid, NEW, None, 0)


def test_a_poison_trial_fails_after_three_lost_leases_and_the_rest_finish(mongo_url: str, workers: Workers) -> None:
    store = experiment(mongo_url, "poison", "kill_worker")
    poison, *healthy = enqueue_points(store, [{"x": 0.0, "poison": True}, *points(4, poison=False)])
    procs = [workers.start(mongo_url, "--exp-key", "poison", "--lease-seconds", "2") for _ in range(4)]
    wait_until(lambda: len(store.live_workers(60)) == 4, 30, "every worker to connect")  # SIGTERM-ready
    wait_until(lambda: finished(store, 5), 60, "every trial to finish")
    alive = [p for p in procs if p.poll() is None]
    assert len(alive) == 1 and all(p.returncode == -signal.SIGKILL for p in procs if p not in alive), workers.logs()
    assert stop(workers, alive) == [0]
    docs = {d["tid"]: d for d in store.trial_docs()}
    assert docs[poison]["result"]["status"] == "fail" and docs[poison]["lease_losses"] == 3
    assert all(docs[t]["result"]["status"] == "ok" for t in healthy)


def test_a_result_the_database_refuses_fails_its_trial_and_the_worker_goes_on(
    mongo_url: str, workers: Workers
) -> None:
    store = experiment(mongo_url, "big", "oversized")
    big, *small = enqueue_points(store, [{"x": 0.0, "oversized": True}, *points(2, oversized=False)])
    worker = workers.start(mongo_url, "--exp-key", "big", "--max-trials", "3")
    assert worker.wait(timeout=60) == 0, workers.logs()
    docs = {d["tid"]: d for d in store.trial_docs()}
    assert docs[big]["result"]["status"] == "fail" and "DocumentTooLarge" in docs[big]["result"]["error"]
    assert docs[big]["lease_losses"] == 0 and all(docs[t]["result"]["status"] == "ok" for t in small)


def test_workers_ride_out_a_database_outage_without_losing_results(
    restartable_mongo: NxServer, workers: Workers
) -> None:
    url = f"{restartable_mongo.url}/outage"
    store = experiment(url, "outage", "sleepy", SLEEPY_SECONDS="0.3")
    enqueue_points(store, points(12))
    flags = ("--exp-key", "outage", "--lease-seconds", "20", "--connect-timeout", "1")
    procs = [workers.start(url, *flags) for _ in range(2)]
    wait_until(lambda: len(store.live_workers(60)) == 2, 30, "both workers to connect")  # else they exit 1
    wait_until(lambda: store.count_by_state()[DONE] >= 2, 30, "some trials to finish")
    restartable_mongo.stop()
    time.sleep(3)
    restartable_mongo.start()
    wait_until(lambda: finished(store, 12), 60, f"every trial to finish\n{workers.logs()}")
    assert stop(workers, procs) == [0, 0], workers.logs()
    assert all(d["result"]["status"] == "ok" and d["lease_losses"] == 0 for d in store.trial_docs())
    for proc in procs:  # each change of state is logged once, not every retry
        log = workers.log(proc)
        assert log.count("database unreachable") == 1 and log.count("database reachable again") == 1, log


def test_gpu_pinning_and_tensorflow_only_when_asked(mongo_url: str, workers: Workers) -> None:
    store = experiment(mongo_url, "env", "environment", PROBE="from the experiment")
    enqueue_points(store, points(2))
    plain = workers.start(mongo_url, "--exp-key", "env", "--max-trials", "1")
    assert plain.wait(timeout=30) == 0, workers.logs()
    pinned = workers.start(mongo_url, "--exp-key", "env", "--max-trials", "1", "--gpu", "0")
    assert pinned.wait(timeout=60) == 0, workers.logs()
    results = {pid_of(d): d["result"] for d in store.trial_docs()}
    assert results[plain.pid] | {"duration": 0} == {
        "loss": 0.0, "status": "ok", "duration": 0,
        "cuda_visible_devices": None, "tensorflow_loaded": False, "probe": "from the experiment",
    }
    assert results[pinned.pid]["cuda_visible_devices"] == "0" and results[pinned.pid]["tensorflow_loaded"]


def test_a_worker_that_cannot_import_the_objective_hands_the_trial_back_and_stops_for_good(
    mongo_url: str, workers: Workers
) -> None:
    store = experiment(mongo_url, "broken", "no_such_objective")
    [tid] = enqueue_points(store, points(1))
    worker = workers.start(mongo_url)  # no --exp-key: serves every experiment
    assert worker.wait(timeout=30) == 0  # the one code compose's restart: on-failure does not restart
    assert "error: module 'tests.helpers.objectives' has no attribute 'no_such_objective'" in workers.log(worker)
    [doc] = store.trial_docs()
    assert (doc["tid"], doc["state"], doc["lease_losses"]) == (tid, NEW, 0)


@pytest.mark.parametrize("objective", ["needs_missing_data", "FAMILY_WITHOUT_DATA"])
def test_a_worker_whose_objective_lacks_its_data_hands_the_trial_back_and_stops_for_good(
    mongo_url: str, workers: Workers, objective: str
) -> None:
    store = experiment(mongo_url, "nodata", objective)
    [tid] = enqueue_points(store, points(1))
    worker = workers.start(mongo_url, "--exp-key", "nodata")
    assert worker.wait(timeout=30) == 0  # not restarted by compose in a loop
    errors = [line for line in workers.log(worker).splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "no data set here: put it in ml_req/" in errors[0] and "exit 0" in errors[0]
    [doc] = store.trial_docs()
    assert (doc["tid"], doc["state"], doc["lease_losses"]) == (tid, NEW, 0)


def test_an_unreachable_database_is_one_error_line_and_exit_1() -> None:
    url = f"mongodb://127.0.0.1:{free_port()}/x"
    proc = subprocess.run(
        [sys.executable, "-m", "worker", "--mongo", url, "--connect-timeout", "0.5"],
        cwd=ROOT, env=env_for_subprocess(), capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error: cannot use MongoDB at")


def test_a_database_that_refuses_an_operation_is_one_error_line_and_exit_1(mongo_server: str) -> None:
    """An OperationFailure, not a lost connection: a database name longer than MongoDB (and nx-27017) accept."""
    url = with_database(mongo_server, "d" * 70)
    proc = subprocess.run([sys.executable, "-m", "worker", "--mongo", url], cwd=ROOT, env=env_for_subprocess(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0
    assert proc.stderr.startswith(f"error: MongoDB at {url} refused to set up the experiment's collections: ")


def test_help_documents_every_flag_and_bad_flags_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SystemExit) as exit_help:
        main(["--help"])
    assert exit_help.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--mongo", "--exp-key", "--gpu", "--lease-seconds", "--poll-seconds", "--max-trials",
                 "--idle-exit", "--exit-when-done", "--connect-timeout", "MONGO_URL", "EXPERIMENT_NAME",
                 "HKS_EXIT_WHEN_DONE", "143"):
        assert flag in text
    for argv in (["--bogus"], ["--mongo", "mongodb://h/x", "--lease-seconds", "-1"]):
        with pytest.raises(SystemExit) as bad:
            main(argv)
        assert bad.value.code == 2
    monkeypatch.delenv("MONGO_URL", raising=False)
    with pytest.raises(SystemExit) as missing:
        main([])
    assert missing.value.code == 2 and "--mongo is required" in capsys.readouterr().err


def test_a_worker_serving_two_experiments_does_not_carry_settings_across(mongo_url: str, workers: Workers) -> None:
    first = experiment(mongo_url, "first", "environment", PROBE="from-first")
    second = experiment(mongo_url, "second", "environment")
    enqueue_points(first, points(1))
    worker = workers.start(mongo_url, "--idle-exit", "2")  # serves both experiments, lowest tid first
    wait_until(lambda: finished(first, 1), 30, "the first experiment's trial")
    enqueue_points(second, points(1))
    assert worker.wait(timeout=60) == 0, workers.logs()
    assert first.trial_docs()[0]["result"]["probe"] == "from-first"
    assert second.trial_docs()[0]["result"]["probe"] is None


def test_a_slow_objective_import_keeps_the_lease(mongo_url: str, workers: Workers) -> None:
    store = MongoStore(mongo_url, "slow")
    store.put_experiment({"objective": "tests.helpers.slow_import:objective", "env": {}})
    enqueue_points(store, points(1))
    busy = workers.start(mongo_url, "--exp-key", "slow", "--lease-seconds", "2", "--idle-exit", "8")
    wait_until(lambda: store.count_by_state()[RUNNING] == 1, 30, "the first worker's claim")
    workers.start(mongo_url, "--exp-key", "slow", "--lease-seconds", "2", "--idle-exit", "8")  # requeues the silent
    wait_until(lambda: finished(store, 1), 60, "the trial")
    [doc] = store.trial_docs()
    assert doc["lease_losses"] == 0 and pid_of(doc) == busy.pid, workers.logs()
