"""hyperopt's own distributed mode, as the benchmark runs it: ``fmin`` over ``MongoTrials``.

``python -m bench.hyperopt_driver --mongo mongo://HOST:PORT/DB/jobs [--exp-key K] --trials N``
queues trials for ``hyperopt-mongo-worker`` processes until N are finished, then
prints one JSON line with the trial counts. It needs the pymongo 3 shim, which
the benchmark loads through ``bench/hyperopt_shim/sitecustomize.py``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.hyperopt_driver")
    p.add_argument("--mongo", required=True, help="mongo://host:port/db/jobs")
    p.add_argument("--exp-key", default=None, help="MongoTrials exp_key (default: none, the whole database)")
    p.add_argument("--trials", type=int, default=100)
    p.add_argument("--max-queue-len", type=int, default=1, help="fmin's max_queue_len (hyperopt default 1)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from hyperopt import JOB_STATE_DONE, fmin, tpe
    from hyperopt.mongoexp import MongoTrials

    from bench.objectives import SPACE, sleep_objective

    trials = MongoTrials(args.mongo, exp_key=args.exp_key)
    fmin(sleep_objective, SPACE, algo=tpe.suggest, max_evals=args.trials, trials=trials,
         max_queue_len=args.max_queue_len, rstate=np.random.default_rng(args.seed), show_progressbar=False)
    done = trials.count_by_state_unsynced(JOB_STATE_DONE)
    print(json.dumps({"done": done, "total": len(trials.trials)}), flush=True)
    return 0 if done == args.trials else 1


if __name__ == "__main__":
    sys.exit(main())
