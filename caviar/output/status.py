"""Where a search stands: counts, running trials, live workers, the best trial in its own metric, pace and ETA."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from caviar.family import score_of
from caviar.objective import flatten_params
from caviar.reporting import stored_reports
from caviar.store import DONE, NEW, RUNNING, TrialStore, best_doc, is_ok

# Workers silent longer than this are no longer listed at all.
FORGET_WORKERS_AFTER = 3600.0
# How many recent finished trials the pace is measured over.
PACE_WINDOW = 20


def pace(docs: list[dict[str, Any]]) -> float | None:
    """Finished trials per hour over the most recent ones (None until two have finished)."""
    times = sorted(d["refresh_time"] for d in docs if d["state"] == DONE and isinstance(d.get("refresh_time"), float))
    recent = times[-PACE_WINDOW:]
    if len(recent) < 2 or recent[-1] <= recent[0]:
        return None
    return (len(recent) - 1) / (recent[-1] - recent[0]) * 3600


def collect(store: TrialStore, experiment: Mapping[str, Any], now: float | None = None,
            running: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The status of ``store``'s experiment as plain values (what ``--json`` prints).

    ``experiment`` gives max_evals, lease_seconds and the family's metric and
    direction; ``running`` is the trial an embedded search runs now (its store
    here is read from results/, which holds finished trials only).
    """
    now = store.server_time() if now is None else now  # the clock heartbeats are stamped with
    max_evals = experiment.get("max_evals")
    lease_seconds = float(experiment.get("lease_seconds") or 60)
    docs = store.trial_docs()
    counts = store.count_by_state()
    finished = counts.get(DONE, 0)
    failed = sum(1 for d in docs if d["state"] == DONE and not is_ok(d))
    stopped = sum(1 for d in docs if is_ok(d) and d["result"].get("stopped"))
    continued = {d["continues"]["tid"] for d in docs if d.get("continues")}
    paused = sum(1 for d in docs if is_ok(d) and d["result"].get("paused") and d["tid"] not in continued
                 and (max_evals is None or finished < max_evals))  # once the search is over none will go on
    workers = []
    for w in sorted(store.live_workers(FORGET_WORKERS_AFTER), key=lambda w: str(w["_id"])):
        age = now - w["heartbeat"]
        workers.append({"id": w["_id"], "host": w.get("host"), "gpu": w.get("gpu"), "trial": w.get("tid"),
                        "heartbeat_age": round(age, 1), "stale": age > lease_seconds})
    trials = [running_trial(d, now, experiment) for d in docs if d["state"] == RUNNING]
    known = {d["tid"] for d in docs if d["state"] == DONE} | {t["tid"] for t in trials}
    if running is not None and running.get("tid") not in known:  # not yet finished
        trials.append(running_trial({"tid": running["tid"], "owner": f"embedded (pid {running.get('pid')})",
                                     "book_time": running.get("started")}, now, experiment))
    best = best_doc(docs)
    rate = pace(docs)
    remaining = None if max_evals is None else max(0, max_evals - finished)
    return {
        "exp_key": store.exp_key,
        "max_evals": max_evals,
        "metric": experiment.get("metric") or "loss",
        "maximize": bool(experiment.get("maximize")),
        "finished": finished,
        "failed": failed,
        "stopped": stopped,
        "paused": paused,  # of the stopped: paused by asha --promote yes, may still be continued
        "running": len(trials),
        "queued": counts.get(NEW, 0),
        "running_trials": trials,
        "workers": workers,
        "best": None if best is None else {
            "tid": best["tid"], "score": score_of(best["result"]["loss"], experiment),
            "model_name": best["result"].get("model_name"), "params": flatten_params(best.get("params") or {}),
        },
        "trials_per_hour": None if rate is None else round(rate, 1),
        "eta_seconds": None if rate is None or remaining is None else round(remaining / rate * 3600),
    }


def running_trial(doc: Mapping[str, Any], now: float, experiment: Mapping[str, Any]) -> dict[str, Any]:
    """One row of the running trials: a plain dict, so that a new field is one more key and one more column.

    ``epoch`` and ``last`` come from the trial's per-epoch reports (``caviar.reporting``), in the family's metric.
    """
    started = doc.get("book_time")
    reports = stored_reports(doc)
    epoch = max(reports, default=None)
    last = reports.get(epoch) if epoch is not None else None
    return {"tid": doc["tid"], "owner": doc.get("owner"),
            "seconds": round(now - started, 1) if isinstance(started, (int, float)) else None,
            "epoch": epoch, "last": None if last is None else score_of(last, experiment)}


# The running-trials table: (header, key, width). A new column is one more row here.
RUNNING_COLUMNS: list[tuple[str, str, int]] = [
    ("trial", "tid", 6), ("epoch", "epoch", 6), ("last score", "last", 11), ("running for", "seconds", 12),
    ("by", "owner", 30),
]


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "-"
    return _duration(value) if key == "seconds" else _value(value)


def _value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def render(status: dict[str, Any], main_params: int = 8) -> str:
    """A terminal table of ``collect``'s status."""
    total = "?" if status["max_evals"] is None else status["max_evals"]
    paused = f" ({status['paused']} paused)" if status.get("paused") else ""
    lines = [
        f"experiment {status['exp_key']}",
        f"  finished {status['finished']}/{total}   failed {status['failed']}   stopped early {status['stopped']}{paused}   "
        f"running {status['running']}   queued {status['queued']}",
        f"  pace {status['trials_per_hour'] or '-'} trials/hour   "
        f"ETA {_duration(status['eta_seconds'])}",
    ]
    if status["running_trials"]:
        lines += ["", "  " + " ".join(f"{h:<{w}}" for h, _, w in RUNNING_COLUMNS).rstrip()]
        for trial in status["running_trials"]:
            lines.append("  " + " ".join(f"{_cell(key, trial.get(key)):<{w}}" for _, key, w in RUNNING_COLUMNS).rstrip())
    if status["workers"]:
        lines += ["", f"  {'worker':<24} {'host':<16} {'gpu':<5} {'trial':>6} {'heartbeat':>10}"]
        for w in status["workers"]:
            flag = "  STALE" if w["stale"] else ""
            lines.append(f"  {str(w['id']):<24} {str(w['host']):<16} {str(w['gpu'] or '-'):<5} "
                         f"{'-' if w['trial'] is None else w['trial']:>6} {w['heartbeat_age']:>9.1f}s{flag}")
    elif not status["running_trials"]:
        lines += ["", "  no live workers"]
    best = status["best"]
    if best:
        lines += ["", f"  best: trial {best['tid']}  {status['metric']} {best['score']:.4f}  "
                  f"{best['model_name'] or ''}".rstrip()]
        for name, value in list(best["params"].items())[:main_params]:
            lines.append(f"    {name:<28} {_value(value)}")
        if len(best["params"]) > main_params:
            lines.append(f"    ... {len(best['params']) - main_params} more (see best.json or --json)")
    else:
        lines += ["", "  best: no successful trial yet"]
    return "\n".join(lines)
