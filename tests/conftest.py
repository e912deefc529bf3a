"""Shared fixtures: a real MongoDB-protocol server, a database per test, worker subprocesses.

Set MONGO_URL to run the database tests against a real MongoDB instead of the
nx-27017 stand-in started here (each test still gets its own database).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pymongo
import pytest

from tests.helpers.server import NxServer, database_for, env_for_subprocess, with_database

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def temp_folder_of_the_test(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Temp files of this test (a trial's scratch folder, a store's checkpoints, a killed worker's leftovers) go
    to a folder of its own under pytest's, which pytest prunes, not to the system's temp folder. Short, for
    the Unix sockets some libraries make there; set in ``TMPDIR`` too, for the subprocesses."""
    folder = str(tmp_path_factory.mktemp("t"))
    monkeypatch.setattr(tempfile, "tempdir", folder)
    monkeypatch.setenv("TMPDIR", folder)


@pytest.fixture(scope="session")
def mongo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The server's URL without a database: $MONGO_URL's server, else an nx-27017 for this session."""
    if os.environ.get("MONGO_URL"):
        yield os.environ["MONGO_URL"]
        return
    with NxServer(tmp_path_factory.mktemp("mongo")) as server:
        yield server.url


def _drop(url: str) -> None:
    with pymongo.MongoClient(url, serverSelectionTimeoutMS=5000) as client:
        client.drop_database(client.get_default_database().name)


@pytest.fixture
def mongo_url(mongo_server: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """``mongodb://host:port/<database of this test>``, empty at the start and dropped afterwards."""
    url = with_database(mongo_server, database_for(request.node.nodeid))
    _drop(url)
    yield url
    _drop(url)


@pytest.fixture
def restartable_mongo(tmp_path: Path) -> Iterator[NxServer]:
    """An nx-27017 of this test alone, which the test may stop and start again on the same port and data."""
    with NxServer(tmp_path / "mongo") as server:
        yield server


class Workers:
    """``python -m worker`` subprocesses of one test; whatever is still running at the end is killed."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, url: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start a worker on ``url`` with extra flags; its output goes to ``log(proc)``."""
        with open(self.log_dir / f"worker{len(self.procs)}.log", "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "worker", "--mongo", url, *args],
                cwd=ROOT, env=env_for_subprocess(env), stdout=log, stderr=subprocess.STDOUT,
            )
        self.procs.append(proc)
        return proc

    def log(self, proc: subprocess.Popen[bytes]) -> str:
        return (self.log_dir / f"worker{self.procs.index(proc)}.log").read_text()

    def logs(self) -> str:
        """Every worker's output, for assertion messages."""
        return "\n".join(f"--- worker {i} ---\n{self.log(p)}" for i, p in enumerate(self.procs))

    def wait_all(self, timeout: float) -> list[int]:
        """Wait for every worker to exit (they are started with --idle-exit); their exit codes."""
        try:
            return [proc.wait(timeout=timeout) for proc in self.procs]
        except subprocess.TimeoutExpired:
            raise AssertionError(f"a worker did not exit within {timeout} s\n{self.logs()}") from None

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    """Starts worker subprocesses; kills whatever is left when the test ends."""
    pool = Workers(tmp_path)
    yield pool
    pool.kill_all()
