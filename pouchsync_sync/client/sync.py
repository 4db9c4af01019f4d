"""``Sync``: one local database kept in sync with one database on the server.

Theory of operation. A sync owns a thread ``pouchsync-sync[<name>]`` that loops over
*rounds*; a round is one granted channel on one connection:

1. wait for the client's connection (state ``connecting``, or ``offline`` after a loss);
2. ``open`` the channel; ``denied`` ends the sync (state ``denied``);
3. build fresh ``Replicator``s against a fresh ``RemoteDatabase`` (pull: remote → local,
   push: local → remote). Their checkpoints make them resume where the last round
   stopped, so nothing is replayed. One-shot: pull then push on this thread. Live: both
   directions on this thread too, driven step by step (``liveround.py``): caught up,
   the sync waits on one wake-up (a batch on the pull's subscription, a local write,
   a stop), so an idle live sync holds this one thread;
4. the round ends when the replicators finish, fail, or the connection is lost (then
   the round's cancel event stops *both* replicators, and any read-ahead or upload
   threads end, before the next round starts: no zombie replications). A live round
   stops gracefully: the cancel event is set and the server waits in progress are
   interrupted, the channel staying open, so each replicator records the checkpoint it
   deferred (``checkpoint_interval``); if the round still runs ``STOP_GRACE`` seconds
   after the stop began, a short-lived ``pouchsync-sync[<name>]-stop`` thread closes
   the channel under it;
5. a retryable error (transport, server 5xx) → ``offline``, then a new round after the
   client reconnects or, on the same connection, after a backoff delay. Anything else
   ends the sync with state ``error``.

``cancel()`` sets the cancel event and wakes every wait. One-shot, or before the
replicators run, it closes the channel (in-flight calls fail at once and the server
drops the channel's feeds); a running live round stops gracefully (step 4). It works
before connect, mid-batch and after the end (no-op). Signals are sent from the sync's
threads, never under a lock.

Thread safety: every public method may be called from any thread.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Callable

from .. import signals
from ..errors import Cancelled, Denied, NotFound, PouchSyncError, Timeout, TransportError
from ..replication.replicator import MAX_BATCH_BYTES
from ..store.base import Database
from .channel import Channel
from .link import Link
from .liveround import LiveRound, Wake
from .remote import RemoteDatabase
from .state import DIRECTIONS, TRANSITIONS, SyncResult, SyncState, SyncStatus

if TYPE_CHECKING:  # pragma: no cover
    from ..replication import ReplicationResult, Replicator
    from .client import Client

log = logging.getLogger(__name__)

__all__ = ["Sync", "SyncState", "SyncResult", "SyncStatus", "DIRECTIONS",
           "DEFAULT_CHECKPOINT_INTERVAL", "check_checkpoint_interval"]

#: seconds between the checkpoints of a one-shot sync and of a caught-up live sync:
#: CouchDB's replicator default (30 s). Each is a write on the server; 1,000 live clients
#: at 5 s wrote hundreds per change, the bulk of the server's work in the fan-out benchmark.
DEFAULT_CHECKPOINT_INTERVAL = 30.0
#: seconds a stopping live round's replicators get to finish their calls and record
#: their checkpoints before the channel is closed under them
STOP_GRACE = 2.0


def check_checkpoint_interval(value: Any) -> float:
    """``value`` as seconds between live checkpoints; ``ValueError`` unless it is a
    finite number >= 0 (``0``: a checkpoint after every batch)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value < 0:
        raise ValueError(f"checkpoint_interval must be a finite number of seconds >= 0 "
                         f"(0: after every batch), got {value!r}")
    return float(value)


class _Direction:
    """One direction of one round: its replicator and what it reported."""

    def __init__(self, name: str, replicator: Replicator) -> None:
        self.name = name
        self.replicator = replicator
        self.result: ReplicationResult | None = None
        self.docs_written_seen = 0
        self.failures_seen = 0


def batch_bytes_for(max_message_size: int) -> int:
    """The bytes of docs one write may carry to a server taking messages of at most
    ``max_message_size`` bytes: half of it (JSON escaping can double a text row), less
    room for the message around the docs; never above ``MAX_BATCH_BYTES``."""
    room = max_message_size // 2 - min(65536, max_message_size // 8)
    return max(1, min(MAX_BATCH_BYTES, room))


class Sync:
    """One sync between a local database and a database on the server. See the module
    docstring; create with ``Client.sync``.

    Example::

        import pouchsync_sync as ps

        shared = ps.LocalDatabase(":memory:", name="todos")
        server = ps.create_server(lambda credentials, name: shared).start(port=0)
        db = ps.LocalDatabase(":memory:", name="todos")
        with ps.create_client() as client:
            client.connect(server.url)
            live = client.sync(db, live=True)               # a Sync; one-shot without live=True
            shared.put({"_id": "milk"})
            live.wait_in_sync(timeout=30)
            print(db.get("milk")["_id"], live.status.docs_pulled)   # milk 1
            live.cancel()
        server.stop()
    """

    def __init__(self, client: Client, db: Database, *, remote_name: str | None = None,
                 credentials: Any = None, live: bool = False, direction: str = "both",
                 doc_ids: Sequence[str] | None = None,
                 selector: Mapping[str, Any] | None = None, batch_size: int = 500,
                 checkpoint_interval: float = DEFAULT_CHECKPOINT_INTERVAL,
                 replicator_factory: Callable[..., Replicator] | None = None) -> None:
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.checkpoint_interval = check_checkpoint_interval(checkpoint_interval)
        self.client = client
        self.db = db
        self.remote_name = remote_name if remote_name is not None else db.name
        self.live = live
        self.direction = direction
        self.doc_ids = list(doc_ids) if doc_ids is not None else None
        self.selector = dict(selector) if selector is not None else None
        self.batch_size = batch_size
        self._credentials = credentials
        if replicator_factory is None:
            from ..replication import Replicator
            replicator_factory = Replicator
        self._replicator_factory: Callable[..., Replicator] = replicator_factory

        self._cond = threading.Condition()
        self._state = SyncState.CONNECTING
        self._cancel = threading.Event()
        self._round_cancel = threading.Event()
        self._round = 0
        self._directions: list[_Direction] = []
        self._connection: Link | None = None
        self._channel: Channel | None = None
        self._error: BaseException | None = None
        self._last_error: BaseException | None = None
        self._result: SyncResult | None = None
        self._announced = False  # the final state's log line and signal are out
        self._pushed = 0
        self._pulled = 0
        self._failures = 0
        self._last_seq: dict[str, Any] = {"push": None, "pull": None}
        self._last: dict[str, ReplicationResult | None] = {"push": None, "pull": None}
        self._idle: dict[str, bool] = {}
        self._progress = False  # the current round wrote a batch or caught up
        self._wake = Wake()  # the live round's one wake-up (a new one per round)
        self._round_done = threading.Event()  # set when the current round has ended
        self._stopper: threading.Thread | None = None  # closes a stopping round's channel
        self._thread = threading.Thread(target=self._run,
                                        name=f"pouchsync-sync[{self.remote_name}]",
                                        daemon=True)

    def __repr__(self) -> str:
        return (f"<Sync {self.db.name!r} <-> {self.remote_name!r} "
                f"{'live' if self.live else 'one-shot'} {self.direction} {self.state.value}>")

    def _repr_html_(self) -> str:
        """A status table in Jupyter (see ``pouchsync_sync.display``)."""
        from ..display import sync_html
        return sync_html(self)

    # -- public API -----------------------------------------------------------------
    @property
    def state(self) -> SyncState:
        with self._cond:
            return self._state

    @property
    def status(self) -> SyncStatus:
        with self._cond:
            replicators = [d.replicator for d in self._directions]
            status = SyncStatus(state=self._state, docs_pushed=self._pushed,
                                docs_pulled=self._pulled, doc_write_failures=self._failures,
                                push_last_seq=self._last_seq["push"],
                                pull_last_seq=self._last_seq["pull"],
                                last_error=self._last_error, rounds=self._round)
        known = [p for p in (r.pending for r in replicators) if isinstance(p, int)]
        return dataclasses.replace(status, pending=sum(known)) if known else status

    def wait(self, timeout: float | None = None) -> SyncResult:
        """Block until the sync ends; return its result or raise what ended it.

        One-shot: until complete. Live: until cancelled or failed. Raises ``Denied``,
        the error that ended it, or ``Timeout`` when ``timeout`` seconds pass first.
        When it returns, the final signal (``sync_complete``, ``sync_error``...) has been
        sent and its receivers have run.
        """
        self._refuse_own_thread("wait")
        with self._cond:
            if not self._cond.wait_for(lambda: self._announced, timeout):
                raise Timeout(f"{self!r} did not finish within {timeout}s")
            result, error = self._result, self._error
        if error is not None:
            raise error
        assert result is not None
        return result

    def wait_in_sync(self, timeout: float | None = None) -> bool:
        """Block until every local change made before this call is on the server and the
        pull side has caught up; ``True``. Raises ``Timeout``, or what ended the sync.

        One-shot syncs: the same as waiting for completion.
        """
        self._refuse_own_thread("wait_in_sync")
        if not self.live:
            self.wait(timeout)
            return True
        deadline = None if timeout is None else time.monotonic() + timeout

        def remaining() -> float | None:
            return None if deadline is None else max(0.0, deadline - time.monotonic())

        while True:
            with self._cond:
                ready = self._cond.wait_for(
                    lambda: self._result is not None or (
                        self._state in (SyncState.ACTIVE, SyncState.PAUSED)
                        and bool(self._directions)), remaining())
                if not ready:
                    raise Timeout(f"{self!r} not in sync within {timeout}s")
                if self._result is not None:
                    if self._error is not None:
                        raise self._error
                    raise Cancelled(f"{self!r} was cancelled")
                round_no = self._round
                directions = self._directions
                # push first: the pull's read then begins after our changes reached the server
                replicators = [d.replicator
                               for d in sorted(directions, key=lambda d: d.name != "push")]
            caught_up = True
            replicator = None
            for replicator in replicators:
                left = remaining()
                # slices, so a new round (reconnect) is noticed rather than waited out
                if not replicator.wait_caught_up(5.0 if left is None else min(left, 5.0)):
                    caught_up = False
                    break
            with self._cond:
                if caught_up and self._round == round_no and self._result is None:
                    return True
                if not caught_up and replicator is not None and replicator.state in (
                        "complete", "cancelled", "error"):  # the round is ending: next one
                    left = remaining()
                    self._cond.wait_for(lambda: self._directions is not directions  # noqa: B023 - called here, in this iteration
                                        or self._result is not None,
                                        0.5 if left is None else min(left, 0.5))
            left = remaining()
            if left is not None and left <= 0:
                raise Timeout(f"{self!r} not in sync within {timeout}s")

    def cancel(self) -> None:
        """Stop the sync and release its channel on the server. Idempotent, any thread."""
        with self._cond:
            if self._cancel.is_set():
                return
            self._cancel.set()
            self._round_cancel.set()
            channel = self._channel
            graceful = self.live and bool(self._directions)
            wake = self._wake
            self._cond.notify_all()
        if channel is not None:
            if graceful:  # the round closes it once its replicators have stopped
                self._stop_within_grace()
                channel.interrupt_waits(Cancelled(f"{self!r} was cancelled"))
            else:
                channel.close()
        wake.ring("stop")
        self.client._wake()
        if not self._thread.is_alive() and self._result is None:
            # never started (the client was closed first): finish here
            self._finish(SyncState.CANCELLED, None)

    def join(self, timeout: float | None = None) -> bool:
        """Join the sync's thread (which ends its read-ahead and upload threads first);
        True when ended.

        From one of the sync's own threads (a signal receiver) it returns at once.
        """
        if self._thread.is_alive() and not self._on_own_thread():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _on_own_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def _refuse_own_thread(self, what: str) -> None:
        if self._on_own_thread():
            raise PouchSyncError(f"{what}() from the sync's own thread (a signal receiver) "
                                 f"would wait for itself")

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    # -- called by the client ---------------------------------------------------------
    def _start(self) -> None:
        self._thread.start()

    def _connection_lost(self, connection: Link) -> None:
        """The client saw ``connection`` die: stop the round running on it at once."""
        with self._cond:
            if self._connection is not connection:
                return
            self._round_cancel.set()
            self._cond.notify_all()
            wake = self._wake
        wake.ring("stop")

    # -- the sync thread ------------------------------------------------------------
    def _run(self) -> None:
        try:
            state, error = self._loop()
        except Exception as exc:  # noqa: BLE001 - top frame: store it for wait()
            log.exception("%r crashed", self)
            state, error = SyncState.ERROR, exc
        self._finish(state, error)

    def _loop(self) -> tuple[SyncState, BaseException | None]:
        failures_in_a_row = 0
        avoid: Link | None = None
        while True:
            if self._cancel.is_set():
                return SyncState.CANCELLED, None
            connection = self.client._wait_connection(self, avoid)
            if connection is None:
                if self._cancel.is_set():
                    return SyncState.CANCELLED, None
                return SyncState.ERROR, self.client._failure or TransportError("client closed")
            try:
                error = self._round_on(connection)
            except Denied as exc:
                return SyncState.DENIED, exc
            if self._cancel.is_set():
                return SyncState.CANCELLED, None
            if error is None:
                if not self.live:
                    return SyncState.COMPLETE, None
                failures_in_a_row = 0
                avoid = connection  # a live round only ends when its connection went
                continue
            if not self._retryable(error):
                return SyncState.ERROR, error
            with self._cond:
                self._last_error = error
            self._set_state(SyncState.OFFLINE)
            signals.emit(signals.sync_paused, self, direction=None, error=error)
            if connection.lost.is_set():
                failures_in_a_row = 0
                avoid = connection  # wait for the client's next connection
                continue
            # the connection lives on but the round failed (e.g. a 5xx): back off
            with self._cond:
                if self._progress:  # that round got somewhere: count afresh
                    failures_in_a_row = 0
            failures_in_a_row += 1
            avoid = None
            if self.client.backoff.exhausted(failures_in_a_row):
                return SyncState.ERROR, error
            delay = self.client.backoff.delay(failures_in_a_row, self.client._random)
            log.warning("%r: %r; retrying in %.2fs", self, error, delay)
            if self._cancel.wait(delay):
                return SyncState.CANCELLED, None

    def _retryable(self, error: BaseException) -> bool:
        """Whether a round's error takes the sync offline to retry (else it ends it).

        Transport errors, timeouts and 5xx are; a live sync also rides out its remote
        database missing for a while (404: being restored or re-created), as CouchDB's
        continuous replications do. Denials and bad requests end it.
        """
        if getattr(error, "retryable", False):
            return True
        return self.live and isinstance(error, NotFound)

    def _round_on(self, connection: Link) -> BaseException | None:
        """One round on ``connection``: open the channel, replicate, release the channel.

        Returns the error that ended it (``None``: complete, or the connection is gone
        in live mode); raises ``Denied``.
        """
        with self._cond:
            if self._cancel.is_set():
                return None
            self._round += 1
            self._round_cancel = threading.Event()
            self._round_done = threading.Event()
            self._wake = Wake()
            self._connection = connection
            self._idle = {}
            self._progress = False
        try:
            channel = connection.open_channel(self.remote_name, self._credentials)
        except PouchSyncError as exc:
            return exc
        with self._cond:
            self._channel = channel
            if self._cancel.is_set():
                channel.close()
                return None
        try:
            try:
                channel.wait_open(self.client.open_timeout)
            except Denied:
                raise
            except PouchSyncError as exc:
                return exc
            remote = RemoteDatabase(channel)
            return self._replicate(remote)
        finally:
            self._end_stopper()
            channel.close()
            with self._cond:
                self._channel = None
                self._connection = None
                self._directions = []
                self._cond.notify_all()

    def _replicate(self, remote: RemoteDatabase) -> BaseException | None:
        directions = []
        if self.direction in ("both", "pull"):
            directions.append(self._direction("pull", remote, self.db))
        if self.direction in ("both", "push"):
            directions.append(self._direction("push", self.db, remote))
        with self._cond:
            self._directions = directions
            self._cond.notify_all()
        self._set_state(SyncState.ACTIVE)
        signals.emit(signals.sync_active, self, direction=None)
        if not self.live:
            for direction in directions:  # one-shot: pull, then push
                self._run_direction(direction)
                if direction.result is not None and direction.result.error is not None:
                    break
                if self._round_cancel.is_set():
                    break
        else:
            self._run_live(directions)
        errors = [d.result.error for d in directions
                  if d.result is not None and d.result.error is not None]
        with self._cond:
            for d in directions:
                self._last[d.name] = d.result
        real = [e for e in errors if not isinstance(e, Cancelled)]
        if real:
            return real[0]
        if errors and not self._cancel.is_set():
            # a channel closed under us without our cancel (server closed it): retry
            return TransportError(f"channel for {self.remote_name!r} closed: {errors[0]}")
        if self.live and not self._cancel.is_set():
            # live replicators only stop when cancelled: the round was cut short
            return TransportError("connection lost" if self._connection_gone()
                                  else "live replication stopped")
        if any(d.result is None or d.result.status == "cancelled" for d in directions) \
                and not self._cancel.is_set():
            return TransportError("replication interrupted")
        return None

    def _run_live(self, directions: list[_Direction]) -> None:
        """A live round: both directions on this thread (``liveround.py``)."""
        with self._cond:
            wake = self._wake
        # a re-read falls due when nothing woke a direction for a while: a local store's
        # for other processes' writes; the server's as a longpoll's read when it expires
        results = LiveRound([(d.name, d.replicator, self.client.local_poll_interval
                              if d.replicator.polls else self.client.longpoll_timeout)
                             for d in directions],
                            cancel=self._round_cancel, wake=wake,
                            on_stop=self._stop_within_grace).run()
        for direction in directions:
            direction.result = results[direction.name]
            with self._cond:
                self._last_seq[direction.name] = direction.result.last_seq

    def _stop_within_grace(self) -> None:
        """The live round begins to stop: if it still runs ``STOP_GRACE`` seconds from
        now, close its channel under it (the calls in flight then fail at once).
        Idempotent; the round's thread joins the helper thread at the round's end."""
        with self._cond:
            channel, done = self._channel, self._round_done
            if self._stopper is not None or channel is None or done.is_set():
                return
            self._stopper = threading.Thread(
                target=self._close_after_grace, args=(channel, done),
                name=f"pouchsync-sync[{self.remote_name}]-stop", daemon=True)
            self._stopper.start()  # under the lock: the round's end joins a started thread

    def _close_after_grace(self, channel: Channel, done: threading.Event) -> None:
        if not done.wait(STOP_GRACE):
            log.info("%r: replication still running %.1fs after the stop; closing its "
                     "channel", self, STOP_GRACE)
            channel.close()

    def _end_stopper(self) -> None:
        """The round has ended: end the grace thread, if one runs."""
        with self._cond:
            self._round_done.set()
            stopper, self._stopper = self._stopper, None
        if stopper is not None:
            stopper.join()  # at once: the round is done

    def _connection_gone(self) -> bool:
        with self._cond:
            connection = self._connection
        return connection is None or connection.lost.is_set()

    def _direction(self, name: str, source: Database, target: Database) -> _Direction:
        holder: dict[str, _Direction] = {}
        local_longpoll = self.client.local_poll_interval
        remote = target if name == "push" else source
        extra: dict[str, Any] = {}
        limit = getattr(remote, "max_message_size", None)
        if isinstance(limit, int) and limit > 0:
            extra["max_batch_bytes"] = batch_bytes_for(limit)
        replicator = self._replicator_factory(
            source, target, live=self.live, doc_ids=self.doc_ids, selector=self.selector,
            batch_size=self.batch_size, checkpoint_interval=self.checkpoint_interval,
            cancel=self._round_cancel,
            on_batch=lambda info: self._on_batch(holder["d"], info),
            on_state=lambda state: self._on_state(holder["d"], state),
            # the push side waits on the local database: short waits so a cancel or a
            # lost connection stops it promptly (the local store wakes it on writes);
            # the pull side's longpoll is woken by the channel closing.
            longpoll_timeout=local_longpoll if name == "push" else self.client.longpoll_timeout,
            **extra)
        holder["d"] = direction = _Direction(name, replicator)
        return direction

    def _run_direction(self, direction: _Direction) -> None:
        """A one-shot direction, on this thread."""
        try:
            direction.result = direction.replicator.run()
        except Exception as exc:  # noqa: BLE001 - the replicator should not raise
            log.exception("%r: %s replicator crashed", self, direction.name)
            from ..replication import ReplicationResult
            direction.result = ReplicationResult(ok=False, status="error", error=exc)
        result = direction.result
        with self._cond:
            self._last_seq[direction.name] = result.last_seq
        if result.error is not None:
            self._round_cancel.set()  # the other direction does not start

    # -- replicator callbacks (on the sync's thread) ------------------------------------
    def _on_batch(self, direction: _Direction, info: Mapping[str, Any]) -> None:
        written = int(info.get("docs_written", 0))
        failures = int(info.get("doc_write_failures", 0))
        with self._cond:
            new_written = written - direction.docs_written_seen
            new_failures = failures - direction.failures_seen
            direction.docs_written_seen, direction.failures_seen = written, failures
            if direction.name == "push":
                self._pushed += new_written
            else:
                self._pulled += new_written
            self._failures += new_failures
            self._last_seq[direction.name] = info.get("last_seq")
            self._progress = True
            counts = {"docs_pushed": self._pushed, "docs_pulled": self._pulled,
                      "doc_write_failures": self._failures}
        if signals.sync_change.receivers:
            signals.emit(signals.sync_change, self, direction=direction.name,
                         docs=list(info.get("docs", ())), counts=counts)

    def _on_state(self, direction: _Direction, state: str) -> None:
        if state not in ("active", "paused"):
            return
        with self._cond:
            if self._state.final or self._round_cancel.is_set():
                return
            self._idle[direction.name] = state == "paused"
            if state == "paused":
                self._progress = True
            expected = len(self._directions)
            all_idle = len(self._idle) == expected and all(self._idle.values())
        if state == "active":
            self._set_state(SyncState.ACTIVE)
            signals.emit(signals.sync_active, self, direction=direction.name)
        else:
            signals.emit(signals.sync_paused, self, direction=direction.name, error=None)
            if all_idle:
                self._set_state(SyncState.PAUSED)

    # -- state --------------------------------------------------------------------------
    def _set_state(self, new: SyncState) -> bool:
        with self._cond:
            old = self._state
            if new is old:
                return False
            if new not in TRANSITIONS.get(old, frozenset()):
                log.debug("%r: ignoring move %s -> %s", self, old.value, new.value)
                return False
            self._state = new
            self._cond.notify_all()
        log.debug("%r: %s -> %s", self, old.value, new.value)
        return True

    def _finish(self, state: SyncState, error: BaseException | None) -> None:
        """Enter the final state exactly once, then send its one signal."""
        with self._cond:
            if self._result is not None:
                return
            self._state = state
            self._error = error
            if error is not None:
                self._last_error = error
            self._result = SyncResult(
                state=state, docs_pushed=self._pushed, docs_pulled=self._pulled,
                doc_write_failures=self._failures, push=self._last["push"],
                pull=self._last["pull"])
            result = self._result
            self._cond.notify_all()
        try:
            self.client._sync_finished(self)
            if state is SyncState.DENIED:
                log.info("%r denied: %s", self, error)
                signals.emit(signals.sync_denied, self, error=error)
            elif state is SyncState.ERROR:
                log.warning("%r failed: %r", self, error)
                signals.emit(signals.sync_error, self, error=error)
            else:
                log.info("%r %s: pushed %d, pulled %d", self, state.value, result.docs_pushed,
                         result.docs_pulled)
                signals.emit(signals.sync_complete, self, result=result)
        finally:
            with self._cond:
                self._announced = True
                self._cond.notify_all()
