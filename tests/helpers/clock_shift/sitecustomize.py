"""Shifts this process's clock by $CLOCK_SHIFT_SECONDS, as on a host whose clock is off.

A test puts this folder first on PYTHONPATH of a worker subprocess; Python then
imports it at start-up, before any project code reads the time.
"""

import os
import time

_shift = float(os.environ.get("CLOCK_SHIFT_SECONDS", "0"))
_time, _time_ns = time.time, time.time_ns
time.time = lambda: _time() + _shift
time.time_ns = lambda: _time_ns() + int(_shift * 1e9)
