"""The end of a search for its chosen point: refit it on all the training data, and the cv_results table.

``--refit`` (default: on when the family's ``cv_setting`` is above 1) calls
``family.refit`` on the best trial's params: the point trained once more on
train + validation, saved as ``<results-dir>/best_model_refit<ext>`` (the
extension of the family's ``test_artifact``: ``best_model_refit.keras`` beside
``best_model.keras``, the best trial's own model that the store keeps and
``export`` reads) and scored on the test set; best.json records it under
``refit``. The results folder is Caviar's: a previous refit there is replaced,
with a warning naming it. The model is written in a temporary folder there and
moved into place, so an interrupted refit never leaves half a file.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from caviar.cv import cv_table, write_cv_results
from caviar.family import ModelFamily

log = logging.getLogger(__name__)

CV_RESULTS = "cv_results.csv"


def refit_by_default(family: ModelFamily, environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``--refit`` is on when not given: the family's number of CV folds (read now) is above 1."""
    if family.cv_setting is None:
        return False
    setting = next((s for s in family.settings if s.env == family.cv_setting), None)
    raw = (os.environ if environ is None else environ).get(family.cv_setting, "")
    folds = setting.read(environ) if setting is not None else int(raw or 0)
    return folds > 1


def refit_model_path(family: ModelFamily, results_path: str) -> str:
    """Where the refit model of a search in ``results_path`` is kept."""
    extension = os.path.splitext(family.test_artifact or "")[1]
    return os.path.join(results_path, f"best_model_refit{extension}")


def refit_best(family: ModelFamily, best: dict[str, Any], results_path: str) -> dict[str, Any]:
    """Refit the best trial's point into ``refit_model_path``; what best.json records (an error, if it failed)."""
    target = refit_model_path(family, results_path)
    log.info("refitting the best trial (%s) on all the training data: %s", best["tid"], best["params"])
    staging = tempfile.mkdtemp(prefix=".refit-", dir=results_path)
    try:
        staged = os.path.join(staging, os.path.basename(target))
        metrics = family.refit(best["params"], staged)
        if os.path.exists(target):
            log.warning("replacing %s with the refit of trial %s", target, best["tid"])
        os.replace(staged, target)
    except Exception as err:  # noqa: BLE001 - a failed refit is reported, the search's results stand
        log.warning("the refit of trial %s failed: %s: %s", best["tid"], type(err).__name__, err)
        return {"tid": best["tid"], "error": f"{type(err).__name__}: {err}"}
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("refit model: %s; test set: %s", target, metrics)
    return {"tid": best["tid"], "model": target, **metrics}


def write_cv_table(docs: list[dict[str, Any]], results_path: str) -> Path | None:
    """``results_path/cv_results.csv`` when the trials were cross-validated (one row per candidate)."""
    table = cv_table(docs)
    if table is None:
        return None
    path = write_cv_results(table, os.path.join(results_path, CV_RESULTS))
    log.info("cross-validation table of %d candidates: %s", len(table["params"]), path)
    return path
