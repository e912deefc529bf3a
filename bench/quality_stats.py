"""Is a gap in median regret real? Many seeds of sequential runs, compared with a bootstrap and a rank test.

    python bench/quality_stats.py [--problem hartmann6] [--seeds 150] [--first-seed 0] [--evals 100] [--jobs 2]
        [--methods "caviar tpe-mv" "optuna mv-tpe" "optuna mv-tpe liar reseeded"] [--output F.md]

The seeds of two methods share nothing (each draws its own random numbers), so the
runs are compared as two independent samples: for each method against the first
``optuna`` one, the ratio of median regrets with a 95% bootstrap interval (10,000
resamples of each method's runs), the two-sided Mann-Whitney U p-value of the
regrets, and the share of runs below ``--basin`` (on Hartmann-6, 0.119 is the regret
of its best local optimum: a run below it has reached the global optimum's basin).
A median taken where many runs sit at one local optimum moves a lot with few seeds.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import sys
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from scipy.stats import mannwhitneyu

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.problems import PROBLEMS  # noqa: E402
from bench.quality import ABLATIONS, METHODS, regret_at, run  # noqa: E402

CHECKPOINTS = (50, 100)


def _regrets(args: tuple[str, str, int, int]) -> tuple[str, int, list[float]]:
    method, problem, seed, evals = args
    losses = run(method, problem, seed, evals, 1)["losses"]
    return method, seed, [regret_at(losses, k, PROBLEMS[problem].optimum) for k in CHECKPOINTS]


def bootstrap_ratio(a: np.ndarray, b: np.ndarray, rng: np.random.Generator, n: int = 10_000) -> tuple[float, float]:
    """95% interval of median(a) / median(b), each sample resampled on its own."""
    ma = np.median(rng.choice(a, (n, a.size)), axis=1)
    mb = np.median(rng.choice(b, (n, b.size)), axis=1)
    low, high = np.percentile(ma / mb, [2.5, 97.5])
    return float(low), float(high)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--problem", default="hartmann6", choices=list(PROBLEMS))
    parser.add_argument("--seeds", type=int, default=150)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--evals", type=int, default=100)
    parser.add_argument("--basin", type=float, default=0.119)
    parser.add_argument("--methods", nargs="+", choices=METHODS + ABLATIONS,
                        default=["optuna mv-tpe", "caviar tpe-mv", "optuna mv-tpe liar reseeded"])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--output")
    args = parser.parse_args()
    tasks = [(m, args.problem, s, args.evals) for m in args.methods for s in range(args.first_seed, args.first_seed + args.seeds)]
    with ProcessPoolExecutor(args.jobs) as pool:
        found = list(pool.map(_regrets, tasks, chunksize=4))
    regrets = {m: np.array([r for method, _, r in sorted(found) if method == m]) for m in args.methods}
    reference = next(m for m in args.methods if m.startswith("optuna"))
    rng = np.random.default_rng(0)
    last = args.first_seed + args.seeds - 1
    lines = [f"{args.problem}, sequential, {args.seeds} seeds ({args.first_seed}-{last}), reference: {reference}", "",
             "    " + shlex.join(["python", "bench/quality_stats.py", *sys.argv[1:]]), "",
             "| method | @k | median regret | ratio to reference (95% bootstrap) | Mann-Whitney p | runs < basin |",
             "|---|---|---|---|---|---|"]
    for m in args.methods:
        for i, k in enumerate(CHECKPOINTS):
            a, b = regrets[m][:, i], regrets[reference][:, i]
            low, high = bootstrap_ratio(a, b, rng)
            p = mannwhitneyu(a, b).pvalue if m != reference else float("nan")
            lines.append(f"| {m} | {k} | {statistics.median(a):.4g} | {np.median(a) / np.median(b):.2f} "
                         f"({low:.2f}-{high:.2f}) | {p:.2f} | {100 * np.mean(a < args.basin):.0f}% |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
