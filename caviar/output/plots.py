"""Plots of an experiment's trials: what was tried, what mattered, how the search went.

``make_plots`` reads hyperopt trial documents (layout in optimizer/store.py)
and writes the PNGs that answer the usual questions after a search:

- ``scatter_matrix.png``: where in the numeric space the good trials lie;
- ``score_vs_params_<page>.png``: the score against every hyperparameter,
  numeric ones as scatter plots, categorical and conditional ones as a box per
  option;
- ``best_so_far.png``: whether the search is still improving;
- ``learning_curves.png``: whether the best models were still learning;
- ``importance.png``: which hyperparameters drive the score (random forests on
  bootstrap resamples: the bar is the mean, the whisker the spread), drawn from
  ``MIN_IMPORTANCE_TRIALS`` ok trials on, and never for a hyperparameter the
  search marked inactive (an empty list in hyperopt's ``misc.vals``).

The score is the family's own metric (``describe()``: its name, and whether
higher is better), so a loss is plotted as a loss and "best" is its minimum.

Any search space works: hyperparameters are read from each trial's concrete
``params`` (nested dicts and lists flattened to dotted names such as
``block.units``), so a choice shows its options' values rather than hyperopt's
indices. A parameter missing from a trial (a conditional branch not taken) is
its own option "absent", and a None value (an option such as "no residual
units") is the option "None". Documents without ``params`` (written by plain
hyperopt) fall back to ``misc.vals``, where choices are indices.

Figures are built with matplotlib's object API and rendered by the Agg canvas:
no display is needed and, unlike pyplot, nothing keeps a reference to a figure,
so figures are freed as soon as they are saved (no ``plt.close`` to forget).
"""

from __future__ import annotations

import io
import logging
import math
import numbers
import os
import re
from dataclasses import dataclass
from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator, NullFormatter
from matplotlib.transforms import blended_transform_factory
from sklearn.ensemble import RandomForestRegressor

from caviar.family import score_of
from caviar.objective import flatten_params
from caviar.files import atomic_write
from caviar.store import DONE, is_ok

log = logging.getLogger(__name__)

ABSENT = "absent"
NONE = "None"
# A scatter matrix of more parameters than this is unreadable.
MAX_MATRIX_PARAMS = 8
# Score-vs-parameter subplots per page, in rows of COLUMNS.
PER_PAGE = 12
COLUMNS = 4
# A numeric parameter with at most this many distinct values is plotted as groups.
MAX_GROUPS = 6
# Fewer ok trials than this make a random forest's importances noise.
MIN_IMPORTANCE_TRIALS = 12
# Bootstrap forests whose spread is the importance's uncertainty.
IMPORTANCE_RESAMPLES = 20
TOP_CURVES = 5
DPI = 110
# Files this module writes; others of these names in out_dir are stale and removed.
OWN_FILES = re.compile(r"(scatter_matrix|best_so_far|learning_curves|importance|score_vs_params_\d+)\.png")
_MISSING = object()


@dataclass
class _Trial:
    tid: int
    score: float | None  # the family's metric (-loss when maximized); None for a failed trial
    params: dict[str, Any]  # flat name -> value; names the trial did not draw are missing
    history: dict[str, list[float]]
    stopped: bool = False  # stopped early by a scheduler: its score is that of its last reported epoch


@dataclass
class _Param:
    name: str
    labels: np.ndarray  # per trial: the option's label ("absent", "None", "3", "adam" ...)
    options: list[str]  # distinct labels in display order: numbers ascending, others, None, absent
    numbers: np.ndarray | None  # per trial: the value, NaN where None/absent; None if not numeric
    groups: bool  # plot one group per option (categorical, or a numeric with few values)


def parameter_importance(docs: list[dict[str, Any]]) -> dict[str, tuple[float, float]]:
    """Importance of each varying, active hyperparameter for the score, largest first: {name: (mean, spread)}.

    Empty when there are fewer than ``MIN_IMPORTANCE_TRIALS`` ok trials or every
    score is the same: then no ranking would mean anything.
    """
    trials = _trials(docs)
    return _importances(_params(trials), trials) or {}


def make_plots(docs: list[dict[str, Any]], out_dir: str, describe: Mapping[str, Any] | None = None) -> list[str]:
    """Draw every plot the finished trials support into ``out_dir``; return the PNG paths.

    Plots the trials cannot support yet (too few ok trials for importance, no
    training history for learning curves...) are skipped with a log message,
    and a file of a previous call that was not redrawn is removed, so the
    folder always shows the current state. ``describe`` is the family's
    metric and direction (default: a loss, minimized).
    """
    describe = describe or {}
    score_label = str(describe.get("metric") or "loss")
    maximize = bool(describe.get("maximize"))
    os.makedirs(out_dir, exist_ok=True)
    trials = _trials(docs, describe)
    written: list[str] = []
    if not trials:
        log.info("no plots: no finished trial yet")
    else:
        params = _params(trials)
        importance = _importances(params, trials)
        if importance:
            params.sort(key=lambda p: -importance.get(p.name, (0.0, 0.0))[0])
        drawn = [
            _best_so_far(trials, score_label, maximize, os.path.join(out_dir, "best_so_far.png")),
            _scatter_matrix(params, trials, importance, score_label, maximize,
                            os.path.join(out_dir, "scatter_matrix.png")),
            *_score_pages(params, trials, importance is not None, score_label, maximize, out_dir),
            _learning_curves(trials, score_label, maximize, os.path.join(out_dir, "learning_curves.png")),
            _importance_chart(importance, trials, score_label, os.path.join(out_dir, "importance.png")),
        ]
        written = [p for p in drawn if p]
    for name in os.listdir(out_dir):
        stale = os.path.join(out_dir, name)
        if OWN_FILES.fullmatch(name) and stale not in written:
            os.remove(stale)
            log.debug("removed the stale plot %s", stale)
    log.info("wrote %d plots to %s", len(written), out_dir)
    return written


def _best(scores: np.ndarray, maximize: bool) -> int:
    """Index of the best score: the highest of a maximized metric, the lowest of a loss."""
    return int(np.argmax(scores) if maximize else np.argmin(scores))


# -- reading the trials ---------------------------------------------------


def _trials(docs: list[dict[str, Any]], describe: Mapping[str, Any] | None = None) -> list[_Trial]:
    """The finished trials in tid order, with their score and flattened hyperparameters.

    A hyperparameter the search marked inactive in a trial (hyperopt's
    ``misc.vals`` holds an empty list for its label) is left out of that trial.
    """
    trials = []
    for doc in sorted((d for d in docs if d.get("state") == DONE), key=lambda d: d["tid"]):
        result = doc.get("result") or {}
        loss = result.get("loss")
        scored = is_ok(doc) and _is_number(loss) and math.isfinite(loss)
        vals = (doc.get("misc") or {}).get("vals") or {}
        if "params" in doc:
            inactive = {label for label, v in vals.items() if not v}
            params = {name: value for name, value in flatten_params(doc["params"]).items()
                      if name.rpartition(".")[2] not in inactive}
        else:
            params = flatten_params({label: v[0] for label, v in vals.items() if v})
        score = score_of(float(loss), describe or {}) if scored else None
        trials.append(_Trial(doc["tid"], score, params, result.get("history") or {}, bool(result.get("stopped"))))
    return trials


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _label(value: Any) -> str:
    if value is _MISSING:
        return ABSENT
    if value is None:
        return NONE
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _order(value: Any) -> tuple[int, float, str]:
    """Display order of options: numbers ascending, then other values, None, absent."""
    if value is _MISSING:
        return (3, 0.0, "")
    if value is None:
        return (2, 0.0, "")
    if _is_number(value):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def _params(trials: list[_Trial]) -> list[_Param]:
    """Every hyperparameter that varies across the trials, by name."""
    params = []
    for name in sorted({n for t in trials for n in t.params}):
        values = [t.params.get(name, _MISSING) for t in trials]
        order: dict[str, tuple[int, float, str]] = {}
        for value in values:
            label = _label(value)
            order[label] = min(order.get(label, _order(value)), _order(value))
        if len(order) < 2:
            log.debug("not plotting %s: it has one value in every trial", name)
            continue
        present = [v for v in values if v is not _MISSING and v is not None]
        numeric = bool(present) and all(_is_number(v) for v in present)
        numbers_ = np.array([float(v) if _is_number(v) else np.nan for v in values]) if numeric else None
        # A few values that repeat are options (hp.choice([2, 3])); a continuous draw never repeats.
        distinct = len(set(present))
        groups = not numeric or (distinct <= MAX_GROUPS and distinct < len(present))
        labels = np.array([_label(v) for v in values], dtype=object)
        params.append(_Param(name, labels, sorted(order, key=order.__getitem__), numbers_, groups))
    return params


def _importances(params: list[_Param], trials: list[_Trial]) -> dict[str, tuple[float, float]] | None:
    """Mean decrease in impurity of random forests fitted to bootstrap resamples of the ok trials' scores.

    Returns {name: (mean, standard deviation over the resamples)}, largest mean first.
    """
    ok = np.array([t.score is not None for t in trials])
    scores = np.array([t.score for t in trials if t.score is not None])
    if len(scores) < MIN_IMPORTANCE_TRIALS or not params:
        log.info("no parameter importance: %d ok trials, at least %d needed", len(scores), MIN_IMPORTANCE_TRIALS)
        return None
    if np.ptp(scores) == 0:
        log.info("no parameter importance: every ok trial has the same score")
        return None
    features = np.column_stack([_encode(p) for p in params])[ok]
    rng = np.random.default_rng(0)
    runs = []
    for seed in range(IMPORTANCE_RESAMPLES):
        sample = rng.integers(0, len(scores), len(scores))
        forest = RandomForestRegressor(n_estimators=50, random_state=seed).fit(features[sample], scores[sample])
        runs.append(forest.feature_importances_)
    mean, spread = np.mean(runs, axis=0), np.std(runs, axis=0)
    ranked = sorted(zip(params, mean, spread), key=lambda item: -item[1])
    return {p.name: (float(m), float(sd)) for p, m, sd in ranked}


def _encode(param: _Param) -> np.ndarray:
    """One feature column: numbers as they are (None/absent below the range), options as codes."""
    if param.numbers is None:
        codes = {label: i for i, label in enumerate(param.options)}
        return np.array([codes[label] for label in param.labels], dtype=float)
    x = param.numbers
    lo, hi = np.nanmin(x), np.nanmax(x)
    return np.where(np.isnan(x), lo - (hi - lo) - 1.0, x)


# -- drawing ----------------------------------------------------------------


def _save(fig: Figure, path: str) -> str:
    """Render to PNG and replace ``path`` atomically, so a viewer never sees half a file."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    atomic_write(path, buffer.getvalue())
    return path


def _short(text: str, limit: int) -> str:
    """Cut a long name in the middle, keeping its start and its most specific end."""
    if len(text) <= limit:
        return text
    head = (limit - 1) // 2
    return text[:head] + "…" + text[len(text) - (limit - 1 - head):]


def _log_scale(x: np.ndarray) -> bool:
    """Whether values were drawn log-uniformly over orders of magnitude (a learning rate, say).

    Spanning decades is not enough: a uniform dropout in [0, 0.35] has tiny
    values too, but its median sits mid-range, a log-uniform one's near the bottom.
    """
    x = x[~np.isnan(x)]
    if not len(x) or x.min() <= 0 or x.max() / x.min() < 20:
        return False
    return bool((np.median(x) - x.min()) / (x.max() - x.min()) < 0.15)


def _integral(x: np.ndarray) -> bool:
    """Whether every value is a whole number (kernel sizes, layer counts): then ticks should be too."""
    x = x[~np.isnan(x)]
    return bool(np.all(x == np.round(x)))


def _ok_index(trials: list[_Trial]) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the ok trials and their scores."""
    index = np.array([i for i, t in enumerate(trials) if t.score is not None], dtype=int)
    return index, np.array([trials[i].score for i in index], dtype=float)


def _best_so_far(trials: list[_Trial], score_label: str, maximize: bool, path: str) -> str:
    """Each trial's score and the running best, by trial id; failures marked at the bottom."""
    fig = Figure(figsize=(9, 5), layout="constrained")
    ax = fig.subplots()
    index, scores = _ok_index(trials)
    if len(index):
        tids = np.array([trials[i].tid for i in index])
        early = np.array([trials[i].stopped for i in index], dtype=bool)
        ax.scatter(tids[~early], scores[~early], s=20, color="tab:blue", alpha=0.6, edgecolors="none", label="trial")
        if early.any():
            ax.scatter(tids[early], scores[early], s=24, facecolors="none", edgecolors="tab:blue", alpha=0.8,
                       label=f"stopped early ({int(early.sum())})")
        best = (np.maximum if maximize else np.minimum).accumulate(scores)
        last = trials[-1].tid
        ax.step(np.append(tids, last), np.append(best, best[-1]), where="post", color="tab:orange", lw=2,
                label="best so far")
        top = _best(scores, maximize)
        ax.annotate(f"best {scores[top]:.4g} (trial {tids[top]})", (tids[top], scores[top]),
                    xytext=(0, 10), textcoords="offset points", ha="center", fontsize=9,
                    bbox={"boxstyle": "round", "fc": "white", "ec": "0.8", "alpha": 0.9})
        ax.margins(y=0.12)
    else:
        ax.set_yticks([])  # no score at all: a scale would only mislead
    failed = [t.tid for t in trials if t.score is None]
    if failed:
        bottom = blended_transform_factory(ax.transData, ax.transAxes)
        ax.plot(failed, [0.03] * len(failed), "x", color="tab:red", ms=7, mew=1.5, transform=bottom,
                label=f"failed ({len(failed)})")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial id (order of proposal)")
    ax.set_ylabel(score_label)
    stopped = sum(t.stopped for t in trials)
    ax.set_title(f"Progress of the search: {len(index)} ok ({stopped} stopped early), {len(failed)} failed trials")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    return _save(fig, path)


def _scatter_matrix(params: list[_Param], trials: list[_Trial], importance: dict[str, tuple[float, float]] | None,
                    score_label: str, maximize: bool, path: str) -> str | None:
    """Pairs of numeric hyperparameters, each trial a dot coloured by its score."""
    numeric = [p for p in params if p.numbers is not None]
    # Continuous parameters first (few-valued ones make stripes), then the most important or most varied.
    ranked = sorted(numeric, key=lambda p: (p.groups, -(importance or {}).get(p.name, (0.0, 0.0))[0],
                                            -len(np.unique(p.numbers[~np.isnan(p.numbers)]))))
    chosen = ranked[:MAX_MATRIX_PARAMS]
    index, scores = _ok_index(trials)
    if len(chosen) < 2 or not len(index):
        log.info("no scatter matrix: it needs 2 numeric hyperparameters that vary and an ok trial")
        return None
    order = np.argsort(scores if maximize else -scores)  # the best drawn last, on top
    index, scores = index[order], scores[order]
    failed = np.array([t.score is None for t in trials])
    k = len(chosen)
    # Fixed margins (inches) rather than constrained layout, which costs seconds on 64 axes.
    width, height = max(1.75 * k + 2.2, 7.0), 1.75 * k + 1.6
    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(left=0.85 / width, right=1 - 1.35 / width, bottom=0.9 / height, top=1 - 0.7 / height,
                        wspace=0.08, hspace=0.08)
    axes = fig.subplots(k, k, sharex="col", sharey="row", squeeze=False)
    norm = Normalize(scores.min(), scores.max())
    for j, p in enumerate(chosen):
        x = p.numbers
        log_x = _log_scale(x)
        for i, q in enumerate(chosen):
            ax = axes[i, j]
            if log_x:
                ax.set_xscale("log")
            else:
                ax.xaxis.set_major_locator(MaxNLocator(4, integer=_integral(x)))
            if i == j:
                # The histogram gets its own y axis so the row keeps the parameter's scale.
                values = x[~np.isnan(x)]
                bins = np.geomspace(values.min(), values.max(), 16) if log_x else 15
                twin = ax.twinx()
                twin.hist(values, bins=bins, color="0.65", edgecolor="white")
                twin.set_yticks([])
                continue
            y = q.numbers
            if np.isnan(x + y).all():
                ax.text(0.5, 0.5, "never set\ntogether", transform=ax.transAxes, ha="center", va="center",
                        fontsize=8, color="0.5")
            ax.scatter(x[failed], y[failed], marker="x", s=14, color="0.6", linewidths=0.8)
            dots = ax.scatter(x[index], y[index], c=scores, cmap="viridis", norm=norm, s=14, edgecolors="none")
    for i, q in enumerate(chosen):
        if _log_scale(q.numbers):
            axes[i, 0].set_yscale("log")
        else:
            axes[i, 0].yaxis.set_major_locator(MaxNLocator(4, integer=_integral(q.numbers)))
        axes[i, 0].set_ylabel(_short(q.name, 26), fontsize=8)
        axes[-1, i].set_xlabel(_short(q.name, 26), fontsize=8)
    for ax in axes.flat:
        ax.tick_params(labelsize=7)
        ax.tick_params(axis="x", labelrotation=45)
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_minor_formatter(NullFormatter())
    colorbar = fig.add_axes((1 - 1.0 / width, 0.3, 0.18 / width, 0.4))
    fig.colorbar(dots, cax=colorbar, label=score_label)
    shown = f"The {k}"
    if k < len(numeric):
        shown += f" most {'important' if importance else 'varied'} of {len(numeric)}"
    failures = f", grey ×: {int(failed.sum())} failed" if failed.any() else ""
    fig.suptitle(f"{shown} numeric hyperparameters, coloured by {score_label}\n{len(index)} ok trials{failures}",
                 y=1 - 0.1 / height)
    return _save(fig, path)


def _score_pages(params: list[_Param], trials: list[_Trial], by_importance: bool, score_label: str,
                 maximize: bool, out_dir: str) -> list[str]:
    """The score against each hyperparameter, ``PER_PAGE`` subplots a page."""
    index, scores = _ok_index(trials)
    if not len(index) or not params:
        log.info("no score-vs-parameter plots: no ok trial or no varying hyperparameter")
        return []
    best = _best(scores, maximize)
    n_failed = len(trials) - len(index)
    pages = [params[start:start + PER_PAGE] for start in range(0, len(params), PER_PAGE)]
    order = "ordered by importance" if by_importance else "by name"
    paths = []
    for number, page in enumerate(pages, 1):
        rows, cols = math.ceil(len(page) / COLUMNS), min(COLUMNS, len(page))
        fig = Figure(figsize=(3.8 * cols + 0.4, 3.2 * rows + 0.8), layout="constrained")
        axes = fig.subplots(rows, cols, sharey=True, squeeze=False)
        rng = np.random.default_rng(0)
        for ax, param in zip(axes.flat, page):
            draw = _draw_groups if param.groups else _draw_numeric
            x = draw(ax, param, index, scores, rng)
            ax.scatter(x[best], scores[best], marker="*", s=140, color="tab:red", edgecolors="white", zorder=5)
            ax.set_title(_short(param.name, 36), fontsize=10)
            ax.grid(alpha=0.3)
        # Room below the lowest score for the failures' crosses (the y axis is shared).
        low, high = scores.min(), scores.max()
        pad = (high - low) or abs(high) or 1.0
        axes[0, 0].set_ylim(low - pad * (0.16 if n_failed else 0.06), high + pad * 0.08)
        for ax in axes.flat[len(page):]:
            ax.set_visible(False)
        for ax in axes[:, 0]:
            ax.set_ylabel(score_label)
        of = f" (page {number} of {len(pages)})" if len(pages) > 1 else ""
        failures = f", red × at the bottom: {n_failed} failed" if n_failed else ""
        fig.suptitle(f"{score_label.capitalize()} against each hyperparameter, {order}{of}\n"
                     f"{len(index)} ok trials (n), red ★ the best{failures}")
        paths.append(_save(fig, os.path.join(out_dir, f"score_vs_params_{number}.png")))
    return paths


def _draw_numeric(ax: Any, param: _Param, index: np.ndarray, scores: np.ndarray,
                  rng: np.random.Generator) -> np.ndarray:
    """A scatter plot; trials without a value get a column of their own right of the axis."""
    x = param.numbers.copy()
    log_x = _log_scale(x)
    forward, back = (np.log10, lambda t: 10.0 ** t) if log_x else (lambda t: t, lambda t: t)
    lo, hi = forward(np.nanmin(x)), forward(np.nanmax(x))
    span = (hi - lo) or 1.0
    if log_x:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
    else:
        ax.xaxis.set_major_locator(MaxNLocator(5))
    side = [o for o in param.options if o in (NONE, ABSENT)]
    centres = [hi + span * (0.25 + 0.25 * k) for k in range(len(side))]
    for option, centre in zip(side, centres):
        mask = param.labels == option
        x[mask] = back(centre + rng.uniform(-0.06, 0.06, mask.sum()) * span)
    ax.scatter(x[index], scores, s=16, color="tab:blue", alpha=0.7, edgecolors="none")
    _mark_failures(ax, np.delete(x, index))
    if side:
        ax.axvline(back(hi + span * 0.1), color="0.6", ls=":", lw=1)
        ax.set_xlim(back(lo - span * 0.05), back(centres[-1] + span * 0.13))
        edge = (back(lo - span * 0.05), back(hi + span * 0.05))
        ticks = [t for t in ax.get_xticks() if edge[0] <= t <= edge[1]]
        ax.set_xticks(ticks + [back(c) for c in centres], labels=[f"{t:g}" for t in ticks] + side)
    ax.tick_params(axis="x", labelsize=8, labelrotation=30)
    return x[index]


def _draw_groups(ax: Any, param: _Param, index: np.ndarray, scores: np.ndarray,
                 rng: np.random.Generator) -> np.ndarray:
    """A box per option (absent included) with the ok trials as dots; an option only failures took stays empty."""
    options = param.options
    x = np.array([options.index(label) for label in param.labels], dtype=float)
    x += rng.uniform(-0.17, 0.17, len(x))
    groups = [scores[param.labels[index] == o] for o in options]
    drawn = [i for i, group in enumerate(groups) if len(group)]
    ax.boxplot([groups[i] for i in drawn], positions=drawn, widths=0.55, showfliers=False, manage_ticks=False,
               medianprops={"color": "tab:orange", "lw": 2}, boxprops={"color": "0.4"},
               whiskerprops={"color": "0.4"}, capprops={"color": "0.4"})
    ax.scatter(x[index], scores, s=16, color="tab:blue", alpha=0.7, edgecolors="none", zorder=3)
    _mark_failures(ax, np.delete(x, index))
    names = [_short(o, 14) for o in options]
    if len(options) > 4 or max(map(len, names)) > 8:
        ax.set_xticks(range(len(options)), labels=[f"{n} ({len(g)})" for n, g in zip(names, groups)],
                      rotation=45 if len(options) > 8 else 30, ha="right", rotation_mode="anchor", fontsize=8)
    else:
        ax.set_xticks(range(len(options)), labels=[f"{n}\nn={len(g)}" for n, g in zip(names, groups)], fontsize=8)
    ax.set_xlim(-0.6, len(options) - 0.4)
    return x[index]


def _mark_failures(ax: Any, x: np.ndarray) -> None:
    """Failed trials have no score: a red cross at the bottom, at their parameter's value."""
    if len(x):
        bottom = blended_transform_factory(ax.transData, ax.transAxes)
        ax.plot(x, np.full(len(x), 0.03), "x", color="tab:red", ms=5, mew=1.2, transform=bottom, zorder=4)


def _validation_key(history: dict[str, list[float]]) -> str | None:
    """The history entry to plot: the CNN's fine validation accuracy, else any validation accuracy."""
    keys = [k for k, v in history.items() if k.startswith("val_") and v]
    for wanted in ("val_fine_outputs_accuracy", "val_accuracy"):
        if wanted in keys:
            return wanted
    accuracy = [k for k in keys if "acc" in k]
    return (accuracy or keys or [None])[0]


def _learning_curves(trials: list[_Trial], score_label: str, maximize: bool, path: str) -> str | None:
    """Per-epoch validation (solid) and training (dashed) curves of the best trials."""
    ranked = sorted((t for t in trials if t.score is not None and t.history),
                    key=lambda t: -t.score if maximize else t.score)
    key = _validation_key(ranked[0].history) if ranked else None
    if key is None:
        log.info("no learning curves: no ok trial has a per-epoch validation history")
        return None
    top = [t for t in ranked if t.history.get(key)][:TOP_CURVES]
    train_key = key.removeprefix("val_")
    fig = Figure(figsize=(9, 5.5), layout="constrained")
    ax = fig.subplots()
    handles = []
    for colour, trial in zip(("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"), top):
        val = trial.history[key]
        (line,) = ax.plot(range(1, len(val) + 1), val, color=colour, marker="o", ms=3,
                          label=f"trial {trial.tid}: {score_label} {trial.score:.4g}")
        handles.append(line)
        train = trial.history.get(train_key)
        if train:
            ax.plot(range(1, len(train) + 1), train, color=colour, ls="--", alpha=0.8)
    handles += [Line2D([], [], color="0.3", label="validation"), Line2D([], [], color="0.3", ls="--", label="training")]
    ax.legend(handles=handles, loc="best", fontsize=9)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(train_key.replace("_", " "))
    ax.set_title(f"Learning curves of the {len(top)} best trials")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _importance_chart(importance: dict[str, tuple[float, float]] | None, trials: list[_Trial], score_label: str,
                      path: str) -> str | None:
    """A bar per hyperparameter, the most important on top, its whisker the spread over bootstrap resamples."""
    if not importance:
        return None
    names = list(importance)
    values = np.array([importance[n][0] for n in names])
    spread = np.array([importance[n][1] for n in names])
    fig = Figure(figsize=(8.5, 0.32 * len(names) + 1.6), layout="constrained")
    ax = fig.subplots()
    ax.barh(range(len(names)), values, xerr=spread, color="tab:blue", ecolor="0.3", capsize=3)
    for y, (value, sd) in enumerate(zip(values, spread)):
        ax.text(value + sd, y, f" {value:.3f} ± {sd:.3f}", va="center", fontsize=8)
    ax.set_yticks(range(len(names)), labels=[_short(n, 36) for n in names], fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, (values + spread).max() * 1.3)
    ax.set_xlabel(f"importance (random forests on {IMPORTANCE_RESAMPLES} bootstrap resamples: mean ± sd; "
                  "mean decrease in impurity)")
    n_ok = sum(t.score is not None for t in trials)
    ax.set_title(f"What drives {score_label}: {len(names)} hyperparameters, {n_ok} ok trials")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)
