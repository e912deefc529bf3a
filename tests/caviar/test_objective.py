"""The objective contract: every way an objective can go wrong becomes a failed trial."""

import math

import numpy as np
import pytest

from caviar.objective import evaluate, normalize, to_plain


def test_float_and_dict_results_are_normalised():
    assert normalize(1.5) == {"loss": 1.5, "status": "ok"}
    assert normalize(np.float32(2.0))["loss"] == 2.0
    assert normalize({"loss": np.float64(0.25), "history": {"acc": np.array([0.1, 0.2])}}) == {
        "loss": 0.25, "status": "ok", "history": {"acc": [0.1, 0.2]}}


@pytest.mark.parametrize("loss", [math.nan, math.inf, -math.inf])
def test_non_finite_losses_fail(loss):
    result = evaluate(lambda p: {"loss": loss, "history": [1.0]}, {})
    assert result["status"] == "fail"
    assert "non-finite" in result["error"]
    assert result["history"] == [1.0]


def test_exceptions_fail_with_traceback():
    def boom(params):
        raise MemoryError("out of memory in layer 3")

    result = evaluate(boom, {"a": 1})
    assert result["status"] == "fail"
    assert result["error"] == "MemoryError: out of memory in layer 3"
    assert "boom" in result["traceback"]


def test_sys_exit_in_objective_fails_the_trial_only():
    def quits(params):
        raise SystemExit(3)

    assert evaluate(quits, {})["status"] == "fail"


def test_unstorable_results_fail():
    assert evaluate(lambda p: {"loss": 1.0, "model": object()}, {})["status"] == "fail"
    assert evaluate(lambda p: "high", {})["status"] == "fail"
    assert evaluate(lambda p: {"status": "ok"}, {})["status"] == "fail"


def test_user_fail_status_is_kept():
    result = evaluate(lambda p: {"status": "fail", "why": "diverged"}, {})
    assert result["status"] == "fail" and result["why"] == "diverged"
    assert result["duration"] >= 0


def test_to_plain_converts_nested_numpy():
    assert to_plain({1: (np.int64(3), np.bool_(True), None)}) == {"1": [3, True, None]}


def test_a_caviar_error_stops_instead_of_failing_the_trial():
    from caviar.errors import CaviarError

    def no_data(params):
        raise CaviarError("no data set")

    with pytest.raises(CaviarError):
        evaluate(no_data, {})


def test_state_and_status_values_are_hyperopts():
    import hyperopt

    from caviar import objective, store

    assert (store.NEW, store.RUNNING, store.DONE) == (
        hyperopt.JOB_STATE_NEW, hyperopt.JOB_STATE_RUNNING, hyperopt.JOB_STATE_DONE)
    assert (objective.STATUS_OK, objective.STATUS_FAIL) == (hyperopt.STATUS_OK, hyperopt.STATUS_FAIL)


def test_workers_start_without_hyperopt():
    import subprocess
    import sys

    code = "import sys, worker.service, worker.__main__; print('hyperopt' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
