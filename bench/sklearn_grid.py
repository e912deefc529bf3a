"""scikit-learn's GridSearchCV beside Caviar's, on the classic one-hidden-layer MLP grid.

    python -m bench.sklearn_grid [--epochs 3] [--output bench/results/sklearn_grid.md]

The grid is ``neural_net.classic.MLP1_SPACE``'s 15 candidates (``nodes`` in
32..512 x ``lr`` in 0.001..0.003, RMSprop, batches of 64) with 3 stratified
folds, 45 fits and a refit, through ``neural_net.classic.MLP1Classifier``. The
data are scikit-learn's bundled 1,797 real 8x8 handwritten digits
(``load_digits``, scaled to [0, 1]): MNIST itself cannot be downloaded here.
Epochs default to 3, not 15, to fit a CPU run.

Five runs, one after the other; the first three on the same folds:

- ``sklearn n_jobs=1``: ``sklearn.model_selection.GridSearchCV``;
- ``sklearn n_jobs=2``: the same over joblib's loky processes (one fold per task);
- ``caviar n_jobs=2``: ``optimizer.sklearn.GridSearchCV`` with 2 spawned
  processes (one candidate, all its folds, per trial);
- ``caviar CLI, 2 workers, --scheduler none`` and ``... asha``: ``python -m
  optimizer --algo grid --cv 3`` over ``neural_net.classic``'s ``mlp1``, with
  2 ``python -m worker`` processes on a fresh nx-27017 server, on the same
  digits written as MNIST idx files (``bench.digits_idx``: 28x28, 1,500 of
  them cross-validated, 297 held out for the refit's test). A trial reports
  its running mean accuracy after folds 1 and 2, so ASHA (``--min-epochs 1
  --reduction-factor 3``: one rung, after fold 1) can drop a candidate after
  its first fold: "fits" counts the folds trained, and the best CV accuracy
  is that of the candidates that trained all 3.

Wall time covers ``fit`` (or the master's run): process start-up and Keras'
import in the processes, the fits and the refit. This is a benchmark, not a
test: it prints and writes a markdown table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import logging
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from hyperopt import space_eval
from sklearn import model_selection
from sklearn.datasets import load_digits

from bench.digits_idx import write_digits
from neural_net.classic import MLP1_SPACE, MLP1Classifier
from optimizer import sklearn as caviar_sklearn
from optimizer.grid import grid_points

PACKAGES = ("scikit-learn", "keras", "tensorflow", "hyperopt", "numpy")
ROOT = Path(__file__).resolve().parents[1]
TEST_IMAGES = 297  # held out for the CLI runs' refit
FOLDS = 3


def _grid() -> list[dict[str, list[Any]]]:
    """The space's 15 points in its grid order, as scikit-learn's list of one-candidate grids."""
    points = (space_eval(MLP1_SPACE, {k: v[0] for k, v in vals.items() if v}) for vals in grid_points(MLP1_SPACE))
    return [{"nodes": [p["nodes"]], "lr": [p["lr"]]} for p in points]


def run(label: str, search_class: type, n_jobs: int, x: np.ndarray, y: np.ndarray, epochs: int) -> dict[str, Any]:
    """Fit one search and report its wall time and best candidate."""
    cv = model_selection.StratifiedKFold(3, shuffle=True, random_state=0)
    search = search_class(MLP1Classifier(epochs=epochs, batch_size=64), _grid(), cv=cv, n_jobs=n_jobs)
    start = time.perf_counter()
    search.fit(x, y)
    wall = time.perf_counter() - start
    logging.info("%s: %.1f s, best %s %.4f", label, wall, search.best_params_, search.best_score_)
    return {"run": label, "wall": wall, "fits": len(search.cv_results_["params"]) * search.n_splits_,
            "best": search.best_score_, "params": search.best_params_}


def run_cli(scheduler: str, data: Path, workdir: Path, epochs: int) -> dict[str, Any]:
    """The grid through ``python -m optimizer --mongo`` and 2 ``python -m worker`` processes; wall time,
    folds trained, and the best candidate among those that trained every fold."""
    from bench.cluster import run_search, search_env

    _, wall, docs = run_search(workdir, f"cli-{scheduler}", [
        "--algo", "grid", "--cv", str(FOLDS), "--scheduler", scheduler, "--min-epochs", "1", "--reduction-factor", "3",
        "--space", "neural_net.classic:MLP1_SPACE", "--objective", "neural_net.classic:mlp1",
        "--data-path", str(data), "--epochs", str(epochs), "--results-dir", str(workdir / f"results-{scheduler}"),
        "--no-plots", "--no-tensorboard", "--no-mlflow",
    ], 2, search_env())
    results = [d["result"] for d in docs if d["result"].get("status") == "ok"]
    complete = [r for r in results if len(r["splits"]) == FOLDS]
    best = max(complete, key=lambda r: r["mean_test_score"])
    label = f"caviar CLI, 2 workers, --scheduler {scheduler}"
    logging.info("%s: %.1f s, %d of %d candidates stopped, best %s %.4f", label, wall,
                 len(results) - len(complete), len(results), best["space"], best["mean_test_score"])
    return {"run": label, "wall": wall, "fits": sum(len(r["splits"]) for r in results),
            "best": best["mean_test_score"], "params": best["space"]}


def table(rows: list[dict[str, Any]], epochs: int, n: int) -> str:
    """The markdown report: context, then one line per run."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    versions = ", ".join(f"{p} {importlib.metadata.version(p)}" for p in PACKAGES)
    lines = [
        "# scikit-learn's GridSearchCV vs Caviar's (bench/sklearn_grid.py)",
        "",
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, commit {commit}, {platform.machine()} "
        f"{os.cpu_count()} cores, Python {platform.python_version()}; {versions}.",
        f"One-hidden-layer MLP grid (15 candidates x 3 folds = 45 fits + refit), {epochs} epochs, "
        f"batches of 64, on sklearn's {n} real 8x8 digits (the CLI runs: {n - TEST_IMAGES} of them as "
        "28x28 MNIST idx files; fits: folds trained; best: of the candidates that trained every fold).",
        "",
        "| run | fits | wall (s) | best CV accuracy | best params |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {r['run']} | {r['fits']} | {r['wall']:.1f} | {r['best']:.4f} | "
              f"nodes={r['params']['nodes']}, lr={r['params']['lr']} |" for r in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--output", type=Path, default=Path("bench/results/sklearn_grid.md"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    rows = [
        run("sklearn GridSearchCV n_jobs=1", model_selection.GridSearchCV, 1, x, y, args.epochs),
        run("sklearn GridSearchCV n_jobs=2", model_selection.GridSearchCV, 2, x, y, args.epochs),
        run("caviar GridSearchCV n_jobs=2", caviar_sklearn.GridSearchCV, 2, x, y, args.epochs),
    ]
    with tempfile.TemporaryDirectory(prefix="sklearn-grid-") as tmp:
        data = Path(tmp) / "mnist"
        write_digits(data, TEST_IMAGES)
        rows += [run_cli(scheduler, data, Path(tmp), args.epochs) for scheduler in ("none", "asha")]
    report = table(rows, args.epochs, len(y))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
