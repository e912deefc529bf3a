"""``python -m optimizer``: every setting of a search as a flag, with the HKS_* variables as defaults."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any, Sequence

from optimizer.config import Parser, configure_logging, non_negative_int, positive_float, positive_int
from optimizer.errors import CaviarError
from optimizer.store import DONE

log = logging.getLogger("optimizer")

DEFAULT_SPACE = "optimizer.space:CIFAR_SPACE"
DEFAULT_OBJECTIVE = "neural_net.train:objective"
# Settings of the default CNN objective: recorded in the experiment so every worker trains alike.
OBJECTIVE_ENV = ("HKS_EPOCHS", "DATASET_SIZE", "HKS_DATASET", "HKS_VALIDATION_SPLIT", "HKS_SEED")


def build_parser() -> Parser:
    """The search's command line."""
    p = Parser(
        prog="python -m optimizer",
        description=(
            "Run a hyperparameter search. Without --mongo it runs in this process and resumes from "
            "results/results.pkl; with --mongo it queues trials for `python -m worker` processes."
        ),
        epilog="other commands: " + "; ".join(f"{k}: {v}" for k, v in TOOLS.items())
        + " (python -m optimizer COMMAND --help)",
    )
    p.env_option("--space", "HKS_SPACE", DEFAULT_SPACE, help="hyperopt space as module:attribute")
    p.env_option("--objective", "HKS_OBJECTIVE", DEFAULT_OBJECTIVE,
                 help="objective as module:function, taking the params dict and returning a loss or a result dict")
    p.env_option("--algo", "HKS_ALGO", "tpe", choices=["tpe", "random", "anneal"], help="search algorithm")
    p.env_option("--max-evals", "HKS_MAX_EVALS", 50, positive_int,
                 help="total finished trials (ok or failed) the experiment should hold")
    p.env_option("--seed", "HKS_SEED", 0, non_negative_int, help="seed of the search (and of the CNN training)")
    p.env_option("--results-dir", "HKS_RESULTS_DIR", "results", help="where results are mirrored")
    p.env_option("--mongo", "MONGO_URL", None, help="MongoDB URL, e.g. mongodb://host:27017/caviar; unset: embedded mode")
    p.env_option("--exp-key", "EXPERIMENT_NAME", "caviar", help="experiment name in the database")
    p.env_option("--lease-seconds", "HKS_LEASE_SECONDS", 60.0, positive_float,
                 help="a worker silent this long loses its trial to the queue")
    p.env_option("--lookahead", "HKS_LOOKAHEAD", 2, non_negative_int,
                 help="trials queued beyond one per live worker, so no worker waits")
    p.env_option("--epochs", "HKS_EPOCHS", None, positive_int, help="CNN objective: training epochs per trial")
    p.env_option("--dataset-size", "DATASET_SIZE", None, positive_int,
                 help="CNN objective: keep the first N training images (quick CPU runs)")
    p.env_option("--dataset", "HKS_DATASET", None, choices=["cifar100", "cifar10", "mnist", "fashion_mnist"],
                 help="CNN objective: data set")
    p.env_option("--data-path", "HKS_DATA_PATH", None, help="CNN objective: path of the data set archive")
    p.add_argument("--mlflow", action=argparse.BooleanOptionalAction, default=None,
                   help="log every trial to MLflow (pip install '.[mlflow]'); default: only when "
                   "MLFLOW_TRACKING_URI is set; local store: <results-dir>/mlflow.db")
    p.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, default=None,
                   help="log trials to <results-dir>/tensorboard/; default: the trials with per-epoch curves")
    p.add_argument("--no-plots", action="store_true", help="skip drawing results/plots/ at the end of the search")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def export_objective_settings(args: argparse.Namespace) -> dict[str, str]:
    """Put the CNN settings given as flags into the environment and return those to record."""
    flags = {"HKS_EPOCHS": args.epochs, "DATASET_SIZE": args.dataset_size, "HKS_DATASET": args.dataset,
             "HKS_DATA_PATH": args.data_path, "HKS_SEED": args.seed}
    for env, value in flags.items():
        if value is not None:
            os.environ[env] = str(value)
    # Unset ones are recorded as "" (the objective's default), so that a worker serving
    # several experiments does not carry one experiment's settings into another.
    return {k: os.environ.get(k, "") for k in OBJECTIVE_ENV}


def run(args: argparse.Namespace) -> int:
    """Run (or resume) a search to ``max_evals`` finished trials."""
    from optimizer.imports import import_attr
    from optimizer.master import Recorder, finalize, run_distributed, run_embedded
    from optimizer.progress import Progress
    from optimizer.results import ResultsDir
    from optimizer.search import Search
    from optimizer.space import CIFAR_SPACE, DEMO_PARAMS, load_space
    from optimizer.tracking import make_trackers

    env = export_objective_settings(args)
    space = load_space(args.space)
    fn = import_attr(args.objective, what="objective")
    if not callable(fn):
        raise CaviarError(f"objective {args.objective!r} is not callable")
    results = ResultsDir(args.results_dir)
    identity = {"space": args.space, "objective": args.objective, "exp_key": args.exp_key if args.mongo else None}
    if args.mongo:
        from optimizer.mongo import MongoStore

        store = MongoStore(args.mongo, args.exp_key)
        known = store.get_experiment() or {}
        for key in ("space", "objective"):
            if known.get(key) not in (None, identity[key]):
                raise CaviarError(
                    f"experiment {args.exp_key!r} was started with {key} {known[key]!r}, not {identity[key]!r}"
                )
        settings = {"algo": args.algo, "max_evals": args.max_evals, "lease_seconds": args.lease_seconds}
        results.prepare(identity, settings)
        store.put_experiment(identity | settings | {"env": env})
    else:
        from optimizer.local import LocalStore

        docs = results.load_docs()
        results.prepare(identity, {"algo": args.algo, "max_evals": args.max_evals})
        store = LocalStore("local", docs, artifact_dir=args.results_dir)
        if docs:
            log.info("resuming: %d finished trials in %s", len(docs), args.results_dir)
    search = Search(store, space, args.algo, args.max_evals, args.seed)
    done = store.count_by_state().get(DONE, 0)
    with Progress(args.max_evals) as progress:
        trackers = make_trackers(args.results_dir, args.exp_key, args.mlflow, getattr(fn, "draw", None),
                                 args.tensorboard)
        recorder = Recorder(store, results, progress, fn, trackers)
        try:
            if done >= args.max_evals:
                log.info("the experiment already holds %d finished trials (max-evals %d): nothing to do",
                         done, args.max_evals)
                recorder.observe(store.count_by_state())  # a master killed after the last trial mirrors now
            else:
                if space is CIFAR_SPACE:
                    recorder.draw(DEMO_PARAMS, "model_demo.png")
                if args.mongo:
                    run_distributed(search, recorder, args.lease_seconds, args.lookahead)
                else:
                    run_embedded(search, fn, recorder)
        finally:
            recorder.close()
    finished = store.count_by_state().get(DONE, 0)
    if results.experiment().get("finalized_at") != finished:  # once per completed total
        finalize(store, fn, results, plots=not args.no_plots)
        results.prepare(identity, {"finalized_at": finished})
    return 0


TOOLS = {
    "status": "where a search stands: counts, workers, best trial, pace and ETA",
    "plot": "draw the plots of the finished trials into results/plots/",
    "best": "print the best trial's hyperparameters and metrics",
    "export": "write the best trial's trained model to a file",
}


def build_tool_parser(tool: str) -> Parser:
    """The command line of ``python -m optimizer <tool>``: an experiment in MongoDB or in results/."""
    p = Parser(prog=f"python -m optimizer {tool}", description=TOOLS[tool] + ".")
    p.env_option("--mongo", "MONGO_URL", None, help="MongoDB URL of the experiment; unset: read --results-dir")
    p.env_option("--exp-key", "EXPERIMENT_NAME", "caviar", help="experiment name in the database")
    p.env_option("--results-dir", "HKS_RESULTS_DIR", "results", help="results folder of an embedded search")
    if tool == "status":
        p.add_argument("--watch", type=positive_float, nargs="?", const=5.0, metavar="SECONDS",
                       help="refresh in place every SECONDS (default 5) until Ctrl-C")
    if tool in ("status", "best"):
        p.add_argument("--json", action="store_true", help="print JSON for scripts")
    if tool == "plot":
        p.add_argument("--out", help="folder of the PNGs (default: <results-dir>/plots)")
    if tool == "export":
        p.add_argument("--out", required=True, help="file to write the model to (.keras)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def open_experiment(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The store holding the experiment, and its recorded settings (max_evals, lease_seconds...)."""
    from optimizer.local import LocalStore
    from optimizer.results import ResultsDir

    if args.mongo:
        from optimizer.mongo import MongoStore

        store = MongoStore(args.mongo, args.exp_key)
        experiment = store.get_experiment()
        if experiment is None:
            raise CaviarError(f"no experiment {args.exp_key!r} in the database")
        return store, experiment
    results = ResultsDir(args.results_dir)
    docs = results.load_docs()
    experiment = results.experiment()
    if not docs and not experiment:
        raise CaviarError(f"no search in {args.results_dir}/ (give --results-dir, or --mongo and --exp-key)")
    return LocalStore("local", docs, artifact_dir=args.results_dir), experiment


def tool(name: str, args: argparse.Namespace) -> int:
    """Run one of the TOOLS on an experiment."""
    import json
    import time

    from optimizer.results import best_summary
    from optimizer.status import collect, render
    from optimizer.store import best_doc

    store, experiment = open_experiment(args)
    if name == "status":
        while True:
            status = collect(store, experiment.get("max_evals"), float(experiment.get("lease_seconds") or 60))
            text = json.dumps(status, indent=2) if args.json else render(status)
            if not args.watch:
                print(text)
                return 0
            print("\x1b[H\x1b[2J" + text, flush=True)
            time.sleep(args.watch)
    if name == "best":
        best = best_doc(store.trial_docs())
        if best is None:
            raise CaviarError("no trial has succeeded yet")
        summary = best_summary(best)
        print(json.dumps(summary, indent=2, sort_keys=True) if args.json else render_best(summary))
        return 0
    if name == "plot":
        from optimizer.plots import make_plots

        out = args.out or f"{args.results_dir}/plots"
        paths = make_plots(store.trial_docs(), out)
        print("\n".join(paths) if paths else "no finished trial to plot yet")
        return 0
    kept = store.fetch_best_artifact("model", args.out)
    if kept is None:
        raise CaviarError("the best trial kept no model (is the objective the CNN, and has a trial succeeded?)")
    best = best_doc(store.trial_docs())
    if best is None or best["tid"] != kept:
        log.warning("the kept model is trial %s's, not the best trial's (its worker died before storing it)", kept)
    print(f"wrote the model of trial {kept} to {args.out}")
    return 0


def render_best(summary: dict[str, Any]) -> str:
    """The best trial as aligned text."""
    from optimizer.objective import flatten_params

    lines = [f"best trial {summary['tid']}"]
    lines += [f"  {k:<30} {v}" for k, v in sorted(flatten_params(summary["params"]).items())]
    lines.append("metrics")
    lines += [f"  {k:<30} {v}" for k, v in sorted(summary["result"].items()) if not isinstance(v, (dict, list))]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    name = argv[0] if argv and argv[0] in TOOLS else None
    parser = build_tool_parser(name) if name else build_parser()
    args = parser.parse_args(argv[1:] if name else argv)
    configure_logging(args.verbose)
    try:
        return tool(name, args) if name else run(args)
    except CaviarError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # a folder or file the user named that cannot be written or read
        print(f"error: {err}", file=sys.stderr)
        return 1
    except Exception as err:
        from pymongo.errors import PyMongoError

        if not isinstance(err, PyMongoError):
            raise
        print(f"error: the database failed: {str(err).splitlines()[0][:300]}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: finished trials are saved; run the same command again to resume", file=sys.stderr)
        return 130
