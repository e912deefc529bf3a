"""Files that a crash cannot leave half-written: write to a temp file beside the target, fsync, rename.

Shared by results/ (``caviar.output.results``) and the local store's kept
artifacts, so that both sides of a "file plus its pointer" pair are whole.
Temp files start with ``TEMP_PREFIX`` so that the search that owns a folder can
remove the ones a SIGKILL left behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any

TEMP_PREFIX = ".tmp-"


def _file_mode() -> int:
    """The mode a plain open() would give a new file (mkstemp's is 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _file_mode()


def fsync_folder(folder: str) -> None:
    """Make a rename or removal in ``folder`` durable."""
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _replace_with(path: str, fill: Any) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=TEMP_PREFIX, suffix=os.path.basename(path))
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            fill(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    fsync_folder(folder)


def atomic_write(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never half of one."""
    _replace_with(path, lambda f: f.write(data))


def atomic_copy(source: str, path: str) -> None:
    """Copy the file ``source`` to ``path`` atomically (a large model is streamed, not read whole)."""
    def fill(f: Any) -> None:
        with open(source, "rb") as src:
            shutil.copyfileobj(src, f)

    _replace_with(path, fill)


def write_json(path: str, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def remove_durably(path: str) -> None:
    """Remove ``path`` if it exists, and make the removal survive a power cut."""
    try:
        os.remove(path)
    except FileNotFoundError:
        return
    fsync_folder(os.path.dirname(os.path.abspath(path)))
