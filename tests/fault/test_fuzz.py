"""Fuzzing the server: Hypothesis over the message schema, plus random bytes, random
text and random JSON, while two bystander clients sync through the same server.

Every frame is sent on a real socket. After each input a probe (``close`` of a channel
never opened, always answered ``closed``) must be answered, or the server must have
closed the socket with a protocol close code (never 1011). No answer may be a server
error (5xx), nothing may be logged at ERROR, the bystanders' syncs finish with every
write on both sides, and once the fuzz sockets are gone no thread of theirs is left.

Short run: ~500 frames. ``--full``: at least 10,000.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pouchsync_sync.protocol import messages as protocol_messages
from pouchsync_sync.protocol import ops as protocol_ops
from pouchsync_sync.signals import client_disconnect
from tests.rawpeer import RawPeer

from .helpers import TOKEN, missing_writes, thread_stacks, wait_converged
from .proxy import wait_until

MAX_MESSAGE = 64 * 1024
PROTOCOL_CLOSES = {1002, 1007, 1008, 1009}

json_scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)

small_ints = st.sampled_from([1, 1, 1, 2, 3, 0, -1, 2**53, 2**53 - 1]) | st.integers(-3, 12)
OPS = sorted(getattr(protocol_ops, "OPS", None) or ["info", "get", "put", "post", "delete",
                                                     "bulk_docs", "all_docs", "changes",
                                                     "revs_diff", "bulk_get", "get_attachment"])
ARG_NAMES = ["doc_id", "rev", "revs", "revs_info", "conflicts", "open_revs", "latest",
             "attachments", "doc", "docs", "new_edits", "include_docs", "keys", "startkey",
             "endkey", "limit", "skip", "descending", "since", "style", "doc_ids", "selector",
             "feed", "timeout", "name", "bogus", "__class__"]
plausible = {
    "type": st.sampled_from(["hello", "open", "close", "call", "subscribe", "unsubscribe",
                             "welcome", "reply", "frobnicate", ""]) | st.text(max_size=10),
    "ch": small_ints, "id": small_ints, "sub": small_ints,
    "op": st.sampled_from(OPS + ["destroy", "compact", "__init__", ""]) | st.text(max_size=10),
    "db": st.sampled_from(["fuzz", "other", "", "../x", "_users", "a/b"]) | st.text(max_size=30),
    "credentials": st.just(TOKEN) | json_values,
    "versions": st.just([1]) | st.lists(small_ints, max_size=3) | json_values,
    "since": st.sampled_from([0, "now", "0", -1, "x"]) | json_values,
    "style": st.sampled_from(["main_only", "all_docs", "x"]) | json_values,
    "feed": st.sampled_from(["normal", "longpoll", "continuous"]),
    "timeout": st.sampled_from([0, 0.01, -1, 1e308]) | json_values,
    "batch": small_ints | json_values,
    "selector": st.sampled_from([{"a": 1}, {"a": {"$gt": 1}}, {"a": {"$frob": 1}}, {"$or": 1}])
                | json_values | st.sampled_from([  # $regex: catastrophic, invalid, too long
                    {"_id": {"$regex": "^(.|.|.|.|.|.)*~"}}, {"field": {"$regex": "^(a|a)*$"}},
                    {"_id": {"$regex": "^(x+x+)+y"}}, {"_id": {"$regex": "("}},
                    {"_id": {"$regex": "a" * 1001}}, {"_id": {"$regex": 5}}])
                | st.text("a().|*+?^$[]{}\\b0-9", max_size=24).map(lambda p: {"_id": {"$regex": p}}),
}
docs = st.fixed_dictionaries({}, optional={
    "_id": st.sampled_from(["a", "b", "_design/x", "_local/y", "_bad", ""]) | st.text(max_size=8),
    "_rev": st.sampled_from(["1-abc", "x", "0-a", "1-"]) | json_values,
    "_revisions": st.fixed_dictionaries({"start": small_ints, "ids": json_values}) | json_values,
    "_attachments": st.dictionaries(st.text(max_size=5), st.fixed_dictionaries(
        {"data": st.sampled_from(["AAAA", "!!notbase64", ""]) | json_values},
        optional={"content_type": json_values, "length": json_values, "digest": json_values,
                  "stub": st.booleans()}), max_size=2) | json_values,
    "_deleted": st.booleans() | json_values,
    "field": json_values})
arg_values = {"doc": docs | json_values, "docs": st.lists(docs, max_size=3) | json_values,
              **{k: plausible[k] for k in ("since", "style", "feed", "timeout", "selector")}}


@st.composite
def schema_messages(draw: Any) -> dict[str, Any]:
    """A message shaped like the schema, with any field possibly wrong."""
    msg: dict[str, Any] = {"type": draw(plausible["type"])}
    fields = draw(st.lists(st.sampled_from(sorted(plausible) + ["args", "agent", "zzz"]),
                           max_size=6, unique=True))
    if msg["type"] == "call" and draw(st.booleans()):
        fields = list(dict.fromkeys(fields + ["ch", "id", "op", "args"]))
    for name in fields:
        if name == "type":
            continue
        if name == "args":
            keys = draw(st.lists(st.sampled_from(ARG_NAMES), max_size=4, unique=True))
            msg["args"] = draw(st.just({}) | json_values) if not keys else {
                k: draw(arg_values.get(k, json_values)) for k in keys}
        elif name in plausible:
            msg[name] = draw(plausible[name])
        else:
            msg[name] = draw(json_values)
    return msg


frames = st.one_of(
    schema_messages().map(json.dumps),
    schema_messages().map(json.dumps),
    schema_messages().map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=100),
    st.binary(max_size=100).map(lambda b: ("binary", b)),
    st.binary(min_size=1, max_size=40).map(lambda b: ("badtext", b"\xff" + b)),
    st.integers(1, 3000).map(lambda n: "[" * n + "]" * n),
    st.integers(1, 3000).map(lambda n: '{"type":"call","ch":1,"id":1,"op":"put","args":{"doc":'
                             '{"_id":"deep","x":%s}}}' % ("[" * n + "]" * n)),
    st.just("x" * (MAX_MESSAGE + 1)),
    # permessage-deflate on a socket of its own: small ones and ones inflating past the limit
    schema_messages().map(lambda m: ("deflated", json.dumps(m))),
    st.integers(1, 400).map(lambda n: ("deflated", '{"type":"call","ch":1,"id":1,"op":"info",'
                                       '"args":{},"pad":"%s"}' % ("0" * n * 1000))),
)
inputs = st.tuples(st.sampled_from(["hello", "hello", "hello", "hello", "hello", "hello",
                                    "hello", "hello", "hello", "no-hello"]),
                   st.lists(frames, min_size=1, max_size=4))


def _deflated_round(url: str, text: str) -> list[Any]:
    """``text`` compressed on a fresh permessage-deflate socket (after hello and open),
    then a probe; the messages answered before the probe's (checked like the others)."""
    peer = RawPeer(url, hello=False, deflate=True)
    try:
        seen: list[Any] = []
        for frame in ('{"type":"hello","versions":[1]}',
                      '{"type":"open","ch":1,"db":"fuzz","credentials":%s}' % json.dumps(TOKEN)):
            peer.send(frame)
            answer = peer.recv()
            assert isinstance(answer, dict) and answer["type"] in ("welcome", "granted"), answer
        peer.send(text)
        peer.send('{"type":"close","ch":9000000000}')
        while True:
            answer = peer.recv()
            if isinstance(answer, tuple):
                kind, code = answer
                assert kind == "gone" or code in PROTOCOL_CLOSES, f"deflated: closed with {answer}"
                return seen
            if answer.get("type") == "closed" and answer.get("ch") == 9000000000:
                return seen
            seen.append(answer)
    finally:
        peer.close()


def _status(msg: dict[str, Any]) -> int | None:
    if isinstance(msg.get("error"), dict):
        return msg["error"].get("status")
    return msg.get("status")


class ErrorLogs(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(f"{record.name}: {record.getMessage()}")


#: every thread of one server connection: the WSGI thread serving its session (named
#: ``conn`` until the session has left the server's count), its transport's reader
#: (``ws``), its worker pool and its longpoll waits
CONNECTION_THREAD = re.compile(r"pouchsync-server-(?:conn|ws|worker|longpoll)\[(\d+)\]")


def _server_threads(exclude: set[int]) -> list[str]:
    out = []
    for t in threading.enumerate():
        found = CONNECTION_THREAD.match(t.name)
        if found and int(found.group(1)) not in exclude:
            out.append(t.name)
    return out


class Fuzzer:
    """Sends Hypothesis inputs to a server at ``url`` and checks each answer (see the
    module docstring). ``state`` holds the counts."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.state: dict[str, Any] = {"peer": None, "frames": 0, "inputs": 0, "closes": {},
                                      "deflated": 0,
                                      "answers": 0, "errors_checked": 0}

    def run_until(self, target: int) -> dict[str, Any]:
        state = self.state
        url = self.url
        refuses = self._refuses

        def fresh(hello: bool) -> RawPeer:
            peer = RawPeer(url, hello=hello, timeout=10.0)
            if hello:
                peer.send({"type": "open", "ch": 1, "db": "fuzz", "credentials": TOKEN})
                granted, _ = peer.until(lambda m: m.get("ch") == 1 and m.get("type") in ("granted", "denied"))
                assert isinstance(granted, dict) and granted["type"] == "granted", granted
            return peer

        def check_answers(seen: list[Any]) -> None:
            for msg in seen:
                state["answers"] += 1
                status = _status(msg)
                assert status is None or status < 500, f"server error answered: {msg}"

        @settings(max_examples=max(50, target // 2), deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(inputs)
        def run(item: tuple[str, list[Any]]) -> None:
            mode, batch = item
            if mode == "no-hello":
                if state["peer"] is not None:
                    state["peer"].close()
                state["peer"] = fresh(hello=False)
            elif state["peer"] is None or state["peer"].closed is not None:
                if state["peer"] is not None:
                    state["peer"].close()
                state["peer"] = fresh(hello=True)
            peer: RawPeer = state["peer"]
            malformed = 0  # frames the pure decoder refuses: each must get an ``error``
            for frame in batch:
                if isinstance(frame, tuple) and frame[0] == "deflated":
                    check_answers(_deflated_round(url, frame[1]))
                    state["deflated"] += 1
                elif isinstance(frame, tuple):
                    kind, data = frame
                    peer.send(data, opcode=1 if kind == "badtext" else None)
                    malformed += kind == "binary"
                else:
                    peer.send(frame)
                    if len(frame) <= MAX_MESSAGE and refuses(frame):
                        malformed += 1
                state["frames"] += 1
            state["inputs"] += 1
            answer, seen = peer.probe()
            check_answers(seen)
            if isinstance(answer, dict) and mode == "hello":
                errors = sum(1 for msg in seen if msg.get("type") == "error")
                assert errors >= malformed, f"{malformed} malformed frames, {errors} errors: {batch!r:.300}"
                state["errors_checked"] += malformed
            if isinstance(answer, tuple):
                kind, code = answer
                assert kind == "gone" or code in PROTOCOL_CLOSES, f"closed with {answer} after {batch!r:.300}"
                state["closes"][code] = state["closes"].get(code, 0) + 1
                peer.close()
                state["peer"] = None
            elif mode == "no-hello":  # answered only if a valid hello came first
                assert seen and seen[0].get("type") == "welcome", f"answered before a hello: {seen}"

        try:
            while state["frames"] < target:
                run()
        finally:
            if state["peer"] is not None:
                state["peer"].close()
                state["peer"] = None
        return state

    def _refuses(self, frame: str) -> bool:
        """Does the protocol's pure decoder refuse this frame (as the server parses)?"""
        try:
            protocol_messages.decode(frame, sender="client")
        except protocol_messages.BadMessage:
            return True
        return False


def test_fuzz_server_survives_and_bystanders_sync(hub, servers, local, clients, recorders,
                                                  full_run: bool) -> None:
    target = 10_000 if full_run else 500
    server = servers(hub.on_request, max_message_size=MAX_MESSAGE, hello_timeout=2.0,
                     ping_interval=5.0)
    errors = ErrorLogs()
    logging.getLogger("pouchsync_sync").addHandler(errors)
    try:
        _fuzz_with_bystanders(hub, server, local, clients, recorders, errors, target)
    finally:
        logging.getLogger("pouchsync_sync").removeHandler(errors)


def _fuzz_with_bystanders(hub: Any, server: Any, local: Any, clients: Any, recorders: Any,
                          errors: ErrorLogs, target: int) -> None:
    """The test's body (``errors`` records every ERROR log until it returns)."""
    a, b = local("bystander"), local("bystander")
    bystanders = [clients().connect(server.url) for _ in (a, b)]
    # the server's connection ids of the bystanders are told apart from the fuzz
    # sockets' by their threads' names, so a bystander must keep its connection
    lost = [recorders(client_disconnect, client) for client in bystanders]
    syncs = [client.sync(db, credentials=TOKEN, live=True) for client, db in zip(bystanders, (a, b))]
    for sync in syncs:
        sync.wait_in_sync(timeout=20)
    bystander_ids = {int(m.group(1)) for t in threading.enumerate()
                     if (m := re.match(r"pouchsync-server-ws\[(\d+)\]", t.name))}
    assert len(bystander_ids) == 2
    written: list[tuple[str, str]] = []
    stop = threading.Event()

    def bystander_writes() -> None:
        i = 0
        while not stop.is_set():
            for db, name in ((a, "a"), (b, "b")):
                result = db.put({"_id": f"{name}-{i:05d}", "i": i})
                written.append((result["id"], result["rev"]))
            i += 1
            stop.wait(0.01)

    writer = threading.Thread(target=bystander_writes, name="fault-bystander-writer")
    writer.start()
    fuzzer = Fuzzer(server.url)
    try:
        state = fuzzer.run_until(target)
    finally:
        stop.set()
        writer.join(10)
    # the bystanders finished correctly, with everything they wrote on both sides
    wait_converged({"a": a, "b": b, "server": hub.db("bystander")}, syncs, timeout=60)
    for db in (a, b, hub.db("bystander")):
        assert not missing_writes(db, written)
    assert not any(rec.events for rec in lost), \
        f"a bystander lost its connection: {[rec.events for rec in lost]}"
    # every fuzz socket's session ended: no thread of it is left on the server, and it
    # left the server's count (its own thread does that last, a moment after its
    # transport and workers stopped: waited for, not read at once)
    assert wait_until(lambda: not _server_threads(bystander_ids), timeout=15), \
        thread_stacks(_server_threads(bystander_ids))
    assert wait_until(lambda: server.stats()["connections"] == 2, timeout=5), server.stats()
    # nothing at ERROR, the fuzz sockets' teardowns included
    assert not errors.records, errors.records[:5]
    assert state["errors_checked"] > 0
    assert state["deflated"] > 0
    print(f"\nfuzz: {state['frames']} frames in {state['inputs']} inputs ({state['deflated']} deflated), "
          f"{state['answers']} answers, "
          f"{state['errors_checked']} malformed frames each answered with an error, "
          f"closes {state['closes']}, server threads leaked 0, bystander writes {len(written)}, 0 lost")
