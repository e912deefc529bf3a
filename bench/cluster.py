"""One Caviar search as a user runs it across processes: a master and workers on a fresh nx-27017 server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from caviar.store.mongo import MongoStore
from tests.helpers.server import NxServer

ROOT = Path(__file__).resolve().parent.parent


def search_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without Caviar's own settings (the flags say them), on the CPU, quiet, plus ``extra``."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("HKS_", "MONGO_", "EXPERIMENT_"))}
    return keep | {"PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""} | dict(extra or {})


def run_search(workdir: Path, exp_key: str, master_args: Sequence[str], workers: int,
               env: Mapping[str, str]) -> tuple[float, float, list[dict[str, Any]]]:
    """Run ``python -m optimizer --mongo URL --exp-key KEY *master_args`` beside ``workers`` workers.

    Returns the master's start (epoch seconds), the wall seconds to its exit and the trial
    documents; the log of every process is ``workdir/<exp_key>.log``.
    """
    log_path = workdir / f"{exp_key}.log"
    with NxServer(workdir / f"mongo-{exp_key}") as server, open(log_path, "wb") as log:
        url = f"{server.url}/bench"
        start = time.time()
        master = subprocess.Popen([sys.executable, "-m", "optimizer", "--mongo", url, "--exp-key", exp_key,
                                   *master_args], cwd=ROOT, env=dict(env), stdout=log, stderr=subprocess.STDOUT)
        group = [subprocess.Popen([sys.executable, "-m", "worker", "--mongo", url, "--exp-key", exp_key],
                                  cwd=ROOT, env=dict(env), stdout=log, stderr=subprocess.STDOUT)
                 for _ in range(workers)]
        code = master.wait()
        wall = time.time() - start
        for worker in group:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=600)
        if code != 0:
            raise SystemExit(f"{exp_key}: the master exited {code}; see {log_path}")
        return start, wall, MongoStore(url, exp_key).trial_docs()
