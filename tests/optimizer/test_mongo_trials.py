"""MongoTrials as hyperopt users use it: hyperopt.fmin(..., trials=MongoTrials(...)) with worker processes."""

from __future__ import annotations

import pickle
import re
import signal
from pathlib import Path

import pytest
from hyperopt import STATUS_OK, fmin, space_eval, tpe
from hyperopt.base import JOB_STATE_DONE, JOB_STATE_NEW

from caviar.errors import CaviarError
from optimizer.trials import MongoTrials
from tests.conftest import Workers
from tests.helpers import objectives
from tests.helpers.objectives import SPACE, with_artifact
from tests.helpers.trials import trial_doc
from tests.helpers.waiting import wait_until


def test_fmin_runs_on_workers_like_hyperopt(mongo_url: str, workers: Workers, tmp_path: Path) -> None:
    procs = [workers.start(mongo_url, "--exp-key", "fmin", "--lease-seconds", "10") for _ in range(2)]
    trials = MongoTrials(mongo_url, exp_key="fmin")
    wait_until(lambda: len(trials.store.live_workers(60)) == 2, 30, "both workers to connect")  # SIGTERM-ready
    best = fmin(with_artifact, SPACE, algo=tpe.suggest, max_evals=12, trials=trials, show_progressbar=False)

    assert len(trials) == 12 and trials.statuses() == [STATUS_OK] * 12
    assert trials.count_by_state_unsynced(JOB_STATE_DONE) == 12
    assert trials.best_trial["result"]["loss"] == min(trials.losses())
    assert best == trials.argmin and "x" in best and "model" in best
    for doc in trials.trials:  # what each worker received is what hyperopt.fmin would have passed
        point = {label: v[0] for label, v in doc["misc"]["vals"].items() if v}
        assert doc["params"] == space_eval(SPACE, point)
    assert {int(doc["owner"].split(":")[1]) for doc in trials.trials} <= {p.pid for p in procs}
    assert trials.store.get_experiment()["objective"] == "tests.helpers.objectives:with_artifact"
    assert "FMinIter_Domain" in trials.attachments  # hyperopt's pickled Domain stays in this process

    dest = tmp_path / "best_model.txt"
    assert trials.store.fetch_best_artifact("model", str(dest)) is not None
    assert float(dest.read_text()) == trials.best_trial["result"]["loss"]

    # Resuming: a larger max_evals continues the same experiment (hyperopt semantics).
    point = fmin(with_artifact, SPACE, algo=tpe.suggest, max_evals=15, trials=trials,
                 show_progressbar=False, return_argmin=False)
    assert len(trials) == 15 and point == space_eval(SPACE, trials.argmin)
    assert len(pickle.loads(pickle.dumps(trials))) == 15  # trials_save_file pickles a reference

    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    assert workers.wait_all(timeout=20) == [0, 0], workers.logs()

    trials.delete_all()
    assert len(trials) == 0 and trials.count_by_state_unsynced([JOB_STATE_NEW, JOB_STATE_DONE]) == 0


def test_a_lambda_objective_is_refused(mongo_url: str) -> None:
    trials = MongoTrials(mongo_url, exp_key="lambda")
    with pytest.raises(CaviarError, match="lambda"):
        fmin(lambda params: 0.0, SPACE, algo=tpe.suggest, max_evals=2, trials=trials, show_progressbar=False)
    assert trials.count_by_state_unsynced(JOB_STATE_NEW) == 0 and trials.store.get_experiment() is None


def test_trials_inserted_outside_fmin_are_records_that_no_worker_claims(mongo_url: str) -> None:
    trials = MongoTrials(mongo_url, exp_key="nospace")
    [tid] = trials.new_trial_ids(1)
    docs = trials.new_trial_docs([tid], [None], [{"status": "new"}], [trial_doc(tid, {"x": 1.0})["misc"]])
    trials.insert_trial_docs(docs)
    trials.refresh()
    assert [t["tid"] for t in trials.trials] == [tid] and trials.store.claim("w") is None


def test_the_helpers_space_has_a_conditional_branch() -> None:
    linear = space_eval(SPACE, {"x": 1.0, "model": 0})
    poly = space_eval(SPACE, {"x": 1.0, "model": 1, "degree": 3.0, "scale": 1.0})
    assert linear == {"x": 1.0, "model": {"kind": "linear"}}
    assert objectives.quadratic(linear) == 0.0 and objectives.quadratic(poly) == pytest.approx(0.3)


def database_for_url(url: str) -> str:
    return url.split("?", 1)[0].rsplit("/", 1)[1]


def test_hyperopt_users_code_runs_unchanged(mongo_server: str, mongo_url: str, workers: Workers) -> None:
    """hyperopt's URL form, no exp_key, result attachments read back from another handle."""
    workers.start(mongo_url, "--idle-exit", "3")  # no --exp-key: serves the keyless experiment too
    netloc, query = re.fullmatch(r"mongodb://([^/?]+)/?[^?]*(\?.*)?", mongo_server).groups()  # type: ignore[union-attr]
    url = f"mongo://{netloc}/{database_for_url(mongo_url)}/jobs{query or ''}"
    trials = MongoTrials(url)
    fmin(objectives.with_attachments, SPACE, algo=tpe.suggest, max_evals=4, trials=trials, show_progressbar=False)
    assert workers.wait_all(timeout=60) == [0], workers.logs()
    other = MongoTrials(url, exp_key=None)
    assert len(other) == 4 and all(t["exp_key"] is None for t in other.trials)
    for trial in other.trials:
        assert other.trial_attachments(trial)["blob"] == repr(trial["result"]["loss"]).encode()
        assert "attachments" not in trial["result"]
    assert sorted(other.attachments) == sorted(f"ATTACH::{t['tid']}::blob" for t in other.trials)
