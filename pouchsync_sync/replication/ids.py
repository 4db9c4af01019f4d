"""Generate Replication ID (CouchDB replication protocol, "Find Common Ancestry").

https://docs.couchdb.org/en/stable/replication/protocol.html#generate-replication-id

The id MUST identify the replication uniquely and stay the same from run to run, so a
restarted replication finds its checkpoint. It hashes, over canonical JSON (sorted
keys, no whitespace), the two databases' ``identity()`` and every option that changes
which documents are replicated: ``doc_ids`` (as a set), the Mango ``selector`` and the
Python ``filter`` (its qualified name plus a hash of its source code). ``live``,
``batch_size`` and the like do not change the result, so one-shot and live runs of the
same replication share their checkpoints, as PouchDB's do.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Mapping, Sequence
from typing import Any, Callable

__all__ = ["REPLICATION_ID_VERSION", "generate_replication_id", "filter_identity"]

#: bump when the inputs or the hashing change: old checkpoints are then ignored
REPLICATION_ID_VERSION = 1


def filter_identity(filter_fn: Callable[..., Any] | None) -> str | None:
    """``"module.qualname"`` plus the md5 of the function's source when it can be read.

    Two different lambdas in one module share a qualname; the source hash tells them
    apart. A filter whose source changes gets a new id (a full re-scan), as CouchDB
    does when a design doc's filter code changes.
    """
    if filter_fn is None:
        return None
    target = getattr(filter_fn, "__func__", filter_fn)
    module = getattr(target, "__module__", None) or type(target).__module__
    qualname = getattr(target, "__qualname__", None) or type(target).__qualname__
    name = f"{module}.{qualname}"
    try:
        source = inspect.getsource(target)
    except (OSError, TypeError):
        code = getattr(target, "__code__", None)
        if code is None:
            return name
        source = repr((code.co_code, code.co_consts, code.co_names))
    digest = hashlib.md5(source.encode("utf-8"), usedforsecurity=False).hexdigest()
    return f"{name}:{digest}"


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: equal values give equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def generate_replication_id(source_identity: str, target_identity: str, *,
                            doc_ids: Sequence[str] | None = None,
                            selector: Mapping[str, Any] | None = None,
                            filter_fn: Callable[..., Any] | None = None) -> str:
    """The md5 hex id naming the checkpoint docs ``_local/<id>`` on both sides."""
    parts = {
        "version": REPLICATION_ID_VERSION,
        "source": source_identity,
        "target": target_identity,
        "doc_ids": sorted(set(doc_ids)) if doc_ids is not None else None,
        "selector": selector,
        "filter": filter_identity(filter_fn),
    }
    text = canonical_json(parts)
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()
