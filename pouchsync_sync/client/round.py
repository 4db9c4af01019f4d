"""One round of a ``Sync``: one granted channel on one connection.

Theory of operation. ``Round.run`` on the sync's thread:

1. ``open`` the channel and wait for the grant; ``Denied`` is raised (it ends the sync);
2. build fresh ``Replicator``s against a fresh ``RemoteDatabase`` (pull: remote → local,
   push: local → remote). Their checkpoints make them resume where the last round
   stopped, so nothing is replayed. One-shot: pull then push on this thread. Live: both
   directions on this thread too, driven step by step (``liveround.py``): caught up,
   the round waits on one wake-up (a batch on the pull's subscription, a local write,
   a stop), so an idle live sync holds this one thread;
3. the round ends when the replicators finish, fail, or the connection is lost (then
   ``connection_lost`` sets the round's cancel event, which stops *both* replicators,
   and any read-ahead or upload threads end, before ``run`` returns: no zombie
   replications). ``stop`` (the sync's ``cancel``) closes the channel at once, unless a
   live round is replicating: that one stops gracefully, the cancel event set and the
   server waits in progress interrupted, the channel staying open, so each replicator
   records the checkpoint it deferred; if the round still runs ``STOP_GRACE`` seconds
   after the stop began, a short-lived ``pouchsync-sync[<name>]-stop`` thread (owned by
   the round, joined when ``run`` returns) closes the channel under it.

``run`` returns the error that ended the round (``None``: complete, or the live round's
connection is gone); ``policy.py`` decides what follows. The round tells its sync what
happened through the callbacks it was given (``on_batch``, ``on_state``), on the sync's
thread, never under the lock.

Thread safety: a round shares its sync's condition (one lock for the sync's state and
its round's); ``stop`` and ``connection_lost`` may be called from any thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Callable

from ..errors import Cancelled, Denied, PouchSyncError, TransportError
from ..store.base import Database
from .channel import Channel
from .link import Link
from .liveround import LiveRound, Wake
from .policy import STOP_GRACE, batch_bytes_for
from .remote import RemoteDatabase

if TYPE_CHECKING:  # pragma: no cover
    from ..replication import ReplicationResult, Replicator
    from .host import SyncHost

log = logging.getLogger(__name__)

__all__ = ["Direction", "Round", "RoundPlan"]


class Direction:
    """One direction of one round: its replicator and what it reported."""

    def __init__(self, name: str, replicator: Replicator) -> None:
        self.name = name
        self.replicator = replicator
        self.result: ReplicationResult | None = None
        self.docs_written_seen = 0
        self.failures_seen = 0


class RoundPlan:
    """What every round of one sync is made of; the sync builds it once.

    ``make_replicator(source, target, **options)`` builds a replicator with the sync's
    options (live, doc_ids, selector, batch size, checkpoint interval); the round adds
    its cancel event, its callbacks, the longpoll timeout and the batch bytes. Each
    round reads the host's timeouts as they are when it runs.
    ``on_batch(direction, new_docs_written, new_failures, info)`` and
    ``on_state(direction, active, all_idle)`` (``direction`` ``None``: the round began
    replicating) and ``on_result(direction, result, unreported_written,
    unreported_failures)`` (a direction ended; what its result counts that no
    ``on_batch`` reported: a batch cut short by a cancel or a lost connection) report
    to the sync.
    """

    def __init__(self, *, owner: object, host: SyncHost, db: Database, remote_name: str,
                 credentials: Any, live: bool, direction: str,
                 make_replicator: Callable[..., Replicator],
                 cancel: threading.Event,
                 on_batch: Callable[[str, int, int, Mapping[str, Any]], None],
                 on_state: Callable[[str | None, bool, bool], None],
                 on_result: Callable[[str, ReplicationResult, int, int], None]) -> None:
        self.owner = owner  # the sync, for log lines
        self.host = host  # its client: open_timeout, longpoll_timeout, local_poll_interval
        self.db = db
        self.remote_name = remote_name
        self.credentials = credentials
        self.live = live
        self.direction = direction
        self.make_replicator = make_replicator
        self.cancel = cancel  # the sync's: set by cancel(), ends every round
        self.on_batch = on_batch
        self.on_state = on_state
        self.on_result = on_result


class Round:
    """One round on ``connection``; see the module docstring."""

    def __init__(self, plan: RoundPlan, connection: Link,
                 cond: threading.Condition) -> None:
        self.plan = plan
        self.connection: Link | None = connection  # None once the round ended
        self.cond = cond
        self.cancel = threading.Event()  # this round's: stops its replicators
        self.done = threading.Event()  # set when the round has ended
        self.wake = Wake()  # the live round's one wake-up
        self.channel: Channel | None = None
        self.directions: list[Direction] = []
        self.results: dict[str, ReplicationResult | None] = {}  # once replicated
        self.progress = False  # the round wrote a batch or caught up
        self._idle: dict[str, bool] = {}
        self._stopper: threading.Thread | None = None  # closes a stopping round's channel

    # -- from any thread ------------------------------------------------------------------
    def stop(self, error: PouchSyncError) -> None:
        """Stop the round (the sync is cancelled): close its channel, or let a live
        round's replicators stop gracefully within ``STOP_GRACE``; ``error`` is what the
        interrupted server waits raise."""
        with self.cond:
            self.cancel.set()
            channel = self.channel
            graceful = self.plan.live and bool(self.directions)
            self.cond.notify_all()
        if channel is not None:
            if graceful:  # the round closes it once its replicators have stopped
                self._stop_within_grace()
                channel.interrupt_waits(error)
            else:
                channel.close()
        self.wake.ring("stop")

    def connection_lost(self, connection: Link) -> None:
        """``connection`` died: stop the round at once if it runs on it."""
        with self.cond:
            if self.connection is not connection:
                return
            self.cancel.set()
            self.cond.notify_all()
        self.wake.ring("stop")

    # -- on the sync's thread ------------------------------------------------------------
    def run(self) -> BaseException | None:
        """Open the channel, replicate, release the channel.

        Returns the error that ended it (``None``: complete, or the connection is gone
        in live mode); raises ``Denied``.
        """
        plan = self.plan
        assert self.connection is not None
        try:
            channel = self.connection.open_channel(plan.remote_name, plan.credentials)
        except PouchSyncError as exc:
            return exc
        with self.cond:
            self.channel = channel
            if plan.cancel.is_set():
                channel.close()
                return None
        try:
            try:
                channel.wait_open(plan.host.open_timeout)
            except Denied:
                raise
            except PouchSyncError as exc:
                return exc
            return self._replicate(RemoteDatabase(channel))
        finally:
            self._end_stopper()
            channel.close()
            with self.cond:
                self.channel = None
                self.connection = None
                self.directions = []
                self.cond.notify_all()

    def _replicate(self, remote: RemoteDatabase) -> BaseException | None:
        plan = self.plan
        directions = []
        if plan.direction in ("both", "pull"):
            directions.append(self._direction("pull", remote, plan.db))
        if plan.direction in ("both", "push"):
            directions.append(self._direction("push", plan.db, remote))
        with self.cond:
            self.directions = directions
            self.cond.notify_all()
        plan.on_state(None, True, False)
        if not plan.live:
            for direction in directions:  # one-shot: pull, then push
                self._run_direction(direction)
                if direction.result is not None and direction.result.error is not None:
                    break
                if self.cancel.is_set():
                    break
        else:
            self._run_live(directions)
        errors = [d.result.error for d in directions
                  if d.result is not None and d.result.error is not None]
        with self.cond:
            self.results = {d.name: d.result for d in directions}
        real = [e for e in errors if not isinstance(e, Cancelled)]
        if real:
            return real[0]
        if errors and not plan.cancel.is_set():
            # a channel closed under us without our cancel (server closed it): retry
            return TransportError(f"channel for {plan.remote_name!r} closed: {errors[0]}")
        if plan.live and not plan.cancel.is_set():
            # live replicators only stop when cancelled: the round was cut short
            return TransportError("connection lost" if self._connection_gone()
                                  else "live replication stopped")
        if any(d.result is None or d.result.status == "cancelled" for d in directions) \
                and not plan.cancel.is_set():
            return TransportError("replication interrupted")
        return None

    def _run_live(self, directions: list[Direction]) -> None:
        """A live round: both directions on this thread (``liveround.py``)."""
        host = self.plan.host
        # a re-read falls due when nothing woke a direction for a while: a local store's
        # for other processes' writes; the server's as a longpoll's read when it expires
        results = LiveRound([(d.name, d.replicator, host.local_poll_interval
                              if d.replicator.polls else host.longpoll_timeout)
                             for d in directions],
                            cancel=self.cancel, wake=self.wake,
                            on_stop=self._stop_within_grace).run()
        for direction in directions:
            direction.result = results[direction.name]
            self._report_result(direction)

    def _run_direction(self, direction: Direction) -> None:
        """A one-shot direction, on this thread."""
        try:
            direction.result = direction.replicator.run()
        except Exception as exc:  # noqa: BLE001 - the replicator should not raise
            log.exception("%r: %s replicator crashed", self.plan.owner, direction.name)
            from ..replication import ReplicationResult
            direction.result = ReplicationResult(ok=False, status="error", error=exc)
        self._report_result(direction)
        if direction.result.error is not None:
            self.cancel.set()  # the other direction does not start

    def _report_result(self, direction: Direction) -> None:
        """Tell the sync how ``direction`` ended, with what its result counts beyond the
        batches it reported (a batch cut short writes docs but reports no batch end)."""
        result = direction.result
        assert result is not None
        with self.cond:
            unreported = max(0, result.docs_written - direction.docs_written_seen)
            unreported_failures = max(0, result.doc_write_failures - direction.failures_seen)
            direction.docs_written_seen += unreported
            direction.failures_seen += unreported_failures
        self.plan.on_result(direction.name, result, unreported, unreported_failures)

    def _direction(self, name: str, source: Database, target: Database) -> Direction:
        plan, host = self.plan, self.plan.host
        holder: dict[str, Direction] = {}
        remote = target if name == "push" else source
        extra: dict[str, Any] = {}
        limit = getattr(remote, "max_message_size", None)
        if isinstance(limit, int) and limit > 0:
            extra["max_batch_bytes"] = batch_bytes_for(limit)
        replicator = plan.make_replicator(
            source, target, cancel=self.cancel,
            on_batch=lambda info: self._on_batch(holder["d"], info),
            on_state=lambda state: self._on_state(holder["d"], state),
            # the push side waits on the local database: short waits so a cancel or a
            # lost connection stops it promptly (the local store wakes it on writes);
            # the pull side's longpoll is woken by the channel closing.
            longpoll_timeout=host.local_poll_interval if name == "push"
            else host.longpoll_timeout,
            **extra)
        holder["d"] = direction = Direction(name, replicator)
        return direction

    def _connection_gone(self) -> bool:
        with self.cond:
            connection = self.connection
        return connection is None or connection.lost.is_set()

    # -- the stop's grace ------------------------------------------------------------------
    def _stop_within_grace(self) -> None:
        """The live round begins to stop: if it still runs ``STOP_GRACE`` seconds from
        now, close its channel under it (the calls in flight then fail at once).
        Idempotent; ``run`` joins the helper thread at the round's end."""
        with self.cond:
            channel = self.channel
            if self._stopper is not None or channel is None or self.done.is_set():
                return
            self._stopper = threading.Thread(
                target=self._close_after_grace, args=(channel,),
                name=f"pouchsync-sync[{self.plan.remote_name}]-stop", daemon=True)
            self._stopper.start()  # under the lock: the round's end joins a started thread

    def _close_after_grace(self, channel: Channel) -> None:
        if not self.done.wait(STOP_GRACE):
            log.info("%r: replication still running %.1fs after the stop; closing its "
                     "channel", self.plan.owner, STOP_GRACE)
            channel.close()

    def _end_stopper(self) -> None:
        """The round has ended: end the grace thread, if one runs."""
        with self.cond:
            self.done.set()
            stopper, self._stopper = self._stopper, None
        if stopper is not None:
            stopper.join()  # at once: the round is done

    # -- replicator callbacks (on the sync's thread) ----------------------------------------
    def _on_batch(self, direction: Direction, info: Mapping[str, Any]) -> None:
        written = int(info.get("docs_written", 0))
        failures = int(info.get("doc_write_failures", 0))
        with self.cond:
            new_written = written - direction.docs_written_seen
            new_failures = failures - direction.failures_seen
            direction.docs_written_seen, direction.failures_seen = written, failures
            self.progress = True
        self.plan.on_batch(direction.name, new_written, new_failures, info)

    def _on_state(self, direction: Direction, state: str) -> None:
        if state not in ("active", "paused"):
            return
        with self.cond:
            if self.cancel.is_set():
                return
            self._idle[direction.name] = state == "paused"
            if state == "paused":
                self.progress = True
            all_idle = len(self._idle) == len(self.directions) and all(self._idle.values())
        self.plan.on_state(direction.name, state == "active", all_idle)
