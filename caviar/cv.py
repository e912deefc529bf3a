"""K-fold cross-validation inside one trial, and scikit-learn's ``cv_results_`` table from trials.

One trial is one candidate point: its objective calls ``cross_validate``,
which trains and scores the point on each of K stratified folds and returns
one hyperopt result whose ``loss`` the search minimises (minus the mean score,
or the mean loss for a loss metric) while keeping every fold's numbers::

    def objective(params):
        def fold(train, test):
            model = build(params).fit(x[train], y[train])
            return {"score": model.score(x[test], y[test]), "history": model.history}
        return cross_validate(fold, y, k=5, seed=0)

``cv_results`` turns finished trial documents into the table scikit-learn's
searches call ``cv_results_`` (one row per candidate, same column names and
ranking), ``cv_table`` makes it plain (None for NaN) for a search whose trials
were cross-validated, and ``write_cv_results`` writes it as CSV (what the
master leaves in ``results/cv_results.csv`` and ``best --json`` shows).
"""

from __future__ import annotations

import csv
import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import rankdata
from sklearn.model_selection import StratifiedKFold

from caviar import reporting
from caviar.errors import CaviarError
from caviar.objective import STATUS_FAIL, STATUS_OK, flatten_params
from caviar.store import DONE

log = logging.getLogger(__name__)

# What a fold function returns: a score, or a dict with "score" and anything else
# plain ("history", "score_time", "fit_time" when it times the fit alone).
FoldOutcome = float | dict[str, Any]
FoldFn = Callable[[np.ndarray, np.ndarray], FoldOutcome]
Splits = Sequence[tuple[np.ndarray, np.ndarray]]


def stratified_folds(labels: Sequence[Any] | np.ndarray, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (train, test) index arrays of K stratified folds, shuffled by ``seed`` (scikit-learn's split)."""
    if k < 2:
        raise CaviarError(f"cross-validation needs at least 2 folds, got {k}")
    y = np.asarray(labels)
    try:
        return list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))
    except ValueError as err:  # fewer members in a class than folds, or fewer samples than folds
        raise CaviarError(f"cannot split {len(y)} labels into {k} stratified folds: {err}") from None


def cross_validate(fold_fn: FoldFn, labels: Sequence[Any] | np.ndarray | None = None, k: int = 5, seed: int = 0,
                   *, splits: Splits | None = None, greater_is_better: bool = True,
                   report: bool = False, maximize: bool = False) -> dict[str, Any]:
    """Run ``fold_fn(train_index, test_index)`` on every fold and return one trial's result.

    Folds are ``stratified_folds(labels, k, seed)`` unless ``splits`` are given
    (scikit-learn's searches pass their own ``cv``). The result holds ``loss``
    (minus the mean score, or the mean itself when ``greater_is_better`` is
    False), ``mean_test_score``/``std_test_score``, ``mean_fit_time``/
    ``std_fit_time`` and ``splits``: one dict per fold with its ``score``,
    ``fit_time`` and whatever else the fold returned (its ``history``...).
    A non-finite mean (a fold that scored NaN) makes it a failed result that
    keeps the folds, as a failed fit is a candidate's result, not an accident.

    ``report``: after each fold i but the last (whose mean is the result),
    report step i with the running mean (``caviar.reporting``) and stop when the scheduler says so. Reports are
    read in the objective's direction, which this function cannot see: pass
    ``maximize`` as the objective declares it (True: the running mean score is
    reported, False: the running loss). Every candidate's fold i is the same
    split, so the running means are comparable across candidates, and ASHA can
    drop a candidate after its first fold(s) instead of training all K. A
    stopped result is ``"stopped": True`` with ``stopped_at`` and the folds
    trained so far; ``cv_results`` ranks such a partial candidate last.
    """
    folds = list(splits) if splits is not None else stratified_folds(_required(labels), k, seed)
    outcomes = []
    for i, (train, test) in enumerate(folds):
        start = time.perf_counter()
        raw = fold_fn(np.asarray(train), np.asarray(test))
        elapsed = time.perf_counter() - start
        outcome = dict(raw) if isinstance(raw, dict) else {"score": raw}
        if "score" not in outcome:
            raise CaviarError(f"the fold function returned {sorted(outcome)} without a 'score'")
        outcome["score"] = float(outcome["score"])
        outcome.setdefault("fit_time", elapsed)
        log.debug("fold %d/%d: score %.4g in %.1f s", i + 1, len(folds), outcome["score"], elapsed)
        outcomes.append(outcome)
        if report and i + 1 < len(folds) and not _goes_on(i + 1, outcomes, greater_is_better, maximize):
            log.info("stopped by the scheduler after fold %d/%d", i + 1, len(folds))
            return _summary(outcomes, greater_is_better) | {"stopped": True, "stopped_at": i + 1}
    return _summary(outcomes, greater_is_better)


def _goes_on(step: int, outcomes: list[dict[str, Any]], greater_is_better: bool, maximize: bool) -> bool:
    """Report the running mean after fold ``step``; True when the scheduler lets the candidate go on."""
    mean = float(np.mean([o["score"] for o in outcomes]))
    loss = -mean if greater_is_better else mean
    return reporting.report(step, -loss if maximize else loss)


def _summary(outcomes: list[dict[str, Any]], greater_is_better: bool) -> dict[str, Any]:
    """One trial's result from its folds' outcomes (see ``cross_validate``)."""
    scores = np.array([o["score"] for o in outcomes])
    times = np.array([o["fit_time"] for o in outcomes])
    mean = float(np.mean(scores))
    result: dict[str, Any] = {
        "status": STATUS_OK,
        "loss": -mean if greater_is_better else mean,
        "mean_test_score": mean,
        "std_test_score": float(np.std(scores)),
        "mean_fit_time": float(np.mean(times)),
        "std_fit_time": float(np.std(times)),
        "greater_is_better": greater_is_better,
        "splits": outcomes,
    }
    if not math.isfinite(mean):
        result |= {"status": STATUS_FAIL, "loss": None, "error": f"a fold scored {mean}: the candidate's fit failed"}
    return result


def _required(labels: Any) -> Any:
    if labels is None:
        raise CaviarError("cross_validate needs the labels (to stratify) or explicit splits")
    return labels


def _row_scores(doc: dict[str, Any], n_splits: int) -> list[float]:
    """A trial's per-fold scores; NaN for a trial that failed before scoring its folds."""
    splits = doc["result"].get("splits") or []
    return [float(s["score"]) for s in splits] if len(splits) == n_splits else [math.nan] * n_splits


def cv_results(docs: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    """scikit-learn's ``cv_results_`` columns from finished trials, one row per trial in tid order.

    Columns: ``params`` (the trial's params), ``param_<name>`` (flattened, None
    where a candidate lacks the parameter), ``split<i>_test_score``,
    ``mean_test_score``, ``std_test_score``, ``rank_test_score`` (1 is best;
    ties share the smallest rank, failed candidates rank last, like
    scikit-learn), ``mean_fit_time`` and ``std_fit_time``.
    """
    done = sorted((d for d in docs if d["state"] == DONE), key=lambda d: d["tid"])
    if not done:
        raise CaviarError("no finished trials to tabulate")
    n_splits = max((len(d["result"].get("splits") or []) for d in done), default=0)
    flat = [flatten_params(d["params"]) for d in done]
    names = list(dict.fromkeys(name for f in flat for name in f))
    table: dict[str, list[Any]] = {"params": [d["params"] for d in done]}
    table |= {f"param_{name}": [f.get(name) for f in flat] for name in names}
    scores = np.array([_row_scores(d, n_splits) for d in done]).reshape(len(done), n_splits)
    for i in range(n_splits):
        table[f"split{i}_test_score"] = scores[:, i].tolist()
    means = scores.mean(axis=1) if n_splits else np.full(len(done), np.nan)
    table["mean_test_score"] = means.tolist()
    table["std_test_score"] = (scores.std(axis=1) if n_splits else means).tolist()
    table["rank_test_score"] = rank_scores(means, _greater_is_better(done)).tolist()
    for stat in ("mean_fit_time", "std_fit_time"):
        table[stat] = [float(d["result"].get(stat, math.nan)) for d in done]
    return table


def _greater_is_better(docs: Sequence[dict[str, Any]]) -> bool:
    flags = {d["result"]["greater_is_better"] for d in docs if "greater_is_better" in d["result"]}
    if len(flags) > 1:
        raise CaviarError("the trials mix score and loss metrics: they cannot be ranked together")
    return flags.pop() if flags else True


def rank_scores(means: np.ndarray, greater_is_better: bool = True) -> np.ndarray:
    """Ranks from 1 (best), ties sharing the smallest rank and NaN last, as scikit-learn ranks."""
    means = np.asarray(means, dtype=float)
    key = -means if greater_is_better else means
    key = np.where(np.isnan(key), np.inf, key)
    return rankdata(key, method="min").astype(np.int32)


def cv_table(docs: Sequence[dict[str, Any]]) -> dict[str, list[Any]] | None:
    """``cv_results`` of a search whose finished trials carry CV splits, NaN as None (JSON); else None."""
    if not any(d["state"] == DONE and d["result"].get("splits") for d in docs):
        return None
    table = cv_results(docs)
    return {name: [None if isinstance(v, float) and math.isnan(v) else v for v in values]
            for name, values in table.items()}


def write_cv_results(table: dict[str, list[Any]], path: str | Path) -> Path:
    """Write a ``cv_results`` table as CSV (the nested ``params`` column is left out: ``param_*`` hold it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = [c for c in table if c != "params"]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(zip(*(table[c] for c in columns), strict=True))
    return path
