"""A trial's artifacts: a scratch folder of its own, checked artifact paths, and deleting that folder only.

Each trial runs with a fresh scratch folder (``caviar.objective.trial_dir()``
names it to the objective). After the store has copied what it keeps (the
files of a new best), the runner deletes that folder and nothing else: an
artifact the objective wrote elsewhere (its own folder, the system's temp
folder) is copied by the store but never deleted, so no objective can make
the runner remove files it does not own.

An ``artifacts`` value that is not ``{name: path of an existing file}`` fails
its trial with the reason; it never reaches the store, where it would stop the
process (and again on every resume, since the same point is proposed again).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
from typing import Any, Iterator

from caviar.objective import ARTIFACTS_KEY, STATUS_OK, TRIAL_DIR_ENV, failure

log = logging.getLogger(__name__)

# An artifact's name becomes part of a file name (best_<name>.<ext>) and of a GridFS name.
ARTIFACT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


class TrialArtifacts(dict[str, str]):
    """The checked artifact files of one trial, ``{name: absolute path}``, and its scratch folder."""

    def __init__(self, files: dict[str, str], scratch: str | None):
        super().__init__(files)
        self.scratch = scratch


def new_scratch(tid: int) -> str:
    """A fresh, empty scratch folder for trial ``tid`` in the system's temp folder."""
    return tempfile.mkdtemp(prefix=f"caviar-trial-{tid}-")


@contextlib.contextmanager
def scratch_env(scratch: str) -> Iterator[None]:
    """Name ``scratch`` to the objective (``TRIAL_DIR_ENV``) while it runs, then restore the environment."""
    before = os.environ.get(TRIAL_DIR_ENV)
    os.environ[TRIAL_DIR_ENV] = scratch
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(TRIAL_DIR_ENV, None)
        else:
            os.environ[TRIAL_DIR_ENV] = before


def check_artifacts(raw: Any) -> dict[str, str]:
    """``raw`` as ``{name: absolute path}``; ValueError saying what is wrong with it otherwise."""
    if not isinstance(raw, dict):
        raise ValueError(f"{ARTIFACTS_KEY} must be a dict {{name: file path}}, not {type(raw).__name__} {raw!r:.200}")
    files = {}
    for name, path in raw.items():
        if not isinstance(name, str) or not ARTIFACT_NAME.fullmatch(name):
            raise ValueError(f"artifact name {name!r:.100} is not letters, digits, '-' or '_' (at most 64)")
        if not isinstance(path, str) or not path:
            raise ValueError(f"artifact {name!r}: {path!r:.200} is not a file path")
        if not os.path.isfile(path):
            what = "a folder" if os.path.isdir(path) else "no file"
            raise ValueError(f"artifact {name!r}: {path!r} is {what}, a file is needed")
        files[name] = os.path.abspath(path)
    return files


def split_artifacts(result: dict[str, Any], scratch: str | None) -> tuple[dict[str, Any], TrialArtifacts]:
    """Take the artifacts out of an evaluated result; a bad value fails the trial with the reason."""
    raw = result.pop(ARTIFACTS_KEY, None)
    if raw is None or result.get("status") != STATUS_OK:
        return result, TrialArtifacts({}, scratch)
    try:
        return result, TrialArtifacts(check_artifacts(raw), scratch)
    except ValueError as err:
        log.warning("trial failed: %s", err)
        kept = {k: v for k, v in result.items() if k not in ("status", "loss", "error")}
        return kept | failure(f"objective returned bad {ARTIFACTS_KEY}: {err}"), TrialArtifacts({}, scratch)


def discard_artifacts(artifacts: dict[str, str]) -> None:
    """Delete the trial's scratch folder, once the store holds what it keeps; never any other file."""
    scratch = getattr(artifacts, "scratch", None)
    if scratch:
        shutil.rmtree(scratch, ignore_errors=True)
