"""Experiment tracking: hand every finished trial to TensorBoard and, optionally, MLflow.

Like Optuna's callbacks, a tracker is told about each finished trial document
(see optimizer/store.py for its layout) and closed at the end of a run. The
master calls them, not the workers: workers may run on other hosts, while the
master sees every finished document with its full per-epoch history.

Trackers never raise: tracking is a view on the search, so a full disk or an
unreachable tracking server is a warning, never a failed trial or a stopped
search. Both trackers are idempotent across restarts, so a resumed search feeds
them every finished trial again and only the new ones are written.

- ``TensorBoardTracker`` (base install): results/tensorboard/<run>/ per trial
  with the per-epoch scalars and an HParams session, and the experiment's
  HParams config in results/tensorboard/ itself.
- ``MlflowTracker`` (``pip install caviar[mlflow]``): one parent run per
  experiment and one nested child run per trial, in a local SQLite store under
  results/ unless MLFLOW_TRACKING_URI names another one.

A trial that a scheduler stopped early (``"stopped": true`` in its result) is
a finished trial, not a failed one: its MLflow run is FINISHED with the tags
``stopped=true`` and ``stopped_at=<epoch>`` (and ``paused=true`` when asha may
promote it), and its HParams session has ``stopped`` true (false for every
other trial); a promotion's run is tagged ``continues=<tid>``.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Protocol

from caviar.objective import flatten_params
from caviar.store import is_ok

log = logging.getLogger(__name__)

Draw = Callable[[dict[str, Any], str], None]

TENSORBOARD_DIR = "tensorboard"
MLFLOW_DB = "mlflow.db"
MLFLOW_ARTIFACTS = "mlartifacts"
# Written into a trial's TensorBoard folder once its events are complete.
TRIAL_MARKER = "caviar_trial.json"
# MLflow servers before 2.x refuse longer parameter values; newer ones allow 6000.
MAX_PARAM_CHARS = 500
MAX_KEY_CHARS = 250
MAX_TAG_CHARS = 5000
# An unreachable tracking server must cost seconds, not MLflow's default minutes of retries.
MLFLOW_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}


class Tracker(Protocol):
    """Something that records finished trials somewhere; it must never raise."""

    def trial_finished(self, doc: dict[str, Any]) -> None:
        """Record one finished (DONE) trial document; one already recorded is skipped."""

    def close(self) -> None:
        """Flush and release what the tracker holds at the end of a run."""


def scalar_params(params: Any) -> dict[str, bool | int | float | str]:
    """Flattened hyperparameters as dashboards want them: None becomes "None", other values JSON text."""
    flat: dict[str, bool | int | float | str] = {}
    for name, value in flatten_params(params).items():
        if value is None:
            flat[name] = "None"
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = json.dumps(value, default=str)
    return flat


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def summary_metrics(result: dict[str, Any]) -> dict[str, float]:
    """One number per metric of a trial, for comparing trials side by side.

    ``result/<field>`` for each numeric field of the result (loss, fine_best_accuracy,
    n_params...) and ``best/`` and ``final/`` of every validation accuracy in the history.
    """
    metrics = {f"result/{key}": float(value) for key, value in result.items() if _finite(value)}
    for key, values in (result.get("history") or {}).items():
        finite = [float(v) for v in values if _finite(v)]
        if key.startswith("val_") and key.endswith("accuracy") and finite:
            metrics[f"best/{key}"] = max(finite)
            metrics[f"final/{key}"] = finite[-1]
    return metrics


def _status(doc: dict[str, Any]) -> str:
    return "ok" if is_ok(doc) else str(doc["result"].get("status", "fail"))


def run_name(doc: dict[str, Any]) -> str:
    """A trial's display name: its model name, else trial_<tid>, safe as a folder name."""
    name = doc["result"].get("model_name") or f"trial_{doc['tid']:05d}"
    return re.sub(r"[^A-Za-z0-9._-]", "_", str(name)).lstrip(".") or f"trial_{doc['tid']:05d}"


class TensorBoardTracker:
    """Writes each trial's per-epoch scalars and HParams session for TensorBoard's dashboards."""

    def __init__(self, logdir: str, history_only: bool = False):
        self.logdir = logdir
        # Only trials with per-epoch curves: a cheap objective's master then never loads TensorFlow.
        self.history_only = history_only
        self._written = self._scan()
        # Every (type name, value) seen per hyperparameter, and every summary metric tag: the experiment config.
        self._values: dict[str, set[tuple[str, Any]]] = {}
        self._metrics: set[str] = set()
        self._config: tuple[Any, ...] | None = None

    def _scan(self) -> dict[int, str]:
        """Trials written by earlier runs (tid -> folder), from their markers."""
        written: dict[int, str] = {}
        for marker in Path(self.logdir).glob(f"*/{TRIAL_MARKER}"):
            try:
                written[int(json.loads(marker.read_text())["tid"])] = marker.parent.name
            except (OSError, ValueError, KeyError, TypeError) as err:
                log.warning("ignoring unreadable TensorBoard marker %s: %s", marker, err)
        return written

    def trial_finished(self, doc: dict[str, Any]) -> None:
        """Write the trial's folder unless an earlier run did, then refresh the experiment config."""
        if self.history_only and not doc["result"].get("history"):
            return
        try:
            hparams = self._hparams(doc)
            metrics = summary_metrics(doc["result"])
            for name, value in hparams.items():  # typed: a set would merge True, 1 and 1.0
                self._values.setdefault(name, set()).add((type(value).__name__, value))
            self._metrics.update(metrics)
            if doc["tid"] not in self._written:
                self._write_trial(doc, hparams, metrics)
            self._write_config()
        except Exception as err:  # noqa: BLE001 - tracking must never stop a search
            log.warning("TensorBoard: could not record trial %s: %s", doc.get("tid"), err)

    def close(self) -> None:
        """Nothing stays open: every trial's writer is closed once its events are written."""

    @staticmethod
    def _hparams(doc: dict[str, Any]) -> dict[str, Any]:
        """The trial's point, its status and whether a scheduler stopped it (a column to filter on)."""
        return {"status": _status(doc), "stopped": bool(doc["result"].get("stopped"))} | scalar_params(
            doc.get("params") or {})

    def _folder(self, doc: dict[str, Any]) -> str:
        """A folder of its own for the trial, even if another trial has the same model name."""
        name = run_name(doc)
        if name in self._written.values():
            name = f"{name}_tid{doc['tid']:05d}"
        return name

    def _write_trial(self, doc: dict[str, Any], hparams: dict[str, Any], metrics: dict[str, float]) -> None:
        import tensorflow as tf
        from tensorboard.plugins.hparams import api as hp

        name = self._folder(doc)
        path = os.path.join(self.logdir, name)
        # A folder without a marker is what a crash left half written: start it again.
        shutil.rmtree(path, ignore_errors=True)
        writer = tf.summary.create_file_writer(path)
        try:
            with writer.as_default():
                hp.hparams(hparams, trial_id=name, start_time_secs=doc.get("book_time"))
                for key, values in (doc["result"].get("history") or {}).items():
                    for epoch, value in enumerate(values):
                        tf.summary.scalar(key, value, step=epoch)
                for key, value in metrics.items():
                    tf.summary.scalar(key, value, step=0)
        finally:
            writer.close()
        Path(path, TRIAL_MARKER).write_text(json.dumps({"tid": doc["tid"], "status": hparams["status"]}))
        self._written[doc["tid"]] = name

    def _write_config(self) -> None:
        """(Re)write the HParams experiment config in the log root when the trials widened it.

        It lists every hyperparameter with the domain of the values seen (and whether
        they differ: the dashboard shows those first) and the summary metrics. The
        root holds one config event file: a new one replaces the old. A TensorBoard
        already running keeps the config it read first until it is restarted.
        """
        from tensorboard.plugins.hparams import api_pb2

        hparams = [self._hparam_info(name, values) for name, values in sorted(self._values.items())]
        order = {"result/loss": 0, "best": 1, "final": 2}
        tags = sorted(self._metrics, key=lambda m: (order.get(m, order.get(m.split("/")[0], 3)), m))
        metrics = [api_pb2.MetricInfo(name=api_pb2.MetricName(tag=tag)) for tag in tags]
        config = tuple(p.SerializeToString(deterministic=True) for p in hparams + metrics)
        if config != self._config:
            self._save_config(hparams, metrics)
            self._config = config

    @staticmethod
    def _hparam_info(name: str, typed: set[tuple[str, Any]]) -> Any:
        from tensorboard.plugins.hparams import api_pb2

        kinds = {kind for kind, _ in typed}
        values = [value for _, value in typed]
        info = api_pb2.HParamInfo(name=name, differs=len(set(values)) > 1)
        if kinds == {"bool"}:
            info.type = api_pb2.DATA_TYPE_BOOL
            info.domain_discrete.extend([False, True])
        elif kinds <= {"int", "float"} and all(_finite(v) for v in values):
            info.type = api_pb2.DATA_TYPE_FLOAT64
            info.domain_interval.min_value, info.domain_interval.max_value = min(values), max(values)
        elif kinds == {"str"}:
            info.type = api_pb2.DATA_TYPE_STRING
            info.domain_discrete.extend(sorted(values))
        # Otherwise several types (e.g. "None" or a number): no domain, so no dashboard filter hides either.
        return info

    def _save_config(self, hparams: list[Any], metrics: list[Any]) -> None:
        import tensorflow as tf
        from tensorboard.plugins.hparams import summary

        os.makedirs(self.logdir, exist_ok=True)
        old = [p for p in Path(self.logdir).iterdir() if p.is_file() and p.name.startswith("events.out.tfevents.")]
        # Written beside the log root (not in it, where TensorBoard would take it for a run), then moved in.
        staging = tempfile.mkdtemp(prefix=".tensorboard-config-", dir=os.path.dirname(os.path.abspath(self.logdir)))
        try:
            writer = tf.summary.create_file_writer(staging)
            try:
                with writer.as_default():
                    pb = summary.experiment_pb(hparam_infos=hparams, metric_infos=metrics)
                    tf.summary.experimental.write_raw_pb(pb.SerializeToString(), step=0)
            finally:
                writer.close()
            for event_file in Path(staging).iterdir():
                shutil.move(str(event_file), os.path.join(self.logdir, event_file.name))
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        for path in old:
            path.unlink(missing_ok=True)


def _mlflow_key(key: str) -> str:
    """A metric or parameter name MLflow accepts (letters, digits, _ - . / space and no more)."""
    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", key)[:MAX_KEY_CHARS]


class MlflowTracker:
    """Logs the experiment as one MLflow parent run with a nested child run per trial.

    The first MLflow error (no server, bad URI, missing driver) is logged once as a
    warning and turns this tracker off for the rest of the run; the search goes on.
    """

    def __init__(self, tracking_uri: str, exp_key: str, draw: Draw | None = None,
                 artifact_location: str | None = None):
        for name, value in MLFLOW_HTTP_DEFAULTS.items():
            os.environ.setdefault(name, value)
        self.tracking_uri, self.exp_key = tracking_uri, exp_key
        self._draw, self._artifact_location = draw, artifact_location
        self._client: Any = None
        self._experiment_id = self._parent_id = ""
        self._logged: set[int] = set()
        self._disabled = False

    def trial_finished(self, doc: dict[str, Any]) -> None:
        """Log the trial as a child run unless it already is one."""
        if self._disabled:
            return
        try:
            if self._client is None:
                self._connect()
            if doc["tid"] not in self._logged:
                self._log_trial(doc)
                self._logged.add(doc["tid"])
        except Exception as err:  # noqa: BLE001 - tracking must never stop a search
            self._disable(err)

    def close(self) -> None:
        """Mark the parent run finished (a resumed search marks it running again)."""
        if self._disabled or self._client is None:
            return
        try:
            self._client.set_terminated(self._parent_id, "FINISHED")
        except Exception as err:  # noqa: BLE001
            self._disable(err)

    def _disable(self, err: Exception) -> None:
        log.warning("MLflow tracking (%s) is off for the rest of this run: %s: %s",
                    self.tracking_uri, type(err).__name__, err)
        self._disabled = True

    def _connect(self) -> None:
        """Find or create the experiment and its parent run; learn which trials are logged."""
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=self.tracking_uri)
        experiment = client.get_experiment_by_name(self.exp_key)
        if experiment is None:
            self._experiment_id = client.create_experiment(self.exp_key, artifact_location=self._artifact_location)
        else:
            self._experiment_id = experiment.experiment_id
        # The MLflow experiment is this search's alone: its one parent run is the one tagged so.
        parents = self._search(client, "tags.`caviar.role` = 'parent'")
        if parents:
            self._parent_id = parents[0].info.run_id
            client.update_run(self._parent_id, status="RUNNING")
        else:
            tags = {"caviar.exp_key": self.exp_key, "caviar.role": "parent"}
            self._parent_id = client.create_run(self._experiment_id, tags=tags, run_name=self.exp_key).info.run_id
        for run in self._search(client, f"tags.`mlflow.parentRunId` = '{self._parent_id}'"):
            if run.info.status in ("FINISHED", "FAILED"):
                self._logged.add(int(run.data.tags["caviar.tid"]))
            else:  # a child a crash left half logged: it is logged again
                client.delete_run(run.info.run_id)
        self._client = client
        log.info("MLflow: experiment %r at %s, %d trials already logged", self.exp_key, self.tracking_uri,
                 len(self._logged))

    def _search(self, client: Any, filter_string: str) -> list[Any]:
        runs, token = [], None
        while True:
            page = client.search_runs([self._experiment_id], filter_string, max_results=1000, page_token=token)
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def _log_trial(self, doc: dict[str, Any]) -> None:
        from mlflow.entities import Metric, Param

        client, result, status = self._client, doc["result"], _status(doc)
        tags = {"mlflow.parentRunId": self._parent_id, "caviar.exp_key": self.exp_key,
                "caviar.tid": str(doc["tid"]), "caviar.status": status}
        if result.get("error"):
            tags["caviar.error"] = str(result["error"])[:MAX_TAG_CHARS]
        if result.get("stopped"):  # stopped early by the scheduler: a finished run, not a failed one
            tags |= {"stopped": "true", "stopped_at": str(result.get("stopped_at"))}
            if result.get("paused"):
                tags["paused"] = "true"
        if doc.get("continues"):  # promoted by asha: it goes on from that trial's checkpoint
            tags["continues"] = str(doc["continues"]["tid"])
        start_ms = int(1000 * (doc.get("book_time") or time.time()))
        end_ms = int(1000 * (doc.get("refresh_time") or time.time()))
        run_id = client.create_run(self._experiment_id, start_time=start_ms, tags=tags,
                                   run_name=run_name(doc)).info.run_id
        params = [Param(_mlflow_key(k), str(v)[:MAX_PARAM_CHARS])
                  for k, v in scalar_params(doc.get("params") or {}).items()]
        metrics = [Metric(_mlflow_key(key), float(value), end_ms, step)
                   for key, values in (result.get("history") or {}).items()
                   for step, value in enumerate(values) if isinstance(value, (int, float))]
        metrics += [Metric(_mlflow_key(k), v, end_ms, 0) for k, v in summary_metrics(result).items()]
        for i in range(0, len(params), 100):
            client.log_batch(run_id, params=params[i:i + 100])
        for i in range(0, len(metrics), 1000):
            client.log_batch(run_id, metrics=metrics[i:i + 1000])
        if self._draw is not None and status == "ok":
            self._log_diagram(run_id, doc["params"])
        client.set_terminated(run_id, "FINISHED" if status == "ok" else "FAILED", end_time=end_ms)

    def _log_diagram(self, run_id: str, params: dict[str, Any]) -> None:
        """Attach the model's diagram; a model that cannot be drawn is only a warning."""
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model.png")
            try:
                self._draw(params, path)
            except Exception as err:  # noqa: BLE001 - a diagram is never worth losing the run
                log.warning("MLflow: could not draw the model of run %s: %s", run_id, err)
                return
            self._client.log_artifact(run_id, path)


def default_mlflow_uri(results_dir: str) -> tuple[str, str]:
    """The local store under results/ (SQLite; MLflow 3 refuses its old file store) and its artifact root."""
    root = Path(results_dir).resolve()
    return f"sqlite:///{root / MLFLOW_DB}", (root / MLFLOW_ARTIFACTS).as_uri()


def make_trackers(results_dir: str, exp_key: str, mlflow: bool | None, draw: Draw | None,
                  tensorboard: bool | None = None) -> list[Tracker]:
    """The trackers of a search: TensorBoard when installed, MLflow when asked for.

    ``tensorboard``: True for every trial, False never, None for the trials that
    have a per-epoch history. ``mlflow``: True to log to MLflow, False never to,
    None to log only when MLFLOW_TRACKING_URI is set. Without the mlflow package
    that is a warning.
    """
    trackers: list[Tracker] = []
    if tensorboard is False:
        pass
    elif importlib.util.find_spec("tensorflow") and importlib.util.find_spec("tensorboard"):
        trackers.append(TensorBoardTracker(os.path.join(results_dir, TENSORBOARD_DIR), history_only=tensorboard is None))
    else:
        log.warning("tensorboard is not installed: no TensorBoard logs")
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if mlflow is False or (mlflow is None and not uri):
        return trackers
    if importlib.util.find_spec("mlflow") is None:
        log.warning("MLflow tracking asked for, but mlflow is not installed (pip install 'caviar[mlflow]')")
        return trackers
    artifacts = None
    if not uri:
        os.makedirs(results_dir, exist_ok=True)
        uri, artifacts = default_mlflow_uri(results_dir)
    trackers.append(MlflowTracker(uri, exp_key, draw, artifacts))
    return trackers
