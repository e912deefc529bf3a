"""The refit step's own rules: when it is on by default, where it writes, and that a failure costs no results."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from caviar.family import FunctionFamily, ModelFamily
from neural_net import CNN
from neural_net.classic import mlp1
from optimizer.refit import refit_best, refit_by_default, refit_model_path


class TextFamily(ModelFamily):
    """A family whose "model" is a text file: refit writes the params, or fails when told to."""

    test_artifact = "model.txt"

    def refit(self, params: dict[str, Any], out_path: str) -> dict[str, Any]:
        if params.get("fail"):
            raise ValueError(f"cannot refit {params}")
        Path(out_path).write_text(repr(params))
        return {"test_score": 0.5}


@pytest.mark.parametrize("family", [CNN, mlp1])
def test_refit_is_on_by_default_only_with_two_folds_or_more(family: ModelFamily) -> None:
    assert refit_by_default(family, {"HKS_CV": "3"}) and refit_by_default(family, {"HKS_CV": "2"})
    assert not refit_by_default(family, {}) and not refit_by_default(family, {"HKS_CV": "0"})
    assert not refit_by_default(FunctionFamily(len), {"HKS_CV": "3"})  # no cv setting: never by default


def test_a_refit_replaces_the_previous_one_with_a_warning_and_a_failure_is_recorded(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    family = TextFamily()
    target = Path(refit_model_path(family, str(tmp_path)))
    assert target.name == "best_model_refit.txt"
    first = refit_best(family, {"tid": 3, "params": {"a": 1}}, str(tmp_path))
    assert first == {"tid": 3, "model": str(target), "test_score": 0.5} and target.read_text() == "{'a': 1}"

    with caplog.at_level(logging.WARNING, logger="optimizer.refit"):
        refit_best(family, {"tid": 4, "params": {"a": 2}}, str(tmp_path))
    assert f"replacing {target}" in caplog.text and target.read_text() == "{'a': 2}"

    failed = refit_best(family, {"tid": 5, "params": {"fail": True}}, str(tmp_path))
    assert failed == {"tid": 5, "error": "ValueError: cannot refit {'fail': True}"}
    assert target.read_text() == "{'a': 2}" and sorted(p.name for p in tmp_path.iterdir()) == [target.name]
