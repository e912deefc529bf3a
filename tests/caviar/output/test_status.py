"""`python -m optimizer status`: counts, workers (stale ones flagged), best trial, pace."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from caviar.store.local import LocalStore
from caviar.store.mongo import MongoStore
from caviar.output.status import collect, render
from caviar.store import RUNNING
from tests.conftest import ROOT, Workers
from tests.helpers.server import env_for_subprocess
from tests.helpers.trials import enqueue_points, trial_doc
from tests.helpers.waiting import wait_until


def status_json(*args: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "optimizer", "status", "--json", *args], cwd=ROOT,
                          env=env_for_subprocess(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_status_of_a_live_distributed_experiment(mongo_url: str, workers: Workers):
    store = MongoStore(mongo_url, "live")
    store.put_experiment({"objective": "tests.helpers.objectives:sleepy", "max_evals": 10, "lease_seconds": 2,
                          "env": {"SLEEPY_SECONDS": "60"}})
    tids = enqueue_points(store, [{"x": float(i)} for i in range(5)])
    for tid, result in zip(tids[:2], [{"status": "ok", "loss": 0.25}, {"status": "fail", "error": "x"}]):
        store.claim("me:1")
        store.finish(tid, "me:1", result)
    mine = store.claim("me:1")
    worker = workers.start(mongo_url, "--exp-key", "live", "--lease-seconds", "2")
    wait_until(lambda: store.count_by_state()[RUNNING] == 2, 30, "the worker to claim a trial")
    os.kill(worker.pid, signal.SIGSTOP)
    try:
        wait_until(lambda: status_json("--mongo", mongo_url, "--exp-key", "live")["workers"][0]["stale"], 30,
                   "the stopped worker to be flagged stale", interval=0.5)
        status = status_json("--mongo", mongo_url, "--exp-key", "live")
        table = subprocess.run(
            [sys.executable, "-m", "optimizer", "status", "--mongo", mongo_url, "--exp-key", "live"],
            cwd=ROOT, env=env_for_subprocess(), capture_output=True, text=True, timeout=60).stdout
    finally:
        os.kill(worker.pid, signal.SIGCONT)
    assert (status["finished"], status["failed"], status["running"], status["queued"], status["max_evals"]) == (
        2, 1, 2, 1, 10)
    [w] = status["workers"]
    assert f":{worker.pid}:" in w["id"] and w["stale"] and w["heartbeat_age"] > 2
    assert w["trial"] not in (None, mine["tid"])
    assert status["best"]["tid"] == tids[0] and status["best"]["score"] == 0.25  # a loss, as it is
    assert status["best"]["params"] == {"x": 0.0}
    assert "finished 2/10   failed 1   stopped early 0   running 2   queued 1" in table
    assert "STALE" in table and "best: trial 0  loss 0.2500" in table



def test_pace_and_eta_from_finished_trials():
    store = LocalStore("pace")
    enqueue_points(store, [{"x": float(i)} for i in range(4)])
    for i in range(4):
        doc = store.claim("w")
        store.finish(doc["tid"], "w", {"status": "ok", "loss": float(i)})
    docs = store._docs
    for i, tid in enumerate(sorted(docs)):
        docs[tid]["refresh_time"] = 1000.0 + 60.0 * i  # one trial a minute
    status = collect(store, {"max_evals": 10, "lease_seconds": 60}, now=2000.0)
    assert status["trials_per_hour"] == 60.0 and status["eta_seconds"] == 6 * 60
    assert "ETA 6m00s" in render(status) and "no live workers" in render(status)


def test_status_of_an_embedded_search_reads_results(tmp_path: Path):
    from caviar.output.results import ResultsDir

    store = LocalStore("local")
    enqueue_points(store, [{"x": 1.0}, {"x": 2.0}])
    for loss in (0.5, 0.1):
        doc = store.claim("w")
        store.finish(doc["tid"], "w", {"status": "ok", "loss": loss})
    results = ResultsDir(str(tmp_path))
    results.prepare({"space": "s:S", "objective": "s:f"}, {"max_evals": 5})
    results.update(store.trial_docs())
    status = status_json("--results-dir", str(tmp_path))
    assert (status["finished"], status["max_evals"], status["best"]["params"]) == (2, 5, {"x": 2.0})


def test_stopped_trials_and_the_epoch_of_running_ones_in_the_metric_of_the_family():
    store = LocalStore("asha")
    tids = enqueue_points(store, [{"x": 1.0}, {"x": 2.0}])
    stopped = store.claim("w:1")
    store.finish(stopped["tid"], "w:1", {"status": "ok", "loss": -0.4, "stopped": True, "stopped_at": 1})
    running = store.claim("w:1")
    for step, loss in ((1, -0.5), (2, -0.625)):
        assert store.report(running["tid"], "w:1", step, loss)
    status = collect(store, {"max_evals": 5, "metric": "accuracy", "maximize": True})
    assert (status["finished"], status["failed"], status["stopped"]) == (1, 0, 1)
    [row] = status["running_trials"]
    assert (row["tid"], row["epoch"], row["last"]) == (tids[1], 2, 0.625)
    table = render(status)
    assert "stopped early 1" in table and "0.625" in table


def test_paused_trials_are_counted_until_a_promotion_continues_them():
    """asha --promote yes: a paused trial is stopped early and paused, until a promotion continues it or the
    search ends."""
    store = LocalStore("promote")
    first, second = enqueue_points(store, [{"x": 1.0}, {"x": 2.0}])
    for tid in (first, second):
        assert store.claim("w:1")["tid"] == tid
        store.finish(tid, "w:1", {"status": "ok", "loss": -0.4, "stopped": True, "stopped_at": 1, "paused": True})
    table = render(collect(store, {"max_evals": 5}))
    assert "stopped early 2 (2 paused)" in table
    [promotion] = store.new_tids(1)
    store.enqueue([trial_doc(promotion, {"x": 1.0}) | {"continues": {"tid": first, "step": 1, "reports": {}}}])
    status = collect(store, {"max_evals": 5})
    assert (status["stopped"], status["paused"]) == (2, 1)
    assert "stopped early 2 (1 paused)   running 0   queued 1" in render(status)
    assert "stopped early 2   running" in render(collect(store, {"max_evals": 2}))  # over: none will go on


def test_worker_ages_are_judged_by_the_stores_clock_not_this_hosts():
    """Heartbeats carry the store's clock (MongoDB's, across hosts): a host whose clock lags must not call them fresh."""

    class StoreAhead(LocalStore):
        def server_time(self) -> float:
            return super().server_time() + 100.0

    store = StoreAhead("skew")
    store.worker_alive("w:1", {"tid": None})
    [worker] = collect(store, {"max_evals": 1, "lease_seconds": 10})["workers"]
    assert worker["stale"] and worker["heartbeat_age"] >= 100
