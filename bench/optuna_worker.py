"""One Optuna worker process of the benchmark: ``study.optimize`` on a shared storage.

``python -m bench.optuna_worker --storage sqlite:///F.db|journal:F.log --study S --trials N --seed I [--reports]``

With ``--reports`` each trial first reports ``bench.objectives.curve`` at every
step and asks Optuna's ``SuccessiveHalvingPruner`` (first rung 1, reduction
factor 3: Caviar's ASHA default) whether to go on.

Every process runs the same study; the first N trials to be created are
evaluated and the study stops there, exactly:

- ``MaxTrialsCallback(N, states=None)`` stops a process once N trials exist
  (any state), the usual way to cap a study shared by processes;
- two processes can pass that check together and each create a trial, so a
  trial numbered N or above is not evaluated (pruned at once, no sleep) and
  stops its process: the study holds exactly N complete trials.

The benchmark creates the storage (the SQLite schema) with ``open_storage``
before it starts the clock, as it starts the MongoDB server beforehand for the
systems that need one.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def open_storage(spec: str) -> Any:
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    if spec.startswith("journal:"):
        return JournalStorage(JournalFileBackend(spec[len("journal:"):]))
    # SQLite's default 5 s lock timeout only matters under contention; a longer one
    # turns a rare "database is locked" into a wait instead of a failed run.
    return optuna.storages.RDBStorage(spec, engine_kwargs={"connect_args": {"timeout": 60}})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.optuna_worker")
    p.add_argument("--storage", required=True, help="sqlite:///PATH or journal:PATH")
    p.add_argument("--study", default="bench")
    p.add_argument("--trials", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reports", action="store_true", help="report a learning curve; successive halving prunes")
    args = p.parse_args(argv)

    import optuna
    from bench.objectives import optuna_params, optuna_reports, sleep_objective

    storage = open_storage(args.storage)
    pruner = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3) if args.reports else None
    study = optuna.create_study(storage=storage, study_name=args.study, direction="minimize", pruner=pruner,
                                sampler=optuna.samplers.TPESampler(seed=args.seed), load_if_exists=True)

    def objective(trial: optuna.Trial) -> float:
        if trial.number >= args.trials:
            study.stop()
            raise optuna.TrialPruned()
        params = optuna_params(trial)
        if args.reports and not optuna_reports(trial, params):
            raise optuna.TrialPruned()
        result = sleep_objective(params)
        for key, value in result.items():  # the same payload as Caviar's workers store
            if key not in ("loss", "status"):
                trial.set_user_attr(key, value)
        return result["loss"]

    study.optimize(objective, n_trials=args.trials,
                   callbacks=[optuna.study.MaxTrialsCallback(args.trials, states=None)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
