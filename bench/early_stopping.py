"""Early stopping: epochs and wall time to a good CNN, with and without stopping, beside Optuna's pruners.

    python -m bench.early_stopping [--trials 20] [--stopping-trials 60] [--epochs 9] [--min-epochs 1] [--images 2000]
        [--validation-images 2000] [--workers 2] [--seeds 0 1 2]
        [--systems caviar-none caviar-asha optuna-sh optuna-hb] [--output bench/results/early_stopping.md]
        (every trial, with its per-epoch validation accuracies: early_stopping-runs.json beside it)
    python -m bench.early_stopping summarize RUNS.json [RUNS.json ...] --output OUT.md
    python -m bench.early_stopping retrain RUNS.json [--training-seeds 100 ... 105] [--share 0.333]
        --output OUT.md
        (caviar-none's best configuration of each seed, and each other system's best within a third
        of its epochs, trained again with other seeds: how much of an accuracy is one training's luck)
    python -m bench.early_stopping replay RUNS.json [RUNS.json ...] [--scheduler asha ...] [--min-epochs 1 ...]
        [--reduction-factor 3 ...] [--order finished|recorded] [--share 0.333] --output OUT.md
        (caviar-none's recorded searches replayed under a scheduler's rule, no training: the epochs the rule
        alone would have needed to reach their best, had the sampler proposed the same trials)

Every system searches the same CPU-sized CNN space (``SPACE``: conv blocks,
filters, dense units, dropout, learning rate, batch size) on the real CIFAR-10
subset (``--data``: 80% of the first ``--images`` training images to train on;
``--validation-images`` further images of the training batches, never trained
on, to validate on, or with 0 the other 20% of ``--images``; the first 1,000
test images), with trials of up to ``--epochs``
epochs, over ``--workers`` processes, one system after the other, all with the
same budget of GPU work: ``caviar-none`` runs ``--trials`` trials (every one to
its last epoch), the early-stopping systems run up to ``--stopping-trials`` and
are measured on the trials that finished within the epochs ``caviar-none``
used (stopping bad trials early is worth what the saved epochs buy: more
configurations tried):

- ``caviar-none`` / ``caviar-asha``: ``python -m optimizer --mongo --algo ALGO`` (``--algo``,
  default ``tpe-mv``: Optuna's TPE, the sampler Optuna's pruners run with, so that the systems
  differ in their stopping rules alone; ``--algo gp`` measures Caviar's default search) and
  ``--workers`` ``python -m worker`` processes on a fresh nx-27017 server,
  with ``--scheduler none`` / ``asha`` (``--min-epochs`` as given, default 1, ``--reduction-factor 3``);
  ``caviar-asha-promote``: asha with ``--promote yes`` (a promotion is a trial of its own
  that resumes from the paused trial's checkpoint: it counts the epochs after that one,
  and the system may run twice ``--stopping-trials`` trials);
  the objective reports through ``neural_net.callbacks.ReportEpochs`` and so
  checkpoints every epoch to GridFS, as the CNN does;
- ``optuna-sh`` / ``optuna-hb``: ``--workers`` processes running
  ``study.optimize`` on one JournalFile storage with ``TPESampler`` and
  ``SuccessiveHalvingPruner(min_resource=min_epochs, reduction_factor=3)`` /
  ``HyperbandPruner(min_epochs, epochs, 3)``, reporting ``val_accuracy`` per epoch.

Every trial records the epochs it trained, its best validation accuracy, the
test accuracy of its final model and when it ended. Measures:

- epochs (summed over finished trials, in the order they finished) and wall
  time until a trial reaches the best validation accuracy of ``caviar-none``;
- each system's epochs within caviar-none's, and its wall time to the end of the last
  of those trials (an early-stopping system runs on past them, up to ``--stopping-trials``);
- the best trial (by validation) within E epochs, E the fewest epochs any
  early-stopping system used in all, and its test accuracy.

With several ``--seeds`` (the search's ``--seed``; Optuna's samplers get
seed x workers + i) every system runs once per seed, and a last table gives
the medians over seeds of the ratios that the goal is stated in.

A benchmark, not a test: it prints and writes a markdown table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from hyperopt import hp

from bench.cluster import ROOT, run_search, search_env
from optimizer.samplers import ALGORITHMS

DATA = ROOT.parent / "shared" / "data" / "cifar-10-python-subset.tar.gz"
TEST_IMAGES = 1000
VALIDATION_IMAGES = 2000  # held out beyond --images; 0: the old 20% of --images (see data())
EPOCHS = int(os.environ.get("BENCH_EPOCHS", "9"))
MIN_EPOCHS = int(os.environ.get("BENCH_MIN_EPOCHS", "1"))  # the first rung, of every system that stops
FILTERS, BLOCKS, DENSE, BATCHES = [8, 16, 32], [1, 2, 3], [32, 64, 128], [32, 64, 128]
SPACE: dict[str, Any] = {
    "filters": hp.choice("filters", FILTERS),
    "blocks": hp.choice("blocks", BLOCKS),
    "dense": hp.choice("dense", DENSE),
    "dropout": hp.uniform("dropout", 0.0, 0.5),
    "lr": hp.loguniform("lr", math.log(1e-4), math.log(3e-2)),
    "batch_size": hp.choice("batch_size", BATCHES),
}


# -- the objective, shared by every system -------------------------------------------
@functools.lru_cache(maxsize=1)
def data() -> Any:
    """The CIFAR-10 subset of $BENCH_DATA, once per process.

    Training: 80% of the first $BENCH_IMAGES training images. Validation: the
    other 20% when $BENCH_VALIDATION_IMAGES is 0; otherwise that many images of
    the training batches that follow the first $BENCH_IMAGES (never trained on),
    so that a validation accuracy measures a configuration rather than the luck
    of 400 images. The training set is the same either way.
    """
    import dataclasses

    from neural_net import datasets
    from neural_net.settings import Settings

    settings = Settings(dataset="cifar10", data_path=os.environ.get("BENCH_DATA", str(DATA)),
                        dataset_size=int(os.environ.get("BENCH_IMAGES", "2000")),
                        validation_split=0.2, seed=0, offline=True)
    loaded = datasets.load(settings)
    extra = int(os.environ.get("BENCH_VALIDATION_IMAGES", "0"))
    if not extra:
        return loaded
    spec = datasets.dataset_spec("cifar10")
    official = spec.read(datasets.locate(spec, settings.data_path, offline=True))
    first = int(settings.dataset_size)
    if first + extra > len(official.train):
        raise SystemExit(f"error: --images {first} + --validation-images {extra} > the {len(official.train)} "
                         "training images")
    held_out = official.train.take(slice(first, first + extra))
    return dataclasses.replace(loaded, validation=datasets.Split(held_out.x.copy(), held_out.fine.copy()))


def train(params: dict[str, Any], callbacks: list[Any], resume_into: Callable[[Any], tuple[int, dict]] | None = None
          ) -> dict[str, Any]:
    """Fit the CNN of ``params`` for up to EPOCHS epochs; its epochs, best validation and final test accuracy."""
    import keras

    d = data()
    keras.utils.set_random_seed(int(os.environ.get("HKS_SEED", "0")))
    layers: list[Any] = [keras.Input(d.input_shape)]
    for block in range(int(params["blocks"])):
        layers += [keras.layers.Conv2D(int(params["filters"]) * 2 ** block, 3, padding="same", activation="relu"),
                   keras.layers.MaxPooling2D()]
    layers += [keras.layers.Flatten(), keras.layers.Dropout(float(params["dropout"])),
               keras.layers.Dense(int(params["dense"]), activation="relu"), keras.layers.Dense(10, activation="softmax")]
    model = keras.Sequential(layers)
    model.compile(optimizer=keras.optimizers.Adam(float(params["lr"])), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    initial_epoch = 0 if resume_into is None else resume_into(model)[0]
    history = model.fit(d.train.x, d.train.fine, validation_data=(d.validation.x, d.validation.fine),
                        batch_size=int(params["batch_size"]), epochs=EPOCHS, initial_epoch=initial_epoch,
                        verbose=0, callbacks=callbacks).history
    test = d.test.take(slice(0, TEST_IMAGES))
    _, test_accuracy = model.evaluate(test.x, test.fine, batch_size=256, verbose=0)
    keras.backend.clear_session()
    return {"epochs_trained": len(history["val_accuracy"]), "val_accuracy": max(history["val_accuracy"]),
            "test_accuracy": float(test_accuracy), "end_time": time.time(),
            "val_history": [float(v) for v in history["val_accuracy"]]}


def objective(params: dict[str, Any]) -> dict[str, Any]:
    """Caviar's objective: reports each epoch (and checkpoints) through neural_net.callbacks."""
    from neural_net.callbacks import ReportEpochs, resume

    checkpoint = Path(tempfile.mkdtemp()) / "checkpoint.npz"
    callback = ReportEpochs(checkpoint, monitors=("val_accuracy",))

    def resume_into(model: Any) -> tuple[int, dict]:
        step, history = resume(checkpoint, model)
        callback.history = {key: list(values) for key, values in history.items()}
        return step, history

    scores = train(params, [callback], resume_into)
    scores["val_history"] = [float(v) for v in callback.history["val_accuracy"]]  # epochs before a restart included
    scores["epochs_trained"] = len(scores["val_history"])
    scores["val_accuracy"] = max(scores["val_history"])
    return {"loss": -scores["val_accuracy"], "status": "ok", **scores}


objective.metric, objective.maximize = "accuracy", True  # type: ignore[attr-defined]
objective.scheduler, objective.max_steps = "asha", EPOCHS  # type: ignore[attr-defined]


def optuna_pruner(kind: str, min_epochs: int, reduction_factor: int, max_epochs: int) -> Any:
    """The pruner of ``optuna-<kind>`` (``sh``: SuccessiveHalving, ``hb``: Hyperband), for its processes and the
    replay alike."""
    import optuna

    if kind == "sh":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=min_epochs, reduction_factor=reduction_factor)
    return optuna.pruners.HyperbandPruner(min_resource=min_epochs, max_resource=max_epochs,
                                          reduction_factor=reduction_factor)


def optuna_worker(storage_path: str, study_name: str, pruner: str, trials: int, seed: int) -> None:
    """One Optuna process: TPE and the pruner on the shared journal, until ``trials`` trials exist."""
    import keras
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=JournalStorage(JournalFileBackend(storage_path)), study_name=study_name,
                                direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=optuna_pruner(pruner, MIN_EPOCHS, 3, EPOCHS), load_if_exists=True)

    class Report(keras.callbacks.Callback):
        def __init__(self, trial: optuna.Trial):
            super().__init__()
            self.trial, self.pruned = trial, False

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self.trial.report(float((logs or {})["val_accuracy"]), epoch + 1)
            if self.trial.should_prune():
                self.pruned, self.model.stop_training = True, True

    def run(trial: optuna.Trial) -> float:
        if trial.number >= trials:
            study.stop()
            raise optuna.TrialPruned()
        params = {"filters": trial.suggest_categorical("filters", FILTERS),
                  "blocks": trial.suggest_categorical("blocks", BLOCKS),
                  "dense": trial.suggest_categorical("dense", DENSE),
                  "dropout": trial.suggest_float("dropout", 0.0, 0.5),
                  "lr": trial.suggest_float("lr", 1e-4, 3e-2, log=True),
                  "batch_size": trial.suggest_categorical("batch_size", BATCHES)}
        report = Report(trial)
        scores = train(params, [report])
        for key, value in (scores | {"params": params}).items():
            trial.set_user_attr(key, value)
        if report.pruned:
            raise optuna.TrialPruned()
        return scores["val_accuracy"]

    study.optimize(run, n_trials=trials, callbacks=[optuna.study.MaxTrialsCallback(trials, states=None)])


# -- running the systems ---------------------------------------------------------------
@dataclass
class Run:
    system: str
    start: float
    wall: float
    trials: list[dict[str, Any]]  # epochs_trained, val_accuracy, test_accuracy, end_time; in order of ending



def trials_of(system: str, args: argparse.Namespace) -> int:
    """How many trials a system runs: the early-stopping ones more, for the same budget of epochs (twice as
    many with promotions, each of which is a trial of its own)."""
    if system == "caviar-none":
        return args.trials
    return 2 * args.stopping_trials if system.endswith("-promote") else args.stopping_trials


def within(run: Run, budget: int) -> Run:
    """``run`` cut to the trials that finished within ``budget`` epochs (in the order they finished)."""
    epochs, kept = 0, []
    for trial in run.trials:
        epochs += trial["epochs_trained"]
        if epochs > budget:
            break
        kept.append(trial)
    return Run(run.system, run.start, run.wall, kept)


def run_caviar(variant: str, seed: int, args: argparse.Namespace, workdir: Path, bench_env: dict[str, str]) -> Run:
    """``variant``: a scheduler, ``asha-promote`` for asha with ``--promote yes``."""
    scheduler, _, promote = variant.partition("-")
    start, wall, docs = run_search(workdir, f"caviar-{variant}-{seed}", ["--seed", str(seed),
        "--space", "bench.early_stopping:SPACE", "--objective", "bench.early_stopping:objective",
        "--max-evals", str(trials_of(f"caviar-{variant}", args)), "--algo", args.algo,
        "--scheduler", scheduler, "--min-epochs", str(args.min_epochs), "--reduction-factor", "3",
        "--promote", "yes" if promote == "promote" else "no",
        "--results-dir", str(workdir / f"results-{variant}-{seed}"), "--no-plots", "--no-tensorboard", "--lookahead", "0",
    ], args.workers, search_env(bench_env))
    trials = [epochs_of_its_own(d) for d in docs if d["result"].get("status") == "ok"]
    return Run(f"caviar-{variant}", start, wall, sorted(trials, key=lambda r: r["end_time"]))


def epochs_of_its_own(doc: dict[str, Any]) -> dict[str, Any]:
    """A trial's result and ``params``, a promotion's ``epochs_trained`` cut to the epochs after the one it resumed
    from (the paused trial it continues counts those)."""
    result = dict(doc["result"], params=doc["params"])
    if doc.get("continues"):
        result["epochs_trained"] -= result.get("resumed_from") or 0
    return result


def run_optuna(pruner: str, seed: int, args: argparse.Namespace, workdir: Path, bench_env: dict[str, str]) -> Run:
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    journal = str(workdir / f"optuna-{pruner}-{seed}.journal")
    log = open(workdir / f"optuna-{pruner}-{seed}.log", "wb")
    start = time.time()
    procs = [subprocess.Popen([sys.executable, "-m", "bench.early_stopping", "optuna-worker", "--journal", journal,
                               "--pruner", pruner, "--trials", str(trials_of(f"optuna-{pruner}", args)),
                               "--seed", str(seed * args.workers + i)],
                              cwd=ROOT, env=search_env(bench_env | {"HKS_SEED": str(seed)}), stdout=log,
                              stderr=subprocess.STDOUT)  # HKS_SEED: train as Caviar's workers of this seed do
             for i in range(args.workers)]
    codes = [p.wait() for p in procs]
    wall = time.time() - start
    if any(codes):
        raise SystemExit(f"optuna-{pruner}: a process exited {codes}; see {workdir}/optuna-{pruner}-{seed}.log")
    study = optuna.load_study(study_name="bench", storage=JournalStorage(JournalFileBackend(journal)))
    trials = [dict(t.user_attrs) for t in study.trials if "end_time" in t.user_attrs]
    return Run(f"optuna-{pruner}", start, wall, sorted(trials, key=lambda r: r["end_time"]))


# -- measures ------------------------------------------------------------------------
def to_target(run: Run, target: float) -> tuple[int | None, float | None]:
    """Epochs and seconds until the first finished trial at or above ``target`` validation accuracy."""
    epochs = 0
    for trial in run.trials:
        epochs += trial["epochs_trained"]
        if trial["val_accuracy"] >= target:
            return epochs, trial["end_time"] - run.start
    return None, None


def trials_to_target(run: Run, target: float) -> int | None:
    """How many trials had finished when the first at or above ``target`` did (it included)."""
    return next((i + 1 for i, trial in enumerate(run.trials) if trial["val_accuracy"] >= target), None)


def best_within(run: Run, budget: int) -> dict[str, Any] | None:
    """The best trial by validation among those finished within ``budget`` epochs."""
    epochs, best = 0, None
    for trial in run.trials:
        epochs += trial["epochs_trained"]
        if epochs > budget:
            break
        if best is None or trial["val_accuracy"] > best["val_accuracy"]:
            best = trial
    return best


def target_and_budget(runs: list[Run]) -> tuple[float | None, int | None]:
    """The best validation accuracy of caviar-none, and the fewest epochs an early-stopping system used."""
    reference = next((r for r in runs if r.system == "caviar-none"), None)
    target = max(t["val_accuracy"] for t in reference.trials) if reference else None
    stopping = [r for r in runs if r.system != "caviar-none"]
    budget = min(sum(t["epochs_trained"] for t in r.trials) for r in stopping) if stopping else None
    return target, budget


def summary(by_seed: list[list[Run]]) -> str:
    """Medians over seeds: each system's epochs to caviar-none's best, as a share of caviar-none's epochs in
    all and of those it needed itself to first reach it; and the best validation and test accuracy within E."""
    rows: dict[str, list[tuple[float | None, float | None, float | None, float | None]]] = {}
    for runs in by_seed:
        target, budget = target_and_budget(runs)
        none = next((r for r in runs if r.system == "caviar-none"), None)
        if target is None or none is None or budget is None:
            continue
        none_epochs, (none_to, _) = sum(t["epochs_trained"] for t in none.trials), to_target(none, target)
        for run in runs:
            to_epochs, _ = to_target(run, target)
            within = best_within(run, budget)
            rows.setdefault(run.system, []).append((
                None if to_epochs is None else to_epochs / none_epochs,
                None if to_epochs is None or not none_to else to_epochs / none_to,
                None if within is None else within["val_accuracy"],
                None if within is None else within["test_accuracy"]))

    def median(values: list[float | None], digits: int) -> str:
        """The median, a seed that never reached the target counting as the worst (infinitely many epochs)."""
        middle = statistics.median([math.inf if v is None else v for v in values])
        never = sum(v is None for v in values)
        text = "never" if math.isinf(middle) else f"{middle:.{digits}f}"
        return text + (f" ({never} of {len(values)} never)" if never else "")

    lines = [f"Medians over {len(by_seed)} seeds:", "",
             "| system | epochs to target / caviar-none's epochs | / caviar-none's epochs to target | "
             "best val within E | its test acc |", "|---|---|---|---|---|"]
    for system, values in rows.items():
        lines.append(f"| {system} | " + " | ".join(median([v[i] for v in values], digits)
                                                   for i, digits in enumerate((2, 2, 4, 4))) + " |")
    return "\n".join(lines)


def table(runs: list[Run]) -> str:
    target, budget = target_and_budget(runs)
    lines = [f"target: best validation accuracy of caviar-none = {target if target is None else f'{target:.4f}'}; "
             f"equal-epoch budget E = {budget}", "",
             "| system | trials | epochs | wall s | best val | epochs to target | s to target | "
             "best val within E | its test acc |", "|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        epochs = sum(t["epochs_trained"] for t in run.trials)
        stopped = sum(1 for t in run.trials if t["epochs_trained"] < EPOCHS)
        to_epochs, to_seconds = to_target(run, target) if target is not None else (None, None)
        within = best_within(run, budget) if budget is not None else None
        lines.append("| " + " | ".join([
            run.system, f"{len(run.trials)} ({stopped} stopped)", str(epochs), f"{wall_within(run):.0f}",
            f"{max(t['val_accuracy'] for t in run.trials):.4f}",
            "not reached" if to_epochs is None else f"{to_epochs} ({trials_to_target(run, target)} trials)",
            "-" if to_seconds is None else f"{to_seconds:.0f}",
            "-" if within is None else f"{within['val_accuracy']:.4f}",
            "-" if within is None else f"{within['test_accuracy']:.4f}",
        ]) + " |")
    return "\n".join(lines)


def wall_within(run: Run) -> float:
    """Seconds from the start to the end of the last trial counted: a system that stops trials ran on past the
    epochs it is measured within (up to ``--stopping-trials``), and its whole run's wall would not match them."""
    return max((t["end_time"] for t in run.trials), default=run.start) - run.start


def read_runs(path: str) -> list[tuple[int, list[Run]]]:
    """The runs saved in a -runs.json: per seed, each system's run; or one ``error:`` line."""
    try:
        saved = json.loads(Path(path).read_text())
        by_seed = [(runs[0]["seed"], [Run(r["system"], r["start"], r["wall"], r["trials"]) for r in runs])
                   for runs in saved]
    except (OSError, ValueError, TypeError, KeyError, IndexError) as err:
        raise SystemExit(f"error: {path}: not the -runs.json of a benchmark run: {err!r}") from None
    return by_seed


def summarize(paths: list[str], output: str, argv: list[str]) -> int:
    """Per-seed tables and the medians over every seed of the runs saved in ``paths`` (no training).

    A seed found in several files shows their systems side by side (systems run separately with the same
    settings, e.g. added to an earlier run); a system twice in one seed is refused.
    """
    merged: dict[int, list[Run]] = {}
    for path in paths:
        for seed, runs in read_runs(path):
            known = {r.system for r in merged.get(seed, [])}
            twice = sorted(known & {r.system for r in runs})
            if twice:
                raise SystemExit(f"error: {path}: seed {seed} of {', '.join(twice)} is in an earlier file too")
            merged.setdefault(seed, []).extend(runs)
    seeds, by_seed = list(merged), list(merged.values())
    sections = [f"Seed {seed}: {table(runs)}" for seed, runs in zip(seeds, by_seed)] + [summary(by_seed)]
    text = (f"# Early stopping benchmark: {len(seeds)} seeds pooled\n\n"
            f"`python -m bench.early_stopping {' '.join(argv)}`\n\n" + "\n\n".join(sections) + "\n")
    print(text)
    Path(output).write_text(text)
    return 0


def retrain(paths: list[str], training_seeds: list[int], share: float, output: str, argv: list[str]) -> int:
    """Each system's configuration trained again with other training seeds (``HKS_SEED`` sets the weights'
    initialisation and the batches' order): caviar-none's best (the target's), and each other system's best
    full-length trial among those finished within ``share`` of caviar-none's epochs. One training's accuracy
    is partly its seed's luck; the median over seeds compares what the systems found."""
    lines = ["| seed | system | chosen within | its configuration | val in the search | its own seed again | "
             "other training seeds | median |", "|---|---|---|---|---|---|---|---|"]
    medians: dict[str, list[float]] = {}
    for path in paths:
        for seed, runs in read_runs(path):
            none = next((r for r in runs if r.system == "caviar-none"), None)
            if none is None:
                raise SystemExit(f"error: {path}: seed {seed} has no caviar-none run")
            none_epochs = sum(t["epochs_trained"] for t in none.trials)
            for run in runs:
                budget = none_epochs if run is none else round(share * none_epochs)
                full = [t for t in within(run, budget).trials if len(t["val_history"]) == EPOCHS]
                if not full:
                    lines.append(f"| {seed} | {run.system} | {budget} | no full-length trial | | | | |")
                    continue
                best = max(full, key=lambda t: t["val_accuracy"])
                if "params" not in best:
                    raise SystemExit(f"error: {path}: {run.system}'s trials have no params "
                                     "(runs recorded before the bench kept them cannot be retrained)")
                scores = []
                for training_seed in [seed, *training_seeds]:
                    os.environ["HKS_SEED"] = str(training_seed)
                    scores.append(train(best["params"], [])["val_accuracy"])
                medians.setdefault(run.system, []).append(statistics.median(scores[1:]))
                config = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                                   for k, v in sorted(best["params"].items()))
                lines.append(f"| {seed} | {run.system} | {budget} | {config} | {best['val_accuracy']:.4f} | "
                             f"{scores[0]:.4f} | {' '.join(f'{v:.4f}' for v in scores[1:])} | "
                             f"{statistics.median(scores[1:]):.4f} |")
                print(lines[-1], flush=True)
    summary_lines = ["| system | median over seeds of the retrained median |", "|---|---|"]
    summary_lines += [f"| {system} | {statistics.median(values):.4f} ({len(values)} seeds) |"
                      for system, values in medians.items()]
    text = (f"# Each system's configuration trained again with other seeds, {dt.date.today()}\n\n"
            f"`python -m bench.early_stopping {' '.join(argv)}`; {EPOCHS} epochs; caviar-none's best over all its "
            f"epochs, the others' best full-length trial within {share:g} of them\n\n"
            + "\n".join(lines) + "\n\n" + "\n".join(summary_lines) + "\n")
    print("\n".join(["", *summary_lines, "", f"every configuration: {output}"]))  # its rows were printed as they came
    Path(output).write_text(text)
    return 0


ORDERS = {"finished": "one trial after the other in the order they finished (each sees every earlier one at a rung, "
                      "as with one worker)",
          "recorded": "each reaching its steps when it did in the recorded run (from its start and duration, "
                      "epochs evenly spread; a stopping run would shift these times)"}


def replayable(none: Run, name: str, seed: int, order: str
               ) -> tuple[list[list[float]], list[list[float]] | None, float, int]:
    """caviar-none's per-epoch curves, when each trial reached each step (``order`` recorded), its best accuracy
    and the epochs it took to reach it; or one ``error:`` line for a run that lacks what the replay needs."""
    if any("val_history" not in t for t in none.trials):
        raise SystemExit(f"error: {name}: seed {seed}'s trials have no val_history (recorded before the bench kept "
                         "each epoch's accuracy): nothing to replay")
    curves = [t["val_history"] for t in none.trials]
    reached = None
    if order == "recorded":
        if any("duration" not in t for t in none.trials):
            raise SystemExit(f"error: {name}: seed {seed}'s trials have no duration: replay them with --order "
                             "finished")
        reached = [[t["end_time"] - t["duration"] * (1 - step / len(curve)) for step in range(1, len(curve) + 1)]
                   for t, curve in zip(none.trials, curves)]
    target = max(t["val_accuracy"] for t in none.trials)
    return curves, reached, target, to_target(none, target)[0]


def replay_runs(paths: list[str], schedulers: list[str], min_epochs: list[int], factors: list[int], share: float,
                order: str, output: str, argv: list[str]) -> int:
    """caviar-none's recorded searches replayed under each of ``schedulers`` (with each of ``min_epochs`` and
    ``factors``; median has none): the epochs its rule alone would have needed to reach their best, had the
    sampler proposed the same trials."""
    from bench.scheduler_replay import OptunaPruner, replay, replay_promoting
    from caviar.errors import CaviarError
    from caviar.schedulers import from_config

    if "asha-promote" in schedulers and order != "finished":
        raise SystemExit("error: --scheduler asha-promote is replayed with --order finished only (one worker: "
                         "a promotion's epochs have no recorded time)")
    searches = []  # (file, seed, curves, when each trial reached each step or None, target, epochs to it)
    for path in paths:
        for seed, runs in read_runs(path):
            for none in (run for run in runs if run.system == "caviar-none"):
                searches.append((Path(path).name, seed, *replayable(none, Path(path).name, seed, order)))
    if not searches:
        raise SystemExit(f"error: no caviar-none run in {', '.join(paths)}: nothing to replay")
    lines = ["| rule | file | seed | target | without stopping: epochs to target | replayed: epochs to target | "
             "the target's trial | trials by epochs |", "|---|---|---|---|---|---|---|---|"]
    totals = ["| rule | searches | target reached | within the share of all epochs | within the share of the "
              "epochs to target | median, / all epochs | median, / epochs to target | epochs per trial |",
              "|---|---|---|---|---|---|---|---|"]
    rules = [(name, m, f) for name in schedulers for m in min_epochs
             for f in (factors if name != "median" else factors[:1])]
    for scheduler, first, factor in rules:
        rule = f"median {first}" if scheduler == "median" else f"{scheduler} {first}/{factor}"
        shares: list[tuple[float, float]] = []
        per_trial: list[float] = []
        for name, seed, curves, reached, target, none_to in searches:
            longest = max(map(len, curves))
            try:
                if scheduler.startswith("optuna-"):
                    judge = OptunaPruner(optuna_pruner(scheduler.removeprefix("optuna-"), first, factor, longest),
                                         first, factor, longest)
                    replayed = replay(judge, curves, target, reached)
                else:
                    kind, _, promote = scheduler.partition("-")
                    judge = from_config({"name": kind, "min_epochs": first, "reduction_factor": factor,
                                         "max_epochs": longest} | ({"promote": True} if promote else {}))
                    replayed = (replay_promoting(judge, curves, target) if promote else  # type: ignore[arg-type]
                                replay(judge, curves, target, reached))
            except (CaviarError, ValueError) as err:
                raise SystemExit(f"error: {err}") from None
            all_epochs, got = sum(map(len, curves)), replayed.to_target
            shares.append((math.inf, math.inf) if got is None else (got / all_epochs, got / none_to))
            per_trial.append(sum(replayed.epochs) / len(curves))
            lengths = ", ".join(f"{e}: {replayed.epochs.count(e)}" for e in sorted(set(replayed.epochs)))
            fate = ("ran on" if replayed.target_stopped_at is None
                    else f"stopped at epoch {replayed.target_stopped_at}")
            lines.append(f"| {rule} | {name} | {seed} | {target:.4f} | {none_to} of {all_epochs} | "
                         f"{'never' if got is None else got} | trial {replayed.target_trial + 1} of {len(curves)}, "
                         f"{fate} | {lengths} |")

        def median(values: list[float]) -> str:
            middle = statistics.median(values)
            return "never" if math.isinf(middle) else f"{middle:.2f}"

        totals.append(f"| {rule} | {len(shares)} | {sum(not math.isinf(a) for a, _ in shares)} | "
                      f"{sum(a <= share for a, _ in shares)} | {sum(b <= share for _, b in shares)} | "
                      f"{median([a for a, _ in shares])} | {median([b for _, b in shares])} | "
                      f"{statistics.mean(per_trial):.2f} |")
    text = (f"# caviar-none's searches replayed under {', '.join(schedulers)}, {dt.date.today()}\n\n"
            f"`python -m bench.early_stopping {' '.join(argv)}`\n\nEach search's trials judged from their recorded "
            f"per-epoch validation accuracy, {ORDERS[order]}; epochs summed in the order they finished; rule: "
            f"first rung / reduction factor; share: {share:.3g}; a search whose target was never reached counts "
            f"as the worst in a median.\n\n" + "\n".join(totals) + "\n\n" + "\n".join(lines) + "\n")
    print("\n".join(["", *totals, "", f"every search: {output}"]))
    Path(output).write_text(text)
    return 0


def share_of_epochs(text: str) -> float:
    """``--share``: a number above 0 and at most 1."""
    try:
        share = float(text)
    except ValueError:
        share = math.nan
    if not 0 < share <= 1:
        raise argparse.ArgumentTypeError(f"a share above 0 and at most 1, not {text!r}")
    return share


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.early_stopping")
    sub = p.add_subparsers(dest="command")
    worker = sub.add_parser("optuna-worker")
    worker.add_argument("--journal", required=True)
    worker.add_argument("--pruner", choices=["sh", "hb"], required=True)
    worker.add_argument("--trials", type=int, required=True)
    worker.add_argument("--seed", type=int, default=0)
    again = sub.add_parser("summarize", help="the tables again, from the -runs.json of one or more runs")
    again.add_argument("runs", nargs="+", help="-runs.json files; their seeds are pooled, the systems of one seed "
                                               "found in several files shown side by side")
    again.add_argument("--output", required=True)
    luck = sub.add_parser("retrain", help="each system's best configuration, trained again with other seeds")
    luck.add_argument("runs", nargs="+", help="-runs.json files (their trials' params recorded)")
    luck.add_argument("--training-seeds", type=int, nargs="+", default=list(range(100, 106)))
    luck.add_argument("--share", type=share_of_epochs, default=1 / 3,
                      help="the other systems' configuration: their best full-length trial within this share of "
                           "caviar-none's epochs (default: a third, the issue's goal)")
    luck.add_argument("--output", required=True)
    rule = sub.add_parser("replay", help="caviar-none's recorded searches replayed under a scheduler's rule")
    rule.add_argument("runs", nargs="+", help="-runs.json files with caviar-none runs")
    rule.add_argument("--scheduler", choices=["asha", "asha-promote", "hyperband", "median", "optuna-sh", "optuna-hb"],
                      nargs="+", default=["asha"], dest="schedulers",
                      help="Caviar's schedulers (asha-promote: asha --promote yes, --order finished only), or "
                           "Optuna's SuccessiveHalving / Hyperband pruner judging the same curves in an in-memory "
                           "study")
    rule.add_argument("--min-epochs", type=int, nargs="+", default=[MIN_EPOCHS], dest="first_rungs",
                      help="first rungs to replay (each with each --reduction-factor)")
    rule.add_argument("--reduction-factor", type=int, nargs="+", default=[3], dest="factors")
    rule.add_argument("--share", type=share_of_epochs, default=1 / 3,
                      help="count the searches whose target the rule reached within this share of caviar-none's "
                           "epochs (default: a third, the issue's goal)")
    rule.add_argument("--order", choices=list(ORDERS), default="finished",
                      help="finished: trial after trial, as with one worker; recorded: each step when the trial "
                           "reached it in the recorded run (from its duration, epochs evenly spread)")
    rule.add_argument("--output", required=True)
    p.add_argument("--trials", type=int, default=20, help="trials of the search without stopping")
    p.add_argument("--stopping-trials", type=int, default=60,
                   help="at most this many trials with stopping; only those within the epochs of --trials count")
    p.add_argument("--epochs", type=int, default=EPOCHS)
    p.add_argument("--min-epochs", type=int, default=MIN_EPOCHS,
                   help="epochs every trial runs before a scheduler or pruner may stop it (the first rung)")
    p.add_argument("--images", type=int, default=2000, help="the first images of the training batches: 80%% train")
    p.add_argument("--validation-images", type=int, default=VALIDATION_IMAGES,
                   help="validate on this many further images of the training batches (0: on the other 20%% of "
                        "--images, 400 of the default 2,000, whose noise swamps the differences being measured)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--algo", default="tpe-mv", choices=ALGORITHMS,
                   help="Caviar's search algorithm (tpe-mv: the TPE Optuna's pruners run with)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="the search's --seed, one full run each")
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--systems", nargs="+", default=["caviar-none", "caviar-asha", "optuna-sh", "optuna-hb"])
    p.add_argument("--output", default=str(ROOT / "bench" / "results" / "early_stopping.md"))
    args = p.parse_args(argv)
    if args.command == "optuna-worker":
        optuna_worker(args.journal, "bench", args.pruner, args.trials, args.seed)
        return 0
    if args.command == "summarize":
        return summarize(args.runs, args.output, argv if argv is not None else sys.argv[1:])
    if args.command == "replay":
        return replay_runs(args.runs, args.schedulers, args.first_rungs, args.factors, args.share, args.order,
                           args.output, argv if argv is not None else sys.argv[1:])
    if not 1 <= args.min_epochs <= args.epochs:
        raise SystemExit(f"error: --min-epochs must be between 1 and --epochs ({args.epochs}), got {args.min_epochs}")
    bench_env = {"BENCH_EPOCHS": str(args.epochs), "BENCH_MIN_EPOCHS": str(args.min_epochs),
                 "BENCH_IMAGES": str(args.images), "BENCH_DATA": args.data,
                 "BENCH_VALIDATION_IMAGES": str(args.validation_images)}
    os.environ.update(bench_env)
    globals()["EPOCHS"] = args.epochs
    data()  # here, not in the first trial of every worker: a bad --data, --images or --validation-images stops now
    if args.command == "retrain":
        return retrain(args.runs, args.training_seeds, args.share, args.output,
                       argv if argv is not None else sys.argv[1:])
    workdir = Path(tempfile.mkdtemp(prefix="bench-early-"))
    by_seed: list[list[Run]] = []
    for seed in args.seeds:
        runs = []
        for system in args.systems:
            kind, _, variant = system.partition("-")
            print(f"running {system}, seed {seed} ...", flush=True)
            run = (run_caviar if kind == "caviar" else run_optuna)(variant, seed, args, workdir, bench_env)
            if system != "caviar-none":
                run = within(run, args.trials * args.epochs)
            print(json.dumps({"system": system, "seed": seed, "wall": round(run.wall),
                              "epochs": sum(t["epochs_trained"] for t in run.trials)}), flush=True)
            runs.append(run)
        by_seed.append(runs)
    sections = [f"Seed {seed}: {table(runs)}" for seed, runs in zip(args.seeds, by_seed)]
    if len(by_seed) > 1:
        sections.append(summary(by_seed))
    text = (f"# Early stopping benchmark, {dt.date.today()}\n\n{args.trials} trials of up to {args.epochs} epochs "
            f"without stopping; with stopping (first rung at epoch {args.min_epochs}), up to {args.stopping_trials} "
            f"trials, counted within the same "
            f"{args.trials * args.epochs} epochs; "
            f"{args.images} CIFAR-10 images (80% train; validation: "
            f"{f'{args.validation_images} further images' if args.validation_images else 'the other 20%'}), "
            f"{TEST_IMAGES} test images, {args.workers} workers, "
            f"{os.cpu_count()} CPU cores; command: `python -m bench.early_stopping "
            f"{' '.join(argv if argv is not None else sys.argv[1:])}`\n\n" + "\n\n".join(sections) + "\n")
    print(text)
    Path(args.output).write_text(text)
    raw = Path(args.output).with_name(Path(args.output).stem + "-runs.json")
    raw.write_text(json.dumps([[r.__dict__ | {"seed": seed} for r in runs] for seed, runs in zip(args.seeds, by_seed)]))
    print(f"every trial: {raw}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
