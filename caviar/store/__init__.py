"""Trial stores: one experiment's queue and record, behind the ``TrialStore`` interface.

``caviar.store.local.LocalStore`` (embedded mode) and ``caviar.store.mongo.MongoStore``
(master and workers over MongoDB) implement it; tests/caviar/store/test_conformance.py
holds every implementation to the same contract. The implementations are imported
from their modules, so that a process needing only the interface never loads pymongo.
"""

from caviar.store._base import (
    DONE,
    MAX_LEASE_LOSSES,
    NEW,
    RUNNING,
    TrialStore,
    best_doc,
    is_ok,
    vals_key,
)

__all__ = ["DONE", "MAX_LEASE_LOSSES", "NEW", "RUNNING", "TrialStore", "best_doc", "is_ok", "vals_key"]
