"""The objective contract: run a user's function on one point and get a plain result dict.

An objective takes the concrete hyperparameters (a dict) and returns either a
float loss or a hyperopt result dict (``loss``, ``status`` and anything else).
Whatever happens inside it, ``evaluate`` returns a result that can be stored as
plain values: exceptions, NaN/inf losses and unserialisable values become
failed trials, so one bad point never stops a search.

An objective raises ``CaviarError`` for a problem no trial can overcome (its
data set is missing or unreadable): that stops the search or the worker with
one clear line instead of failing every trial in the queue.

A result may carry ``artifacts``: ``{name: path of a file}`` such as a trained
model. The runner pops them before the result is stored and keeps the files of
the best trial only (``caviar.runner.artifacts``). Write them into ``trial_dir()``,
the trial's own scratch folder, which the runner deletes once the store has
copied what it keeps; a file anywhere else is copied, never deleted.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
import traceback
from typing import Any, Callable

import numpy as np
from caviar.errors import CaviarError

log = logging.getLogger(__name__)

# hyperopt's STATUS_* values, spelled out so that workers start without importing hyperopt.
STATUS_OK, STATUS_FAIL = "ok", "fail"

ARTIFACTS_KEY = "artifacts"
# The runner names each trial's scratch folder in this environment variable while the objective runs.
TRIAL_DIR_ENV = "CAVIAR_TRIAL_DIR"
# hyperopt's result attachments: {name: bytes (or str, stored as UTF-8)}, kept apart from the stored result.
ATTACHMENTS_KEY = "attachments"
Objective = Callable[[dict[str, Any]], Any]


def trial_dir() -> str:
    """The folder for this trial's files (artifacts): the runner's scratch folder, deleted after the trial.

    Outside a runner (an objective called by hand) it is a fresh temp folder,
    which the caller owns.
    """
    return os.environ.get(TRIAL_DIR_ENV) or tempfile.mkdtemp(prefix="caviar-trial-")


def to_plain(value: Any) -> Any:
    """Convert numpy scalars/arrays, tuples and nested containers to JSON/BSON-safe values."""
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_plain(value.tolist())
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"{type(value).__name__} value {value!r} is not a plain value")


def flatten_params(value: Any, name: str = "") -> dict[str, Any]:
    """Nested hyperparameters (dicts, lists) as one level of dotted names, for tables and plots.

    A space that is a single expression yields a bare value, named "params".
    """
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return {name or "params": value}
    flat: dict[str, Any] = {}
    for key, item in items:
        flat |= flatten_params(item, f"{name}.{key}" if name else str(key))
    return flat


def failure(error: str, tb: str | None = None) -> dict[str, Any]:
    """A failed-trial result: hyperopt's fail status with the reason kept for the user."""
    result: dict[str, Any] = {"status": STATUS_FAIL, "error": error}
    if tb:
        result["traceback"] = tb
    return result


def normalize(raw: Any) -> dict[str, Any]:
    """Turn what an objective returned into a plain hyperopt result dict."""
    if isinstance(raw, dict):
        result = dict(raw)
    elif isinstance(raw, (int, float, np.integer, np.floating)) and not isinstance(raw, bool):
        result = {"loss": float(raw), "status": STATUS_OK}
    else:
        return failure(f"objective returned {type(raw).__name__}, expected a float or a result dict")
    result.setdefault("status", STATUS_OK)
    if isinstance(result.get(ARTIFACTS_KEY), dict):  # a pathlib.Path is as good as its string
        result[ARTIFACTS_KEY] = {k: os.fspath(v) if isinstance(v, os.PathLike) else v
                                 for k, v in result[ARTIFACTS_KEY].items()}
    if result["status"] == STATUS_OK:
        loss = result.get("loss")
        try:
            loss = float(loss)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return failure(f"objective returned status ok with loss {loss!r}, not a number")
        if not math.isfinite(loss):
            return failure(f"objective returned a non-finite loss ({loss})") | _details(result)
        result["loss"] = loss
    attachments = result.pop(ATTACHMENTS_KEY, None) or {}
    if not isinstance(attachments, dict) or not all(isinstance(v, (bytes, str)) for v in attachments.values()):
        return failure(f"objective returned attachments {attachments!r:.200}, expected a dict of bytes")
    try:
        plain = to_plain(result)
    except TypeError as err:
        return failure(f"objective result is not storable: {err}")
    if attachments:
        plain[ATTACHMENTS_KEY] = {str(k): v.encode() if isinstance(v, str) else v for k, v in attachments.items()}
    return plain


def _details(result: dict[str, Any]) -> dict[str, Any]:
    """Keep plain extra fields of a rejected result (history, params) for diagnosis."""
    kept = {}
    for key, value in result.items():
        if key in ("status", "loss", ARTIFACTS_KEY, ATTACHMENTS_KEY):
            continue
        try:
            kept[key] = to_plain(value)
        except TypeError:
            continue
    return kept


class LeaseLost(KeyboardInterrupt):
    """Raised by ``check_stop`` when the runner asked the running trial to stop (its lease was lost).

    A KeyboardInterrupt, so that ``evaluate`` lets it through instead of failing the trial.
    """


_stop_reason: str | None = None


def request_stop(reason: str | None) -> None:
    """For the runner: ask the running objective to stop at its next ``check_stop`` (None: clear)."""
    global _stop_reason
    _stop_reason = reason


def check_stop() -> None:
    """Call at safe points of a long objective (after a batch or an epoch): raises LeaseLost when asked.

    A worker that lost its trial's lease asks this, so that it stops training
    a trial whose result would be thrown away.
    """
    if _stop_reason is not None:
        raise LeaseLost(_stop_reason)


def evaluate(fn: Objective, params: dict[str, Any]) -> dict[str, Any]:
    """Run ``fn(params)`` and return a plain result dict; only a CaviarError gets through."""
    start = time.time()
    try:
        raw = fn(params)
    except (KeyboardInterrupt, CaviarError):
        raise
    except BaseException as err:  # noqa: BLE001 - any failure of user code fails the trial only
        if isinstance(err, SystemExit):
            err = RuntimeError(f"objective called exit({err.code})")
        log.warning("trial failed: %s: %s", type(err).__name__, err)
        result = failure(f"{type(err).__name__}: {err}", traceback.format_exc())
    else:
        result = normalize(raw)
    result.setdefault("duration", time.time() - start)
    return result
