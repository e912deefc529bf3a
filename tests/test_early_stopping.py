"""Early stopping across processes: master and workers on a real server, SIGKILLed mid-trial.

The objective is tests/helpers/training.py's deterministic numpy "training",
which reports every epoch and checkpoints its state through caviar.reporting.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from caviar.schedulers.asha import Asha
from caviar.store import DONE
from caviar.store.mongo import MongoStore
from tests.conftest import ROOT, Workers
from tests.helpers import training
from tests.helpers.results import finished_trials
from tests.helpers.server import NxServer, env_for_subprocess, with_database
from tests.helpers.trials import enqueue_points
from tests.helpers.waiting import wait_until

OBJECTIVE = "tests.helpers.training:numpy_training"
SPACE = "tests.helpers.training:SPACE"
POINT = {"lr": 0.05, "noise": 0.5}


def optimizer(*args: str, log: Path, **env: str) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "optimizer", "--space", SPACE, "--objective", OBJECTIVE, "--no-plots", *args],
            cwd=ROOT, env=env_for_subprocess(env), stdout=out, stderr=subprocess.STDOUT,
        )


def steps(mapping: dict[str, Any]) -> list[int]:
    return sorted(int(step) for step in mapping)


def test_asha_decisions_agree_across_three_workers_and_a_master_restart(
    mongo_url: str, workers: Workers, tmp_path: Path
) -> None:
    for _ in range(3):
        workers.start(mongo_url, "--exp-key", "asha", "--idle-exit", "20", "--lease-seconds", "10")
    args = ("--mongo", mongo_url, "--exp-key", "asha", "--max-evals", "15", "--scheduler", "asha",
            "--results-dir", str(tmp_path / "results"), "--lease-seconds", "10", "--no-tensorboard")
    log = tmp_path / "master.log"
    master = optimizer(*args, log=log, EPOCH_SECONDS="0.05")
    store = MongoStore(mongo_url, "asha")
    wait_until(lambda: store.count_by_state()[DONE] >= 5, 90, "5 finished trials")
    master.send_signal(signal.SIGKILL)
    master.wait(timeout=10)
    again = optimizer(*args, log=log, EPOCH_SECONDS="0.05")
    assert again.wait(timeout=180) == 0, log.read_text()[-3000:]
    assert workers.wait_all(timeout=30) == [0, 0, 0], workers.logs()

    docs = store.trial_docs()
    assert len(docs) == 15 and all(d["result"]["status"] == "ok" for d in docs)
    assert len({d["owner"] for d in docs}) == 3, "every worker should have run trials"
    experiment = store.get_experiment()
    recorded = json.loads(experiment["env"]["HKS_SCHEDULER_CONFIG"])
    asha = Asha(recorded["min_epochs"], recorded["reduction_factor"], recorded["max_epochs"])
    assert recorded == {"name": "asha", "min_epochs": 1, "reduction_factor": 3, "max_epochs": training.EPOCHS}
    rungs = [step for step in range(1, training.EPOCHS + 1) if asha.decides_at(0, step)]
    assert rungs == [1, 3]
    final = {step: store.step_losses(docs[0]["tid"], step) for step in rungs}
    stopped = [d for d in docs if d["result"].get("stopped")]
    assert stopped and len(stopped) < len(docs), "ASHA should stop some trials and let others finish"
    for doc in docs:
        reports, decisions, result = doc["reports"], doc["decisions"], doc["result"]
        last = max(steps(reports))
        # One decision at every rung the trial reached, and a stop is where its reports end.
        assert steps(decisions) == [s for s in rungs if s <= last]
        for step, decision in decisions.items():
            loss = reports[step]
            # Each decision is ASHA's rule on the losses stored at that rung when it was taken.
            assert decision["scheduler"] == "asha" and decision["cutoff"] in final[int(step)].values()
            assert decision["stop"] == (loss > decision["cutoff"]) and decision["peers"] <= len(final[int(step)])
            assert decision == store.decide(doc["tid"], "anyone", int(step), {"stop": not decision["stop"]})
        if result.get("stopped"):
            assert result["stopped_at"] == last and decisions[str(last)]["stop"]
            assert result["loss"] == pytest.approx(min(reports.values()), rel=1e-12)  # nx-27017 keeps 15 digits
        else:
            assert last == training.EPOCHS and not any(d["stop"] for d in decisions.values())
    # The first trial to reach a rung always goes on (nothing waits for a rung to fill).
    alone = [d["decisions"]["1"] for d in docs if d["decisions"]["1"]["peers"] == 1]
    assert alone and not any(decision["stop"] for decision in alone)
    mirrored = {t["tid"]: t["result"] for t in finished_trials(tmp_path)}
    assert {tid for tid, r in mirrored.items() if r.get("stopped")} == {d["tid"] for d in stopped}


def test_a_worker_killed_at_epoch_3_of_5_is_resumed_there_by_another(
    mongo_url: str, workers: Workers, tmp_path: Path
) -> None:
    store = MongoStore(mongo_url, "resume")
    env = {"TRAIN_EPOCHS": "5", "KILL_AT_EPOCH": "3", "KILL_MARKER": str(tmp_path / "killed"), "HKS_SEED": "7"}
    store.put_experiment({"objective": OBJECTIVE, "env": env})
    [tid] = enqueue_points(store, [POINT])
    victim = workers.start(mongo_url, "--exp-key", "resume", "--lease-seconds", "2")
    assert victim.wait(timeout=60) == -signal.SIGKILL, workers.logs()
    assert steps(store.trial_docs()[0]["reports"]) == [1, 2, 3]
    survivor = workers.start(mongo_url, "--exp-key", "resume", "--lease-seconds", "2", "--idle-exit", "3")
    assert survivor.wait(timeout=60) == 0, workers.logs()
    [doc] = store.trial_docs()
    assert doc["lease_losses"] == 1 and doc["owner"].split(":")[1] == str(survivor.pid)
    assert doc["result"]["status"] == "ok" and doc["result"]["resumed_from"] == 3
    assert "resuming from the checkpoint of step 3" in workers.log(survivor)
    # The same history as an uninterrupted run with the same seed.
    uninterrupted = subprocess.run(
        [sys.executable, "-c", f"from tests.helpers.training import numpy_training as f; import json; "
         f"print(json.dumps(f({POINT!r})['history']))"],
        cwd=ROOT, env=env_for_subprocess({"TRAIN_EPOCHS": "5", "HKS_SEED": "7"}), capture_output=True, text=True,
        check=True,
    )
    assert doc["result"]["history"] == json.loads(uninterrupted.stdout)
    assert [doc["reports"][str(e)] for e in range(1, 6)] == pytest.approx(doc["result"]["history"]["loss"], rel=1e-12)
    assert store.get_checkpoint(tid, str(tmp_path / "none")) is None, "the checkpoint outlived its trial"


def test_an_interrupted_embedded_search_resumes_its_trial_from_the_last_epoch(tmp_path: Path) -> None:
    args = ("--max-evals", "2", "--results-dir", str(tmp_path / "results"), "--seed", "3", "--no-tensorboard")
    env = {"TRAIN_EPOCHS": "5", "KILL_AT_EPOCH": "3", "KILL_MARKER": str(tmp_path / "killed")}
    log = tmp_path / "search.log"
    assert optimizer(*args, log=log, **env).wait(timeout=120) == -signal.SIGKILL, log.read_text()[-3000:]
    assert list((tmp_path / "results" / "checkpoints").glob("*.ckpt"))
    assert optimizer(*args, log=log, **env).wait(timeout=120) == 0, log.read_text()[-3000:]
    trials = finished_trials(tmp_path)
    assert [t["result"].get("resumed_from") for t in trials] == [3, None]
    assert all(len(t["result"]["history"]["loss"]) == 5 for t in trials)
    assert not list((tmp_path / "results" / "checkpoints").glob("*.ckpt"))


def test_reports_during_a_database_outage_land_afterwards_and_the_trial_finishes(
    restartable_mongo: NxServer, workers: Workers
) -> None:
    url = with_database(restartable_mongo.url, "outage")
    store = MongoStore(url, "outage")
    asha = json.dumps({"name": "asha", "min_epochs": 1, "reduction_factor": 3, "max_epochs": 8})
    store.put_experiment({"objective": OBJECTIVE, "lease_seconds": 60,
                          "env": {"TRAIN_EPOCHS": "8", "EPOCH_SECONDS": "0.5", "HKS_SCHEDULER_CONFIG": asha}})
    [tid] = enqueue_points(store, [POINT])
    worker = workers.start(url, "--exp-key", "outage", "--connect-timeout", "1", "--idle-exit", "3")
    wait_until(lambda: "2" in (store.trial_docs()[0].get("reports") or {}), 60, "the second epoch's report")
    restartable_mongo.stop()
    time.sleep(2.0)  # epochs 3 and 4 (a rung) report into the outage
    restartable_mongo.start()
    assert worker.wait(timeout=90) == 0, workers.logs()
    [doc] = MongoStore(url, "outage").trial_docs()
    assert doc["result"]["status"] == "ok" and "stopped" not in doc["result"], workers.logs()
    assert steps(doc["reports"]) == list(range(1, 9))
    assert "store unreachable" in workers.logs() and doc["lease_losses"] == 0
