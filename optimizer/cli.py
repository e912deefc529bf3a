"""``python -m optimizer``: every setting of a search as a flag, with the HKS_* variables as defaults."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TYPE_CHECKING, Any, Sequence

from caviar import schedulers
from caviar.config import Parser, configure_logging, int_from, non_negative_int, positive_float
from caviar.errors import CaviarError
from caviar.family import ModelFamily, load_family
from caviar.store import DONE, TrialStore
from optimizer.samplers import ALGORITHMS, DEFAULT_ALGORITHM

if TYPE_CHECKING:  # the search modules import hyperopt and Optuna: --help and bad flags stay fast without
    from optimizer.search import Searcher

log = logging.getLogger("optimizer")

# The default model family, by import path: the generic code never imports it by name.
DEFAULT_OBJECTIVE = "neural_net:CNN"
# Beyond these a value is a typo, not a plan: a million trials, a thousand queued per worker.
MAX_EVALS, MAX_LOOKAHEAD = 1_000_000, 1000


def objective_path(argv: Sequence[str]) -> str:
    """The ``--objective`` of ``argv`` (else $HKS_OBJECTIVE, else the default), before the full parse.

    The family's own flags depend on it, so it is read first.
    """
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--objective", default=os.environ.get("HKS_OBJECTIVE") or DEFAULT_OBJECTIVE)
    return pre.parse_known_args(argv)[0].objective


def build_parser(family: ModelFamily | None = None) -> Parser:
    """The search's command line: generic flags, then the model family's own settings."""
    p = Parser(
        prog="python -m optimizer",
        description=(
            "Run a hyperparameter search. Without --mongo it runs in this process and resumes from "
            "results/results.pkl; with --mongo it queues trials for `python -m worker` processes."
        ),
        epilog="other commands: " + "; ".join(f"{k}: {v}" for k, v in TOOLS.items())
        + " (python -m optimizer COMMAND --help)",
    )
    p.env_option("--objective", "HKS_OBJECTIVE", DEFAULT_OBJECTIVE,
                 help="model family or objective as module:attribute; a plain function takes the params dict "
                 "and returns a loss or a result dict")
    p.env_option("--space", "HKS_SPACE", family.space if family else None,
                 help="hyperopt space as module:attribute (default: the model family's)")
    p.env_option("--algo", "HKS_ALGO", DEFAULT_ALGORITHM, choices=[*ALGORITHMS, "grid"],
                 help="search algorithm: gp (Bayesian optimization with a Gaussian process), tpe-mv (Optuna's "
                 "multivariate TPE with a constant liar), hyperopt's "
                 "tpe, random, anneal; grid: every point of a space of choices and finite q-steps, in order")
    p.env_option("--max-evals", "HKS_MAX_EVALS", 50, int_from(1, MAX_EVALS),
                 help="total finished trials (ok or failed) the experiment should hold")
    p.env_option("--seed", "HKS_SEED", 0, non_negative_int,
                 help="seed of the search; objectives read it as HKS_SEED")
    p.env_option("--results-dir", "HKS_RESULTS_DIR", "results", help="where results are mirrored")
    p.env_option("--mongo", "MONGO_URL", None, help="MongoDB URL, e.g. mongodb://host:27017/caviar; unset: embedded mode")
    p.env_option("--exp-key", "EXPERIMENT_NAME", "caviar", help="experiment name in the database")
    p.env_option("--lease-seconds", "HKS_LEASE_SECONDS", 60.0, positive_float,
                 help="a worker silent this long loses its trial to the queue")
    p.env_option("--lookahead", "HKS_LOOKAHEAD", 2, int_from(0, MAX_LOOKAHEAD),
                 help="trials queued beyond one per live worker, so no worker waits")
    p.add_argument("--mlflow", action=argparse.BooleanOptionalAction, default=None,
                   help="log every trial to MLflow (pip install '.[mlflow]'); default: only when "
                   "MLFLOW_TRACKING_URI is set; local store: <results-dir>/mlflow.db")
    p.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, default=None,
                   help="log trials to <results-dir>/tensorboard/; default: the trials with per-epoch curves")
    p.add_argument("--no-plots", action="store_true", help="skip drawing results/plots/ at the end of the search")
    p.add_argument("--adopt", action="store_true",
                   help="resume a results.pkl that has no experiment.json (e.g. plain hyperopt's) as this search")
    p.add_argument("--refit", action=argparse.BooleanOptionalAction, default=None,
                   help="at the end, retrain the best point on train + validation into "
                   "<results-dir>/best_model_refit.keras and score it on the test set (best.json: refit); "
                   "default: on with --cv K > 1")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    schedulers.add_flags(p, family)
    if family is not None and family.settings:
        group = p.add_argument_group(f"settings of the model family ({type(family).__name__})")
        for setting in family.settings:
            p.env_option(setting.flag, setting.env, setting.default, setting.kind, help=setting.help,
                         choices=setting.choices, group=group)
    return p


def export_family_settings(family: ModelFamily, args: argparse.Namespace) -> dict[str, str]:
    """Put the family's settings (and the seed) into the environment; return them as recorded.

    Every setting is recorded, unset ones as "" (the family's default), so that a
    worker serving several experiments never carries one's settings into another.
    """
    values = {s.env: getattr(args, s.flag.lstrip("-").replace("-", "_")) for s in family.settings}
    values["HKS_SEED"] = args.seed
    env = {name: "" if value is None else str(value) for name, value in values.items()}
    os.environ.update(env)
    return env


def make_search(store: TrialStore, space: Any, args: argparse.Namespace) -> Searcher:
    """The proposer of ``--algo`` over ``store``: a sampler-driven Search, or the exhaustive grid."""
    from optimizer.grid import GridSearch
    from optimizer.search import Search

    scheduler = schedulers.from_env()  # exported by run(): asha may promote paused trials
    if args.algo == "grid":
        return GridSearch(store, space, args.max_evals, scheduler)
    return Search(store, space, args.algo, args.max_evals, args.seed, scheduler)


def run(args: argparse.Namespace, family: ModelFamily) -> int:
    """Run (or resume) a search to ``max_evals`` finished trials."""
    from caviar.imports import import_attr
    from caviar.output.progress import Progress
    from caviar.output.results import MIRROR_PICKLE_SECONDS, ResultsDir
    from caviar.output.tracking import make_trackers
    from caviar.store.local import LocalStore
    from optimizer.grid import GridSearch
    from optimizer.master import MasterLease, Recorder, finalize, run_distributed, run_embedded

    if args.space is None:
        raise CaviarError(f"objective {args.objective!r} has no default space: give --space module:attribute")
    env = export_family_settings(family, args)
    env |= schedulers.export(args, family)  # recorded in the experiment, so workers stop alike
    space = import_attr(args.space, what="space")
    described = family.describe()
    results = ResultsDir(args.results_dir, described, pickle_seconds=MIRROR_PICKLE_SECONDS if args.mongo else 0.0)
    identity = {"space": args.space, "objective": args.objective, "exp_key": args.exp_key if args.mongo else None,
                "env": env}
    # Everything that can be refused is checked before the folder is touched: the space and algorithm first.
    make_search(LocalStore(), space, args)
    if os.path.isdir(args.results_dir):  # a busy or foreign folder is refused before any data set is loaded
        results.lock()
    results.check(identity, args.adopt)
    if args.mongo:
        from caviar.store.mongo import MongoStore

        store = MongoStore(args.mongo, args.exp_key)
        lease = MasterLease(store, args.lease_seconds)
        lease.acquire()
        known = store.get_experiment() or {}
        clash = [f"{key} {known[key]!r} there, {identity[key]!r} now" for key in ("space", "objective", "env")
                 if known.get(key) not in (None, identity[key])]
        if clash:
            raise CaviarError(f"experiment {args.exp_key!r} is another search ({'; '.join(clash)}); start a new "
                              "one with --exp-key NEW")
    else:
        family.prepare()  # the data set, here where the trials run (a distributed master may not have it)
    results.lock()  # creates a new folder, now that nothing is left to refuse; prepare() checks again under it
    if args.mongo:
        settings = {"algo": args.algo, "max_evals": args.max_evals, "lease_seconds": args.lease_seconds}
        results.prepare(identity, settings | described, args.adopt)
        results.remove_stale_temp()
        store.put_experiment(identity | settings | described)
    else:
        docs = results.load_docs()
        results.prepare(identity, {"algo": args.algo, "max_evals": args.max_evals} | described, args.adopt)
        results.repair(docs)
        store = LocalStore("local", docs, artifact_dir=args.results_dir)
        if docs:
            log.info("resuming: %d finished trials in %s", len(docs), args.results_dir)
    search = make_search(store, space, args)
    if isinstance(search, GridSearch):
        log.info("grid of %d points: %d trials to hold (--max-evals %d)", search.size, search.max_evals,
                 args.max_evals)
    done = store.count_by_state().get(DONE, 0)
    with Progress(search.max_evals, describe=described) as progress:
        trackers = make_trackers(args.results_dir, args.exp_key, args.mlflow,
                                 family.draw if family.diagrams else None, args.tensorboard)
        recorder = Recorder(store, results, progress, family, trackers)
        try:
            if done >= search.max_evals:
                log.info("the experiment already holds %d finished trials (max-evals %d): nothing to do",
                         done, search.max_evals)
                recorder.observe(store.count_by_state())  # a master killed after the last trial mirrors now
            else:
                if family.demo_params is not None and args.space == family.space:
                    recorder.draw(family.demo_params, "model_demo.png")
                if args.mongo:
                    run_distributed(search, recorder, lease, args.lookahead)
                else:
                    run_embedded(search, family, recorder)
        finally:
            results.flush()
            recorder.close()
            if args.mongo:
                lease.release()
    finished = store.count_by_state().get(DONE, 0)
    if results.experiment().get("finalized_at") != finished:  # once per completed total
        from optimizer.refit import refit_by_default

        finalize(store, family, results, plots=not args.no_plots,
                 refit=refit_by_default(family) if args.refit is None else args.refit)
        results.prepare(identity, {"finalized_at": finished})
        test = results.best_test()
        if args.mongo and test is not None:  # so that `best --mongo` shows it on any host
            store.put_experiment({"best_test": test})
    return 0


TOOLS = {
    "status": "where a search stands: counts, running trials, workers, best trial, pace and ETA",
    "plot": "draw the plots of the finished trials into results/plots/",
    "best": "print the best trial's hyperparameters and metrics",
    "export": "write the best trial's trained model to a file",
    "rebuild": "write a damaged results.pkl anew from the trial JSONs of the results folder",
    "predict": "write a CSV of class predictions (id,label) of the refit or best model on a file of inputs",
}


def build_tool_parser(tool: str) -> Parser:
    """The command line of ``python -m optimizer <tool>``: an experiment in MongoDB or in results/."""
    p = Parser(prog=f"python -m optimizer {tool}", description=TOOLS[tool] + ".")
    if tool != "rebuild":
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
    if tool == "rebuild":
        p.add_argument("--replace", action="store_true",
                       help="if results.pkl exists, keep it as results.pkl.damaged and write a new one")
    if tool == "predict":
        from optimizer.predict import add_predict_arguments

        add_predict_arguments(p)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def open_experiment(args: argparse.Namespace) -> tuple[Any, dict[str, Any], Any]:
    """The store holding the experiment, its recorded settings (max_evals, metric...), and its ResultsDir.

    Reads only: the tools run beside a search and never change its files.
    """
    from caviar.store.local import LocalStore
    from caviar.output.results import ResultsDir

    results = ResultsDir(args.results_dir)
    if args.mongo:
        from caviar.store.mongo import MongoStore

        store = MongoStore(args.mongo, args.exp_key)
        experiment = store.get_experiment()
        if experiment is None:
            raise CaviarError(f"no experiment {args.exp_key!r} in the database")
        return store, experiment, None
    if not os.path.isdir(args.results_dir):
        raise CaviarError(f"no search in {args.results_dir}/ (give --results-dir, or --mongo and --exp-key)")
    docs = results.load_docs()
    experiment = results.experiment()
    if not docs and not experiment:
        raise CaviarError(f"no search in {args.results_dir}/ (give --results-dir, or --mongo and --exp-key)")
    return LocalStore("local", docs, artifact_dir=args.results_dir), experiment, results


def tool(name: str, args: argparse.Namespace) -> int:
    """Run one of the TOOLS on an experiment."""
    import json

    from caviar.cv import cv_table
    from caviar.output.results import ResultsDir, best_summary
    from caviar.store import best_doc

    if name == "rebuild":
        count = ResultsDir(args.results_dir).rebuild_pickle(args.replace)
        print(f"wrote {args.results_dir}/results.pkl: {count} finished trials from the trial JSONs")
        return 0
    store, experiment, results = open_experiment(args)
    if name == "predict":
        from optimizer.predict import predict_tool

        return predict_tool(store, experiment, args)
    if name == "status":
        return show_status(store, experiment, results, args)
    if name == "best":
        best = best_doc(store.trial_docs())
        if best is None:
            raise CaviarError("no trial has succeeded yet")
        summary = best_summary(best)
        test = experiment.get("best_test") if results is None else results.best_test()
        if test and test.get("tid") == best["tid"]:
            summary["test"] = test["metrics"]
        if args.json and (table := cv_table(store.trial_docs())) is not None:
            summary["cv_results"] = table
        print(json.dumps(summary, indent=2, sort_keys=True) if args.json else render_best(summary, experiment))
        return 0
    if name == "plot":
        from caviar.output.plots import make_plots

        out = args.out or f"{args.results_dir}/plots"
        paths = make_plots(store.trial_docs(), out, experiment)
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


def show_status(store: Any, experiment: dict[str, Any], results: Any, args: argparse.Namespace) -> int:
    """Print the status once, or every ``--watch`` seconds until Ctrl-C (which ends it quietly).

    Ctrl-C (SIGINT) only sets a flag, read between two prints: an exception
    raised at any instant could leave a lock of the output or of logging held,
    and the exit would then wait on it forever.
    """
    import json
    import signal
    import time

    from caviar.output.status import collect, render

    stopped: list[int] = []
    if args.watch:
        signal.signal(signal.SIGINT, lambda signum, _frame: stopped.append(signum))
    while not stopped:
        if results is not None and args.watch:  # an embedded search moves on: read its files again
            store, experiment, results = open_experiment(args)
        status = collect(store, experiment, running=None if results is None else results.running())
        text = json.dumps(status, indent=2) if args.json else render(status)
        if not args.watch:
            print(text)
            return 0
        print("\x1b[H\x1b[2J" + text, flush=True)
        deadline = time.monotonic() + args.watch
        while not stopped and time.monotonic() < deadline:
            time.sleep(min(0.05, args.watch))
    return 0


def render_best(summary: dict[str, Any], experiment: dict[str, Any]) -> str:
    """The best trial as aligned text: its score in the family's metric, params, metrics, test-set metrics."""
    from caviar.family import score_of
    from caviar.objective import flatten_params

    metric = experiment.get("metric") or "loss"
    score = score_of(summary["result"]["loss"], experiment)
    lines = [f"best trial {summary['tid']}: {metric} {score:.4f}"]
    lines += [f"  {k:<30} {v}" for k, v in sorted(flatten_params(summary["params"]).items())]
    lines.append("metrics")
    lines += [f"  {k:<30} {v}" for k, v in sorted(summary["result"].items()) if not isinstance(v, (dict, list))]
    if summary.get("test"):
        lines.append("test set (the best model, evaluated once at the end)")
        lines += [f"  {k:<30} {v}" for k, v in sorted(summary["test"].items())]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    name = argv[0] if argv and argv[0] in TOOLS else None
    try:
        if name:
            args = build_tool_parser(name).parse_args(argv[1:])
            configure_logging(args.verbose)
            return tool(name, args)
        family = load_family(objective_path(argv))
        args = build_parser(family).parse_args(argv)
        configure_logging(args.verbose)
        return run(args, family)
    except CaviarError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `... | head`: the reader has all it wanted; no error, nothing more to flush
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as err:  # a folder or file the user named that cannot be written or read
        print(f"error: {err}", file=sys.stderr)
        return 1
    except Exception as err:
        from pymongo.errors import PyMongoError

        if not isinstance(err, PyMongoError):
            raise
        print(f"error: the database failed: {str(err).splitlines()[0][:300]}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:  # Ctrl-C (130), or the master's SIGTERM (optimizer.master.Terminated, 143)
        print("interrupted: finished trials are saved; run the same command again to resume", file=sys.stderr)
        return getattr(err, "exit_code", 130)
