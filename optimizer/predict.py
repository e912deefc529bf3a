"""``python -m optimizer predict``: a Kaggle-style CSV of a search's model's predictions on a file of inputs.

    python -m optimizer predict --input t10k-images-idx3-ubyte.gz --out predictions.csv

The model is ``--model`` if given, else the refit
``<results-dir>/best_model_refit.keras`` (``--refit``) if there is one, else
the best trial's kept model (``best_model.keras``, or the database's copy). The search's
model family (its recorded ``--objective``) reads the inputs and labels them:
for ``neural_net``'s families a ``.npy`` array of raw uint8 images of the data
set's shape or the data set's official test file (see ``neural_net.inference``).
The CSV has a header and one row per input: ``id,label``, the id being the
input's row from 0 and the label its predicted class id.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from caviar.errors import CaviarError
from caviar.family import ModelFamily, load_family
from caviar.store import TrialStore, best_doc
from optimizer.refit import refit_model_path

log = logging.getLogger(__name__)


def add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    """The predict tool's own flags."""
    parser.add_argument("--input", required=True, help="file of inputs: a .npy array of raw uint8 images of the "
                        "data set's shape, or the data set's official test file (idx .gz, CIFAR archive)")
    parser.add_argument("--out", required=True, help="CSV to write: id,label per input (label: the class id)")
    parser.add_argument("--model", help="saved model to use (default: <results-dir>/best_model_refit.keras if a "
                        "refit wrote it, else the best trial's model)")


def write_predictions(rows: list[tuple[Any, Any]], out: str | Path) -> Path:
    """Write ``(id, label)`` rows as a CSV with the header ``id,label``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "label"])
        writer.writerows(rows)
    return out


def predict_tool(store: TrialStore, experiment: dict[str, Any], args: argparse.Namespace) -> int:
    """Predict ``args.input`` with the search's model and write ``args.out``."""
    if not experiment.get("objective"):
        raise CaviarError("the experiment records no --objective: cannot tell how to read the inputs")
    family = load_family(experiment["objective"])
    refit = refit_model_path(family, args.results_dir)
    if args.model or os.path.isfile(refit):
        model = args.model or refit
        log.info("predicting with %s", model)
        rows = family.predict(model, args.input)
    else:
        rows = _with_best_trial_model(store, family, args.input)
    print(f"wrote {len(rows)} predictions to {write_predictions(rows, args.out)}")
    return 0


def _with_best_trial_model(store: TrialStore, family: ModelFamily, input_path: str) -> list[tuple[Any, Any]]:
    """Predictions of the best trial's kept model, fetched to a temporary file."""
    if family.test_artifact is None:
        raise CaviarError(f"{type(family).__name__} keeps no model to predict with")
    name = os.path.splitext(family.test_artifact)[0]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, family.test_artifact)
        kept = store.fetch_best_artifact(name, path)
        if kept is None:
            raise CaviarError("no refit model and no trial kept a model: run the search with --refit")
        best = best_doc(store.trial_docs())
        if best is None or best["tid"] != kept:
            log.warning("the kept model is trial %s's, not the best trial's (its worker died before storing it)", kept)
        log.info("predicting with the model of trial %s", kept)
        return family.predict(path, input_path)
