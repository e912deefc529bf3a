"""Loaded at start-up by every Python process whose PYTHONPATH starts with this folder.

The benchmark puts this folder on the PYTHONPATH of its hyperopt processes only
(the ``fmin`` driver and ``hyperopt-mongo-worker``, including the per-job
subprocesses the worker re-executes), so hyperopt 0.3.0's MongoTrials runs on
pymongo 4. See ``bench/pymongo3_compat.py``.
"""

from bench.pymongo3_compat import install

install()
