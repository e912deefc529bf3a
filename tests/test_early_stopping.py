"""Early stopping across processes: master and workers on a real server, SIGKILLed mid-trial.

The objective is tests/helpers/training.py's deterministic numpy "training",
which reports every epoch and checkpoints its state through caviar.reporting.
"""

from __future__ import annotations

import itertools
import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hyperopt import Domain

from caviar import schedulers
from caviar.schedulers import Scheduler
from caviar.store import DONE
from caviar.store.mongo import MongoStore
from optimizer.samplers.gp import GaussianProcessSampler
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


def replayable(scheduler: Scheduler, tid: int, step: int, decision: dict[str, Any],
               losses: dict[int, float | None]) -> bool:
    """Whether ``decision`` is the scheduler's rule on some of the losses now stored at ``step``.

    Some: those stored when it was taken, which are not recorded; as many as it compared
    (``peers``), this trial's among them.
    """
    others = [other for other in losses if other != tid]
    for chosen in itertools.combinations(others, decision["peers"] - 1):
        replay = scheduler.decide(tid, step, {t: losses[t] for t in (tid, *chosen)}).as_doc()
        if (replay["stop"], replay["peers"]) == (decision["stop"], decision["peers"]) and (
                replay["cutoff"] == decision["cutoff"] is None
                or None not in (replay["cutoff"], decision["cutoff"])
                and replay["cutoff"] == pytest.approx(decision["cutoff"], rel=1e-12)):  # nx-27017: 15 digits
            return True
    return False


@pytest.mark.parametrize("name", ["asha", "median", "hyperband"])
def test_decisions_agree_across_three_workers_and_a_master_restart(
    name: str, mongo_url: str, workers: Workers, tmp_path: Path
) -> None:
    for _ in range(3):
        workers.start(mongo_url, "--exp-key", name, "--idle-exit", "20", "--lease-seconds", "10")
    args = ("--mongo", mongo_url, "--exp-key", name, "--max-evals", "15", "--scheduler", name,
            "--results-dir", str(tmp_path / "results"), "--lease-seconds", "10", "--no-tensorboard")
    log = tmp_path / "master.log"
    master = optimizer(*args, log=log, EPOCH_SECONDS="0.05")
    store = MongoStore(mongo_url, name)
    wait_until(lambda: store.count_by_state()[DONE] >= 5, 90, "5 finished trials")
    master.send_signal(signal.SIGKILL)
    master.wait(timeout=10)
    again = optimizer(*args, log=log, EPOCH_SECONDS="0.05")
    assert again.wait(timeout=180) == 0, log.read_text()[-3000:]
    assert workers.wait_all(timeout=30) == [0, 0, 0], workers.logs()

    docs = store.trial_docs()
    assert len(docs) == 15 and all(d["result"]["status"] == "ok" for d in docs)
    assert len({d["owner"] for d in docs}) == 3, "every worker should have run trials"
    recorded = json.loads(store.get_experiment()["env"]["HKS_SCHEDULER_CONFIG"])
    assert recorded == {"name": name, "min_epochs": 1, "reduction_factor": 3, "max_epochs": training.EPOCHS}
    scheduler = schedulers.from_config(recorded)
    final = {step: store.step_losses(docs[0]["tid"], step) for step in range(1, training.EPOCHS + 1)}
    stopped = [d for d in docs if d["result"].get("stopped")]
    assert stopped and len(stopped) < len(docs), f"{name} should stop some trials and let others finish"
    for doc in docs:
        tid, reports, decisions, result = doc["tid"], doc["reports"], doc.get("decisions", {}), doc["result"]
        last = max(steps(reports))
        # One decision at every step the scheduler judges this trial at, up to where its reports end.
        assert steps(decisions) == [s for s in range(1, last + 1) if scheduler.decides_at(tid, s)]
        for step, decision in decisions.items():
            assert decision["scheduler"] == name
            # Each decision is the rule on the losses stored at that step when it was taken.
            assert replayable(scheduler, tid, int(step), decision, final[int(step)]), (tid, step, decision)
            # The first decision stays, whoever asks later.
            assert decision == store.decide(tid, "anyone", int(step), {"stop": not decision["stop"]})
        if result.get("stopped"):
            assert result["stopped_at"] == last and decisions[str(last)]["stop"]
            assert result["loss"] == pytest.approx(min(reports.values()), rel=1e-12)  # nx-27017 keeps 15 digits
        else:
            assert last == training.EPOCHS and not any(d["stop"] for d in decisions.values())
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


def check_promotions(docs: list[dict[str, Any]], seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each promotion continues a paused trial once, from the step it paused at, with the same point, and
    ends with the history of an uninterrupted run of that point (same seed)."""
    by_tid = {d["tid"]: d for d in docs}
    promoted = [d for d in docs if d.get("continues")]
    assert promoted, "asha with promotions should have continued some paused trial"
    assert len({d["continues"]["tid"] for d in promoted}) == len(promoted), "a trial continued twice"
    monkeypatch.setenv("HKS_SEED", str(seed))
    for doc in promoted:
        parent = by_tid[doc["continues"]["tid"]]
        step = doc["continues"]["step"]
        assert parent["result"]["paused"] and parent["result"]["stopped_at"] == step == doc["result"]["resumed_from"]
        assert doc["params"] == parent["params"] and doc["misc"]["vals"] == parent["misc"]["vals"]
        assert doc["continues"]["reports"] == (parent.get("continues") or {}).get("reports", {}) | parent["reports"]
        assert min(steps(doc["reports"])) == step + 1
        whole = training.numpy_training(doc["params"])["history"]["loss"]
        reports = doc["continues"]["reports"] | doc["reports"]  # the paused trial's, then the promotion's own
        assert [reports[str(s)] for s in range(1, max(steps(reports)) + 1)] == pytest.approx(
            whole[:max(steps(reports))], rel=1e-12)
        if "history" in doc["result"]:  # ran to its last epoch
            assert doc["result"]["history"]["loss"] == pytest.approx(whole, rel=1e-12)


def check_gp_learns_at_the_stopping_steps(docs: list[dict[str, Any]]) -> None:
    """The stored trials carry what gp's model reads: reports and stops give observations after the first epoch
    (and after 3, if some trial stopped there; fidelities log(s) / log(9)) beside those at the end."""
    sampler = GaussianProcessSampler(Domain(lambda p: 0.0, training.SPACE))
    sampler.history.update(sorted(docs, key=lambda d: d["tid"]))
    _, _, fidelities = sampler.history.observations(np.arange(len(sampler.history.losses)))
    assert fidelities is not None and {0.0, 1.0} <= set(fidelities) <= {0.0, math.log(3) / math.log(9), 1.0}


def test_embedded_asha_with_promotions_continues_paused_trials_from_their_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ("--max-evals", "30", "--results-dir", str(tmp_path / "results"), "--seed", "4", "--no-tensorboard",
            "--scheduler", "asha", "--promote", "yes")
    log = tmp_path / "search.log"
    assert optimizer(*args, log=log).wait(timeout=120) == 0, log.read_text()[-3000:]
    docs = finished_trials(tmp_path)
    assert len(docs) == 30 and all(d["result"]["status"] == "ok" for d in docs)
    check_promotions(docs, 4, monkeypatch)
    check_gp_learns_at_the_stopping_steps(docs)
    assert "promoted from rung" in log.read_text()
    mirrored = [json.loads(f.read_text()) for f in (tmp_path / "results").glob("*_trial.json")]
    assert {t["tid"]: t.get("continues") for t in mirrored} == {d["tid"]: d.get("continues") for d in docs}
    assert not list((tmp_path / "results" / "checkpoints").glob("*")), "paused trials' checkpoints outlived the search"


def test_workers_continue_the_trials_asha_promotes_and_no_checkpoint_is_left(
    mongo_url: str, workers: Workers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workers.start(mongo_url, "--exp-key", "promote", "--idle-exit", "20", "--lease-seconds", "10")
    workers.start(mongo_url, "--idle-exit", "20", "--lease-seconds", "10")  # serving any experiment (exp_key None)
    # random search: gp's proposals, fed by two workers in whatever order they finish, can improve so steadily
    # that no paused trial ever regains a place (24 trials, none promoted, seen once): promotions are tested here
    args = ("--mongo", mongo_url, "--exp-key", "promote", "--max-evals", "24", "--scheduler", "asha",
            "--promote", "yes", "--results-dir", str(tmp_path / "results"), "--no-tensorboard", "--seed", "5",
            "--lease-seconds", "10", "--algo", "random")
    log = tmp_path / "master.log"
    store = MongoStore(mongo_url, "promote")
    master = optimizer(*args, log=log, EPOCH_SECONDS="0.02")
    def promoted() -> bool:
        return any(d.get("continues") for d in store.trial_docs())

    wait_until(lambda: promoted() or master.poll() is not None, 90, "a first promotion")
    assert promoted(), f"the search ended without promoting a paused trial: {log.read_text()[-3000:]}"
    master.send_signal(signal.SIGKILL)  # a restarted master promotes from the same documents, none twice
    master.wait(timeout=10)
    assert optimizer(*args, log=log, EPOCH_SECONDS="0.02").wait(timeout=180) == 0, log.read_text()[-3000:]
    assert workers.wait_all(timeout=30) == [0, 0], workers.logs()
    docs = store.trial_docs()
    assert len(docs) == 24 and all(d["result"]["status"] == "ok" for d in docs)
    check_promotions(docs, 5, monkeypatch)
    check_gp_learns_at_the_stopping_steps(docs)
    assert "resuming from the checkpoint of step" in workers.logs()
    assert all(store.get_checkpoint(d["tid"], str(tmp_path / "none")) is None for d in docs)
