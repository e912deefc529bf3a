"""An objective whose module takes seconds to import, like one that loads TensorFlow and its data."""

from __future__ import annotations

import os
import time
from typing import Any

time.sleep(float(os.environ.get("SLOW_IMPORT_SECONDS", "4")))


def objective(params: dict[str, Any]) -> float:
    return float(params.get("x", 0.0))
