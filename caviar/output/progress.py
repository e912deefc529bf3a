"""Progress of a search: a bar on a terminal, periodic log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping
from typing import Any

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from caviar.family import score_of
from caviar.store import DONE, NEW, RUNNING

log = logging.getLogger(__name__)


class Progress:
    """Shows finished / max-evals and the best score so far."""

    def __init__(self, max_evals: int, interactive: bool | None = None, log_every: float = 30.0,
                 describe: Mapping[str, Any] | None = None):
        self.max_evals = max_evals
        self.describe = dict(describe or {})  # the family's metric and direction: best is shown in its terms
        self.interactive = sys.stderr.isatty() if interactive is None else interactive
        self._bar: tqdm | None = None
        self._redirect: Any = None
        self._last_log = 0.0
        self._log_every = log_every
        self._last: tuple[Any, ...] | None = None

    def __enter__(self) -> "Progress":
        if self.interactive:
            self._bar = tqdm(total=self.max_evals, unit="trial", dynamic_ncols=True)
            self._redirect = logging_redirect_tqdm()  # log lines print above the bar, not through it
            self._redirect.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._redirect.__exit__(*exc)
            self._bar.close()

    def show(self, counts: dict[int, int], failed: int, best_loss: float | None, workers: int | None = None) -> None:
        """Report the state; logs only when something changed or ``log_every`` passed."""
        done = counts.get(DONE, 0)
        best = "-" if best_loss is None else f"{score_of(best_loss, self.describe):.4f}"
        if self._bar is not None:
            self._bar.n = done
            self._bar.set_postfix(best=best, failed=failed, running=counts.get(RUNNING, 0), queued=counts.get(NEW, 0),
                                  refresh=False)
            self._bar.refresh()
            return
        state = (done, failed, counts.get(NEW, 0), counts.get(RUNNING, 0), best, workers)
        now = time.monotonic()
        if state != self._last or now - self._last_log >= self._log_every:
            self._last, self._last_log = state, now
            extra = "" if workers is None else f" workers={workers}"
            log.info(
                "progress: done=%d/%d failed=%d queued=%d running=%d best=%s%s",
                done, self.max_evals, failed, counts.get(NEW, 0), counts.get(RUNNING, 0), best, extra,
            )
