"""What a per-epoch checkpoint costs: keeping a file as a running trial's checkpoint, in each store, by size.

    python -m bench.checkpoint_cost [--sizes 1 4 16] [--repeat 5] [--mongo-url mongodb://host:27017]
        [--output bench/results/checkpoint_cost.md]

The CNN and the early-stopping benchmark's objective checkpoint after every
epoch that goes on (``neural_net.callbacks.ReportEpochs``): the model's
variables and the optimizer's, with Adam about 12 bytes per float32 weight.
This times the store's side, ``put_checkpoint`` of files of ``--sizes`` MiB
(random bytes, which do not compress), ``--repeat`` times each, replacing the
trial's previous checkpoint as in a search: in MongoDB's GridFS (a fresh
nx-27017 server, MongoDB's protocol over SQLite on this machine, or a fresh
database of ``--mongo-url``) and in a results folder (the embedded mode). The
median seconds per put are to be weighed against an epoch's time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.overhead import BenchError, mongo_for
from caviar.store import TrialStore
from caviar.store.local import LocalStore
from caviar.store.mongo import MongoStore
from tests.helpers.trials import enqueue_points

ROOT = Path(__file__).resolve().parent.parent


def put_seconds(store: TrialStore, folder: Path, sizes: list[int], repeat: int) -> dict[int, float]:
    """The median seconds of ``put_checkpoint`` per size (MiB), one trial's checkpoint replaced each time."""
    [tid] = enqueue_points(store, [{"x": 0.0}])
    doc = store.claim("bench")
    if doc is None or doc["tid"] != tid:
        raise BenchError("the store handed out no trial to checkpoint")
    medians = {}
    for size in sizes:
        path = folder / f"checkpoint-{size}"
        path.write_bytes(os.urandom(size * 2**20))
        times = []
        for step in range(1, repeat + 1):
            start = time.perf_counter()
            if not store.put_checkpoint(doc["tid"], "bench", str(path), step, {"history": list(range(step))}):
                raise BenchError("the store refused the checkpoint of a trial it handed out")
            times.append(time.perf_counter() - start)
        medians[size] = statistics.median(times)
    store.discard_checkpoint(doc["tid"])
    return medians


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.checkpoint_cost", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 16], help="checkpoint sizes, MiB")
    p.add_argument("--repeat", type=int, default=5, help="puts per size (the median is shown)")
    p.add_argument("--mongo-url", help="a MongoDB server to time instead of a fresh nx-27017 (a new database, "
                                       "dropped afterwards)")
    p.add_argument("--output", default=str(ROOT / "bench" / "results" / "checkpoint_cost.md"))
    args = p.parse_args(argv)
    if min(args.sizes) < 1 or args.repeat < 1:
        p.error(f"--sizes and --repeat must be positive, got {args.sizes} and {args.repeat}")
    try:
        with tempfile.TemporaryDirectory(prefix="bench-checkpoint-") as scratch:
            folder = Path(scratch)
            with mongo_for("checkpoint", scratch, args.mongo_url) as mongo:
                store = MongoStore(mongo.url, "bench")
                try:
                    gridfs = put_seconds(store, folder, args.sizes, args.repeat)
                finally:
                    store.close()  # before the server goes
            local = put_seconds(LocalStore("bench", artifact_dir=str(folder / "results")), folder, args.sizes,
                                args.repeat)
    except BenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    where = args.mongo_url or "a fresh nx-27017 on this machine"
    lines = ["| checkpoint | GridFS (" + where + "): s per put | MB/s | results folder: s per put | MB/s |",
             "|---|---|---|---|---|"]
    lines += [f"| {size} MiB | {gridfs[size]:.3f} | {size * 1.048576 / gridfs[size]:.0f} | {local[size]:.3f} | "
              f"{size * 1.048576 / local[size]:.0f} |" for size in args.sizes]
    text = (f"# Checkpoint cost, {time.strftime('%Y-%m-%d')}\n\n`python -m bench.checkpoint_cost "
            f"{' '.join(argv if argv is not None else sys.argv[1:])}`; median of {args.repeat} puts per size, "
            f"{os.cpu_count()} CPU cores\n\n" + "\n".join(lines) + "\n")
    print(text)
    Path(args.output).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
