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
``RandomizedSearchCV(algo="gp")`` propose each candidate from the results so
far (any ``--algo`` of the command line, through ``optimizer.search.Search``).

- ``param_grid``: lists as in scikit-learn, or a hyperopt space's pieces with
  finitely many values (``hp.choice``, ``hp.quniform``..., see
  ``optimizer.grid``), nested choices included.
- ``param_distributions``: lists and ``scipy.stats`` distributions with
  ``algo="random"`` (scikit-learn's own sampler: the same candidates for the
  same ``random_state``), or lists and hyperopt distributions with any
  ``algo`` ("random", "gp", "tpe-mv", "tpe", "anneal"); with a model-based algorithm the values
  must be plain (numbers, strings, booleans, None) as the store keeps them.
- ``n_jobs``: None or 1 runs the trials in this process; more runs them in
  that many spawned processes, which receive the estimator by pickle (the
  data once per process). ``estimator`` may also be the import path of a
  factory, ``"package.module:make_estimator"``, called once per process.
- Scoring is single-metric (a name, a callable or None); ``pre_dispatch`` is
  accepted for compatibility and has no effect (trials are dispatched as
  processes become free).

On Caviar's workers: given ``mongo="mongodb://host/db"`` and ``exp_key``, the
candidates are queued as trials of that experiment and ``python -m worker
--mongo URL --exp-key KEY`` processes run them (``n_jobs`` is then ignored)::

    search = GridSearchCV("mypkg.models:make_model", grid, cv=3, scoring="accuracy",
                          mongo="mongodb://db:27017/caviar", exp_key="digits", data="mypkg.data:load_xy")
    search.fit(*load_xy())

Nothing is pickled into the database: the estimator travels as the import
path of a factory (``estimator="module:function"``, required), the data as
the import path of a loader returning ``(X, y)`` (``data``, required; the
arrays given to ``fit`` must equal its output, so the refit here uses the
same data), and the experiment's ``env`` records both with the CV spec and
the scoring name, so that each worker recomputes the same folds (``cv``: an
int, None, or a ``KFold``/``StratifiedKFold`` whose ``random_state`` is an
int or None) with the same scorer (a name or None). ``remote_candidate`` is
the workers' objective. A fit with the same ``exp_key`` resumes: candidates
already stored are not queued again. Fit parameters and ``groups`` stay local
and are refused.
"""

from __future__ import annotations

import copy
import functools
import json
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
from typing import TYPE_CHECKING, Any

import numpy as np
from hyperopt import hp, space_eval
from hyperopt.pyll import Apply
from sklearn.base import BaseEstimator, clone, is_classifier
from sklearn.exceptions import FitFailedWarning
from sklearn.metrics import check_scoring
from sklearn.model_selection import (
    KFold,
    ParameterGrid,
    ParameterSampler,
    StratifiedKFold,
    check_cv,
)
from sklearn.model_selection._search import BaseSearchCV
from sklearn.utils import check_random_state, indexable
from sklearn.utils.metaestimators import _safe_split
from sklearn.utils.validation import _check_method_params

from caviar.cv import cross_validate, cv_results
from caviar.errors import CaviarError
from caviar.imports import import_attr
from caviar.store import DONE, NEW, RUNNING, TrialStore, vals_key
from caviar.store.local import LocalStore
from caviar.store.own_trials import OwnTrials
from optimizer.grid import grid_doc, grid_points
from optimizer.search import ALGORITHMS, Search, Searcher

if TYPE_CHECKING:  # pymongo only where the search runs on workers
    from caviar.store.mongo import MongoStore

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


def run_trials(store: TrialStore, executor: InProcess | Processes, slots: int, search: Searcher | None = None) -> None:
    """Claim queued trials into ``slots`` parallel runs until none is left; ``search`` refills the queue.

    With a search, new candidates are proposed as slots free up, so TPE sees
    every finished trial before proposing the next one.
    """
    running: dict[Future[dict[str, Any]], int] = {}
    trials = OwnTrials(store)
    while True:
        if search is not None:
            counts = store.count_by_state()
            search.top_up(slots - len(running), counts, trials.finished, trials.pending(counts))
        while len(running) < slots and (doc := trials.claim(OWNER)) is not None:
            log.info("trial %d: %s", doc["tid"], doc["params"])
            running[executor.submit(doc["params"])] = doc["tid"]
        if not running:
            return
        finished, _ = wait(running, return_when=FIRST_COMPLETED)
        for future in finished:
            trials.finish(running.pop(future), OWNER, future.result())


def enqueue_candidates(store: TrialStore, candidates: Iterable[tuple[dict[str, list[Any]], dict[str, Any]]]) -> int:
    """Queue fixed candidates, given as (hyperopt ``vals``, params), as trials in hyperopt's layout.

    Candidates the store already holds (a resumed experiment on workers) are skipped.
    """
    seen = {vals_key(d["misc"]) for d in store.trial_docs()}
    fresh = [(vals, params) for vals, params in candidates if vals_key({"vals": vals}) not in seen]
    docs = [grid_doc(tid, vals, params) for tid, (vals, params) in zip(store.new_tids(len(fresh)), fresh)]
    if docs:
        store.enqueue(docs)
    return len(docs)


# The environment variable of a remote search's experiment that tells workers what to fit (JSON).
SPEC_VARIABLE = "CAVIAR_SKLEARN_SEARCH"


def cv_spec(cv: Any) -> dict[str, Any]:
    """``cv`` as plain values a worker can rebuild it from, or a ValueError naming it."""
    if cv is None or isinstance(cv, int):
        return {"n_splits": cv}
    if type(cv) in (KFold, StratifiedKFold) and (cv.random_state is None or isinstance(cv.random_state, int)):
        return {"class": type(cv).__name__, "n_splits": cv.n_splits, "shuffle": cv.shuffle,
                "random_state": cv.random_state}
    raise ValueError(f"cv={cv!r} cannot travel to workers: give an int, None, or a KFold/StratifiedKFold "
                     "with an integer random_state")


def splits_of(spec: dict[str, Any], X: Any, y: Any, classifier: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    """The folds of a ``cv_spec``: the same on the master and on every worker."""
    if "class" in spec:
        kind = {"KFold": KFold, "StratifiedKFold": StratifiedKFold}[spec["class"]]
        cv = kind(spec["n_splits"], shuffle=spec["shuffle"], random_state=spec["random_state"])
    else:
        cv = check_cv(spec["n_splits"], y, classifier=classifier)
    return list(cv.split(X, y))


def load_data(path: str) -> tuple[Any, Any]:
    """``(X, y)`` from the loader at import path ``module:function``."""
    loaded = import_attr(path, what="data loader")()
    if not isinstance(loaded, tuple) or len(loaded) != 2:
        raise CaviarError(f"data loader {path!r} must return (X, y), got a {type(loaded).__name__}")
    return loaded


@functools.lru_cache(maxsize=2)
def _remote_runner(raw_spec: str) -> CandidateRunner:
    """A worker's runner for one search: data loaded and folds computed once per process."""
    spec = json.loads(raw_spec)
    X, y = indexable(*load_data(spec["data"]))
    estimator = resolve_estimator(spec["estimator"])
    splits = splits_of(spec["cv"], X, y, is_classifier(estimator))
    return CandidateRunner(spec["estimator"], X, y, splits, check_scoring(estimator, spec["scoring"]), {},
                           spec["error_score"], spec["return_train_score"])


def remote_candidate(params: dict[str, Any]) -> dict[str, Any]:
    """The workers' objective of a remote search: one candidate on every fold of the experiment's spec."""
    raw = os.environ.get(SPEC_VARIABLE, "")
    if not raw:
        raise CaviarError(f"{SPEC_VARIABLE} is unset: this objective runs the trials of a remote GridSearchCV")
    return _remote_runner(raw)(params)


remote_candidate.metric, remote_candidate.maximize = "score", True  # type: ignore[attr-defined]


def wait_for_workers(store: MongoStore, search: Searcher | None, lease_seconds: float,
                     poll_seconds: float = 0.2) -> None:
    """Until every queued trial is done (and the search proposes no more): requeue the trials of dead workers.

    The trials are read through a ``TrialView``, as the master reads them: each
    poll reads what changed, not every trial of the experiment.
    """
    from caviar.store.mongo import TrialView

    view = TrialView(store)
    while True:
        store.requeue_expired(lease_seconds)
        view.refresh()
        counts = view.counts()
        if search is not None and search.top_up(max(1, len(store.live_workers(lease_seconds))) + 1
                                                 - counts.get(RUNNING, 0), counts, view.finished(), view.pending()):
            view.refresh()
            counts = view.counts()
        pending = counts.get(NEW, 0) + counts.get(RUNNING, 0)
        if pending == 0 and (search is None or search.exhausted or counts.get(DONE, 0) >= search.max_evals):
            return
        time.sleep(poll_seconds)


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
        if self.mongo:
            self.n_splits_ = len(splits_of(cv_spec(self.cv), X, y, is_classifier(estimator)))
            self.trials_ = self._run_on_workers(X, y, params, groups, is_classifier(estimator))
        else:
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

    def _run_on_workers(self, X: Any, y: Any, params: dict[str, Any], groups: Any,
                        classifier: bool) -> list[dict[str, Any]]:
        """Queue the candidates into the MongoDB experiment, wait for the workers, return its trials."""
        from caviar.store.mongo import MongoStore

        if not isinstance(self.estimator, str) or not self.data or not self.exp_key:
            raise ValueError("a search on workers (mongo=...) needs estimator='module:factory', "
                             f"data='module:loader' and exp_key; got estimator={self.estimator!r}, "
                             f"data={self.data!r}, exp_key={self.exp_key!r}")
        if params or groups is not None:
            raise ValueError(f"fit parameters and groups cannot travel to workers, got {sorted(params)}"
                             f"{' and groups' if groups is not None else ''}")
        if self.scoring is not None and not isinstance(self.scoring, str):
            raise ValueError(f"scoring={self.scoring!r} cannot travel to workers: give a scorer's name or None")
        X_loaded, y_loaded = load_data(self.data)
        if not (np.array_equal(np.asarray(X_loaded), np.asarray(X)) and np.array_equal(np.asarray(y_loaded),
                                                                                        np.asarray(y))):
            raise ValueError(f"the X, y given to fit are not what the workers' loader {self.data!r} returns")
        spec = {"estimator": self.estimator, "data": self.data, "cv": cv_spec(self.cv), "scoring": self.scoring,
                "error_score": self.error_score, "return_train_score": self.return_train_score}
        store = MongoStore(self.mongo, self.exp_key)
        try:
            store.put_experiment({"objective": "optimizer.sklearn:remote_candidate", "space": type(self).__name__,
                                  "lease_seconds": self.lease_seconds, "metric": "score", "maximize": True,
                                  "env": {SPEC_VARIABLE: json.dumps(spec, sort_keys=True)}})
            search = self._propose(store)
            log.info("waiting for the workers of experiment %r", self.exp_key)
            wait_for_workers(store, search, self.lease_seconds)
            return store.trial_docs()
        finally:
            store.close()

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
                 error_score: Any = np.nan, return_train_score: bool = False, mongo: str | None = None,
                 exp_key: str | None = None, data: str | None = None, lease_seconds: float = 60.0):
        super().__init__(estimator=estimator, scoring=scoring, n_jobs=n_jobs, refit=refit, cv=cv, verbose=verbose,
                         pre_dispatch=pre_dispatch, error_score=error_score, return_train_score=return_train_score)
        self.param_grid = param_grid
        self.mongo, self.exp_key, self.data, self.lease_seconds = mongo, exp_key, data, lease_seconds

    def _propose(self, store: TrialStore) -> None:
        if _has_hyperopt(self.param_grid):
            space = hyperopt_space(self.param_grid, "param_grid")
            points = ((vals, space_eval(space, {k: v[0] for k, v in vals.items() if v})) for vals in grid_points(space))
        else:
            points = (({CANDIDATE: [i]}, p) for i, p in enumerate(ParameterGrid(self.param_grid)))
        log.info("queued %d grid candidates", enqueue_candidates(store, points))


class RandomizedSearchCV(_CaviarSearchCV):
    """scikit-learn's ``RandomizedSearchCV``, plus ``algo``: any ``--algo`` of the command line but "grid".

    With ``algo="random"`` and no hyperopt distribution, candidates are
    scikit-learn's own ``ParameterSampler`` draws; otherwise
    ``optimizer.search.Search`` proposes them (``n_iter`` at most: a small
    discrete space may be exhausted earlier).
    """

    def __init__(self, estimator: Any, param_distributions: Any, *, n_iter: int = 10, scoring: Any = None,
                 n_jobs: int | None = None, refit: Any = True, cv: Any = None, verbose: int = 0,
                 pre_dispatch: Any = "2*n_jobs", random_state: Any = None, error_score: Any = np.nan,
                 return_train_score: bool = False, algo: str = "random", mongo: str | None = None,
                 exp_key: str | None = None, data: str | None = None, lease_seconds: float = 60.0):
        super().__init__(estimator=estimator, scoring=scoring, n_jobs=n_jobs, refit=refit, cv=cv, verbose=verbose,
                         pre_dispatch=pre_dispatch, error_score=error_score, return_train_score=return_train_score)
        self.param_distributions = param_distributions
        self.n_iter = n_iter
        self.random_state = random_state
        self.algo = algo
        self.mongo, self.exp_key, self.data, self.lease_seconds = mongo, exp_key, data, lease_seconds

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
