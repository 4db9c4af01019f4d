"""``Sync``: one local database kept in sync with one database on the server.

Theory of operation. A sync owns a thread ``pouchsync-sync[<name>]`` that loops over
*rounds*, a round being one granted channel on one connection (``round.py``): wait
for a connection from its client (``host.SyncHost``; state ``connecting``, or
``offline`` after a loss), run a ``Round`` on it (open the channel, replicate one-shot
or live, release the channel; ``denied`` ends the sync), then do what ``policy.py``
says follows: complete (one-shot), the client's next connection, a new round on the
same connection after a backoff delay, or the end with state ``error``. A retryable
error takes the sync ``offline`` (``sync_paused`` carries it) until the next round.

``cancel()`` sets the cancel event, stops the running round (``Round.stop``) and wakes
every wait; it works before connect, mid-batch and after the end (no-op). The client
calls ``start``, ``connection_lost``, ``cancel`` and ``join`` (``host.HostedSync``).
Signals are sent from the sync's threads, never under a lock; the final state is
entered, and its one signal sent, exactly once (``_finish``).

Thread safety: every public method may be called from any thread.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Callable

from .. import signals
from ..errors import Cancelled, Denied, PouchSyncError, Timeout, TransportError
from ..store.base import Database
from .link import Link
from .policy import DEFAULT_CHECKPOINT_INTERVAL, RoundRetry, Step, check_checkpoint_interval
from .round import Direction, Round, RoundPlan
from .state import DIRECTIONS, TRANSITIONS, SyncResult, SyncState, SyncStatus, Tally

if TYPE_CHECKING:  # pragma: no cover
    from ..replication import ReplicationResult, Replicator
    from .host import SyncHost

log = logging.getLogger(__name__)

#: the directions when no round runs (one list: ``wait_in_sync`` compares identities)
_NO_DIRECTIONS: list[Direction] = []

__all__ = ["Sync", "SyncState", "SyncResult", "SyncStatus", "DIRECTIONS",
           "DEFAULT_CHECKPOINT_INTERVAL", "check_checkpoint_interval"]


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

    def __init__(self, client: SyncHost, db: Database, *, remote_name: str | None = None,
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
        self.client = client  # the SyncHost: a Client
        self.db = db
        self.remote_name = remote_name if remote_name is not None else db.name
        self.live = live
        self.direction = direction
        self.doc_ids = list(doc_ids) if doc_ids is not None else None
        self.selector = dict(selector) if selector is not None else None
        self.batch_size = batch_size
        if replicator_factory is None:
            from ..replication import Replicator
            replicator_factory = Replicator

        self._cond = threading.Condition()
        self._state = SyncState.CONNECTING
        self._cancel = threading.Event()
        self._round = 0
        self._current: Round | None = None  # the running round, else the last one
        self._started = False
        self._error: BaseException | None = None
        self._last_error: BaseException | None = None
        self._result: SyncResult | None = None
        self._announced = False  # the final state's log line and signal are out
        self._tally = Tally()  # what the rounds did, under the lock
        self._plan = RoundPlan(
            owner=self, host=client, db=db, remote_name=self.remote_name,
            credentials=credentials, live=live, direction=direction,
            make_replicator=functools.partial(
                replicator_factory, live=live, doc_ids=self.doc_ids, selector=self.selector,
                batch_size=batch_size, checkpoint_interval=self.checkpoint_interval),
            cancel=self._cancel, on_batch=self._on_batch, on_state=self._on_state,
            on_result=self._on_result)
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
            replicators = [d.replicator for d in self._directions()]
            status = self._tally.status(self._state, self._last_error, self._round)
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
                        and bool(self._directions())), remaining())
                if not ready:
                    raise Timeout(f"{self!r} not in sync within {timeout}s")
                if self._result is not None:
                    if self._error is not None:
                        raise self._error
                    raise Cancelled(f"{self!r} was cancelled")
                round_no = self._round
                directions = self._directions()
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
                    self._cond.wait_for(lambda: self._directions() is not directions  # noqa: B023 - called here, in this iteration
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
            current = self._current
            self._cond.notify_all()
        if current is not None:
            current.stop(Cancelled(f"{self!r} was cancelled"))
        self.client.wake()
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

    # -- called by the client (host.HostedSync) ------------------------------------------
    def start(self) -> None:
        """Start the sync's thread; the ``Client`` that made the sync does. Once: again,
        a no-op."""
        with self._cond:
            if self._started:
                return
            self._started = True
        self._thread.start()

    def connection_lost(self, connection: Link) -> None:
        """The client saw ``connection`` die: stop the round running on it at once."""
        with self._cond:
            current = self._current
        if current is not None:
            current.connection_lost(connection)

    # -- the sync thread ------------------------------------------------------------
    def _run(self) -> None:
        try:
            state, error = self._loop()
        except Exception as exc:  # noqa: BLE001 - top frame: store it for wait()
            log.exception("%r crashed", self)
            state, error = SyncState.ERROR, exc
        self._finish(state, error)

    def _loop(self) -> tuple[SyncState, BaseException | None]:
        retry = RoundRetry(live=self.live)
        avoid: Link | None = None
        while True:
            if self._cancel.is_set():
                return SyncState.CANCELLED, None
            connection = self.client.wait_connection(self, avoid)
            if connection is None:
                if self._cancel.is_set():
                    return SyncState.CANCELLED, None
                return SyncState.ERROR, self.client.failure or TransportError("client closed")
            with self._cond:
                if self._cancel.is_set():
                    return SyncState.CANCELLED, None
                self._round += 1
                self._current = current = Round(self._plan, connection, self._cond)
            try:
                error = current.run()
            except Denied as exc:
                return SyncState.DENIED, exc
            with self._cond:
                self._tally.last.update(current.results)
                progressed = current.progress
            if self._cancel.is_set():
                return SyncState.CANCELLED, None
            if retry.offline(error):
                with self._cond:
                    self._last_error = error
                self._set_state(SyncState.OFFLINE)
                signals.emit(signals.sync_paused, self, direction=None, error=error)
            step, delay = retry.after(error, lost=connection.lost.is_set(),
                                      progressed=progressed, backoff=self.client.backoff,
                                      random=self.client.jitter)
            if step is Step.COMPLETE:
                return SyncState.COMPLETE, None
            if step is Step.FAIL:
                return SyncState.ERROR, error
            if step is Step.RECONNECT:
                avoid = connection  # wait for the client's next connection
                continue
            avoid = None  # the connection lives on but the round failed (e.g. a 5xx)
            log.warning("%r: %r; retrying in %.2fs", self, error, delay)
            if self._cancel.wait(delay):
                return SyncState.CANCELLED, None

    def _directions(self) -> list[Direction]:
        """The running round's directions (an empty list between rounds); under the lock."""
        return self._current.directions if self._current is not None else _NO_DIRECTIONS

    # -- the round's reports (on the sync's thread) -------------------------------------
    def _on_batch(self, direction: str, written: int, failures: int,
                  info: Mapping[str, Any]) -> None:
        with self._cond:
            counts = self._tally.batch(direction, written, failures, info.get("last_seq"))
        if signals.sync_change.receivers:
            signals.emit(signals.sync_change, self, direction=direction,
                         docs=list(info.get("docs", ())), counts=counts)

    def _on_state(self, direction: str | None, active: bool, all_idle: bool) -> None:
        if direction is not None:
            with self._cond:
                if self._state.final:
                    return
        if active:
            self._set_state(SyncState.ACTIVE)
            signals.emit(signals.sync_active, self, direction=direction)
        else:
            signals.emit(signals.sync_paused, self, direction=direction, error=None)
            if all_idle:
                self._set_state(SyncState.PAUSED)

    def _on_result(self, direction: str, result: ReplicationResult, unreported: int,
                   unreported_failures: int) -> None:
        """A direction ended: its last seq, and the docs it wrote in a batch cut short
        (counted, with no ``sync_change``: no batch ended)."""
        with self._cond:
            self._tally.batch(direction, unreported, unreported_failures, result.last_seq)

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
            self._result = result = self._tally.result(state)
            self._cond.notify_all()
        try:
            self.client.sync_finished(self)
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
