"""Run Caviar's master or worker with timers on its coordination calls (profiling aid).

    python -m bench.caviar_timed optimizer ARGS...   # as python -m optimizer ARGS...
    python -m bench.caviar_timed worker ARGS...      # as python -m worker ARGS...

Wraps, at run time and without touching Caviar's files, the ``MongoStore``
methods, ``Search.top_up``/``_propose``, ``Recorder.observe``,
``ResultsDir.update``, hyperopt's ``tpe.suggest`` and ``time.sleep`` of the
master loop and the worker loop, and on exit writes
``$BENCH_PROFILE_DIR/<role>-<pid>.json``: per call name, count and total
seconds, plus the process's CPU time and the time from start to ``main``
(imports). ``bench/profile_caviar.py`` runs a whole experiment this way and
summarizes.
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import sys
import threading
import time
from typing import Any

T_START = time.perf_counter()
STATS: dict[str, list[float]] = {}  # name -> [calls, seconds]
MARKS: dict[str, float] = {}
IN_TRIAL = [False]  # the objective's own sleep is not the loop's


def _add(name: str, seconds: float) -> None:
    entry = STATS.setdefault(name, [0, 0.0])
    entry[0] += 1
    entry[1] += seconds


def timed(owner: Any, attr: str, name: str | None = None) -> None:
    """Replace ``owner.attr`` by a wrapper that adds its duration under ``name``."""
    fn = getattr(owner, attr)
    label = name or f"{getattr(owner, '__name__', owner)}.{attr}"

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            end = time.perf_counter()
            _add(label, end - t)
            MARKS.setdefault(f"first {label} done", end - T_START)

    setattr(owner, attr, wrapper)


def _dump(role: str) -> None:
    folder = os.environ.get("BENCH_PROFILE_DIR")
    if not folder:
        return
    cpu = os.times()
    data = {"role": role, "pid": os.getpid(), "stats": STATS, "marks": MARKS,
            "cpu_user": cpu.user, "cpu_system": cpu.system, "alive": time.perf_counter() - T_START}
    with open(os.path.join(folder, f"{role}-{os.getpid()}.json"), "w") as f:
        json.dump(data, f)


def instrument(role: str) -> None:
    from caviar.store import mongo

    for attr in ("claim", "finish", "heartbeat", "count_by_state", "trial_docs", "new_tids", "enqueue",
                 "requeue_expired", "live_workers", "worker_alive", "get_experiment", "put_experiment"):
        timed(mongo.MongoStore, attr, f"store.{attr}")
    if role == "master":
        from hyperopt import tpe

        from caviar.output import results
        from optimizer import master, search
        from optimizer.samplers import registry
        from optimizer.samplers.hyperopt_algos import HyperoptSampler

        original = tpe.suggest

        def suggest(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                _add("tpe.suggest", time.perf_counter() - t)

        registry.SAMPLERS["tpe"] = functools.partial(HyperoptSampler, suggest=suggest)
        timed(search.Search, "top_up", "Search.top_up")
        timed(search.Search, "_propose", "Search._propose")
        timed(master.Recorder, "observe", "Recorder.observe")
        timed(results.ResultsDir, "update", "ResultsDir.update")
        timed(master, "finalize", "finalize")
    else:
        from worker import service

        original_run_trial = service.run_trial

        def run_trial(*args: Any, **kwargs: Any) -> Any:
            IN_TRIAL[0] = True
            t = time.perf_counter()
            try:
                return original_run_trial(*args, **kwargs)
            finally:
                IN_TRIAL[0] = False
                _add("run_trial (objective + heartbeat thread)", time.perf_counter() - t)

        service.run_trial = run_trial
        timed(service.Worker, "_prepare", "Worker._prepare")
    # The main loop's poll sleeps (master) / empty-queue backoff (worker); not pymongo's threads.
    original_sleep = time.sleep
    main_thread = threading.main_thread()

    def sleep(seconds: float) -> None:
        t = time.perf_counter()
        try:
            original_sleep(seconds)
        finally:
            if threading.current_thread() is main_thread and not IN_TRIAL[0]:
                _add("sleep (main thread)", time.perf_counter() - t)

    time.sleep = sleep


def main() -> int:
    target, argv = sys.argv[1], sys.argv[2:]
    role = "master" if target == "optimizer" else "worker"
    atexit.register(_dump, role)
    MARKS["imports_start"] = time.perf_counter() - T_START
    if role == "master":
        from optimizer.cli import main as entry
    else:
        from worker.__main__ import main as entry
    instrument(role)
    MARKS["main_at"] = time.perf_counter() - T_START
    code = entry(argv)
    MARKS["main_done"] = time.perf_counter() - T_START
    return code


if __name__ == "__main__":
    sys.exit(main())
