"""What one replication run did: ``ReplicationResult``, the helpers that fill it, and
the reports of it to user callbacks.

The replicator owns the result of its run; its write side counts into it as it uploads.
Times are UTC; a checkpoint's times are RFC 5322 dates, as CouchDB writes them. User
callbacks (``on_state``, ``on_batch``) go through ``call_back``: what they raise is
logged and ignored.
"""

from __future__ import annotations

import datetime as _dt
import email.utils
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import Cancelled, PouchSyncError
from .batch import WrittenDocs

__all__ = ["MAX_ERRORS_KEPT", "ReplicationResult", "batch_report", "call_back", "ending",
           "keep_errors", "now_utc", "rfc5322", "settle"]

log = logging.getLogger("pouchsync_sync.replication.replicator")

#: at most this many per-document errors are kept in a result (the counts stay exact)
MAX_ERRORS_KEPT = 1000


@dataclass
class ReplicationResult:
    """What one replication run did: its counts, where it ended, and any error that
    ended it.

    Example::

        import pouchsync_sync as ps

        a, b = ps.LocalDatabase(":memory:", name="a"), ps.LocalDatabase(":memory:", name="b")
        a.put({"_id": "x"})
        result = ps.replicate(a, b)                         # a ReplicationResult
        print(result.ok, result.docs_written)               # True 1

    ``ok`` is true when no error ended it (``status`` "complete" or "cancelled");
    ``error`` is the exception that ended it otherwise (``status`` "error").
    ``docs_read`` counts docs read from the source and handed to the target,
    ``docs_written`` those the target accepted; revisions the source could not serve
    and docs the target refused are counted in ``doc_write_failures`` and listed in
    ``errors`` as ``{"id", "rev", "error", "reason"}`` (at most ``MAX_ERRORS_KEPT``).
    ``last_seq`` is the last source sequence written and checkpointed (written only,
    when the final checkpoint write of a live run failed). Times are UTC.
    """

    ok: bool = False
    docs_read: int = 0
    docs_written: int = 0
    doc_write_failures: int = 0
    errors: list[Any] = field(default_factory=list)
    start_time: _dt.datetime | None = None
    end_time: _dt.datetime | None = None
    last_seq: Any = None
    status: str = "complete"
    error: BaseException | None = None


def keep_errors(result: ReplicationResult, errors: Sequence[Any]) -> None:
    """List ``errors`` in ``result.errors`` while it holds fewer than ``MAX_ERRORS_KEPT``
    (the caller counts them)."""
    room = MAX_ERRORS_KEPT - len(result.errors)
    if room > 0:
        result.errors.extend(errors[:room])


def now_utc() -> _dt.datetime:
    """The current time, in UTC."""
    return _dt.datetime.now(_dt.timezone.utc)


def rfc5322(moment: _dt.datetime) -> str:
    """``moment`` as a replication log's ``start_time``/``end_time`` (RFC 5322, GMT)."""
    return email.utils.format_datetime(moment, usegmt=True)


def batch_report(result: ReplicationResult, written: list[dict[str, Any]], *,
                 last_seq: Any, pending: int | None) -> dict[str, Any]:
    """What ``on_batch`` gets after a batch: the docs it wrote (built when first read)
    and the run's counts so far."""
    return {
        "docs": WrittenDocs(written),
        "docs_read": result.docs_read,
        "docs_written": result.docs_written,
        "doc_write_failures": result.doc_write_failures,
        "last_seq": last_seq,
        "pending": pending,
    }


def call_back(callback: Callable[[Any], Any] | None, arg: Any) -> None:
    """``callback(arg)`` unless ``callback`` is None; what it raises is logged and
    ignored (a user callback must never break replication)."""
    if callback is None:
        return
    try:
        callback(arg)
    except Exception:  # a user callback must never break replication
        log.exception("replication callback %r raised", callback)


def ending(status: str, error: BaseException | None, *, cancelled: bool,
           replication_id: str | None, source: Any, target: Any
           ) -> tuple[str, BaseException | None]:
    """The final ``(status, error)`` of a run that ends with them, logged once:
    ``Cancelled`` raised by a call our own cancel closed is a cancel, not an error; an
    error of ours is a warning; anything else is a crash (logged with its traceback)."""
    if error is None:
        return status, error
    if isinstance(error, Cancelled) and cancelled:
        # our owner cancelled us and closed what the call in flight waited on
        log.debug("replication %s: a call in flight was cancelled", replication_id)
        return "cancelled", None
    if isinstance(error, PouchSyncError):
        log.warning("replication %s -> %s failed: %r", source, target, error)
    else:
        log.error("replication %s -> %s crashed", source, target, exc_info=error)
    return status, error


def settle(result: ReplicationResult, status: str, error: BaseException | None, *,
           last_seq: Any, source: Any, target: Any) -> None:
    """Fill in how ``result``'s run ended, and log its counts."""
    if result.start_time is None:
        result.start_time = now_utc()
    result.end_time = now_utc()
    result.status = status
    result.error = error
    result.ok = error is None
    result.last_seq = last_seq
    log.info("replication %s -> %s %s: read %d, written %d, failures %d", source, target,
             status, result.docs_read, result.docs_written, result.doc_write_failures)
