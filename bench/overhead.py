"""Per-trial coordination overhead of Caviar beside hyperopt's MongoTrials and Optuna.

    python bench/overhead.py [--trials 100] [--workers 2 4] [--sleep 0.2]
        [--systems caviar hyperopt-default hyperopt-tuned optuna-sqlite optuna-journal]
        [--mongo-url mongodb://host:27017] [--output bench/results/overhead.md]

Every system runs the same objective (``bench.objectives.sleep_objective``: sleep
0.2 s, no CPU) over the same four-parameter space with TPE, ``--trials`` trials
spread over W worker processes on this machine, one system at a time:

- ``caviar``: ``python -m optimizer --mongo ...`` (the master) and W
  ``python -m worker`` processes;
- ``hyperopt-default``: ``fmin(..., trials=MongoTrials(...))`` (max_queue_len=1)
  and W ``hyperopt-mongo-worker`` with their defaults (poll interval 5 s, one
  subprocess per job);
- ``hyperopt-tuned``: max_queue_len=2, ``--poll-interval=0.1 --no-subprocesses``;
- ``optuna-sqlite`` / ``optuna-journal``: W processes running ``study.optimize``
  on one ``sqlite:///`` RDB storage / one ``JournalFileBackend`` file, stopped at
  exactly ``--trials`` complete trials.

The Mongo-based systems get a fresh nx-27017 server (MongoDB wire protocol over
SQLite) on a free loopback port each, or a fresh database on ``--mongo-url``.

Measures (ideal = trials x sleep / workers):

- wall: from starting the processes to the master's exit (Optuna: the last
  process's exit), so process start-up and imports count for everyone;
  overhead = (wall - ideal) / trials;
- steady: from the first trial's start to the last trial's end, as recorded by
  the objective itself in every system (``$BENCH_TIMES_DIR``); steady overhead =
  (steady - ideal) / trials;
- gap: the median idle time of a worker process between the end of one of its
  trials and the start of its next (not available where each trial runs in a
  new process, as hyperopt's worker does by default).

This is a benchmark, not a test: it prints and writes a markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import glob
import importlib.metadata
import importlib.util
import logging
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(1, REPO)  # bench.* helpers, when run as a script
BENCH = os.path.join(REPO, "bench")
SHIM_DIR = os.path.join(BENCH, "hyperopt_shim")
DEFAULT_OUTPUT = os.path.join(BENCH, "results", "overhead.md")
SYSTEMS = ["caviar", "hyperopt-default", "hyperopt-tuned", "optuna-sqlite", "optuna-journal"]
PACKAGES = ["hyperopt", "pymongo", "nx-27017", "optuna", "sqlalchemy", "numpy"]
CAVIAR_GOAL_MS = 15.0

log = logging.getLogger("bench.overhead")


class BenchError(Exception):
    """A run that could not be measured (a process failed, a timeout, a wrong trial count)."""


# --------------------------------------------------------------------------- processes
class Procs:
    """The processes of one measured run: started in their own process groups, all stopped on exit."""

    def __init__(self, run_dir: str, env: dict[str, str]):
        self.run_dir, self.env = run_dir, env
        self.procs: list[tuple[str, subprocess.Popen[bytes], str]] = []
        self.ended: dict[int, float] = {}  # pid -> perf_counter at exit
        self._threads: list[threading.Thread] = []

    def start(self, name: str, cmd: Sequence[str], cwd: str | None = None) -> subprocess.Popen[bytes]:
        path = os.path.join(self.run_dir, f"{name}.log")
        with open(path, "ab") as out:
            proc = subprocess.Popen(list(cmd), stdout=out, stderr=subprocess.STDOUT, env=self.env,
                                    cwd=cwd or self.run_dir, start_new_session=True)
        self.procs.append((name, proc, path))
        # A thread blocked in wait() notes the exit time exactly (Popen.wait(timeout) polls).
        thread = threading.Thread(target=self._wait, args=(proc,), daemon=True)
        thread.start()
        self._threads.append(thread)
        return proc

    def _wait(self, proc: subprocess.Popen[bytes]) -> None:
        proc.wait()
        self.ended[proc.pid] = time.perf_counter()

    def wait(self, procs: Sequence[subprocess.Popen[bytes]], deadline: float,
             workers: Sequence[subprocess.Popen[bytes]] = ()) -> None:
        """Block until every one of ``procs`` exited; BenchError past ``deadline`` (perf_counter)
        or once every one of ``workers`` exited first (nobody is left to run the trials)."""
        while not all(p.pid in self.ended for p in procs):
            if time.perf_counter() > deadline:
                raise BenchError("timed out")
            if workers and all(w.pid in self.ended for w in workers):
                time.sleep(0.5)  # the master may be just noticing the last result
                if not all(p.pid in self.ended for p in procs):
                    raise BenchError("every worker exited before the master")
            time.sleep(0.02)

    def stop(self, procs: Sequence[subprocess.Popen[bytes]] | None = None, grace: float = 10.0) -> None:
        """SIGTERM the process groups still running, then SIGKILL what is left after ``grace`` s."""
        targets = [p for _, p, _ in self.procs] if procs is None else list(procs)
        for proc in targets:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGTERM)
        end = time.monotonic() + grace
        for proc in targets:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, end - time.monotonic()))
            # The group too: a hyperopt worker's per-job child may outlive its parent.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def tail(self, lines: int = 15) -> str:
        """The last lines of each process's log, for an error report."""
        parts = []
        for name, proc, path in self.procs:
            with open(path, "rb") as f:
                text = f.read().decode(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {name} (pid {proc.pid}, exit {proc.returncode}) {path}\n" + "\n".join(text))
        return "\n".join(parts)


def cpu_busy_seconds() -> float | None:
    """CPU seconds the whole machine has spent busy since boot (/proc/stat), None off Linux."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU seconds of this process and of its children that have been waited for."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


class ForeignLoad:
    """How many cores other programs kept busy while a run was measured (0 on a quiet machine)."""

    def __init__(self) -> None:
        self.t, self.busy, self.own = time.monotonic(), cpu_busy_seconds(), own_cpu_seconds()

    def cores(self) -> float | None:
        busy = cpu_busy_seconds()
        if busy is None or self.busy is None:
            return None
        elapsed = time.monotonic() - self.t
        return max(0.0, (busy - self.busy) - (own_cpu_seconds() - self.own)) / elapsed if elapsed > 0 else None


_MASTER_HELP: list[str] = []


def caviar_master_flags(plots: bool) -> list[str]:
    """``--no-plots`` unless ``plots``, where the master has that flag (end-of-search plots are
    output drawn after the last trial, not coordination; ``--caviar-plots`` keeps them)."""
    if plots:
        return []
    if not _MASTER_HELP:
        env = dict(os.environ, PYTHONPATH=REPO)
        done = subprocess.run([python(), "-m", "optimizer", "--help"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=120)
        _MASTER_HELP.append(done.stdout)
    return ["--no-plots"] if "--no-plots" in _MASTER_HELP[0] else []


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def python() -> str:
    return sys.executable


def venv_script(name: str) -> str:
    """A console script of the Python running the benchmark (the project's .venv)."""
    path = os.path.join(os.path.dirname(sys.executable), name)
    found = path if os.access(path, os.X_OK) else shutil.which(name)
    if not found:
        raise BenchError(f"{name} is not installed next to {sys.executable}")
    return found


# --------------------------------------------------------------------------- the server
@dataclass
class Mongo:
    """Where one system's database lives."""

    host: str  # host:port (with user:password@ if any)
    db: str
    query: str = ""

    @property
    def url(self) -> str:
        """A MongoDB URL (Caviar)."""
        return f"mongodb://{self.host}/{self.db}" + (f"?{self.query}" if self.query else "")

    @property
    def hyperopt_worker(self) -> str:
        """hyperopt-mongo-worker's --mongo (host:port/db)."""
        return f"{self.host}/{self.db}"

    @property
    def hyperopt_trials(self) -> str:
        """MongoTrials' URL (mongo://host:port/db/jobs)."""
        return f"mongo://{self.host}/{self.db}/jobs"


def wait_ready(url: str, proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    import pymongo

    end = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise BenchError(f"the MongoDB server exited with {proc.returncode}")
        try:
            with pymongo.MongoClient(url, serverSelectionTimeoutMS=300, connectTimeoutMS=300) as client:
                client.admin.command("ping")
            return
        except pymongo.errors.PyMongoError:
            if time.monotonic() > end:
                raise BenchError(f"no MongoDB server answered at {url} within {timeout:.0f}s") from None
            time.sleep(0.05)


@contextlib.contextmanager
def mongo_for(name: str, run_dir: str, mongo_url: str | None) -> Iterator[Mongo]:
    """A fresh database for one run: a new nx-27017 server, or a new database on ``mongo_url``."""
    import pymongo

    if mongo_url:
        scheme, _, rest = mongo_url.partition("://")
        if scheme != "mongodb":
            raise BenchError(f"--mongo-url must start with mongodb://, not {mongo_url!r}")
        host, _, tail = rest.partition("/")
        query = tail.partition("?")[2]
        mongo = Mongo(host, f"caviar_bench_{name}_{os.getpid()}".replace("-", "_"), query)
        wait_ready(mongo.url, None, 10)
        try:
            yield mongo
        finally:
            with contextlib.suppress(pymongo.errors.PyMongoError):
                with pymongo.MongoClient(mongo.url, serverSelectionTimeoutMS=2000) as client:
                    client.drop_database(mongo.db)
        return

    server = venv_script("nx-27017")
    for attempt in range(3):
        port = free_port()
        cmd = [server, "--db", os.path.join(run_dir, f"{name}.db"), "-p", str(port), "--host", "127.0.0.1",
               "--log-file", os.path.join(run_dir, f"{name}-server.log"),
               "--pid-file", os.path.join(run_dir, f"{name}-server.pid")]
        with open(os.path.join(run_dir, f"{name}-server.out"), "ab") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        mongo = Mongo(f"127.0.0.1:{port}", "bench")
        try:
            wait_ready(mongo.url, proc, 30)
            break
        except BenchError:
            stop_server(proc)
            if attempt == 2:
                raise
            log.warning("nx-27017 did not start on port %d, retrying on another", port)
    try:
        yield mongo
    finally:
        stop_server(proc)


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------- one run
@dataclass
class Run:
    system: str
    workers: int
    trials: int
    sleep: float
    wall: float | None = None  # s, start of the processes to the master's exit
    startup: float | None = None  # s, start of the processes to the first trial's start
    steady: float | None = None  # s, first trial's start to last trial's end
    tail: float | None = None  # s, last trial's end to the master's exit
    gaps: list[float] = field(default_factory=list)  # s, idle time of a worker between two trials
    evaluated: int = 0  # objective calls recorded
    foreign: float | None = None  # cores kept busy by other programs meanwhile
    error: str | None = None

    @property
    def ideal(self) -> float:
        return self.trials * self.sleep / self.workers

    def per_trial_ms(self, span: float | None) -> float | None:
        return None if span is None else (span - self.ideal) / self.trials * 1000

    @property
    def overhead_ms(self) -> float | None:
        return self.per_trial_ms(self.wall)

    @property
    def steady_overhead_ms(self) -> float | None:
        return self.per_trial_ms(self.steady)

    @property
    def gap_ms(self) -> float | None:
        return statistics.median(self.gaps) * 1000 if self.gaps else None


def read_times(folder: str) -> dict[int, list[tuple[float, float]]]:
    """The objective's records: pid -> [(start, end)] in start order."""
    out: dict[int, list[tuple[float, float]]] = {}
    for path in glob.glob(os.path.join(folder, "*.txt")):
        pid = int(os.path.basename(path)[:-4])
        with open(path, encoding="ascii") as f:
            rows = [tuple(float(x) for x in line.split()) for line in f if line.strip()]
        out[pid] = sorted(rows)  # type: ignore[arg-type]
    return out


class Bench:
    def __init__(self, args: argparse.Namespace, root: str):
        self.args, self.root = args, root
        self.counter = 0

    def env(self, times_dir: str, shim: bool = False) -> dict[str, str]:
        env = dict(os.environ)
        paths = ([SHIM_DIR] if shim else []) + [REPO] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
        env.update(PYTHONPATH=os.pathsep.join(paths), BENCH_SLEEP=repr(self.args.sleep),
                   BENCH_TIMES_DIR=times_dir, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2")
        return env

    def timeout(self, workers: int) -> float:
        if self.args.timeout:
            return self.args.timeout
        # hyperopt's defaults need about 1.3 s a trial; leave room for twice that.
        return 90 + self.args.trials * (self.args.sleep / workers + 2.5)

    def wait_quiet(self) -> None:
        """Wait (up to --quiet-wait s) until other programs use under 0.2 cores over 2 s."""
        end = time.monotonic() + self.args.quiet_wait
        while time.monotonic() < end:
            load = ForeignLoad()
            time.sleep(2.0)
            cores = load.cores()
            if cores is None or cores < 0.2:
                return
            log.info("waiting for a quiet machine: other programs use %.1f cores", cores)
        if self.args.quiet_wait:
            log.warning("the machine did not quiet down within --quiet-wait %gs; measuring anyway", self.args.quiet_wait)

    def run(self, system: str, workers: int) -> Run:
        self.wait_quiet()
        self.counter += 1
        name = f"{self.counter:02d}-{system}-w{workers}"
        run_dir = os.path.join(self.root, name)
        times_dir = os.path.join(run_dir, "times")
        os.makedirs(times_dir)
        run = Run(system, workers, self.args.trials, self.args.sleep)
        log.info("%s: %d trials, %d workers", system, run.trials, workers)
        procs = Procs(run_dir, self.env(times_dir, shim=system.startswith("hyperopt")))
        load = ForeignLoad()
        try:
            if system == "caviar":
                t0, t0_epoch, t1 = self.run_caviar(run, procs, run_dir, workers)
            elif system.startswith("hyperopt"):
                t0, t0_epoch, t1 = self.run_hyperopt(run, procs, run_dir, workers, tuned=system.endswith("tuned"))
            elif system.startswith("optuna"):
                t0, t0_epoch, t1 = self.run_optuna(run, procs, run_dir, workers, journal=system.endswith("journal"))
            else:
                raise BenchError(f"unknown system {system!r}")
            run.wall = t1 - t0
            self.summarize(run, read_times(times_dir), t0_epoch, t0_epoch + run.wall)
        except BenchError as err:
            run.error = str(err)
            log.error("%s with %d workers: %s\n%s", system, workers, err, procs.tail())
        except Exception as err:  # noqa: BLE001 - one broken run must not lose the others
            run.error = f"{type(err).__name__}: {err}"
            log.exception("%s with %d workers failed\n%s", system, workers, procs.tail())
        finally:
            procs.stop()
            run.foreign = load.cores()
        if run.foreign is not None and run.foreign > 0.2:
            log.warning("other programs kept %.1f of %d cores busy during this run: its figures are inflated",
                        run.foreign, os.cpu_count() or 0)
        if run.error is None:
            log.info("%s w=%d: wall %.2fs (ideal %.2fs) -> %.1f ms/trial; steady %.1f ms/trial; gap %s ms",
                     system, workers, run.wall, run.ideal, run.overhead_ms, run.steady_overhead_ms,
                     "-" if run.gap_ms is None else f"{run.gap_ms:.1f}")
        return run

    def summarize(self, run: Run, times: dict[int, list[tuple[float, float]]], t0: float, t1: float) -> None:
        rows = [r for rs in times.values() for r in rs]
        run.evaluated = len(rows)
        if run.evaluated != run.trials:
            raise BenchError(f"the objective ran {run.evaluated} times, not {run.trials}")
        first, last = min(r[0] for r in rows), max(r[1] for r in rows)
        run.steady, run.startup, run.tail = last - first, first - t0, t1 - last
        run.gaps = [b[0] - a[1] for rs in times.values() for a, b in zip(rs, rs[1:])]

    def check_exit(self, procs: Procs, proc: subprocess.Popen[bytes], what: str) -> None:
        if proc.returncode != 0:
            raise BenchError(f"{what} exited with {proc.returncode}")

    # -- the systems ------------------------------------------------------
    def run_caviar(self, run: Run, procs: Procs, run_dir: str, workers: int) -> tuple[float, float, float]:
        for module in ("optimizer/__main__.py", "caviar/store/mongo.py", "worker/__main__.py"):
            if not os.path.exists(os.path.join(REPO, module)):
                raise BenchError(f"Caviar's {module} does not exist yet")
        with mongo_for(f"caviar-w{workers}", run_dir, self.args.mongo_url) as mongo:
            master_cmd = [python(), "-m", "optimizer", "--mongo", mongo.url, "--exp-key", "bench",
                          "--space", "bench.objectives:SPACE", "--objective", "bench.objectives:sleep_objective",
                          "--max-evals", str(run.trials), "--algo", "tpe",
                          "--results-dir", os.path.join(run_dir, "results"),
                          *caviar_master_flags(self.args.caviar_plots), *self.args.caviar_master_arg]
            worker_cmd = [python(), "-m", "worker", "--mongo", mongo.url, "--exp-key", "bench",
                          *self.args.caviar_worker_arg]
            t0, t0_epoch = time.perf_counter(), time.time()
            master = procs.start("master", master_cmd)
            group = [procs.start(f"worker{i}", worker_cmd) for i in range(workers)]
            procs.wait([master], t0 + self.timeout(workers), group)
            t1 = procs.ended[master.pid]
            self.check_exit(procs, master, "the master")
            procs.stop(group)
        return t0, t0_epoch, t1

    def run_hyperopt(self, run: Run, procs: Procs, run_dir: str, workers: int, tuned: bool) -> tuple[float, float, float]:
        work = os.path.join(run_dir, "work")  # the worker makes a folder per job in its cwd
        os.makedirs(work)
        queue_len = self.args.hyperopt_queue_len if tuned else 1
        with mongo_for(f"hyperopt-w{workers}", run_dir, self.args.mongo_url) as mongo:
            # No exp_key: each run has a database of its own, and MongoTrials keeps the exp_key of
            # its fmin domain as an extra fs.files field, which nx-27017's GridFS drops.
            driver_cmd = [python(), "-m", "bench.hyperopt_driver", "--mongo", mongo.hyperopt_trials,
                          "--trials", str(run.trials), "--max-queue-len", str(queue_len)]
            worker_cmd = [venv_script("hyperopt-mongo-worker"), f"--mongo={mongo.hyperopt_worker}"]
            if tuned:
                worker_cmd += ["--poll-interval=0.1", "--no-subprocesses"]
            t0, t0_epoch = time.perf_counter(), time.time()
            driver = procs.start("driver", driver_cmd, cwd=work)
            group = [procs.start(f"worker{i}", worker_cmd, cwd=work) for i in range(workers)]
            procs.wait([driver], t0 + self.timeout(workers), group)
            t1 = procs.ended[driver.pid]
            self.check_exit(procs, driver, "the fmin driver")
            procs.stop(group)
        return t0, t0_epoch, t1

    def run_optuna(self, run: Run, procs: Procs, run_dir: str, workers: int, journal: bool) -> tuple[float, float, float]:
        if importlib.util.find_spec("optuna") is None:
            raise BenchError("optuna is not installed (pip install optuna)")
        import optuna

        from bench.optuna_worker import open_storage

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # this process's, not the workers'
        storage = ("journal:" + os.path.join(run_dir, "optuna.log") if journal
                   else "sqlite:///" + os.path.join(run_dir, "optuna.db"))
        open_storage(storage)  # the SQLite schema, before the clock (as the MongoDB server is)
        cmd = [python(), "-m", "bench.optuna_worker", "--storage", storage, "--study", "bench",
               "--trials", str(run.trials)]
        t0, t0_epoch = time.perf_counter(), time.time()
        group = [procs.start(f"worker{i}", cmd + ["--seed", str(i)]) for i in range(workers)]
        procs.wait(group, t0 + self.timeout(workers))
        t1 = max(procs.ended[p.pid] for p in group)
        for i, p in enumerate(group):
            self.check_exit(procs, p, f"Optuna worker {i}")
        states = [t.state.name for t in optuna.load_study(study_name="bench", storage=open_storage(storage)).trials]
        if states.count("COMPLETE") != run.trials:
            raise BenchError(f"the study holds {states.count('COMPLETE')} complete trials, not {run.trials}")
        return t0, t0_epoch, t1


# --------------------------------------------------------------------------- the report
def versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def git_commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True,
                               text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head or "unknown") + (" (with uncommitted changes)" if dirty else "")


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(runs: list[Run]) -> str:
    head = ("| system | workers | trials | wall s | ideal s | overhead ms/trial | steady s | "
            "steady overhead ms/trial | start-up s | exit after last s | median gap ms | other load (cores) |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in runs:
        if r.error is not None:
            lines.append(f"| {r.system} | {r.workers} | {r.trials} | failed: {r.error} | {r.ideal:.1f} |"
                         + " - |" * 6 + f" {fmt(r.foreign, '.2f')} |")
            continue
        lines.append(
            f"| {r.system} | {r.workers} | {r.trials} | {fmt(r.wall, '.2f')} | {r.ideal:.1f} | "
            f"{fmt(r.overhead_ms, ',.1f')} | {fmt(r.steady, '.2f')} | {fmt(r.steady_overhead_ms, ',.1f')} | "
            f"{fmt(r.startup, '.2f')} | {fmt(r.tail, '.3f')} | {fmt(r.gap_ms, '.1f')} | {fmt(r.foreign, '.2f')} |"
        )
    return "\n".join(lines)


def report(args: argparse.Namespace, runs: list[Run], started: dt.datetime) -> str:
    server = f"MongoDB at {args.mongo_url}" if args.mongo_url else (
        f"nx-27017 {versions()['nx-27017']} (one fresh server and database file per run, loopback)")
    pkgs = ", ".join(f"{k} {v}" for k, v in versions().items())
    caviar = [r for r in runs if r.system == "caviar" and r.error is None]
    verdict = "; ".join(
        f"{r.workers} workers: {r.overhead_ms:.1f} ms/trial with start-up "
        f"({'within' if r.overhead_ms <= CAVIAR_GOAL_MS else 'above'}), {r.steady_overhead_ms:.1f} steady "
        f"({'within' if r.steady_overhead_ms <= CAVIAR_GOAL_MS else 'above'})"
        for r in caviar
    )
    return f"""# Per-trial coordination overhead

Date: {started.strftime('%Y-%m-%d %H:%M UTC')}; commit {git_commit()}.
Machine: {os.cpu_count()} CPUs ({cpu_model()}), {platform.platform()}, Python {platform.python_version()}.
Packages: {pkgs}.
Server: {server}.
Settings: {args.trials} trials of a {args.sleep:g} s sleep objective (`bench.objectives:sleep_objective`,
4 parameters, TPE), workers {' and '.join(map(str, args.workers))}; ideal = trials x sleep / workers.
Command: `python bench/overhead.py {' '.join(sys.argv[1:])}`.

{table(runs)}

- **wall**: starting the processes to the master's exit (Optuna: to the last process's exit);
  Python start-up and imports count for every system. **overhead** = (wall - ideal) / trials.
- **steady**: first trial's start to the last trial's end, as the objective itself records them
  in every system; **steady overhead** = (steady - ideal) / trials.
- **start-up**: processes started to first trial started. **exit after last**: last trial's end
  to the master's exit. **median gap**: idle time of one worker process between two of its
  trials ("-" where every trial runs in a new process: hyperopt-mongo-worker's default).
  **other load**: cores kept busy by programs other than the benchmark during the run
  (/proc/stat minus the benchmark's own CPU); above ~0.2 the run's figures are inflated.
- hyperopt-default: fmin max_queue_len=1, `hyperopt-mongo-worker` defaults (poll 1-5 s, one
  subprocess per job). hyperopt-tuned: max_queue_len={args.hyperopt_queue_len},
  `--poll-interval=0.1 --no-subprocesses`. fmin itself sleeps 1 s between queue checks
  (FMinIter's poll_interval_secs, not settable through fmin). hyperopt 0.3.0 runs on pymongo 4
  through `bench/pymongo3_compat.py`, loaded in the hyperopt processes only.
- Caviar: master with its defaults (`--lookahead 2`, `--lease-seconds 60`){' and its end-of-search plots' if args.caviar_plots else ', `--no-plots` where it has it (the plots are drawn after the last trial: output, not coordination)'};
  workers stopped with SIGTERM once the master exited 0.
- Optuna: W processes `study.optimize` with TPESampler (seed = process index) and
  `MaxTrialsCallback(trials, states=None)`; the SQLite schema is created before the clock starts.
{(f'- Caviar against its goal of {CAVIAR_GOAL_MS:g} ms/trial: ' + verdict + '.') if verdict else ''}
"""


# --------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python bench/overhead.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=100)
    p.add_argument("--workers", type=int, nargs="+", default=[2, 4])
    p.add_argument("--sleep", type=float, default=0.2, help="seconds each trial sleeps")
    p.add_argument("--systems", nargs="+", default=SYSTEMS, choices=SYSTEMS)
    p.add_argument("--repeat", type=int, default=1, help="measure each system and worker count this many times")
    p.add_argument("--mongo-url", default=None, help="use this MongoDB (mongodb://host:port) instead of nx-27017")
    p.add_argument("--hyperopt-queue-len", type=int, default=2, help="fmin max_queue_len of hyperopt-tuned")
    p.add_argument("--caviar-master-arg", action="append", default=[], metavar="ARG",
                   help="extra argument for python -m optimizer (repeat for each), e.g. --caviar-master-arg=--lookahead=2")
    p.add_argument("--caviar-plots", action="store_true",
                   help="let Caviar's master draw its end-of-search plots (default: --no-plots)")
    p.add_argument("--caviar-worker-arg", action="append", default=[], metavar="ARG",
                   help="extra argument for python -m worker (repeat for each)")
    p.add_argument("--quiet-wait", type=float, default=0.0, metavar="S",
                   help="before each run, wait up to S seconds for other programs to leave the CPUs idle")
    p.add_argument("--timeout", type=float, default=None, help="seconds allowed per run (default: from trials)")
    p.add_argument("--output", default=DEFAULT_OUTPUT, help="markdown report ('' to skip)")
    p.add_argument("--keep", action="store_true", help="keep the run folder (logs, databases, timings)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.trials < 1 or min(args.workers) < 1 or args.sleep < 0:
        raise SystemExit("--trials and --workers must be positive, --sleep not negative")

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    started = dt.datetime.now(dt.timezone.utc)
    root = tempfile.mkdtemp(prefix="caviar-bench-")
    runs: list[Run] = []
    try:
        bench = Bench(args, root)
        for workers in args.workers:
            for system in args.systems:
                for _ in range(args.repeat):
                    runs.append(bench.run(system, workers))
    except KeyboardInterrupt:
        log.warning("interrupted: reporting the runs measured so far")
    finally:
        if args.keep:
            log.info("run folder kept: %s", root)
        else:
            shutil.rmtree(root, ignore_errors=True)
    text = report(args, runs, started)
    print(text)
    if args.output:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
        log.info("wrote %s", args.output)
    return 0 if runs and all(r.error is None for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
