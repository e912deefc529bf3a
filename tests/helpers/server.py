"""A real MongoDB wire-protocol server for tests: nx-27017 (SQLite-backed) as a subprocess.

One SQLite file per database (``--data-dir``): database names isolate tests
only in that mode (with a single ``--db`` file all databases share collections).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HOST = "127.0.0.1"


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def with_database(url: str, database: str) -> str:
    """``url`` with its database path replaced by ``database`` (query options kept)."""
    match = re.fullmatch(r"(mongodb(?:\+srv)?://[^/?]+)(?:/[^?]*)?(\?.*)?", url)
    if match is None:
        raise ValueError(f"not a MongoDB URL: {url!r}")
    return f"{match.group(1)}/{database}{match.group(2) or ''}"


def database_for(test_id: str) -> str:
    """A short database name unique to one test."""
    return "t" + hashlib.sha1(test_id.encode()).hexdigest()[:16]


def _executable() -> str:
    beside = Path(sys.executable).with_name("nx-27017")
    found = str(beside) if beside.exists() else shutil.which("nx-27017")
    if found is None:
        raise RuntimeError("nx-27017 is not installed (pip install nx-27017)")
    return found


class NxServer:
    """An nx-27017 process on a fixed port and data folder, so it can be stopped and restarted in place."""

    def __init__(self, data_dir: Path, port: int | None = None):
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"mongodb://{HOST}:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        """Start and wait until the port accepts connections; a failed bind is retried (bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            log = open(self.data_dir / "server.log", "ab")
            self._proc = subprocess.Popen(
                [_executable(), "--data-dir", str(self.data_dir / "data"), "--host", HOST, "-p", str(self.port),
                 "--log-file", str(self.data_dir / "nx.log"), "--pid-file", str(self.data_dir / "nx.pid")],
                stdout=log, stderr=subprocess.STDOUT,
            )
            log.close()
            while self._proc.poll() is None and time.monotonic() < deadline:
                try:
                    socket.create_connection((HOST, self.port), timeout=0.5).close()
                    return
                except OSError:
                    time.sleep(0.05)
            if time.monotonic() >= deadline:
                self.stop()
                raise RuntimeError(f"nx-27017 did not listen on port {self.port} within {timeout} s")
            time.sleep(0.2)  # it exited, typically a bind failure right after a kill: try again

    def stop(self) -> None:
        """Kill the server (SIGKILL, like a crash); its data folder stays for a restart."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait(timeout=10)
        self._proc = None

    def __enter__(self) -> "NxServer":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def env_for_subprocess(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a worker or master subprocess: the repository importable, no GPU, no stray settings."""
    root = str(Path(__file__).resolve().parents[2])
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", "EXPERIMENT_NAME", "MONGO_URL")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    return env | (extra or {})
