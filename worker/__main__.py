"""``python -m worker``: run queued trials from MongoDB until stopped (see ``--help``)."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from caviar.config import Parser, configure_logging, exit_process, positive_float, positive_int


def yes_no(text: str) -> bool:
    """1/true/yes/on or 0/false/no/off (any case)."""
    value = text.strip().lower()
    if value not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        raise ValueError
    return value in ("1", "true", "yes", "on")


yes_no.__name__ = "1/0 (true/false, yes/no, on/off)"
from caviar.errors import CaviarError

EPILOG = """\
exit status: 0 after a clean stop (first SIGTERM/SIGINT: the current trial is finished and
recorded first; --max-trials, --idle-exit or --exit-when-done reached), and also when this host
cannot run the experiment's trials (its data set or the objective's module is missing here: one
error line says what, the trial goes back to the queue, and compose's `restart: on-failure` does
not restart the worker in a loop); 143 after a second SIGTERM/SIGINT (the running trial is handed
back to the queue); 1 for a problem to fix at start (database unreachable or refusing an
operation); 2 for bad flags. Once
started, the worker rides out database outages: it retries with backoff and never drops a
finished result while it still holds the trial. Use the same --lease-seconds as the master: an
idle worker requeues trials silent for that long (on the database's clock)."""


def build_parser() -> Parser:
    """The worker's command line; every flag defaults to an environment variable."""
    p = Parser(
        prog="python -m worker",
        description="Claim trials queued in MongoDB by the master (or MongoTrials), run them, record the results.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.env_option("--mongo", "MONGO_URL", None, help="MongoDB URL mongodb://host:port/db (database default: caviar)")
    p.env_option("--exp-key", "EXPERIMENT_NAME", None,
                 help="serve only this experiment; unset: serve every experiment in the database")
    p.env_option("--gpu", "CUDA_VISIBLE_DEVICES", None,
                 help="GPU id(s) to pin this worker to; turns on TensorFlow memory growth")
    p.env_option("--lease-seconds", "HKS_LEASE_SECONDS", 60.0, positive_float,
                 help="heartbeat every quarter of this; a trial silent this long goes back to the queue")
    p.env_option("--poll-seconds", "HKS_POLL_SECONDS", 0.25, positive_float,
                 help="longest wait between polls of an empty queue (the first waits are 10 ms)")
    p.env_option("--max-trials", "HKS_MAX_TRIALS", None, positive_int, help="exit 0 after running this many trials")
    p.env_option("--idle-exit", "HKS_IDLE_EXIT", None, positive_float,
                 help="exit 0 once the queue has been empty this many seconds")
    p.env_option("--exit-when-done", "HKS_EXIT_WHEN_DONE", False, yes_no,
                 nargs="?", const=True,
                 help="exit 0 once the experiment (--exp-key) holds its max-evals finished trials")
    p.env_option("--connect-timeout", "HKS_CONNECT_TIMEOUT", 5.0, positive_float,
                 help="seconds to wait for the database at start (and per attempt later)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.mongo:
        parser.error("--mongo is required (or set MONGO_URL)")
    if args.exit_when_done and not args.exp_key:
        parser.error("--exit-when-done needs --exp-key (or EXPERIMENT_NAME): the experiment to wait for")
    configure_logging(args.verbose)
    # Imported after logging is set up; tensorflow only by configure_gpu.
    from pymongo.errors import PyMongoError

    from caviar.store.mongo import MongoStore, one_line
    from worker.service import EXIT_HOST_NOT_READY, HostNotReady, Worker, WorkerConfig, configure_gpu

    try:
        if args.gpu:
            configure_gpu(args.gpu)
        store = MongoStore(args.mongo, args.exp_key, timeout_seconds=args.connect_timeout)
        config = WorkerConfig(args.lease_seconds, args.poll_seconds, args.max_trials, args.idle_exit, args.gpu,
                              args.exit_when_done)
        worker = Worker(store, config)
        worker.install_signal_handlers()
        return worker.run()
    except HostNotReady as err:
        print(f"error: {err} (the trial went back to the queue; this worker stops with exit {EXIT_HOST_NOT_READY}, "
              "which compose does not restart: fix this host, then start it again)", file=sys.stderr)
        return EXIT_HOST_NOT_READY
    except CaviarError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except PyMongoError as err:  # the database refused an operation (rights, a bad document): no traceback
        print(f"error: the database failed: {one_line(err)[:300]}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    exit_process(main())
