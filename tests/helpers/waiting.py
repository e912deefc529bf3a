"""Bounded waiting for a condition that other processes bring about."""

from __future__ import annotations

import time
from typing import Callable

from pymongo.errors import ConnectionFailure


def wait_until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll ``condition`` until true; a database that is briefly unreachable counts as not yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except ConnectionFailure:
            pass
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
