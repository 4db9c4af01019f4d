"""Hostile frames, one kind at a time, each with the exact answer it must get.

Run against an in-process server. Each bad frame gets a 400-class error (never a 500, never a crash) and the socket
keeps serving, or the transport closes it with the documented code (1007 invalid UTF-8,
1009 too big).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.rawpeer import TEXT, RawPeer

from .helpers import TOKEN
from .proxy import wait_until

DB = "fuzz"
MAX_MESSAGE = 256 * 1024
DEEP = "[" * 5000 + "]" * 5000
DEEP_OBJ = '{"a":' * 3000 + "1" + "}" * 3000
BIG_INT = "9" * 40


def _call(op: str, args: str) -> str:
    return '{"type":"call","ch":1,"id":7,"op":"%s","args":%s}' % (op, args)


# name -> (frame, expected): "400" = an error answer with status 400 and the socket
# still serving; ("close", code) = the transport closes with that code.
CASES: dict[str, tuple[Any, Any]] = {
    "malformed json": ("{", "400"),
    "empty frame": ("", "400"),
    "json null": ("null", "400"),
    "json list": ("[1,2]", "400"),
    "json string": ('"call"', "400"),
    "binary garbage": (b"\x00\xff\xfe binary", "400"),
    "no type": ('{"ch":1}', "400"),
    "unknown type": ('{"type":"frobnicate"}', "400"),
    "type not a string": ('{"type":["call"]}', "400"),
    "unknown op": (_call("destroy", "{}"), "400"),
    "dunder op": (_call("__class__", "{}"), "400"),
    "unknown argument": (_call("get", '{"doc_id":"a","fields":1}'), "400"),
    "missing argument": (_call("get", "{}"), "400"),
    "args not an object": (_call("get", "[]"), "400"),
    "ch a string": ('{"type":"call","ch":"1","id":1,"op":"info"}', "400"),
    "ch a float": ('{"type":"call","ch":1.0,"id":1,"op":"info"}', "400"),
    "ch zero": ('{"type":"call","ch":0,"id":1,"op":"info"}', "400"),
    "ch beyond 2**53": ('{"type":"call","ch":9007199254740992,"id":1,"op":"info"}', "400"),
    "id negative": ('{"type":"call","ch":1,"id":-1,"op":"info"}', "400"),
    "channel never opened": ('{"type":"call","ch":5,"id":1,"op":"info"}', "400"),
    "second hello": ('{"type":"hello","versions":[1]}', "400"),
    "open without db": ('{"type":"open","ch":3}', "400"),
    "open empty db": ('{"type":"open","ch":3,"db":""}', "400"),
    "open reused ch": ('{"type":"open","ch":1,"db":"fuzz"}', "400"),
    "subscribe bad since": ('{"type":"subscribe","ch":1,"sub":1,"since":{"a":[1]}}', "400"),
    "subscribe unknown operator": ('{"type":"subscribe","ch":1,"sub":2,"selector":{"a":{"$frob":1}}}', "400"),
    "since garbage": (_call("changes", '{"since":"garbage"}'), "400"),
    "since negative": (_call("changes", '{"since":-5}'), "400"),
    "since huge integer": (_call("changes", '{"since":%s}' % BIG_INT), "400"),
    "since huge digit string": (_call("changes", '{"since":"%s"}' % BIG_INT), "400"),
    "since deeply nested": (_call("changes", '{"since":%s}' % DEEP_OBJ), "400"),
    "selector unknown operator": (_call("changes", '{"selector":{"a":{"$frob":1}}}'), "400"),
    "selector deeply nested": (_call("changes", '{"selector":%s}' % ('{"$and":[' * 1500 + '{"a":1}' + "]}" * 1500)), "400"),
    # integers beyond 64 bits are read exactly, and a limit that large means "all" (a
    # normal reply)
    "limit huge": (_call("changes", '{"limit":%s}' % BIG_INT), "answered"),
    "timeout NaN": (_call("changes", '{"feed":"longpoll","timeout":NaN}'), "400"),
    "deep nesting message": (DEEP, "400"),
    "deep nesting in a doc": (_call("put", '{"doc":{"_id":"deep","x":%s}}' % DEEP), "400"),
    "deep nesting in credentials": ('{"type":"open","ch":4,"db":"nope-%s","credentials":%s}' % ("x", DEEP), "answered"),
    "huge integer in a doc": (_call("put", '{"doc":{"_id":"n","n":%s}}' % ("9" * 5000)), "400"),
    "lone surrogate": (_call("put", '{"doc":{"_id":"\\ud800"}}'), "400"),
    # simple-websocket closes 1007 and shuts the socket at once: the reset may overtake
    # the close frame, so "gone" (no close frame read) is accepted too
    # simple-websocket closes 1007 and shuts the socket at once: the reset may overtake
    # the close frame, so "gone" (no close frame read) is accepted too
    "invalid UTF-8": ((b'{"type":"\xff\xfe"}', 1), ("close", 1007)),
    "oversized message": ('"' + "a" * (MAX_MESSAGE + 10) + '"', ("close", 1009)),
}


def _is_400(msg: Any) -> bool:
    if not isinstance(msg, dict):
        return False
    err = msg.get("error") if isinstance(msg.get("error"), dict) else msg
    return msg.get("type") in ("error", "reply", "changes", "denied") and err.get("status") == 400


@pytest.fixture(scope="module")
def bad_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Callable[[], bool]]]:
    """(url, alive) of a server granting ``fuzz`` to TOKEN."""
    from pouchsync_sync import create_server
    from tests.sync_fixtures import Hub

    root = Path(tmp_path_factory.mktemp("bad"))
    hub = Hub(root, TOKEN)
    server = create_server(hub.on_request, max_message_size=MAX_MESSAGE, hello_timeout=5.0).start()
    try:
        yield server.url, lambda: True
    finally:
        server.stop()
        hub.close()


@pytest.mark.parametrize("case", list(CASES))
def test_bad_frame_gets_a_clear_answer(bad_server, case: str) -> None:
    url, alive = bad_server
    frame, expected = CASES[case]
    peer = RawPeer(url)
    try:
        peer.send({"type": "open", "ch": 1, "db": DB, "credentials": TOKEN})
        granted, _ = peer.until(lambda msg: msg.get("ch") == 1)
        assert granted["type"] == "granted", granted
        if isinstance(frame, tuple):
            peer.send(frame[0], opcode=frame[1])
        else:
            peer.send(frame)
        if expected == "answered":  # any answer but a server error, and still serving
            answer, _ = peer.until(lambda msg: msg.get("type") in ("error", "reply", "denied"))
            assert isinstance(answer, dict), f"{case}: {answer!r}"
            status = answer.get("status") or (answer.get("error") or {}).get("status") or 200
            assert status < 500 and not answer.get("fatal"), answer
            closed, _ = peer.probe()
            assert isinstance(closed, dict), f"{case}: the socket stopped serving: {closed!r}"
        elif expected == "400":
            answer, seen = peer.until(lambda msg: msg.get("type") in ("error", "reply", "changes"))
            assert _is_400(answer), f"{case}: expected a 400 answer, got {answer!r}"
            assert not answer.get("fatal"), answer
            closed, _ = peer.probe()
            assert isinstance(closed, dict), f"{case}: the socket stopped serving: {closed!r}"
        else:
            answer, seen = peer.until(lambda msg: False)
            assert answer in (expected, ("gone", None)), f"{case}: expected {expected}, got {answer!r}"
            assert not seen, f"{case}: answered {seen!r} before closing"
    finally:
        peer.close()
    assert alive()
    # the server serves new sockets afterwards
    again = RawPeer(url)
    again.send({"type": "open", "ch": 1, "db": DB, "credentials": TOKEN})
    granted, _ = again.until(lambda msg: msg.get("ch") == 1)
    again.close()
    assert granted["type"] == "granted"


def test_anything_before_the_hello_is_refused_and_closed(bad_server) -> None:
    url, alive = bad_server
    for frame in ('{"type":"open","ch":1,"db":"fuzz","credentials":%s}' % json.dumps(TOKEN),
                  _call("info", "{}"), "garbage", b"\x00\x01", "[" * 2000 + "]" * 2000,
                  '{"type":"hello","versions":[]}', '{"type":"hello","versions":[99]}'):
        peer = RawPeer(url, hello=False)
        peer.send(frame)
        answer, seen = peer.until(lambda msg: False)
        peer.close()
        assert answer == ("close", 1002), (frame[:40], answer, seen)
        assert len(seen) == 1 and seen[0]["type"] == "error" and seen[0]["fatal"] is True, seen
        assert seen[0]["status"] == 400
    # a frame over max_hello_size (8 KiB) before the welcome: closed 1009, unread
    for frame in (DEEP, '{"type":"hello","versions":[1],"agent":"%s"}' % ("x" * 9000)):
        peer = RawPeer(url, hello=False)
        peer.send(frame)
        answer, seen = peer.until(lambda msg: False)
        peer.close()
        assert answer in (("close", 1009), ("gone", None)) and not seen, (frame[:40], answer, seen)
    assert alive()


def test_call_id_in_flight_reused_and_closed_channel(bad_server) -> None:
    url, _ = bad_server
    peer = RawPeer(url)
    try:
        peer.send({"type": "open", "ch": 1, "db": DB, "credentials": TOKEN})
        assert peer.until(lambda msg: msg.get("ch") == 1)[0]["type"] == "granted"
        longpoll = {"type": "call", "ch": 1, "id": 3, "op": "changes",
                    "args": {"since": "now", "feed": "longpoll", "timeout": 30}}
        peer.send(longpoll)
        peer.send(longpoll)  # same id while the first is in flight
        answer, _ = peer.until(lambda msg: msg.get("type") == "error")
        assert answer["status"] == 400 and answer.get("id") == 3 and "in flight" in answer["reason"]
        peer.send({"type": "close", "ch": 1})
        closed, seen = peer.until(lambda msg: msg.get("type") == "closed")
        assert closed["ch"] == 1
        assert not [m for m in seen if m.get("type") == "reply"], seen  # the longpoll is dropped
        peer.send({"type": "call", "ch": 1, "id": 4, "op": "info"})  # on the closed channel
        answer, seen = peer.until(lambda msg: msg.get("type") in ("error", "reply"))
        assert answer["type"] == "error" and answer["status"] == 400, answer
        assert not seen
    finally:
        peer.close()


def test_frames_queued_behind_a_fatal_frame_close_quietly(hub, servers, caplog) -> None:
    """A bad frame and invalid UTF-8 arriving in one TCP segment: simple-websocket starts
    closing (1007) while the reader still answers the first frame. The answer must be
    dropped quietly: no ERROR, no 1011, the session ends and its threads stop."""
    server = servers(hub.on_request, max_message_size=1024)
    caplog.set_level(logging.INFO, logger="pouchsync_sync")
    for attempt in range(10):
        for fatal, code in ((b'{"type":"\xff"}', 1007), (b'"' + b"x" * 2000 + b'"', 1009)):
            peer = RawPeer(server.url)
            first = peer.frame('{"type":"frobnicate"}')
            bad = peer.frame(fatal, opcode=TEXT)
            peer.send_raw(first * 3 + bad)
            answer, _ = peer.until(lambda msg: False)
            peer.close()
            assert answer in (("close", code), ("gone", None)), answer
    assert wait_until(lambda: server.stats()["connections"] == 0, timeout=10)
    failures = [r for r in caplog.records
                if r.levelno >= logging.ERROR and r.name.startswith("pouchsync_sync")]
    assert not failures, failures[0].getMessage() + "\n" + (failures[0].exc_text or "")


def test_too_many_errors_close_the_socket(hub, servers) -> None:
    server = servers(hub.on_request, max_errors=20)
    peer = RawPeer(server.url)
    for _ in range(25):
        peer.send("{garbage")
    answer, seen = peer.until(lambda msg: False)
    peer.close()
    assert answer in (("close", 1008), ("gone", None)), answer
    assert len(seen) == 20 and all(m["type"] == "error" for m in seen), seen
    assert seen[-1]["fatal"] is True and "too many errors" in seen[-1]["reason"]
    assert not any(m.get("fatal") for m in seen[:-1])
    assert wait_until(lambda: server.stats()["connections"] == 0, timeout=10)
