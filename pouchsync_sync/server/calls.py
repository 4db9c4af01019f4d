"""What the server does with each message of a client, and the tasks they start.

``HANDLERS`` maps a message type to a function run on the socket's handler thread,
under the session's lock, right after the sans-IO ``protocol.Connection`` accepted the
message: it validates, answers at once what needs no database (refusals, bad
arguments) and hands the rest to the session's ``Lane`` of the process-wide pool:
``open_task`` asks ``on_request`` for a grant, ``call_task`` runs one allow-listed call.
A longpoll ``changes`` call and subscriptions go to ``live.py``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable

from ..errors import BadRequest, CouchError, Denied
from ..protocol import ChannelState, ops
from ..protocol import messages as m
from .dispatch import bounded, error_json, execute
from .grant import Grant, as_grant, database_uuid
from .live import ChannelContext, ChannelGone, Subscription

if TYPE_CHECKING:  # pragma: no cover
    from .session import Session

__all__ = ["HANDLERS", "reply"]

log = logging.getLogger(__name__)


def _context(session: Session, ch: int) -> ChannelContext:
    """The context of channel ``ch``, which the state machine has just let a message through on."""
    chan = session.proto.channel(ch)
    assert chan is not None, "the state machine accepts messages only on known channels"
    ctx: ChannelContext = chan.context
    return ctx


def on_open(session: Session, msg: dict[str, Any]) -> None:
    ch = msg["ch"]
    chan = session.proto.channel(ch)
    assert chan is not None
    active = sum(1 for c in session.proto.channels()
                 if c.state in (ChannelState.OPENING, ChannelState.OPEN))
    refusal = None
    if session.server_stopping.is_set():
        refusal = {"status": 503, "error": "shutting_down", "reason": "the server is stopping"}
    elif active > session.options.max_channels:
        refusal = {"status": 429, "error": "too_many_channels",
                   "reason": f"at most {session.options.max_channels} channels per socket"}
    if refusal is not None:
        session.complain("connection %s: channel %d refused: %s", session.name, ch,
                         refusal["reason"])
        session.outbox.put_locked(session.proto.send(m.denied(ch, refusal)))
        return
    ctx = ChannelContext(ch, msg["db"])
    chan.context = ctx
    session.lane.submit(open_task, session, ctx, msg["credentials"])


def on_close(session: Session, msg: dict[str, Any]) -> None:
    chan = session.proto.channel(msg["ch"])
    ctx = chan.context if chan is not None else None
    session.outbox.put_locked(session.proto.send(m.closed(msg["ch"])))
    if isinstance(ctx, ChannelContext):
        session.live.drop_channel_locked(ctx)
        log.debug("connection %s: channel %d (%s) closed", session.name, ctx.ch, ctx.db_name)


def on_call(session: Session, msg: dict[str, Any]) -> None:
    ctx = _context(session, msg["ch"])
    ch, call_id, op = msg["ch"], msg["id"], msg["op"]
    try:
        kwargs = bounded(op, ops.validate_call(op, msg["args"]), session.options.max_rows)
    except BadRequest as exc:
        session.outbox.put_locked(session.proto.send(m.reply_error(ch, call_id, exc.to_json())))
        return
    if session.calls_in_flight >= session.options.max_calls:
        err = {"status": 429, "error": "too_many_requests",
               "reason": f"at most {session.options.max_calls} calls in flight per socket"}
        session.outbox.put_locked(session.proto.send(m.reply_error(ch, call_id, err)))
        return
    session.calls_in_flight += 1
    if op == "changes" and kwargs.get("feed") == "longpoll":
        queued = session.lane.submit(session.live.start_longpoll, ctx, call_id, kwargs)
    else:
        queued = session.lane.submit(call_task, session, ctx, call_id, op, kwargs)
    if not queued:
        session.calls_in_flight -= 1


def on_subscribe(session: Session, msg: dict[str, Any]) -> None:
    ctx = _context(session, msg["ch"])
    options = {k: msg[k] for k in ("style", "include_docs", "conflicts", "doc_ids", "selector")}
    try:
        kwargs = ops.validate_changes_args(options)
    except BadRequest as exc:  # pragma: no cover - the message schema checks these first
        session.outbox.put_locked(
            session.proto.send(m.changes_error(ctx.ch, msg["sub"], exc.to_json())))
        return
    subscriptions = sum(len(c.context.subs) for c in session.proto.channels()
                        if isinstance(c.context, ChannelContext))
    if subscriptions >= session.options.max_subscriptions:
        err = {"status": 429, "error": "too_many_subscriptions",
               "reason": f"at most {session.options.max_subscriptions} subscriptions per socket"}
        session.outbox.put_locked(session.proto.send(m.changes_error(ctx.ch, msg["sub"], err)))
        return
    batch = min(msg["batch"] or session.options.live_batch, session.options.live_batch)
    sub = Subscription(ctx, msg["sub"], msg["since"], kwargs, batch)
    ctx.subs[sub.sub] = sub
    session.lane.submit(session.live.start_subscription, sub)


def on_unsubscribe(session: Session, msg: dict[str, Any]) -> None:
    ctx = _context(session, msg["ch"])
    sub = ctx.subs.pop(msg["sub"], None)
    if sub is not None:
        session.live.cancel_subscription(sub)


HANDLERS: dict[str, Callable[[Session, dict[str, Any]], None]] = {
    "open": on_open,
    "close": on_close,
    "call": on_call,
    "subscribe": on_subscribe,
    "unsubscribe": on_unsubscribe,
}


# -- tasks (on the session's lane) -------------------------------------------------------
def open_task(session: Session, ctx: ChannelContext, credentials: Any) -> None:
    grant: Grant | None = None
    err: dict[str, Any] | None = None
    try:
        if session.server_stopping.is_set():
            raise Denied("the server is stopping")
        grant = as_grant(session.on_request(credentials, ctx.db_name))
        uuid = database_uuid(grant.db.identity())
    except Denied as exc:
        err = exc.to_json()
    except Exception as exc:  # any exception of on_request denies, with its message
        reason = exc.reason if isinstance(exc, CouchError) else str(exc)
        err = Denied(reason or type(exc).__name__).to_json()
        log.debug("on_request raised for %r", ctx.db_name, exc_info=True)

    def answer() -> str | None:
        if err is not None:
            text = session.proto.send_if_current(m.denied(ctx.ch, err), ctx)
            if text is not None:
                session.complain("connection %s: channel %d denied %r: %s", session.name,
                                 ctx.ch, ctx.db_name, err["reason"])
            return text
        assert grant is not None
        ctx.grant = grant
        text = session.proto.send_if_current(
            m.granted(ctx.ch, ctx.db_name, uuid, grant.read_only), ctx)
        if text is not None:
            log.info("connection %s: channel %d granted %r%s", session.name, ctx.ch,
                     ctx.db_name, " (read-only)" if grant.read_only else "")
        return text

    session.enqueue(answer)


def call_task(session: Session, ctx: ChannelContext, call_id: int, op: str,
              kwargs: dict[str, Any]) -> None:
    try:
        session.local_quota.check(ctx.granted, op, kwargs)
        result = execute(ctx.granted, op, kwargs)
    except Exception as exc:  # noqa: BLE001 - a pool task's top frame: the error is the answer
        reply(session, ctx, call_id, op, error=exc)
    else:
        reply(session, ctx, call_id, op, result=result)


def reply(session: Session, ctx: ChannelContext, call_id: int, op: str, *,
          result: Any = None, error: BaseException | None = None) -> None:
    """Answer call ``call_id`` with ``result`` (or ``error``; ``ChannelGone``: no answer),
    refused as ``too_large`` past ``max_reply_size``, queued in the call's order."""
    text: str | None = None
    if error is None:
        msg = m.reply_ok(ctx.ch, call_id, result)
        text = m.encode(msg)
        if len(text) > session.max_reply_size:
            msg, text = too_large(session, ctx, call_id, op, len(text)), None
    elif isinstance(error, ChannelGone):
        session.enqueue(lambda: None, reply=True)  # no answer: the call is over
        return
    else:
        msg = m.reply_error(ctx.ch, call_id, error_json(error, what=op))
    held = len(text) if text is not None else 0
    if held:  # waits whole in memory until sent: counted server-wide
        session.budget.hold(session, held)
    session.enqueue(lambda: session.proto.send_if_current(msg, ctx, text), held, reply=True)


def too_large(session: Session, ctx: ChannelContext, call_id: int, op: str,
              size: int) -> dict[str, Any]:
    session.complain("connection %s: %s reply of %d bytes over max_reply_size (%d): refused",
                     session.name, op, size, session.max_reply_size)
    return m.reply_error(ctx.ch, call_id, {
        "status": 413, "error": "too_large",
        "reason": f"the reply to {op} would be {size} bytes, over the server's "
                  f"max_reply_size of {session.max_reply_size}; ask for less (limit)"})
