"""Search quality: Caviar's samplers beside Optuna's multivariate TPE, on problems with a known optimum.

    python bench/quality.py [--seeds 10] [--first-seed 0] [--evals 100] [--workers 4] [--latency-trials 1000]
        [--problems branin hartmann6 cnn-like] [--jobs 2] [--output bench/results/quality.md]

Methods, each run with the same seeds:

- ``caviar tpe``: ``Search(..., algo="tpe")``, hyperopt's independent TPE;
- ``caviar tpe-mv``: ``Search(..., algo="tpe-mv")``, the default;
- ``optuna mv-tpe``: Optuna's ``TPESampler(multivariate=True, group=True)``;
- ``optuna mv-tpe liar``: the same with ``constant_liar=True``.

Caviar's methods run through ``Search.top_up`` on a ``LocalStore`` (the master's own
proposal path); Optuna's through ``study.ask``/``tell`` with the problem's define-by-run
space. Two modes:

- ``seq``: one trial at a time;
- ``par``: 4 asynchronous workers *simulated in this process* on an event-driven
  clock: evaluation times are drawn uniformly in 0.05-0.3 s (the same draws for every
  method), 4 trials are always pending, and a new trial is proposed when the earliest
  one finishes, knowing the 3 still running (no real sleeping, no master/worker
  processes: the wire protocol and the store's latency are not part of this measure).

Reported: the median over seeds of the regret (best loss so far minus the optimum)
after 25/50/100 finished evaluations; in ``par`` mode the near-duplicate rate, the share
of proposals within RMS distance 0.02 (in the unit-scaled space) of a trial pending when
they were proposed; and the proposal latency with ``--latency-trials`` finished trials
(median of 5 proposals, each with 3 pending; Caviar's timed from ``top_up`` with the
documents already read, i.e. without the store's read, after a first (cold) proposal).
"""

from __future__ import annotations

import argparse
import heapq
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import optuna  # noqa: E402
from hyperopt import Domain, Trials, rand  # noqa: E402

from bench.problems import PROBLEMS, Params, Problem, rms_distance  # noqa: E402
from caviar.store.local import LocalStore  # noqa: E402
from optimizer.search import Search, concrete_params  # noqa: E402
from caviar.store import DONE  # noqa: E402

METHODS = ["caviar tpe", "caviar tpe-mv", "optuna mv-tpe", "optuna mv-tpe liar"]
CHECKPOINTS = (25, 50, 100)
NEAR = 0.02
optuna.logging.set_verbosity(optuna.logging.ERROR)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


class Proposer:
    """One method on one problem: ``ask`` a point, ``tell`` its loss."""

    def ask(self) -> tuple[Any, Params]:
        raise NotImplementedError

    def tell(self, handle: Any, loss: float) -> None:
        raise NotImplementedError


class CaviarProposer(Proposer):
    """The master's path: top the queue up to one trial, claim it as a worker would."""

    def __init__(self, problem: Problem, algo: str, seed: int, evals: int):
        self.store = LocalStore()
        self.search = Search(self.store, problem.space(), algo, max_evals=evals, seed=seed)

    def ask(self) -> tuple[Any, Params]:
        self.search.top_up(1)
        doc = self.store.claim("w")
        return doc["tid"], doc["params"]

    def tell(self, handle: Any, loss: float) -> None:
        self.store.finish(handle, "w", {"status": "ok", "loss": loss})


class OptunaProposer(Proposer):
    def __init__(self, problem: Problem, liar: bool, seed: int):
        self.suggest = problem.suggest
        self.study = optuna.create_study(sampler=optuna.samplers.TPESampler(
            multivariate=True, group=True, constant_liar=liar, seed=seed))

    def ask(self) -> tuple[Any, Params]:
        trial = self.study.ask()
        return trial, self.suggest(trial)

    def tell(self, handle: Any, loss: float) -> None:
        self.study.tell(handle, loss)


def proposer(method: str, problem: Problem, seed: int, evals: int) -> Proposer:
    if method.startswith("caviar"):
        return CaviarProposer(problem, method.split()[1], seed, evals)
    return OptunaProposer(problem, method.endswith("liar"), seed)


def run(method: str, problem_name: str, seed: int, evals: int, workers: int) -> dict[str, Any]:
    """One run: the losses in finishing order and how many proposals came near a pending trial."""
    problem = PROBLEMS[problem_name]
    p = proposer(method, problem, seed, evals)
    durations = np.random.default_rng([seed, 1]).uniform(0.05, 0.3, size=evals)
    pending: list[tuple[float, int, Any, float, dict[str, Any]]] = []  # (end, index, handle, loss, unit)
    losses: list[float] = []
    near = proposed = 0
    clock = 0.0
    while len(losses) < evals:
        while len(pending) < workers and proposed < evals:
            handle, params = p.ask()
            unit = problem.unit(params)
            near += any(rms_distance(unit, other[4]) < NEAR for other in pending)
            heapq.heappush(pending, (clock + durations[proposed], proposed, handle, problem.loss(params), unit))
            proposed += 1
        clock, _, handle, loss, _ = heapq.heappop(pending)
        p.tell(handle, loss)
        losses.append(loss)
    return {"losses": losses, "near": near, "proposed": proposed}


def latency(method: str, problem_name: str, n: int) -> tuple[float, float]:
    """(cold, warm) seconds of one proposal with ``n`` finished random trials and 3 pending."""
    problem = PROBLEMS[problem_name]
    if method.startswith("caviar"):
        store, space = LocalStore(), problem.space()
        docs = rand.suggest(store.new_tids(n), Domain(lambda x: 0, space), Trials(), 0)
        for doc in docs:
            doc["params"] = concrete_params(space, doc["misc"])
        store.enqueue(docs)
        for _ in range(n):
            doc = store.claim("w")
            store.finish(doc["tid"], "w", {"status": "ok", "loss": problem.loss(doc["params"])})
        search = Search(store, space, method.split()[1], max_evals=n + 20, seed=0)
        search.top_up(3)
        for _ in range(3):
            store.claim("w")

        def one() -> None:
            docs, counts = store.trial_docs(), store.count_by_state()
            t = time.perf_counter()
            search.top_up(1, counts, docs)
            times.append(time.perf_counter() - t)
            store.claim("w")
    else:
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        for _ in range(n):
            trial = study.ask()
            study.tell(trial, problem.loss(problem.suggest(trial)))
        study.sampler = optuna.samplers.TPESampler(multivariate=True, group=True,
                                                   constant_liar=method.endswith("liar"), seed=0)
        for _ in range(3):
            problem.suggest(study.ask())

        def one() -> None:
            t = time.perf_counter()
            problem.suggest(study.ask())
            times.append(time.perf_counter() - t)

    times: list[float] = []
    for _ in range(6):
        one()
    return times[0], statistics.median(times[1:])


def _task(args: tuple[str, ...]) -> tuple[tuple[str, ...], Any]:
    kind, *rest = args
    if kind == "run":
        method, problem, seed, evals, workers = rest
        return tuple(args), run(method, problem, int(seed), int(evals), int(workers))
    method, problem, n = rest
    return tuple(args), latency(method, problem, int(n))


def seeds(args: argparse.Namespace) -> range:
    return range(args.first_seed, args.first_seed + args.seeds)


def regret_at(losses: list[float], k: int, optimum: float) -> float:
    return min(losses[:k]) - optimum


def table(args: argparse.Namespace, results: dict[tuple[str, ...], Any]) -> Iterator[str]:
    checkpoints = [k for k in CHECKPOINTS if k <= args.evals]
    yield f"Median regret over {args.seeds} seeds ({args.first_seed}-{args.first_seed + args.seeds - 1}) " \
          "after k evaluations; " \
          f"par = {args.workers} asynchronous workers, simulated in-process (see the module's docstring)."
    yield ""
    head = ["problem", "method"] + [f"seq @{k}" for k in checkpoints] + [f"par @{k}" for k in checkpoints]
    head += ["par near-dups", f"latency @{args.latency_trials} (cold / warm)"]
    yield "| " + " | ".join(head) + " |"
    yield "|" + "---|" * len(head)
    for problem in args.problems:
        optimum = PROBLEMS[problem].optimum
        for method in args.methods:
            row = [problem, method]
            for workers in (1, args.workers):
                runs = [results["run", method, problem, str(s), str(args.evals), str(workers)] for s in seeds(args)]
                row += [f"{statistics.median(regret_at(r['losses'], k, optimum) for r in runs):.4g}" for k in checkpoints]
            near = sum(r["near"] for r in runs) / sum(r["proposed"] for r in runs)
            row.append(f"{100 * near:.1f}%")
            cold, warm = results["latency", method, problem, str(args.latency_trials)]
            row.append(f"{1000 * cold:.0f} / {1000 * warm:.0f} ms")
            yield "| " + " | ".join(row) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds are first-seed, first-seed + 1, ...")
    parser.add_argument("--evals", type=int, default=100)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--latency-trials", type=int, default=1000)
    parser.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=list(PROBLEMS))
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--jobs", type=int, default=2, help="processes running runs side by side")
    parser.add_argument("--output", default="bench/results/quality.md")
    args = parser.parse_args()
    tasks = [("run", m, p, str(s), str(args.evals), str(w)) for p in args.problems for m in args.methods
             for w in (1, args.workers) for s in seeds(args)]
    tasks += [("latency", m, p, str(args.latency_trials)) for p in args.problems for m in args.methods]
    started = time.monotonic()
    with ProcessPoolExecutor(args.jobs) as pool:
        results = dict(pool.map(_task, tasks))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    lines = [
        "# Search quality",
        "",
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, commit {commit}, {platform.machine()} "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, optuna {optuna.__version__}, "
        f"hyperopt {__import__('hyperopt').__version__}; {time.monotonic() - started:.0f} s.",
        "",
        "    " + " ".join([os.path.basename(sys.executable), "bench/quality.py", *sys.argv[1:]]),
        "",
        *table(args, results),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    with open(args.output, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
