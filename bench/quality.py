"""Search quality: Caviar's samplers beside Optuna's multivariate TPE, on problems with a known optimum.

    python bench/quality.py [--seeds 10] [--first-seed 0] [--evals 100] [--workers 4] [--latency-trials 1000]
        [--problems branin hartmann6 cnn-like] [--methods ...] [--parallel real|simulated] [--raw F.jsonl]
        [--jobs 2] [--output bench/results/quality.md]

Methods, each run with the same seeds:

- ``caviar tpe``: hyperopt's independent TPE through Caviar (``--algo tpe``);
- ``caviar gp``: the default (``--algo gp``, Bayesian optimization with a Gaussian process);
- ``caviar tpe-mv``: Optuna's multivariate TPE with a constant liar through Caviar (``--algo tpe-mv``);
- ``optuna mv-tpe``: Optuna's ``TPESampler(multivariate=True, group=True)``;
- ``optuna mv-tpe liar``: the same with ``constant_liar=True``;
- ``optuna mv-tpe liar reseeded`` (an ablation, not run by default): Optuna's own loop with a
  new sampler per trial seeded as tpe-mv seeds each proposal.

Sequential runs (``seq``, one trial at a time) go in-process: Caviar's methods through
``Search.top_up`` on a ``LocalStore`` (the master's own proposal path), Optuna's through
``study.ask``/``tell`` with the problem's define-by-run space.

Parallel runs (``par``, ``--workers`` asynchronous workers), ``--parallel real`` (the default):
real processes, one run at a time, every objective sleeping 0.05-0.3 s (a pseudo-random
function of the point, ``bench.problems.eval_seconds``) before returning the problem's value:

- Caviar: ``python -m optimizer --mongo URL --exp-key K --algo ALGO --lookahead 0 ...`` and W
  ``python -m worker --mongo URL --exp-key K --poll-seconds 0.02`` on one ``nx-27017`` server on a
  free loopback port; the losses are read back from the store in finishing order;
- Optuna: W processes (``python bench/quality.py optuna-worker ...``) sharing one
  JournalFileStorage, process i seeded ``100 * seed + i``.

``--parallel simulated`` instead simulates the W workers in this process on an event-driven clock
(the same draws for every method, no real sleeping): a quick check, not the reported figures.

Reported: the median over seeds of the regret (best loss so far minus the optimum) after
25/50/100 finished evaluations; in ``par`` the near-duplicate rate, the share of trials within
RMS distance 0.02 (in the unit-scaled space) of a trial that was being evaluated when they
started (claimed by a Caviar worker, asked by an Optuna process); and the proposal latency with
``--latency-trials`` finished trials (median of 5 proposals, each with 3 pending; Caviar's timed
from ``top_up`` with the documents already read, i.e. without the store's read, after a first
(cold) proposal).
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import platform
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from typing import Any, Iterator

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import optuna  # noqa: E402
from hyperopt import Domain, Trials, rand  # noqa: E402

from bench import problems  # noqa: E402
from bench.problems import PROBLEMS, Params, Problem, attr, rms_distance  # noqa: E402
from caviar.store import DONE  # noqa: E402
from caviar.store.local import LocalStore  # noqa: E402
from caviar.store.mongo import MongoStore  # noqa: E402
from optimizer.search import Search, concrete_params, proposal_seed  # noqa: E402

METHODS = ["caviar tpe", "caviar tpe-mv", "caviar gp", "optuna mv-tpe", "optuna mv-tpe liar"]
ABLATIONS = ["optuna mv-tpe liar reseeded"]  # tpe-mv's sampler life cycle on Optuna's own loop
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
    """Optuna's own loop; ``reseeded``: a new sampler per trial, seeded per trial as tpe-mv's (an ablation)."""

    def __init__(self, problem: Problem, liar: bool, seed: int, reseeded: bool = False):
        self.suggest, self.liar, self.seed, self.reseeded = problem.suggest, liar, seed, reseeded
        self.study = optuna.create_study(sampler=self._sampler(seed))

    def _sampler(self, seed: int) -> optuna.samplers.TPESampler:
        return optuna.samplers.TPESampler(multivariate=True, group=True, constant_liar=self.liar, seed=seed)

    def ask(self) -> tuple[Any, Params]:
        if self.reseeded:
            self.study.sampler = self._sampler(proposal_seed(self.seed, len(self.study.trials), 0))
        trial = self.study.ask()
        return trial, self.suggest(trial)

    def tell(self, handle: Any, loss: float) -> None:
        self.study.tell(handle, loss)


def proposer(method: str, problem: Problem, seed: int, evals: int) -> Proposer:
    if method.startswith("caviar"):
        return CaviarProposer(problem, method.split()[1], seed, evals)
    return OptunaProposer(problem, "liar" in method, seed, reseeded=method.endswith("reseeded"))


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


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _spawn(cmd: list[str], log: str) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, *cmd], cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                env=os.environ | {"PYTHONPATH": REPO})


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        proc.wait(30)


class NxServer:
    """One nx-27017 server on a free loopback port for the whole benchmark (each run its own exp-key)."""

    def __init__(self, folder: str):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        exe = os.path.join(os.path.dirname(sys.executable), "nx-27017")
        self.proc = subprocess.Popen(
            [exe if os.path.exists(exe) else "nx-27017", "--db", os.path.join(folder, "nx.db"), "--host", "127.0.0.1",
             "-p", str(self.port), "--log-file", os.path.join(folder, "nx.log"),
             "--pid-file", os.path.join(folder, "nx.pid")],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        self.url = f"mongodb://127.0.0.1:{self.port}/quality"
        for _ in range(600):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"nx-27017 did not listen on port {self.port}")

    def stop(self) -> None:
        _stop([self.proc])


Finished = list[tuple[float, float, float, dict[str, Any]]]  # (start, end, loss, concrete params) per trial


def real_caviar(algo: str, problem: str, seed: int, evals: int, workers: int, url: str, folder: str) -> Finished:
    """A real master and ``workers`` real workers on the server: each trial's claim and finish time, loss, params."""
    key = f"{problem}-{algo}-{seed}"
    log = os.path.join(folder, f"{key}.log")
    master = _spawn(["-m", "optimizer", "--mongo", url, "--exp-key", key, "--algo", algo, "--seed", str(seed),
                     "--space", f"bench.problems:{attr(problem)}_space",
                     "--objective", f"bench.problems:{attr(problem)}_sleepy", "--max-evals", str(evals),
                     "--lookahead", "0", "--no-plots", "--results-dir", os.path.join(folder, key)], log)
    group = [_spawn(["-m", "worker", "--mongo", url, "--exp-key", key, "--poll-seconds", "0.02"], log)
             for _ in range(workers)]
    try:
        if master.wait(600) != 0:
            raise RuntimeError(f"the master of {key} exited with {master.returncode}: see {log}")
    finally:
        _stop([master, *group])
    store = MongoStore(url, key)
    docs = [d for d in store.trial_docs() if d["state"] == DONE]
    store.close()
    return [(d["book_time"], d["refresh_time"], d["result"]["loss"], d["params"]) for d in docs]


def real_optuna(liar: bool, problem: str, seed: int, evals: int, workers: int, folder: str) -> Finished:
    """``workers`` real Optuna processes sharing one JournalFileStorage, evaluating the same sleepy objective."""
    key = f"{problem}-optuna-{'liar' if liar else 'plain'}-{seed}"
    journal, log = os.path.join(folder, f"{key}.journal"), os.path.join(folder, f"{key}.log")
    study = optuna.create_study(study_name=key, storage=_journal(journal))
    group = [_spawn([os.path.join("bench", "quality.py"), "optuna-worker", journal, key, problem,
                     str(seed * 100 + i), str(evals), str(int(liar))], log) for i in range(workers)]
    try:
        for proc in group:
            if proc.wait(600) != 0:
                raise RuntimeError(f"an Optuna worker of {key} exited with {proc.returncode}: see {log}")
    finally:
        _stop(group)
    done = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    return [(t.datetime_start.timestamp(), t.datetime_complete.timestamp(), t.value, t.user_attrs["params"])
            for t in done]


def _journal(path: str) -> Any:
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return JournalStorage(JournalFileBackend(path))


def optuna_worker(journal: str, key: str, problem: str, seed: str, evals: str, liar: str) -> None:
    """One Optuna process: evaluates trials until the study holds ``evals`` (a trial past them is pruned at once)."""
    study = optuna.load_study(study_name=key, storage=_journal(journal), sampler=optuna.samplers.TPESampler(
        multivariate=True, group=True, constant_liar=liar == "1", seed=int(seed)))

    def objective(trial: optuna.Trial) -> float:
        if trial.number >= int(evals):
            study.stop()
            raise optuna.TrialPruned()
        params = PROBLEMS[problem].suggest(trial)
        trial.set_user_attr("params", params)
        return getattr(problems, f"{attr(problem)}_sleepy")(params)

    study.optimize(objective, callbacks=[optuna.study.MaxTrialsCallback(int(evals), states=None)])


def real_run(method: str, problem: str, seed: int, evals: int, workers: int, url: str, folder: str) -> dict[str, Any]:
    """One real-process run: losses in finishing order, and proposals near a trial running when they started."""
    started = time.monotonic()
    if method.startswith("caviar"):
        finished = real_caviar(method.split()[1], problem, seed, evals, workers, url, folder)
    else:
        finished = real_optuna("liar" in method, problem, seed, evals, workers, folder)
    finished.sort(key=lambda f: f[1])
    units = [PROBLEMS[problem].unit(f[3]) for f in finished]
    near = sum(any(o[0] < f[0] < o[1] and rms_distance(u, units[j]) < NEAR for j, o in enumerate(finished) if j != i)
               for i, (f, u) in enumerate(zip(finished, units)))
    return {"losses": [f[2] for f in finished], "near": near, "proposed": len(finished),
            "wall": time.monotonic() - started}


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

        # As the master passes them (TrialView): one list of the finished trials that only grows
        # (none finish here), the pending ones read anew.
        finished = [d for d in store.trial_docs() if d["state"] == DONE]

        def one() -> None:
            docs, counts = store.trial_docs(), store.count_by_state()
            pending = [d for d in docs if d["state"] != DONE]
            t = time.perf_counter()
            search.top_up(1, counts, finished, pending)
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
    how = "real master/worker processes (see the module's docstring)" if args.parallel == "real" else \
        "simulated in-process"
    yield f"Median regret over {args.seeds} seeds ({args.first_seed}-{args.first_seed + args.seeds - 1}) " \
          f"after k evaluations; par = {args.workers} asynchronous workers, {how}."
    yield ""
    head = ["problem", "method"] + [f"seq @{k}" for k in checkpoints] + [f"par @{k}" for k in checkpoints]
    head += ["par near-dups"] + (["par wall s"] if args.parallel == "real" else [])
    head += [f"latency @{args.latency_trials} (cold / warm)"]
    yield "| " + " | ".join(head) + " |"
    yield "|" + "---|" * len(head)
    for problem in args.problems:
        optimum = PROBLEMS[problem].optimum
        for method in args.methods:
            row = [problem, method]
            for kind, workers in (("run", 1), ("run" if args.parallel == "simulated" else "real", args.workers)):
                runs = [results[kind, method, problem, str(s), str(args.evals), str(workers)] for s in seeds(args)]
                row += [f"{statistics.median(regret_at(r['losses'], k, optimum) for r in runs):.4g}" for k in checkpoints]
            near = sum(r["near"] for r in runs) / sum(r["proposed"] for r in runs)
            row.append(f"{100 * near:.1f}%")
            if args.parallel == "real":
                row.append(f"{statistics.median(r['wall'] for r in runs):.1f}")
            cold, warm = results["latency", method, problem, str(args.latency_trials)]
            row.append(f"{1000 * cold:.0f} / {1000 * warm:.0f} ms")
            yield "| " + " | ".join(row) + " |"


def load_raw(path: str | None) -> dict[tuple[str, ...], Any]:
    """The runs kept in ``--raw`` by an earlier invocation (a JSON line per run: key, result)."""
    if not path or not os.path.exists(path):
        return {}
    with open(path) as f:
        return {tuple(key): value for key, value in map(json.loads, f)}


def keep_raw(path: str | None, key: tuple[str, ...], value: Any) -> None:
    if path:
        with open(path, "a") as f:
            f.write(json.dumps([key, value]) + "\n")


def real_runs(args: argparse.Namespace, results: dict[tuple[str, ...], Any]) -> None:
    """Every real-process run not in ``results``, one at a time (they time real sleeps), kept as they end."""
    folder = tempfile.mkdtemp(prefix="quality-")
    server = NxServer(folder)
    try:
        for s in seeds(args):  # seeds outermost: a run cut short leaves every problem and method equally served
            for p in args.problems:
                for m in args.methods:
                    key = ("real", m, p, str(s), str(args.evals), str(args.workers))
                    if key not in results:
                        results[key] = real_run(m, p, s, args.evals, args.workers, server.url, folder)
                        print(key, f"{results[key]['wall']:.1f} s", flush=True)
                        keep_raw(args.raw, key, results[key])
    finally:
        server.stop()
    shutil.rmtree(folder)


def main() -> None:
    if sys.argv[1:2] == ["optuna-worker"]:
        return optuna_worker(*sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=0, help="seeds are first-seed, first-seed + 1, ...")
    parser.add_argument("--evals", type=int, default=100)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--latency-trials", type=int, default=1000)
    parser.add_argument("--problems", nargs="+", default=list(PROBLEMS), choices=list(PROBLEMS))
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS + ABLATIONS)
    parser.add_argument("--jobs", type=int, default=2, help="processes running runs side by side")
    parser.add_argument("--parallel", choices=["real", "simulated"], default="real",
                        help="par: real master/worker processes, or simulated in this process (quick)")
    parser.add_argument("--raw", help="JSON lines of the runs, appended as they end and reused by a rerun")
    parser.add_argument("--in-process-only", action="store_true",
                        help="only the sequential runs and latencies (e.g. beside a real-process run, into --raw)")
    parser.add_argument("--output", default="bench/results/quality.md")
    args = parser.parse_args()
    workers = (1,) if args.parallel == "real" else (1, args.workers)
    tasks = [("run", m, p, str(s), str(args.evals), str(w)) for p in args.problems for m in args.methods
             for w in workers for s in seeds(args)]
    tasks += [("latency", m, p, str(args.latency_trials)) for p in args.problems for m in args.methods]
    started = time.monotonic()
    results = load_raw(args.raw)
    if args.parallel == "real" and not args.in_process_only:
        real_runs(args, results)
    with ProcessPoolExecutor(args.jobs) as pool:
        for key, value in pool.map(_task, [t for t in tasks if t not in results]):
            results[key] = value
            keep_raw(args.raw, key, value)
    if args.in_process_only:
        return
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            check=False).stdout.strip()
    lines = [
        "# Search quality",
        "",
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, commit {commit}, {platform.machine()} "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, optuna {optuna.__version__}, "
        f"hyperopt {__import__('hyperopt').__version__}; {time.monotonic() - started:.0f} s.",
        "",
        "    " + shlex.join([os.path.basename(sys.executable), "bench/quality.py", *sys.argv[1:]]),
        "",
        *([(f"Runs kept in {args.raw} by the invocations that made them, the missing ones run by this one; "
            "the seconds above are this invocation's."), ""] if args.raw else []),
        *table(args, results),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    with open(args.output, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
