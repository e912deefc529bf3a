"""Leases across hosts: skewed clocks, outages seen by one thread, late results, lost leases, stops mid-call.

Separate worker processes on the real server throughout; the database, not a
host, keeps the time.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from pymongo.uri_parser import parse_uri

from caviar.store import DONE, NEW, RUNNING
from caviar.store.mongo import MongoStore
from tests.conftest import Workers
from tests.helpers.proxy import DelayProxy
from tests.helpers.server import NxServer, env_for_subprocess, with_database
from tests.helpers.trials import enqueue_points
from tests.helpers.waiting import wait_until
from worker.service import EXIT_INTERRUPTED

HELPERS = "tests.helpers.objectives"
CLOCK_SHIFT = str(Path(__file__).resolve().parents[1] / "helpers" / "clock_shift")


def experiment(url: str, exp_key: str, objective: str, **env: str) -> MongoStore:
    store = MongoStore(url, exp_key)
    store.put_experiment({"objective": f"{HELPERS}:{objective}", "env": env})
    return store


def shifted(seconds: int) -> dict[str, str]:
    """The environment of a worker whose host clock is ``seconds`` off."""
    path = os.pathsep.join([CLOCK_SHIFT, env_for_subprocess()["PYTHONPATH"]])
    return {"PYTHONPATH": path, "CLOCK_SHIFT_SECONDS": str(seconds)}


def by_tid(store: MongoStore) -> dict[Any, dict[str, Any]]:
    return {d["tid"]: d for d in store.trial_docs()}


def test_workers_with_clocks_two_minutes_off_lose_no_trial_and_drop_no_result(
    mongo_url: str, workers: Workers
) -> None:
    store = experiment(mongo_url, "skew", "sleepy")
    enqueue_points(store, [{"x": float(i), "sleep": 1.5} for i in range(9)])
    flags = ("--exp-key", "skew", "--lease-seconds", "3", "--idle-exit", "4")
    procs = [workers.start(mongo_url, *flags, env=shifted(s)) for s in (-120, 120, 0)]
    assert workers.wait_all(timeout=120) == [0, 0, 0], workers.logs()
    docs = store.trial_docs()
    assert all(d["state"] == DONE and d["result"]["status"] == "ok" for d in docs), workers.logs()
    assert [d["tid"] for d in docs if d["lease_losses"]] == [], workers.logs()
    assert "result dropped" not in workers.logs() and "lease lost" not in workers.logs()
    owners = {int(d["owner"].split(":")[1]) for d in docs}
    assert {p.pid for p in procs[:2]} <= owners, "both skewed workers should have run trials"


def test_an_outage_longer_than_the_lease_requeues_nothing_when_the_database_returns(
    restartable_mongo: NxServer, workers: Workers
) -> None:
    """The issue's numbers: a 25 s outage, a 10 s lease, trials spanning it.

    Both busy workers are also paused through the outage and for a few seconds
    after it (SIGSTOP), so that their heartbeats land late: worker A's trial
    ends while it is paused, so right after it resumes it goes idle having seen
    the outage only in its heartbeat thread; a fresh worker starts as the
    database returns. Neither may requeue B's live trial.
    """
    lease = 10
    url = with_database(restartable_mongo.url, "outage")
    store = experiment(url, "e", "sleepy")
    tids = enqueue_points(store, [{"x": 0.0, "sleep": 28.0}, {"x": 1.0, "sleep": 40.0}])
    flags = ("--exp-key", "e", "--lease-seconds", str(lease), "--idle-exit", "15")
    busy = [workers.start(url, *flags) for _ in range(2)]
    wait_until(lambda: store.count_by_state()[RUNNING] == 2, 30, "both trials to start")
    restartable_mongo.stop()
    for proc in busy:
        os.kill(proc.pid, signal.SIGSTOP)
    try:
        time.sleep(25)
        restartable_mongo.start()
        fresh = workers.start(url, *flags)
        wait_until(lambda: any(w["pid"] == fresh.pid for w in store.live_workers(60)), 30, "the fresh worker")
        time.sleep(lease / 2)  # past the fresh worker's first look at the leases (every lease / 4)
    finally:
        for proc in busy:
            os.kill(proc.pid, signal.SIGCONT)
    assert workers.wait_all(timeout=120) == [0, 0, 0], workers.logs()
    docs = by_tid(store)
    assert [docs[t]["state"] for t in tids] == [DONE, DONE], workers.logs()
    assert [docs[t]["lease_losses"] for t in tids] == [0, 0], workers.logs()
    assert {int(docs[t]["owner"].split(":")[1]) for t in tids} == {p.pid for p in busy}, workers.logs()
    assert "result dropped" not in workers.logs()


def test_a_late_result_is_kept_while_its_requeued_trial_waits(mongo_url: str, workers: Workers) -> None:
    store = experiment(mongo_url, "late", "sleepy")
    [tid] = enqueue_points(store, [{"x": 0.0, "sleep": 3.0}])
    worker = workers.start(mongo_url, "--exp-key", "late", "--lease-seconds", "2", "--idle-exit", "3")
    wait_until(lambda: store.count_by_state()[RUNNING] == 1, 30, "the trial to start")
    os.kill(worker.pid, signal.SIGSTOP)  # a worker cut off: its heartbeats stop
    try:
        wait_until(lambda: store.requeue_expired(2.0) == [tid], 20, "the lease to run out")
    finally:
        os.kill(worker.pid, signal.SIGCONT)
    assert worker.wait(timeout=60) == 0, workers.logs()
    doc = by_tid(store)[tid]
    assert (doc["state"], doc["result"]["status"], doc["lease_losses"]) == (DONE, "ok", 1), workers.logs()
    assert int(doc["owner"].split(":")[1]) == worker.pid
    assert workers.log(worker).count(f"trial {tid}: start") == 1, "the first run's result is kept, not run again"


def test_a_worker_that_lost_its_lease_stops_the_objective_at_a_safe_point(mongo_url: str, workers: Workers) -> None:
    store = experiment(mongo_url, "lost", "stops_when_asked")
    [tid] = enqueue_points(store, [{"x": 0.0, "seconds": 60.0}])
    loser = workers.start(mongo_url, "--exp-key", "lost", "--lease-seconds", "2")
    wait_until(lambda: store.count_by_state()[RUNNING] == 1, 30, "the trial to start")
    os.kill(loser.pid, signal.SIGSTOP)
    try:
        wait_until(lambda: store.requeue_expired(2.0) == [tid], 20, "the lease to run out")
        assert store.claim("another-worker")["tid"] == tid
    finally:
        os.kill(loser.pid, signal.SIGCONT)
    wait_until(lambda: "stopped at a safe point" in workers.log(loser), 30,
               f"the objective to stop (it would run 60 s)\n{workers.logs()}")
    assert "trial 0: lease lost" in workers.log(loser)
    assert loser.poll() is None, "the worker goes on serving the queue"


def test_a_second_sigterm_during_a_claim_acts_after_it_and_hands_the_trial_back(
    mongo_url: str, workers: Workers
) -> None:
    store = experiment(mongo_url, "midclaim", "sleepy", SLEEPY_SECONDS="30")
    proxy = DelayProxy(parse_uri(mongo_url)["nodelist"][0])
    try:
        worker = workers.start(proxy.url(mongo_url), "--exp-key", "midclaim", "--poll-seconds", "0.05")
        wait_until(lambda: len(store.live_workers(60)) == 1, 30, "the worker to connect")
        proxy.delay = 2.0  # replies now take 2 s: the claim lands, its answer has not come back
        [tid] = enqueue_points(store, [{"x": 0.0}])
        wait_until(lambda: store.count_by_state()[RUNNING] == 1, 30, "the claim to land")
        worker.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == EXIT_INTERRUPTED, workers.logs()
    finally:
        proxy.close()
    doc = by_tid(store)[tid]
    assert (doc["state"], doc["owner"], doc["lease_losses"]) == (NEW, None, 0), workers.logs()


def test_a_worker_exits_when_its_experiment_is_complete(mongo_url: str, workers: Workers) -> None:
    store = experiment(mongo_url, "done", "quadratic")
    store.put_experiment({"max_evals": 3})
    enqueue_points(store, [{"x": float(i)} for i in range(3)])
    worker = workers.start(mongo_url, "--exp-key", "done", "--exit-when-done", "--lease-seconds", "2")
    assert worker.wait(timeout=60) == 0, workers.logs()
    assert "experiment 'done' is complete (3 of 3 trials finished)" in workers.log(worker)
    assert store.count_by_state()[DONE] == 3
