"""Configuration in one place: command-line flags whose defaults come from environment variables, and logging."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any, Callable, NoReturn


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not 0 < value < float("inf"):
        raise ValueError
    return value


def int_from(low: int, high: int) -> Callable[[str], int]:
    """A parser of integers from ``low`` to ``high``: a bound on what no search can mean (10**12 trials)."""
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise ValueError
        return value

    parse.__name__ = f"an integer from {low} to {high}"
    return parse


positive_int.__name__ = "a positive integer"
non_negative_int.__name__ = "a non-negative integer"
positive_float.__name__ = "a positive finite number"


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose defaults may come from environment variables, checked like flags.

    Flags are never abbreviated (``--max-eval`` is refused, not taken for
    ``--max-evals``), and a usage error is one ``error:`` line, not the usage.
    """

    def __init__(self, *args: Any, **kw: Any) -> None:
        kw.setdefault("allow_abbrev", False)
        super().__init__(*args, **kw)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")

    def env_option(self, flag: str, env: str, fallback: Any, kind: Callable[[str], Any] = str,
                   group: Any = None, **kw: Any) -> None:
        """Add ``flag`` (to ``group`` if given) defaulting to ``$env``, else ``fallback``; a bad variable is a usage error."""
        raw = os.environ.get(env)
        default = fallback
        if raw not in (None, ""):
            try:
                default = kind(raw)
            except ValueError:
                self.error(f"{env}={raw!r} is not {kind.__name__}")
            if kw.get("choices") is not None and default not in kw["choices"]:
                self.error(f"{env}={raw!r} is not one of {', '.join(map(str, kw['choices']))}")
        helptext = kw.pop("help")
        (group or self).add_argument(flag, type=kind, default=default,
                                     help=f"{helptext} (env {env}; default: %(default)s)", **kw)


def configure_logging(verbose: bool) -> None:
    """One logging set-up for the whole process; quiet the chatty libraries."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for name in ("hyperopt", "pymongo", "absl", "matplotlib", "h5py", "alembic", "mlflow"):
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", tensorflow_log_level())


# Present on every Linux machine with an NVIDIA driver loaded (and in GPU containers).
NVIDIA_DRIVER = "/proc/driver/nvidia/version"


def tensorflow_log_level(driver: str = NVIDIA_DRIVER) -> str:
    """TensorFlow's C++ log level, read when it is first imported (so set before that).

    "2" hides its info and warnings. Without an NVIDIA driver, TensorFlow's CUDA
    build still tries the GPU and logs ``failed call to cuInit`` as an error on
    every run: there "3" hides that line, which is no error on a CPU machine. A
    GPU machine keeps "2", so real CUDA errors are shown.
    """
    return "2" if os.path.exists(driver) else "3"


def exit_process(code: int) -> None:
    """Exit with ``code`` once logs and output are flushed, skipping interpreter teardown.

    Everything a run keeps is already on disk or in the database by then (files
    are fsynced, trackers closed); what teardown would still do is wait up to
    half a second for pymongo's monitor threads, for every master and worker.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
