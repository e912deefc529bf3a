"""The master's early-stopping flags: defaults from the family, recorded as one JSON variable."""

from __future__ import annotations

import json
import os

import pytest

from caviar.errors import CaviarError
from caviar.family import FunctionFamily
from caviar.schedulers import CONFIG_ENV, export, from_env
from neural_net.family import CnnFamily
from optimizer.cli import build_parser
from tests.helpers import objectives


@pytest.fixture(autouse=True)
def restored_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """export() writes os.environ, as the master's does: undo it after each test."""
    monkeypatch.delenv(CONFIG_ENV, raising=False)


def test_the_cnn_defaults_to_asha_over_its_epochs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HKS_EPOCHS", "12")
    family = CnnFamily()
    args = build_parser(family).parse_args([])
    assert (args.scheduler, args.min_epochs, args.reduction_factor) == ("asha", 1, 3)
    recorded = export(args, family)
    assert json.loads(recorded[CONFIG_ENV]) == {"name": "asha", "min_epochs": 1, "reduction_factor": 3, "max_epochs": 12}
    assert os.environ[CONFIG_ENV] == recorded[CONFIG_ENV] and from_env().name == "asha"


def test_a_plain_objective_stops_nothing_unless_asked() -> None:
    family = FunctionFamily(objectives.quadratic)
    assert build_parser(family).parse_args([]).scheduler == "none"
    args = build_parser(family).parse_args(["--scheduler", "median", "--min-epochs", "2"])
    assert json.loads(export(args, family)[CONFIG_ENV])["name"] == "median"



def test_a_function_may_name_its_default_scheduler() -> None:
    def curve(params: dict) -> float:
        return 0.0

    curve.scheduler, curve.max_steps = "hyperband", 27  # type: ignore[attr-defined]
    family = FunctionFamily(curve)
    args = build_parser(family).parse_args([])
    assert json.loads(export(args, family)[CONFIG_ENV])["max_epochs"] == 27 and args.scheduler == "hyperband"


def test_bad_choices_are_refused_with_their_value(capsys: pytest.CaptureFixture) -> None:
    family = FunctionFamily(objectives.quadratic)
    with pytest.raises(SystemExit):
        build_parser(family).parse_args(["--scheduler", "fifo"])
    assert "'fifo'" in capsys.readouterr().err
    with pytest.raises(CaviarError, match="reduction_factor must be an integer of at least 2, got 1"):
        export(build_parser(family).parse_args(["--reduction-factor", "1"]), family)
    with pytest.raises(CaviarError, match="hyperband needs max_epochs"):
        export(build_parser(family).parse_args(["--scheduler", "hyperband"]), family)


def test_promote_is_asked_of_asha_alone(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    family = FunctionFamily(objectives.quadratic)
    args = build_parser(family).parse_args(["--scheduler", "asha", "--promote", "yes"])
    assert json.loads(export(args, family)[CONFIG_ENV]) == {"name": "asha", "min_epochs": 1, "reduction_factor": 3,
                                                            "max_epochs": None, "promote": True}
    assert from_env().promotes
    assert build_parser(family).parse_args(["--scheduler", "none", "--promote", "yes"]).promote == "yes"
    unused = export(build_parser(family).parse_args(["--promote", "yes"]), family)  # the function's scheduler: none
    assert json.loads(unused[CONFIG_ENV])["name"] == "none"
    with pytest.raises(CaviarError, match="--promote yes needs --scheduler asha, not 'median'"):
        export(build_parser(family).parse_args(["--scheduler", "median", "--promote", "yes"]), family)
    monkeypatch.setenv("HKS_PROMOTE", "maybe")
    with pytest.raises(SystemExit):
        build_parser(family)
    assert "HKS_PROMOTE='maybe' is not one of yes, no" in capsys.readouterr().err
