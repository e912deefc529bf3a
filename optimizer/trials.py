"""MongoTrials: hyperopt's ``Trials`` over a MongoStore, a drop-in for ``hyperopt.mongoexp.MongoTrials``.

    trials = MongoTrials("mongo://host:27017/caviar/jobs", exp_key="e1")
    best = hyperopt.fmin(objective, space, algo=tpe.suggest, max_evals=100, trials=trials)

while ``python -m worker --mongo mongodb://host:27017/caviar`` processes run the
trials. hyperopt's URL form (``mongo://[user:pw@]host:port/db/collection``) and
``mongodb://`` URLs are both accepted; ``exp_key=None`` has hyperopt's meaning
(the handle reads every trial of the database and writes keyless trials).
Unlike hyperopt's own MongoTrials nothing is pickled into the database: the
objective travels as its import path and every queued trial carries its
concrete ``params``, so workers need neither the space nor a matching
hyperopt/cloudpickle version. Result ``attachments`` (bytes) are kept in
GridFS and read back through ``trials.attachments`` and
``trials.trial_attachments(trial)`` from any handle.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterator, MutableMapping
from typing import Any, Callable, Iterable

import numpy as np
from hyperopt import tpe
from hyperopt.base import Domain, Trials
from hyperopt.fmin import FMinIter, space_eval

from caviar.errors import CaviarError
from caviar.imports import import_path_of
from caviar.store import vals_key
from caviar.store.mongo import MongoStore, TrialView
from optimizer.search import concrete_params

log = logging.getLogger(__name__)

# How often fmin looks for finished trials; hyperopt's 1 s default would
# dominate the coordination overhead of short trials.
POLL_SECONDS = 0.05
# Attachments hyperopt's fmin itself writes: a pickled Domain, which stays in this process.
LOCAL_ATTACHMENTS = frozenset({"FMinIter_Domain"})


def mongodb_url(url: str) -> str:
    """A ``mongodb://`` URL for hyperopt's ``mongo://[user:pw@]host:port/db/collection[?options]``.

    The collection is dropped: the trials always live in the database's ``trials``.
    """
    match = re.fullmatch(r"mongo://([^/?]+)/([^/?]+)(?:/[^/?]*)?(\?.*)?", url)
    if match is None:
        return url
    return f"mongodb://{match.group(1)}/{match.group(2)}{match.group(3) or ''}"


class Attachments(MutableMapping[str, bytes]):
    """hyperopt's ``trials.attachments``: bytes by name in GridFS, shared by every handle on the experiment."""

    def __init__(self, store: MongoStore):
        self._store = store
        self._local: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name in LOCAL_ATTACHMENTS:
            return self._local[name]
        data = self._store.get_attachment(name)
        if data is None:
            raise KeyError(name)
        return data

    def __setitem__(self, name: str, value: Any) -> None:
        if name in LOCAL_ATTACHMENTS:
            self._local[name] = value
        else:
            self._store.put_attachment(name, value.encode() if isinstance(value, str) else bytes(value))

    def __delitem__(self, name: str) -> None:
        if name in LOCAL_ATTACHMENTS:
            del self._local[name]
        elif not self._store.delete_attachment(name):
            raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        if name in LOCAL_ATTACHMENTS:
            return name in self._local
        return isinstance(name, str) and self._store.get_attachment(name) is not None

    def __iter__(self) -> Iterator[str]:
        return iter([*self._local, *self._store.attachment_names()])

    def __len__(self) -> int:
        return len(self._local) + len(self._store.attachment_names())


def _describe(fn: Callable[..., Any]) -> str:
    """A readable name of the algorithm for the experiment document."""
    base = getattr(fn, "func", fn)  # functools.partial(tpe.suggest, ...)
    qualname = getattr(base, "__qualname__", None)
    return f"{base.__module__}:{qualname}" if qualname else repr(fn)


class MongoTrials(Trials):
    """The trials of experiment ``exp_key`` in the database of ``url``, queued for workers.

    Reads are incremental (``TrialView``): a refresh fetches only the trials
    that changed, so fmin's polls cost the same at 10 or 10,000 trials.
    """

    asynchronous = True

    def __init__(
        self,
        url: str,
        exp_key: str | None = None,
        refresh: bool = True,
        *,
        env: dict[str, str] | None = None,
        timeout_seconds: float = 5.0,
    ):
        """``env``: environment variables that workers set before running this experiment's objective."""
        self._store = MongoStore(mongodb_url(url), exp_key, timeout_seconds=timeout_seconds)
        self._view = TrialView(self._store)
        self._attachments = Attachments(self._store)
        self._env = {str(k): str(v) for k, v in (env or {}).items()}
        self._space: Any = None
        super().__init__(exp_key=exp_key, refresh=refresh)

    @property
    def attachments(self) -> Attachments:  # type: ignore[override]
        """hyperopt's experiment attachments, in GridFS (hyperopt's pickled Domain stays local)."""
        return self._attachments

    @attachments.setter
    def attachments(self, value: dict[str, Any]) -> None:
        """hyperopt's ``Trials.__init__`` assigns ``{}``: nothing to do, the attachments live in the database."""
        if value:
            raise CaviarError("set attachments one by one: trials.attachments[name] = data")

    def __getstate__(self) -> dict[str, Any]:
        """Pickle a reference to the experiment (hyperopt's ``trials_save_file``), not a connection."""
        return {"url": self._store.url, "exp_key": self._exp_key, "env": self._env}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["url"], state["exp_key"], env=state["env"])  # type: ignore[misc]

    @property
    def store(self) -> MongoStore:
        """The underlying store (for workers' and tools' queries)."""
        return self._store

    def refresh(self) -> None:
        self._view.refresh()
        self._dynamic_trials = list(self._view.docs())  # a copy: hyperopt code may change its list
        super().refresh()

    def new_trial_ids(self, n: int) -> list[int]:
        tids = self._store.new_tids(n)
        self._ids.update(tids)
        return tids

    def _insert_trial_docs(self, docs: list[dict[str, Any]]) -> list[int]:
        """Queue fmin's new trial documents with their concrete ``params``; store other inserts as given.

        Inside fmin (which knows the space) a point identical to a queued,
        running or finished trial is skipped: running it again would only
        waste a worker. Documents inserted outside fmin carry no ``params``:
        workers never claim them (hyperopt code inserts such records itself).
        """
        if self._space is None:
            self._store.enqueue(docs)
            return [doc["tid"] for doc in docs]
        seen = {vals_key(d["misc"]) for d in self._dynamic_trials}
        fresh = []
        for doc in docs:
            key = vals_key(doc["misc"])
            if key in seen:
                log.warning("trial %s: skipped, the same point was already queued or run", doc["tid"])
                continue
            seen.add(key)
            fresh.append(doc | {"params": concrete_params(self._space, doc["misc"])})
        self._store.enqueue(fresh)
        return [doc["tid"] for doc in docs]

    def count_by_state_unsynced(self, arg: int | Iterable[int]) -> int:
        counts = self._store.count_by_state()
        states = [arg] if isinstance(arg, int) else list(arg)
        return sum(counts.get(state, 0) for state in states)

    def delete_all(self) -> None:
        self._store.delete_all()
        self._attachments = Attachments(self._store)
        self._view.reset()
        self.refresh()

    def fmin(
        self,
        fn: Callable[[Any], Any],
        space: Any,
        algo: Callable[..., Any] | None = None,
        max_evals: int | None = None,
        timeout: float | None = None,
        loss_threshold: float | None = None,
        max_queue_len: int = 1,
        rstate: np.random.Generator | None = None,
        verbose: bool = False,
        pass_expr_memo_ctrl: bool | None = None,
        catch_eval_exceptions: bool = False,
        return_argmin: bool = True,
        show_progressbar: bool = True,
        early_stop_fn: Callable[..., Any] | None = None,
        trials_save_file: str = "",
    ) -> Any:
        """hyperopt.fmin for workers: record the objective's import path, then queue and wait.

        Raises CaviarError for an objective workers cannot import (a lambda, a
        closure, a function of ``__main__``).
        """
        if pass_expr_memo_ctrl:
            raise CaviarError("pass_expr_memo_ctrl is not supported: workers call the objective with the params only")
        objective = import_path_of(fn)
        algo = algo or tpe.suggest
        if rstate is None:
            seed = os.environ.get("HYPEROPT_FMIN_SEED", "")
            rstate = np.random.default_rng(int(seed) if seed else None)
        self._space = space
        self._store.put_experiment(
            {"objective": objective, "algo": _describe(algo), "max_evals": max_evals, "env": self._env}
        )
        iterator = FMinIter(
            algo,
            Domain(fn, space),
            self,
            rstate,
            poll_interval_secs=POLL_SECONDS,
            max_evals=sys.maxsize if max_evals is None else max_evals,
            timeout=timeout,
            loss_threshold=loss_threshold,
            max_queue_len=max_queue_len,
            verbose=verbose,
            show_progressbar=show_progressbar,
            early_stop_fn=early_stop_fn,
            trials_save_file=trials_save_file,
        )
        iterator.catch_eval_exceptions = catch_eval_exceptions
        iterator.exhaust()
        if return_argmin:
            if not self.trials:
                raise CaviarError("no trial was evaluated, so there is no argmin")
            return self.argmin
        return space_eval(space, self.argmin) if self.trials else None
