"""The pymongo 3 methods that hyperopt 0.3.0's ``hyperopt/mongoexp.py`` still calls, on pymongo 4.

pymongo 4 removed them; on pymongo 4 ``collection.insert`` silently names a
sub-collection and calling it raises ``TypeError``, so ``MongoTrials`` and
``hyperopt-mongo-worker`` fail without this shim. Each method maps to its
pymongo 4 equivalent with the pymongo 3 return value hyperopt relies on:

============================ ======================================= ===========================
pymongo 3 call in mongoexp   where                                   pymongo 4 equivalent
============================ ======================================= ===========================
``Cursor.count()``           ``count_by_state_unsynced`` (fmin's      ``count_documents(filter)``
                             queue/done counts), ``--max-jobs-in-db``
``Collection.insert(doc)``   ``MongoJobs.insert``,                    ``insert_one`` (returns _id,
                             ``MongoTrials._insert_trial_docs``       fills ``doc["_id"]``)
``Collection.update(q, u)``  ``MongoJobs.update`` (every state and    ``update_one`` /
                             result write)                            ``update_many`` (multi)
``Collection.find_and_modify`` ``MongoJobs.reserve`` (``new=True``),  ``find_one_and_update``
                             ``new_trial_ids`` (upsert, ``new=False``)
``Collection.remove(q)``     ``MongoJobs.delete`` / ``delete_all``    ``delete_many``
``Collection.count()``       ``MongoJobs.__len__``                    ``count_documents``
============================ ======================================= ===========================

``install()`` patches the classes; it is applied only in the benchmark's hyperopt
processes (through ``bench/hyperopt_shim/sitecustomize.py``), never in Caviar's
or Optuna's.
"""

from __future__ import annotations

from typing import Any

from pymongo import ReturnDocument
from pymongo.collection import Collection
from pymongo.cursor import Cursor


def _cursor_count(self: Cursor, with_limit_and_skip: bool = False) -> int:
    """pymongo 3 ``Cursor.count``: documents matching the cursor's filter."""
    options: dict[str, int] = {}
    if with_limit_and_skip:
        if self._limit:
            options["limit"] = self._limit
        if self._skip:
            options["skip"] = self._skip
    return self.collection.count_documents(self._spec or {}, **options)


def _insert(self: Collection, doc_or_docs: Any, manipulate: bool = True, check_keys: bool = True, **kw: Any) -> Any:
    """pymongo 3 ``Collection.insert``: the new ``_id`` (or list of them); adds ``_id`` to the document."""
    if isinstance(doc_or_docs, list):
        return self.insert_many(doc_or_docs, **kw).inserted_ids
    return self.insert_one(doc_or_docs, **kw).inserted_id


def _update(self: Collection, spec: Any, document: Any, upsert: bool = False, manipulate: bool = False,
            multi: bool = False, check_keys: bool = True, **kw: Any) -> dict[str, Any]:
    """pymongo 3 ``Collection.update``: an operator update of one (or ``multi``) document, else a replace."""
    if not any(str(k).startswith("$") for k in document):
        result = self.replace_one(spec, document, upsert=upsert, **kw)
    elif multi:
        result = self.update_many(spec, document, upsert=upsert, **kw)
    else:
        result = self.update_one(spec, document, upsert=upsert, **kw)
    return {"n": result.matched_count, "nModified": result.modified_count, "ok": 1.0,
            "updatedExisting": result.matched_count > 0}


def _find_and_modify(self: Collection, query: Any = None, update: Any = None, upsert: bool = False,
                     sort: Any = None, full_response: bool = False, manipulate: bool = False, new: bool = False,
                     fields: Any = None, remove: bool = False, **kw: Any) -> Any:
    """pymongo 3 ``Collection.find_and_modify``: the document before (or, with ``new``, after) the update."""
    query = {} if query is None else query
    if isinstance(sort, dict):
        sort = list(sort.items())
    if remove:
        return self.find_one_and_delete(query, projection=fields, sort=sort, **kw)
    return self.find_one_and_update(
        query, update, projection=fields, sort=sort, upsert=upsert,
        return_document=ReturnDocument.AFTER if new else ReturnDocument.BEFORE, **kw,
    )


def _remove(self: Collection, spec_or_id: Any = None, multi: bool = True, **kw: Any) -> dict[str, Any]:
    """pymongo 3 ``Collection.remove``: delete the documents matching a filter (or an ``_id``)."""
    spec = {} if spec_or_id is None else spec_or_id
    if not isinstance(spec, dict):
        spec = {"_id": spec}
    result = self.delete_many(spec, **kw) if multi else self.delete_one(spec, **kw)
    return {"n": result.deleted_count, "ok": 1.0}


def _collection_count(self: Collection, filter: Any = None, **kw: Any) -> int:
    """pymongo 3 ``Collection.count``."""
    return self.count_documents(filter or {}, **kw)


def install() -> None:
    """Give pymongo 4's Collection and Cursor the pymongo 3 methods mongoexp calls (idempotent)."""
    Cursor.count = _cursor_count  # type: ignore[attr-defined]
    Collection.insert = _insert  # type: ignore[attr-defined]
    Collection.update = _update  # type: ignore[attr-defined]
    Collection.find_and_modify = _find_and_modify  # type: ignore[attr-defined]
    Collection.remove = _remove  # type: ignore[attr-defined]
    Collection.count = _collection_count  # type: ignore[attr-defined]
