"""scikit-learn's GridSearchCV and RandomizedSearchCV, run as Caviar trials: swap the import, keep the code.

    from optimizer.sklearn import GridSearchCV, RandomizedSearchCV

The classes take scikit-learn's arguments and give its attributes
(``best_params_``, ``best_score_``, ``best_estimator_``, ``best_index_``,
``cv_results_``, ``refit_time_``, ``n_splits_``, ``predict``, ``score``...),
and their results equal scikit-learn's on the same folds. What changes is how
the fits run: each candidate is one trial of a trial store (Caviar's
``LocalStore``) that evaluates all of the candidate's CV folds, so a
candidate's folds stay together and the trials (``trials_``) carry hyperopt's
layout. This also lets the parameters be hyperopt distributions, and lets
``RandomizedSearchCV(algo="tpe")`` propose each candidate from the results so
far (hyperopt's TPE, through ``optimizer.search.Search``).

- ``param_grid``: lists as in scikit-learn, or a hyperopt space's pieces with
  finitely many values (``hp.choice``, ``hp.quniform``..., see
  ``optimizer.grid``), nested choices included.
- ``param_distributions``: lists and ``scipy.stats`` distributions with
  ``algo="random"`` (scikit-learn's own sampler: the same candidates for the
  same ``random_state``), or lists and hyperopt distributions with any
  ``algo`` ("random", "tpe", "anneal"); with a hyperopt algorithm the values
  must be plain (numbers, strings, booleans, None) as the store keeps them.
- ``n_jobs``: None or 1 runs the trials in this process; more runs them in
  that many spawned processes, which receive the estimator by pickle (the
  data once per process). ``estimator`` may also be the import path of a
  factory, ``"package.module:make_estimator"``, called once per process.
- Scoring is single-metric (a name, a callable or None); ``pre_dispatch`` is
  accepted for compatibility and has no effect (trials are dispatched as
  processes become free).
"""

from __future__ import annotations

import copy
import functools
import logging
import math
import multiprocessing
import os
import pickle
import time
import warnings
from abc import abstractmethod
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import numpy as np
from hyperopt import hp, space_eval
from hyperopt.pyll import Apply
from sklearn.base import BaseEstimator, clone, is_classifier
from sklearn.exceptions import FitFailedWarning
from sklearn.metrics import check_scoring
from sklearn.model_selection import ParameterGrid, ParameterSampler, check_cv
from sklearn.model_selection._search import BaseSearchCV
from sklearn.utils import check_random_state, indexable
from sklearn.utils.metaestimators import _safe_split
from sklearn.utils.validation import _check_method_params

from caviar.cv import cross_validate, cv_results
from caviar.errors import CaviarError
from optimizer.grid import grid_doc, grid_points
from caviar.imports import import_attr
from caviar.store.local import LocalStore
from optimizer.search import ALGORITHMS, Search
from caviar.store import TrialStore

log = logging.getLogger(__name__)

OWNER = "sklearn-search"
# The label of the one "which candidate" value of candidates that are not hyperopt points.
CANDIDATE = "candidate"


def resolve_estimator(estimator: Any) -> BaseEstimator:
    """The estimator itself, or the one made by the factory at import path ``module:function``."""
    if isinstance(estimator, str):
        return import_attr(estimator, what="estimator factory")()
    return estimator


@dataclass
class CandidateRunner:
    """Evaluates one candidate on every fold: the body of a trial, sent once to each process."""

    estimator: Any
    X: Any
    y: Any
    splits: list[tuple[np.ndarray, np.ndarray]]
    scorer: Callable[..., float]
    fit_params: dict[str, Any]
    error_score: Any
    return_train_score: bool

    @functools.cached_property
    def base(self) -> BaseEstimator:
        """The estimator to clone for each fit: a factory path is called once per process."""
        return resolve_estimator(self.estimator)

    def __call__(self, params: dict[str, Any]) -> dict[str, Any]:
        return cross_validate(lambda train, test: self._fold(self.base, params, train, test), splits=self.splits)

    def _fold(self, base: BaseEstimator, params: dict[str, Any], train: np.ndarray, test: np.ndarray) -> dict[str, Any]:
        """Fit on ``train`` and score on ``test``; a failed fit scores ``error_score`` unless it is "raise"."""
        model = clone(base).set_params(**clone(params, safe=False))
        x_train, y_train = _safe_split(model, self.X, self.y, train)
        x_test, y_test = _safe_split(model, self.X, self.y, test, train)
        fit_params = _check_method_params(self.X, params=self.fit_params, indices=train)
        start = time.perf_counter()
        try:
            model.fit(x_train, **fit_params) if y_train is None else model.fit(x_train, y_train, **fit_params)
            fit_time = time.perf_counter() - start
            outcome = {"score": self.scorer(model, x_test, y_test), "fit_time": fit_time}
            outcome["score_time"] = time.perf_counter() - start - fit_time
            if self.return_train_score:
                outcome["train_score"] = self.scorer(model, x_train, y_train)
        except Exception as err:  # a candidate's failure is its score, as in scikit-learn
            if self.error_score == "raise":
                raise
            warnings.warn(f"fit of {params} failed, scored {self.error_score}: {type(err).__name__}: {err}",
                          FitFailedWarning, stacklevel=2)
            outcome = {"score": self.error_score, "fit_time": time.perf_counter() - start, "score_time": 0.0,
                       "error": f"{type(err).__name__}: {err}"}
            if self.return_train_score:
                outcome["train_score"] = self.error_score
        return outcome


_installed: CandidateRunner | None = None
# Thread pools sized from these when a library starts (as joblib's loky processes do),
# so that n processes on n cores do not each start a pool of every core.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")


def _install(pickled_runner: bytes, threads: int) -> None:
    """Process initializer: share the cores, then unpickle the runner (estimator and data, once per process).

    The runner is unpickled only here because unpickling imports the
    estimator's libraries, which size their thread pools at import.
    """
    global _installed
    for name in THREAD_VARIABLES:
        os.environ.setdefault(name, str(threads))
    _installed = pickle.loads(pickled_runner)


def _run_installed(params: dict[str, Any]) -> dict[str, Any]:
    assert _installed is not None, "the process pool was started without its runner"
    return _installed(params)


class InProcess:
    """Runs each trial when it is submitted: the sequential mode, errors raised where they happen."""

    def __init__(self, runner: CandidateRunner):
        self.runner = runner

    def submit(self, params: dict[str, Any]) -> Future[dict[str, Any]]:
        future: Future[dict[str, Any]] = Future()
        future.set_result(self.runner(params))
        return future

    def shutdown(self) -> None:
        """Nothing to stop."""


class Processes:
    """Runs trials in ``n`` spawned processes (spawn: safe with threads and Keras in the parent).

    Each process gets ``cores // n`` threads for its numeric libraries unless
    the caller set their variables (``OMP_NUM_THREADS``, ``TF_NUM_INTRAOP_THREADS``...).
    """

    def __init__(self, runner: CandidateRunner, n: int):
        threads = max(1, (os.cpu_count() or 1) // n)
        self.pool = ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_install, initargs=(pickle.dumps(runner), threads))

    def submit(self, params: dict[str, Any]) -> Future[dict[str, Any]]:
        return self.pool.submit(_run_installed, params)

    def shutdown(self) -> None:
        self.pool.shutdown(cancel_futures=True)


def run_trials(store: TrialStore, executor: InProcess | Processes, slots: int, search: Search | None = None) -> None:
    """Claim queued trials into ``slots`` parallel runs until none is left; ``search`` refills the queue.

    With a search, new candidates are proposed as slots free up, so TPE sees
    every finished trial before proposing the next one.
    """
    running: dict[Future[dict[str, Any]], int] = {}
    while True:
        if search is not None:
            search.top_up(slots - len(running))
        while len(running) < slots and (doc := store.claim(OWNER)) is not None:
            log.info("trial %d: %s", doc["tid"], doc["params"])
            running[executor.submit(doc["params"])] = doc["tid"]
        if not running:
            return
        finished, _ = wait(running, return_when=FIRST_COMPLETED)
        for future in finished:
            store.finish(running.pop(future), OWNER, future.result())


def enqueue_candidates(store: TrialStore, candidates: Iterable[tuple[dict[str, list[Any]], dict[str, Any]]]) -> int:
    """Queue fixed candidates, given as (hyperopt ``vals``, params), as trials in hyperopt's layout."""
    docs = [grid_doc(store.new_tids(1)[0], vals, params) for vals, params in candidates]
    store.enqueue(docs)
    return len(docs)


def _has_hyperopt(params: Mapping[str, Any] | list[Mapping[str, Any]]) -> bool:
    grids = params if isinstance(params, list) else [params]
    return any(isinstance(v, Apply) for grid in grids for v in grid.values())


def hyperopt_space(params: Mapping[str, Any] | list[Mapping[str, Any]], what: str) -> Any:
    """A hyperopt space from scikit-learn style parameters: lists become ``hp.choice`` over their values.

    A list of dicts becomes a choice between them (labels prefixed with the
    dict's index, so one name may appear in several).
    """
    def one(grid: Mapping[str, Any], prefix: str) -> dict[str, Any]:
        space = {}
        for name, value in grid.items():
            if isinstance(value, Apply):
                space[name] = value
            elif hasattr(value, "rvs"):
                raise CaviarError(f"{what} {name!r} is a scipy.stats distribution ({value!r}), which a hyperopt "
                                  "algorithm cannot read: use a hyperopt distribution, or algo='random'")
            elif isinstance(value, (list, tuple, np.ndarray)):
                space[name] = hp.choice(prefix + name, list(value))
            else:
                raise CaviarError(f"{what} {name!r} must be a list or a distribution, got {value!r}")
        return space

    if isinstance(params, list):
        return hp.choice(what, [one(grid, f"{i}:") for i, grid in enumerate(params)])
    return one(params, "")


class _CaviarSearchCV(BaseSearchCV):
    """scikit-learn's search with trials: subclasses only say which candidates to queue."""

    @abstractmethod
    def _propose(self, store: TrialStore) -> Search | None:
        """Queue the fixed candidates into ``store``, or return the search that proposes them."""

    def __sklearn_tags__(self) -> Any:
        """scikit-learn's tags of a search, read from the estimator a factory path makes."""
        search = copy.copy(self)
        search.estimator = resolve_estimator(self.estimator)
        return super(_CaviarSearchCV, search).__sklearn_tags__()

    def fit(self, X: Any, y: Any = None, **params: Any) -> _CaviarSearchCV:
        """Run one trial per candidate (all CV folds in it), then refit the best on all of ``X``."""
        estimator = resolve_estimator(self.estimator)
        if not callable(self.scoring) and isinstance(self.scoring, (list, tuple, dict, set)):
            raise ValueError(f"multi-metric scoring {self.scoring!r} is not supported: give one metric")
        scorer = check_scoring(estimator, self.scoring)
        X, y = indexable(X, y)
        params = _check_method_params(X, params=params)
        groups = params.pop("groups", None)
        cv = check_cv(self.cv, y, classifier=is_classifier(estimator))
        splits = list(cv.split(X, y, groups))
        self.n_splits_ = len(splits)
        runner = CandidateRunner(self.estimator, X, y, splits, scorer, params, self.error_score,
                                 self.return_train_score)
        store = LocalStore(exp_key=type(self).__name__)
        search = self._propose(store)
        slots = _processes(self.n_jobs)
        executor = InProcess(runner) if slots == 1 else Processes(runner, slots)
        try:
            run_trials(store, executor, slots, search)
        finally:
            executor.shutdown()
        self.trials_ = store.trial_docs()
        self.cv_results_ = self._cv_results(self.trials_)
        self._select_best(self.cv_results_)
        self.scorer_, self.multimetric_ = scorer, False
        if self.refit:
            self.best_estimator_ = clone(estimator).set_params(**clone(self.best_params_, safe=False))
            start = time.perf_counter()
            self.best_estimator_.fit(X, **params) if y is None else self.best_estimator_.fit(X, y, **params)
            self.refit_time_ = time.perf_counter() - start
            if hasattr(self.best_estimator_, "feature_names_in_"):
                self.feature_names_in_ = self.best_estimator_.feature_names_in_
        return self

    def _select_best(self, results: dict[str, Any]) -> None:
        if np.all(np.isnan(results["mean_test_score"])):
            errors = {s.get("error") for d in self.trials_ for s in d["result"].get("splits", [])}
            raise ValueError(f"All the {len(self.trials_) * self.n_splits_} fits failed: {sorted(map(str, errors))}")
        if callable(self.refit):
            self.best_index_ = int(self.refit(results))
        else:
            self.best_index_ = int(np.argmin(results["rank_test_score"]))
            self.best_score_ = float(results["mean_test_score"][self.best_index_])
        self.best_params_ = results["params"][self.best_index_]

    def _cv_results(self, docs: list[dict[str, Any]]) -> dict[str, Any]:
        """``caviar.cv.cv_results`` in scikit-learn's array types, with its score times and train scores."""
        table = cv_results(docs)
        results: dict[str, Any] = {}
        for name in ("mean_fit_time", "std_fit_time"):
            results[name] = np.array(table[name])
        splits = [d["result"].get("splits") or [{}] * self.n_splits_ for d in docs]
        score_times = np.array([[s.get("score_time", math.nan) for s in row] for row in splits])
        results["mean_score_time"], results["std_score_time"] = score_times.mean(axis=1), score_times.std(axis=1)
        candidates = table["params"]
        for name in dict.fromkeys(k for p in candidates for k in p):
            column = np.ma.MaskedArray(np.empty(len(candidates), dtype=object), mask=True)
            for i, p in enumerate(candidates):
                if name in p:
                    column[i] = p[name]
            results[f"param_{name}"] = column
        results["params"] = candidates
        for name, values in table.items():
            if name.startswith("split") or name in ("mean_test_score", "std_test_score"):
                results[name] = np.array(values, dtype=float)
        results["rank_test_score"] = np.array(table["rank_test_score"], dtype=np.int32)
        if self.return_train_score:
            train = np.array([[s.get("train_score", math.nan) for s in row] for row in splits], dtype=float)
            for i in range(self.n_splits_):
                results[f"split{i}_train_score"] = train[:, i]
            results["mean_train_score"], results["std_train_score"] = train.mean(axis=1), train.std(axis=1)
        return results


def _processes(n_jobs: int | None) -> int:
    if n_jobs is None or n_jobs == 1:
        return 1
    if n_jobs < 0:
        return max(1, (os.cpu_count() or 1) + 1 + n_jobs)
    if n_jobs == 0:
        raise ValueError("n_jobs == 0 has no meaning: give None, a positive count or -1 for all cores")
    return n_jobs


class GridSearchCV(_CaviarSearchCV):
    """scikit-learn's ``GridSearchCV``: every candidate of ``param_grid``, one Caviar trial each.

    Lists-only grids give scikit-learn's candidates in its order; grids with
    hyperopt pieces give ``optimizer.grid``'s points.
    """

    def __init__(self, estimator: Any, param_grid: Any, *, scoring: Any = None, n_jobs: int | None = None,
                 refit: Any = True, cv: Any = None, verbose: int = 0, pre_dispatch: Any = "2*n_jobs",
                 error_score: Any = np.nan, return_train_score: bool = False):
        super().__init__(estimator=estimator, scoring=scoring, n_jobs=n_jobs, refit=refit, cv=cv, verbose=verbose,
                         pre_dispatch=pre_dispatch, error_score=error_score, return_train_score=return_train_score)
        self.param_grid = param_grid

    def _propose(self, store: TrialStore) -> None:
        if _has_hyperopt(self.param_grid):
            space = hyperopt_space(self.param_grid, "param_grid")
            points = ((vals, space_eval(space, {k: v[0] for k, v in vals.items() if v})) for vals in grid_points(space))
        else:
            points = (({CANDIDATE: [i]}, p) for i, p in enumerate(ParameterGrid(self.param_grid)))
        log.info("queued %d grid candidates", enqueue_candidates(store, points))


class RandomizedSearchCV(_CaviarSearchCV):
    """scikit-learn's ``RandomizedSearchCV``, plus ``algo``: hyperopt's "random", "tpe" or "anneal".

    With ``algo="random"`` and no hyperopt distribution, candidates are
    scikit-learn's own ``ParameterSampler`` draws; otherwise
    ``optimizer.search.Search`` proposes them (``n_iter`` at most: a small
    discrete space may be exhausted earlier).
    """

    def __init__(self, estimator: Any, param_distributions: Any, *, n_iter: int = 10, scoring: Any = None,
                 n_jobs: int | None = None, refit: Any = True, cv: Any = None, verbose: int = 0,
                 pre_dispatch: Any = "2*n_jobs", random_state: Any = None, error_score: Any = np.nan,
                 return_train_score: bool = False, algo: str = "random"):
        super().__init__(estimator=estimator, scoring=scoring, n_jobs=n_jobs, refit=refit, cv=cv, verbose=verbose,
                         pre_dispatch=pre_dispatch, error_score=error_score, return_train_score=return_train_score)
        self.param_distributions = param_distributions
        self.n_iter = n_iter
        self.random_state = random_state
        self.algo = algo

    def _propose(self, store: TrialStore) -> Search | None:
        if self.algo not in ALGORITHMS:
            raise ValueError(f"unknown algo {self.algo!r}: choose one of {', '.join(ALGORITHMS)}")
        if self.algo == "random" and not _has_hyperopt(self.param_distributions):
            sampler = ParameterSampler(self.param_distributions, self.n_iter, random_state=self.random_state)
            log.info("queued %d sampled candidates",
                     enqueue_candidates(store, (({CANDIDATE: [i]}, p) for i, p in enumerate(sampler))))
            return None
        space = hyperopt_space(self.param_distributions, "param_distributions")
        seed = int(check_random_state(self.random_state).randint(2**31 - 1))
        return Search(store, space, self.algo, max_evals=self.n_iter, seed=seed)
