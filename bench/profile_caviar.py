"""Where Caviar's coordination time goes: one experiment with timers on the master and workers.

    python bench/profile_caviar.py [--trials 100] [--workers 4] [--sleep 0.2]
        [--master-arg=--lookahead=2 ...] [--worker-arg=--poll-seconds=0.05 ...]
        [--env NAME=VALUE] [--cprofile]

Runs the benchmark's Caviar set-up (fresh nx-27017, ``bench.objectives``) with
the master and workers started through ``bench/caviar_timed.py``, then prints,
per role, every timed call (count, total, mean, per trial), each role's CPU time
and the server's, next to the wall/steady figures of ``bench/overhead.py``.
With ``--cprofile`` the master also runs under cProfile (slower: use the
timers for absolute numbers, the profile for what is inside them).
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import pstats
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.overhead import Bench, BenchError, ForeignLoad, Procs, caviar_master_flags, Run, mongo_for, python, read_times  # noqa: E402

log = logging.getLogger("bench.profile")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a live process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_pid(run_dir: str) -> int | None:
    for path in glob.glob(os.path.join(run_dir, "*-server.pid")):
        with open(path) as f:
            return int(f.read().strip())
    return None


def summarize(profile_dir: str, trials: int) -> str:
    roles: dict[str, list[dict]] = {}
    for path in glob.glob(os.path.join(profile_dir, "*.json")):
        with open(path) as f:
            data = json.load(f)
        roles.setdefault(data["role"], []).append(data)
    lines = []
    for role in ("master", "worker"):
        procs = roles.get(role, [])
        if not procs:
            continue
        merged: dict[str, list[float]] = {}
        for p in procs:
            for name, (calls, secs) in p["stats"].items():
                m = merged.setdefault(name, [0, 0.0])
                m[0] += calls
                m[1] += secs
        cpu = sum(p["cpu_user"] + p["cpu_system"] for p in procs)
        imports = sum(p["marks"].get("main_at", 0) for p in procs) / len(procs)
        firsts = {k: sum(p["marks"].get(k, 0) for p in procs) / len(procs)
                  for k in ("first store.claim done", "first store.enqueue done", "first run_trial (objective + heartbeat thread) done")
                  if all(k in p["marks"] for p in procs)}
        lines.append(f"\n{role} ({len(procs)} process(es)): CPU {cpu:.2f} s in all ({cpu / trials * 1000:.1f} ms/trial), "
                     f"start to main() {imports:.2f} s each on average"
                     + "".join(f", to {k} {v:.2f} s" for k, v in firsts.items()))
        lines.append(f"  {'call':42s} {'calls':>6s} {'total s':>8s} {'mean ms':>8s} {'ms/trial':>9s}")
        for name, (calls, secs) in sorted(merged.items(), key=lambda kv: -kv[1][1]):
            lines.append(f"  {name:42s} {calls:6d} {secs:8.3f} {secs / calls * 1000:8.2f} {secs / trials * 1000:9.2f}")
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(prog="python bench/profile_caviar.py")
    p.add_argument("--trials", type=int, default=100)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--sleep", type=float, default=0.2)
    p.add_argument("--master-arg", action="append", default=[])
    p.add_argument("--worker-arg", action="append", default=[])
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                   help="extra environment for the master and workers, NAME=VALUE")
    p.add_argument("--plots", action="store_true", help="let the master draw its end-of-search plots")
    p.add_argument("--cprofile", action="store_true", help="run the master under cProfile and print its top calls")
    p.add_argument("--quiet-wait", type=float, default=0.0, metavar="S",
                   help="first wait up to S seconds for other programs to leave the CPUs idle")
    p.add_argument("--keep", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    root = tempfile.mkdtemp(prefix="caviar-profile-")
    run_dir, times_dir, profile_dir = root, os.path.join(root, "times"), os.path.join(root, "profile")
    os.makedirs(times_dir)
    os.makedirs(profile_dir)
    bench = Bench(argparse.Namespace(sleep=args.sleep, trials=args.trials, timeout=None,
                                     quiet_wait=args.quiet_wait), root)
    env = bench.env(times_dir) | {"BENCH_PROFILE_DIR": profile_dir} | dict(e.split("=", 1) for e in args.env)
    procs = Procs(run_dir, env)
    run = Run("caviar", args.workers, args.trials, args.sleep)
    bench.wait_quiet()
    load = ForeignLoad()
    prof = os.path.join(root, "master.prof")
    try:
        with mongo_for("caviar", run_dir, None) as mongo:
            spid = server_pid(run_dir)
            server_cpu0 = cpu_seconds(spid) if spid else 0.0
            master_cmd = [python()] + (["-m", "cProfile", "-o", prof] if args.cprofile else []) + [
                "-m", "bench.caviar_timed", "optimizer", "--mongo", mongo.url, "--exp-key", "bench",
                "--space", "bench.objectives:SPACE", "--objective", "bench.objectives:sleep_objective",
                "--max-evals", str(args.trials), "--algo", "tpe", "--results-dir", os.path.join(run_dir, "results"),
                *caviar_master_flags(args.plots), *args.master_arg]
            worker_cmd = [python(), "-m", "bench.caviar_timed", "worker", "--mongo", mongo.url, "--exp-key", "bench",
                          *args.worker_arg]
            t0, t0_epoch = time.perf_counter(), time.time()
            master = procs.start("master", master_cmd)
            group = [procs.start(f"worker{i}", worker_cmd) for i in range(args.workers)]
            procs.wait([master], t0 + bench.timeout(args.workers), group)
            t1 = procs.ended[master.pid]
            if master.returncode != 0:
                raise BenchError(f"the master exited with {master.returncode}")
            server_cpu = (cpu_seconds(spid) - server_cpu0) if spid else float("nan")
            procs.stop(group)
        run.wall = t1 - t0
        bench.summarize(run, read_times(times_dir), t0_epoch, t0_epoch + run.wall)
        print(f"caviar, {args.workers} workers, {args.trials} trials of {args.sleep:g} s: wall {run.wall:.2f} s "
              f"(overhead {run.overhead_ms:.1f} ms/trial), steady {run.steady:.2f} s ({run.steady_overhead_ms:.1f} "
              f"ms/trial), start-up {run.startup:.2f} s, exit after last {run.tail:.3f} s, median gap "
              f"{run.gap_ms:.1f} ms (p90 {sorted(run.gaps)[int(len(run.gaps) * 0.9)] * 1000:.1f} ms)")
        print(f"other programs kept {load.cores():.2f} cores busy meanwhile")
        print(f"server (nx-27017) CPU during the run: {server_cpu:.2f} s ({server_cpu / args.trials * 1000:.1f} ms/trial)")
        print(summarize(profile_dir, args.trials))
        if args.cprofile and os.path.exists(prof):
            print("\nmaster under cProfile, by cumulative time:")
            pstats.Stats(prof).sort_stats("cumulative").print_stats(35)
    except BenchError as err:
        log.error("%s\n%s", err, procs.tail())
        return 1
    finally:
        procs.stop()
        if args.keep:
            log.info("kept %s", root)
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
