"""Coordination cost per trial as an experiment grows: Caviar next to Optuna (JournalFile).

    python bench/scale.py [--trials 10000] [--workers 4] [--window 1000]
        [--algos random tpe] [--payloads small cnn] [--systems caviar optuna-journal]
        [--mongo-url mongodb://host:27017] [--reports] [--output bench/results/scale.md]

Each run: W worker processes on this machine, a zero-time objective
(``bench.objectives:sleep_objective`` with ``BENCH_SLEEP=0``), ``--trials``
trials. Every trial's completion time is read back from the system itself
(Caviar: the trial's ``refresh_time``, stamped by the database server when the
result lands; Optuna: ``datetime_complete``); for each window of ``--window``
finished trials the cost per trial is the window's span divided by its trials:
with a zero-time objective that is all coordination (the master's reads,
proposals and mirroring, the workers' claims and writes). Payload ``cnn`` adds
a CNN-sized history (10 metrics x 100 epochs) to every result (Optuna: as a
user attribute). The master runs with ``--no-tensorboard`` and ``--no-plots``
(per-epoch TensorBoard curves of every history, and the end-of-search plots,
are output, not coordination) and still mirrors ``results/``. ``--algos random`` isolates coordination from proposal time;
``tpe`` shows what the default algorithm adds. Optuna runs its TPE sampler in
both rows (its RandomSampler would be the counterpart of ``random``).

``--reports``: every trial first reports a 9-step learning curve
(``bench.objectives:reporting_objective``), and the stopping rule decides at
steps 1 and 3: Caviar's ASHA (the objective's default scheduler), Optuna's
``SuccessiveHalvingPruner`` with the same rungs. Stopped (pruned) trials count
as finished.

``--systems caviar-embedded`` times the embedded mode the same way: one process
proposes, runs each trial and rewrites ``results/results.pkl`` after it (no
workers, no database).

Goal (issue 8): with ``--algo random`` and CNN-sized results, at most 15 ms per
trial in the window ending at 10,000 trials, and within 1.5x of the first window.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import pickle
import sys
import tempfile
import time
from typing import Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(1, REPO)


from bench.overhead import (  # noqa: E402 - after the path set-up above
    BenchError,
    Procs,
    caviar_master_flags,
    cpu_model,
    git_commit,
    mongo_for,
    python,
    versions,
)
from optimizer.samplers import ALGORITHMS, DEFAULT_ALGORITHM  # noqa: E402

DEFAULT_OUTPUT = os.path.join(REPO, "bench", "results", "scale.md")
GOAL_MS, GOAL_RATIO = 15.0, 1.5


def windows(ends: Sequence[float], size: int) -> list[float]:
    """ms per trial in each window of ``size`` completions (the first window starts at the first completion)."""
    ends = sorted(ends)
    costs = []
    for start in range(0, len(ends) - 1, size):
        chunk = ends[start:start + size + 1]
        if len(chunk) > 1:
            costs.append(1000 * (chunk[-1] - chunk[0]) / (len(chunk) - 1))
    return costs


def objective(args: argparse.Namespace) -> str:
    """The objective Caviar's processes import: with ``--reports``, the one reporting a learning curve."""
    return f"bench.objectives:{'reporting_objective' if args.reports else 'sleep_objective'}"


def run_caviar(args: argparse.Namespace, run_dir: str, algo: str, payload: str) -> list[float]:
    """One Caviar experiment; the server-side completion times of its trials."""
    from pymongo import MongoClient

    from caviar.store import DONE

    name = f"caviar-{algo}-{payload}"
    env = dict(os.environ, PYTHONPATH=REPO, BENCH_SLEEP="0", BENCH_PAYLOAD=payload)
    with mongo_for(name, run_dir, args.mongo_url) as mongo:
        procs = Procs(run_dir, env)
        try:
            master = procs.start(f"{name}-master", [
                python(), "-m", "optimizer", "--mongo", mongo.url, "--exp-key", "scale",
                "--space", "bench.objectives:SPACE", "--objective", objective(args),
                "--max-evals", str(args.trials), "--algo", algo,
                "--results-dir", os.path.join(run_dir, f"{name}-results"), "--no-tensorboard",
                *caviar_master_flags(False)], cwd=REPO)
            workers = [procs.start(f"{name}-worker{i}", [python(), "-m", "worker", "--mongo", mongo.url,
                                                         "--exp-key", "scale"], cwd=REPO)
                       for i in range(args.workers)]
            procs.wait([master], time.perf_counter() + args.timeout, workers)
            if master.returncode != 0:
                raise BenchError(f"the master exited {master.returncode}\n{procs.tail()}")
        finally:
            procs.stop()
        # Only the completion times: 10,000 CNN-sized results are 100 MB, whose one read can keep a
        # stand-in server from answering the client's monitoring past its timeout.
        with MongoClient(mongo.url, serverSelectionTimeoutMS=60_000, connectTimeoutMS=60_000) as client:
            found = client.get_default_database()["trials"].find(
                {"exp_key": {"$eq": "scale"}, "state": {"$eq": DONE}}, {"_id": 0, "refresh_time": 1}, batch_size=500)
            return [d["refresh_time"] for d in found]


def run_embedded(args: argparse.Namespace, run_dir: str, algo: str, payload: str) -> list[float]:
    """One search in the embedded mode (no database, the trials run in the master's process); the
    completion times of its trials, as the store stamped them (read back from results.pkl)."""
    name = f"embedded-{algo}-{payload}"
    results = os.path.join(run_dir, f"{name}-results")
    procs = Procs(run_dir, dict(os.environ, PYTHONPATH=REPO, BENCH_SLEEP="0", BENCH_PAYLOAD=payload))
    try:
        master = procs.start(name, [
            python(), "-m", "optimizer", "--space", "bench.objectives:SPACE",
            "--objective", objective(args), "--max-evals", str(args.trials), "--algo", algo,
            "--results-dir", results, "--no-tensorboard", *caviar_master_flags(False)], cwd=REPO)
        procs.wait([master], time.perf_counter() + args.timeout)
        if master.returncode != 0:
            raise BenchError(f"the embedded search exited {master.returncode}\n{procs.tail()}")
    finally:
        procs.stop()
    with open(os.path.join(results, "results.pkl"), "rb") as f:
        return [d["refresh_time"] for d in pickle.load(f).trials]


def run_optuna(args: argparse.Namespace, run_dir: str, payload: str) -> list[float]:
    """One Optuna study on a JournalFile storage with W processes; the completion times of its trials."""
    import optuna

    from bench.optuna_worker import open_storage

    path = os.path.join(run_dir, f"optuna-{payload}.log")
    spec = f"journal:{path}"
    optuna.create_study(storage=open_storage(spec), study_name="scale", direction="minimize")
    env = dict(os.environ, PYTHONPATH=REPO, BENCH_SLEEP="0", BENCH_PAYLOAD=payload)
    procs = Procs(run_dir, env)
    try:
        started = [procs.start(f"optuna-{payload}-{i}", [
            python(), "-m", "bench.optuna_worker", "--storage", spec, "--study", "scale",
            "--trials", str(args.trials), "--seed", str(i), *(["--reports"] if args.reports else [])], cwd=REPO)
            for i in range(args.workers)]
        procs.wait(started, time.perf_counter() + args.timeout)
    finally:
        procs.stop()
    study = optuna.load_study(study_name="scale", storage=open_storage(spec))
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return [t.datetime_complete.timestamp() for t in study.trials
            if t.state in finished and t.number < args.trials]  # those past N were pruned unevaluated


def fmt(costs: list[float]) -> str:
    return " | ".join(f"{c:,.1f}" for c in costs)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python bench/scale.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=10_000)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--window", type=int, default=1000)
    p.add_argument("--algos", nargs="+", default=["random", DEFAULT_ALGORITHM], choices=ALGORITHMS)
    p.add_argument("--payloads", nargs="+", default=["small", "cnn"], choices=["small", "cnn"])
    p.add_argument("--systems", nargs="+", default=["caviar", "optuna-journal"],
                   choices=["caviar", "caviar-embedded", "optuna-journal"],
                   help="caviar-embedded: the search without MongoDB, in one process (--workers does not apply)")
    p.add_argument("--mongo-url", default=None, help="use this MongoDB instead of a fresh nx-27017")
    p.add_argument("--reports", action="store_true",
                   help="each trial reports 9 steps first; ASHA (Optuna: successive halving) decides at 1 and 3")
    p.add_argument("--timeout", type=float, default=6 * 3600.0, help="seconds allowed per run")
    p.add_argument("--output", default=DEFAULT_OUTPUT, help="markdown report ('' to skip)")
    args = p.parse_args(argv)

    started = dt.datetime.now(dt.timezone.utc)
    rows: list[tuple[str, str, str, list[float], float]] = []
    with tempfile.TemporaryDirectory(prefix="caviar-scale-") as run_dir:
        for payload in args.payloads:
            for system, runner in (("caviar", run_caviar), ("caviar-embedded", run_embedded)):
                for algo in args.algos if system in args.systems else []:
                    t0 = time.perf_counter()
                    costs = windows(runner(args, run_dir, algo, payload), args.window)
                    rows.append((system, algo, payload, costs, time.perf_counter() - t0))
                    print(f"{system} --algo {algo} {payload}: {fmt(costs)} ms/trial", flush=True)
                    report(args, argv, started, rows)
            if "optuna-journal" in args.systems:
                t0 = time.perf_counter()
                costs = windows(run_optuna(args, run_dir, payload), args.window)
                rows.append(("optuna-journal", "tpe", payload, costs, time.perf_counter() - t0))
                print(f"optuna-journal {payload}: {fmt(costs)} ms/trial", flush=True)
                report(args, argv, started, rows)
    print(report(args, argv, started, rows))
    return 0


def report(args: argparse.Namespace, argv: Sequence[str] | None, started: dt.datetime,
           rows: list[tuple[str, str, str, list[float], float]]) -> str:
    """The markdown table of the rows measured so far, written to ``--output`` after each run (a later
    failure keeps the earlier rows)."""
    n = max(len(r[3]) for r in rows)
    head = " | ".join(f"{(i + 1) * args.window:,}" for i in range(n))
    lines = [
        "# Coordination cost per trial as the experiment grows",
        "",
        f"Date: {started:%Y-%m-%d %H:%M} UTC; commit {git_commit()}. Machine: {os.cpu_count()} CPUs "
        f"({cpu_model()}), Python {sys.version.split()[0]}.",
        "Packages: " + ", ".join(f"{k} {v}" for k, v in versions().items()) + ".",
        f"Settings: {args.trials:,} trials, {args.workers} worker processes"
        f"{' (caviar-embedded: none, one process)' if 'caviar-embedded' in args.systems else ''}, zero-time objective"
        f"{' reporting 9 steps, stopped by ASHA / successive halving at steps 1 and 3' if args.reports else ''}; "
        f"ms per trial in windows of {args.window:,} finished trials.",
        f"Command: `python bench/scale.py {' '.join(argv if argv is not None else sys.argv[1:])}`.",
        "",
        f"| system | algo | result | {head} | last / first | run s |",
        "|---|---|---|" + "---|" * n + "---|---|",
    ]
    for system, algo, payload, costs, seconds in rows:
        ratio = costs[-1] / costs[0] if costs and costs[0] else float("nan")
        cells = [f"{c:,.1f}" for c in costs] + ["-"] * (n - len(costs))
        lines.append(f"| {system} | {algo} | {payload} | {' | '.join(cells)} | {ratio:.2f} | {seconds:,.0f} |")
    lines += ["", f"Goal: caviar, random, cnn: at most {GOAL_MS:g} ms per trial in the last window at "
              f"10,000 trials, within {GOAL_RATIO:g}x of the first window."]
    text = "\n".join(lines) + "\n"
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
    return text


if __name__ == "__main__":
    sys.exit(main())
