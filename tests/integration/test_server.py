"""The sync server over real sockets, driven by the raw test peer (``tests.rawpeer``).

Every test runs a real ``SyncServer`` on 127.0.0.1:0 (``start()``) with real
``LocalDatabase`` stores, and talks protocol v1 frame by frame.
"""

from __future__ import annotations

import base64
import json
import threading
from typing import Any, Callable, Iterator

import pytest

import pouchsync_sync as ps
from pouchsync_sync.protocol import messages as m
from tests.rawpeer import TEXT, RawPeer

TOKEN = {"token": "s3cret-token-value"}
WAIT = 10.0


class Databases:
    """A few in-memory stores and an on_request that grants them by name."""

    def __init__(self) -> None:
        self.dbs: dict[str, ps.Database] = {}
        self.requests: list[tuple[Any, str]] = []
        self.read_only: set[str] = set()
        self.design: set[str] = set()
        self.slow = threading.Event()
        self.slow_started = threading.Event()

    def db(self, name: str) -> ps.Database:
        if name not in self.dbs:
            self.dbs[name] = ps.LocalDatabase(":memory:", name=name)
        return self.dbs[name]

    def on_request(self, credentials: Any, db_name: str) -> Any:
        self.requests.append((credentials, db_name))
        if db_name == "slow":
            self.slow_started.set()
            self.slow.wait(WAIT)
        if db_name == "none":
            return None
        if db_name == "boom":
            raise RuntimeError("database boom is on fire")
        if credentials is None:
            raise ps.Denied("credentials required")
        if credentials.get("token") != TOKEN["token"]:  # AttributeError on malformed ones
            raise ps.Denied("wrong token")
        if db_name in self.read_only or db_name in self.design:
            return ps.Grant(self.db(db_name), read_only=db_name in self.read_only,
                            allow_design=db_name in self.design)
        return self.db(db_name)

    def close(self) -> None:
        for db in self.dbs.values():
            db.close()


@pytest.fixture
def dbs() -> Iterator[Databases]:
    found = Databases()
    yield found
    found.slow.set()
    found.close()


@pytest.fixture
def make_server(dbs: Databases) -> Iterator[Callable[..., ps.SyncServer]]:
    servers: list[ps.SyncServer] = []

    def make(**options: Any) -> ps.SyncServer:
        server = ps.create_server(dbs.on_request, **options).start()
        servers.append(server)
        return server

    yield make
    dbs.slow.set()
    for server in servers:
        server.stop()


@pytest.fixture
def server(make_server: Callable[..., ps.SyncServer]) -> ps.SyncServer:
    return make_server()


@pytest.fixture
def clients(server: ps.SyncServer) -> Iterator[Callable[..., RawPeer]]:
    made: list[RawPeer] = []

    def connect(**kw: Any) -> RawPeer:
        client = RawPeer(server.url, credentials=TOKEN, **kw)
        made.append(client)
        return client

    yield connect
    for client in made:
        client.close()


# -- connection -----------------------------------------------------------------------------

def test_hello_welcome_announces_version_and_limits(make_server) -> None:
    server = make_server(max_channels=7, max_message_size=123456, ping_interval=5)
    assert server.url.startswith("ws://127.0.0.1:") and server.url.endswith("/")
    client = RawPeer(server.url, credentials=TOKEN)
    try:
        assert client.welcome["version"] == 1
        assert client.welcome["agent"] == f"pouchsync_sync/{ps.__version__}"
        limits = client.welcome["limits"]
        assert limits["max_channels"] == 7 and limits["max_message_size"] == 123456
        assert limits["ping_interval"] == 5.0 and limits["max_calls"] == 64
    finally:
        client.close()


def test_unsupported_version_is_refused_with_reason_and_close_1002(clients) -> None:
    client = clients(hello=False)
    client.send({"type": "hello", "versions": [2, 3]})
    err = client.expect(type="error")
    assert err["error"] == "unsupported_version" and err["fatal"] is True
    assert "[1]" in err["reason"] and "[2, 3]" in err["reason"]
    assert client.expect_close() == [] and client.close_code == 1002


def test_anything_before_hello_is_an_error_and_a_close(clients) -> None:
    client = clients(hello=False)
    client.send(m.open_channel(1, "todos", TOKEN))
    err = client.expect(type="error")
    assert "expected a hello first" in err["reason"] and err["fatal"] is True
    assert client.expect_close() == [] and client.close_code == 1002


def test_hello_timeout_closes_the_socket(make_server) -> None:
    server = make_server(hello_timeout=0.3)
    client = RawPeer(server.url, hello=False, credentials=TOKEN)
    try:
        err = client.expect(type="error", timeout=5)
        assert err["error"] == "hello_timeout" and err["status"] == 408
        assert client.expect_close(timeout=5) == [] and client.close_code == 1008
        # the server holds nothing for it any more
        assert server.stats()["connections"] == 0 or _eventually(lambda: server.stats()["connections"] == 0)
    finally:
        client.close()


def _eventually(check: Callable[[], bool], timeout: float = WAIT) -> bool:
    done = threading.Event()
    deadline = timeout
    while deadline > 0:
        if check():
            return True
        done.wait(0.02)
        deadline -= 0.02
    return check()


def test_plain_http_request_gets_400(server) -> None:
    import requests

    response = requests.get(server.url.replace("ws://", "http://"), timeout=WAIT)
    assert response.status_code == 400 and "WebSocket" in response.text


# -- channels ---------------------------------------------------------------------------------

def test_grant_gives_stable_uuid_and_read_only_flag(clients, dbs) -> None:
    client = clients()
    granted = client.open(1, "todos")
    assert granted == {"type": "granted", "ch": 1, "db": "todos", "uuid": granted["uuid"],
                       "read_only": False}
    assert len(granted["uuid"]) == 32 and "memory" not in granted["uuid"]
    again = client.open(2, "todos")
    assert again["uuid"] == granted["uuid"]
    other = client.open(3, "other")
    assert other["uuid"] != granted["uuid"]
    assert dbs.requests[0] == (TOKEN, "todos")


@pytest.mark.parametrize("credentials, reason", [
    ({"token": "wrong"}, "wrong token"),
    (None, "credentials required"),
    ("just-a-string", "'str' object has no attribute 'get'"),
    ([1, 2], "'list' object has no attribute 'get'"),
])
def test_denied_with_wrong_missing_malformed_credentials(clients, dbs, credentials, reason) -> None:
    client = clients()
    denied = client.open(1, "todos", credentials)
    assert denied == {"type": "denied", "ch": 1, "status": 403, "error": "denied", "reason": reason}
    assert dbs.requests == [(credentials, "todos")]
    # the number is free again, and the socket still works
    assert client.open(1, "todos")["type"] == "granted"


def test_on_request_exception_message_is_relayed_without_traceback(clients) -> None:
    client = clients()
    denied = client.open(1, "boom")
    assert denied["reason"] == "database boom is on fire"
    assert "Traceback" not in json.dumps(denied)
    assert client.open(2, "none")["reason"] == "not allowed"


def test_close_channel_and_close_unknown_channel(clients) -> None:
    client = clients()
    client.open(1, "todos")
    client.send(m.close(1))
    assert client.expect(type="closed", ch=1)
    client.send(m.close(99))
    assert client.expect(type="closed", ch=99)
    call_id = client.start_call(1, "info")
    err = client.expect(type="error", id=call_id)  # not a reply: the channel is gone
    assert err["ch"] == 1 and "not open" in err["reason"]


def test_call_on_closed_channel_is_an_error_naming_channel_and_id(clients) -> None:
    client = clients()
    client.send(m.call(5, 1, "info"))
    err = client.expect(type="error")
    assert (err["ch"], err["id"], err["status"]) == (5, 1, 400) and "not open" in err["reason"]


def test_max_channels_per_socket(make_server) -> None:
    server = make_server(max_channels=2)
    client = RawPeer(server.url, credentials=TOKEN)
    try:
        assert client.open(1, "a")["type"] == "granted"
        assert client.open(2, "b")["type"] == "granted"
        denied = client.open(3, "c")
        assert (denied["status"], denied["error"]) == (429, "too_many_channels")
        client.send(m.close(1))
        client.expect(type="closed", ch=1)
        assert client.open(3, "c")["type"] == "granted"
    finally:
        client.close()


def test_slow_on_request_does_not_stall_other_channels(clients, dbs) -> None:
    client = clients()
    client.send(m.open_channel(1, "slow", TOKEN))
    assert dbs.slow_started.wait(WAIT)
    assert client.open(2, "todos")["type"] == "granted"
    assert client.ok(2, "info")["db_name"] == "todos"
    dbs.slow.set()
    assert client.expect(type="granted", ch=1)


def test_close_while_opening_answers_closed_and_never_granted(clients, dbs) -> None:
    client = clients()
    client.send(m.open_channel(1, "slow", TOKEN))
    assert dbs.slow_started.wait(WAIT)
    client.send(m.close(1))
    client.expect(type="closed", ch=1)
    dbs.slow.set()
    # reuse the number: the late grant of the first open must not leak into it
    assert client.open(1, "todos")["db"] == "todos"
    assert client.ok(1, "info")["db_name"] == "todos"
    assert not [p for p in client.pending if p["type"] == "granted"]


# -- calls --------------------------------------------------------------------------------------

def test_every_allowed_op_over_the_wire(clients) -> None:
    client = clients()
    client.open(1, "todos")
    assert client.ok(1, "info")["db_name"] == "todos"
    a = client.ok(1, "put", {"doc": {"_id": "a", "n": 1}})
    assert a["ok"] is True and a["rev"].startswith("1-")
    posted = client.ok(1, "post", {"doc": {"n": 2}})
    assert posted["id"] and posted["rev"].startswith("1-")
    assert client.ok(1, "get", {"doc_id": "a", "conflicts": True})["n"] == 1
    deleted = client.ok(1, "delete", {"doc_id": posted["id"], "rev": posted["rev"]})
    assert deleted["rev"].startswith("2-")
    replicated = client.ok(1, "bulk_docs", {"new_edits": False, "docs": [
        {"_id": "b", "_rev": "1-abc", "_revisions": {"start": 1, "ids": ["abc"]}, "x": 1}]})
    assert replicated == []
    written = client.ok(1, "bulk_docs", {"docs": [{"_id": "c"}, {"_id": "a", "n": 9}]})
    assert written[0]["ok"] and written[1]["error"] == "conflict"
    rows = client.ok(1, "all_docs", {"include_docs": True})["rows"]
    assert [r["id"] for r in rows] == ["a", "b", "c"] and rows[1]["doc"]["x"] == 1
    feed = client.ok(1, "changes", {"since": 0, "style": "all_docs", "include_docs": True})
    assert {r["id"] for r in feed["results"]} >= {"a", "b", "c"}
    assert client.ok(1, "changes", {"since": feed["last_seq"]})["results"] == []
    diff = client.ok(1, "revs_diff", {"revs": {"a": [a["rev"], "2-zzz"], "q": ["1-q"]}})
    assert diff["a"]["missing"] == ["2-zzz"] and diff["q"]["missing"] == ["1-q"]
    got = client.ok(1, "bulk_get", {"docs": [{"id": "a", "rev": a["rev"]}, {"id": "b"}], "revs": True})
    assert got["results"][0]["docs"][0]["ok"]["_id"] == "a"
    assert got["results"][0]["docs"][0]["ok"]["_revisions"]["start"] == 1
    data = bytes(range(256)) * 4
    att = client.ok(1, "put", {"doc": {"_id": "att", "_attachments": {"blob.bin": {
        "content_type": "application/octet-stream", "data": base64.b64encode(data).decode()}}}})
    blob = client.ok(1, "get_attachment", {"doc_id": "att", "name": "blob.bin", "rev": att["rev"]})
    assert base64.b64decode(blob["data"]) == data
    local = client.ok(1, "put", {"doc": {"_id": "_local/cp", "last_seq": 3}})
    assert local["ok"] and client.ok(1, "get", {"doc_id": "_local/cp"})["last_seq"] == 3


def test_database_errors_travel_as_status_error_reason(clients) -> None:
    client = clients()
    client.open(1, "todos")
    assert client.error(1, "get", {"doc_id": "nope"}) == {
        "status": 404, "error": "not_found", "reason": "missing"}
    client.ok(1, "put", {"doc": {"_id": "a"}})
    conflict = client.error(1, "put", {"doc": {"_id": "a"}})
    assert (conflict["status"], conflict["error"]) == (409, "conflict")
    assert client.error(1, "get_attachment", {"doc_id": "a", "name": "x"})["status"] == 404


@pytest.mark.parametrize("op, args, reason", [
    ("destroy", {}, "unknown op 'destroy'"),
    ("compact", {}, "unknown op 'compact'"),
    ("close", {}, "unknown op 'close'"),
    ("__class__", {}, "unknown op '__class__'"),
    ("_writing", {}, "unknown op '_writing'"),
    ("get", {"doc_id": "a", "evil": "__import__('os')"}, "unknown argument 'evil' for get"),
    ("get", {"doc_id": ["a"]}, "argument 'doc_id' of get must be a string"),
    ("all_docs", {"limit": "10"}, "argument 'limit' of all_docs must be an integer >= 0"),
    ("changes", {"feed": "continuous"}, "argument 'feed' of changes must be"),
    ("put", {}, "put needs the argument 'doc'"),
])
def test_allow_list_refuses_everything_else(clients, dbs, op, args, reason) -> None:
    client = clients()
    client.open(1, "todos")
    err = client.error(1, op, args)
    assert err["status"] == 400 and err["error"] == "bad_request" and reason in err["reason"]
    assert client.ok(1, "info")["db_name"] == "todos"  # the database is untouched
    assert not dbs.dbs["todos"]._closed


def test_read_only_grant_refuses_writes_except_local_docs(clients, dbs) -> None:
    dbs.read_only.add("ro")
    dbs.db("ro").put({"_id": "existing"})
    client = clients()
    assert client.open(1, "ro")["read_only"] is True
    for op, args in [("put", {"doc": {"_id": "x"}}), ("post", {"doc": {}}),
                     ("delete", {"doc_id": "existing", "rev": "1-x"})]:
        err = client.error(1, op, args)
        assert (err["status"], err["error"]) == (403, "forbidden"), op
        assert "read-only" in err["reason"]
    assert client.ok(1, "put", {"doc": {"_id": "_local/checkpoint", "seq": 1}})["ok"]
    results = client.ok(1, "bulk_docs", {"docs": [{"_id": "_local/c2"}, {"_id": "y"}]})
    assert results[0]["ok"] and results[1] == {
        "id": "y", "error": "forbidden", "reason": "this database is granted read-only"}
    assert client.ok(1, "get", {"doc_id": "existing"})["_id"] == "existing"
    assert dbs.db("ro").all_docs()["total_rows"] == 1


def test_design_writes_refused_unless_granted(clients, dbs) -> None:
    dbs.design.add("designable")
    client = clients()
    client.open(1, "todos")
    client.open(2, "designable")
    design = {"_id": "_design/app", "views": {}}
    err = client.error(1, "put", {"doc": design})
    assert (err["status"], err["reason"]) == (403, "writes to design documents are not allowed")
    replicated = client.ok(1, "bulk_docs", {"new_edits": False, "docs": [
        {"_id": "_design/x", "_rev": "1-a", "_revisions": {"start": 1, "ids": ["a"]}},
        {"_id": "plain", "_rev": "1-b", "_revisions": {"start": 1, "ids": ["b"]}}]})
    assert replicated == [{"id": "_design/x", "rev": "1-a", "error": "forbidden",
                           "reason": "writes to design documents are not allowed"}]
    assert client.ok(1, "get", {"doc_id": "plain"})["_rev"] == "1-b"
    assert client.ok(2, "put", {"doc": design})["ok"]


def _replicated(doc_id: str, h: str) -> dict[str, Any]:
    return {"_id": doc_id, "_rev": f"1-{h}", "_revisions": {"start": 1, "ids": [h]}, "v": h}


def test_write_missing_answers_positions_and_refusals(clients, dbs) -> None:
    dbs.read_only.add("ro")
    dbs.db("todos").bulk_docs([_replicated("had", "a")], new_edits=False)
    client = clients()
    client.open(1, "todos")
    client.open(2, "ro")
    docs = [_replicated("had", "a"), _replicated("new", "b"), _replicated("had", "c"),
            _replicated("_design/d", "e")]
    answer = client.ok(1, "write_missing", {"docs": docs})
    assert answer == {"written": [1, 2], "failures": [
        {"id": "_design/d", "rev": "1-e", "error": "forbidden",
         "reason": "writes to design documents are not allowed"}]}
    assert dbs.db("todos").get("had", conflicts=True)["_conflicts"] == ["1-a"]
    assert client.ok(1, "write_missing", {"docs": docs[:3]}) == {"written": [], "failures": []}
    # read-only: every doc it lacks refused but _local ones, nothing written; one it
    # has already (e.g. pulled from it) is just not missing
    dbs.db("ro").bulk_docs([_replicated("there", "h")], new_edits=False)
    answer = client.ok(2, "write_missing", {"docs": [_replicated("x", "f"),
                                                     {"_id": "_local/cp", "seq": 1},
                                                     _replicated("there", "h")]})
    assert answer["written"] == [1]
    assert [(f["id"], f["error"]) for f in answer["failures"]] == [("x", "forbidden")]
    assert dbs.db("ro").info()["doc_count"] == 1
    # bad input: the whole call is refused, nothing written
    err = client.error(1, "write_missing", {"docs": [_replicated("ok", "g"), {"_id": "norev"}]})
    assert (err["status"], err["error"]) == (400, "bad_request")
    err = client.error(1, "write_missing", {"docs": "nope"})
    assert err["status"] == 400 and "docs" in err["reason"]
    assert dbs.db("todos").revs_diff({"ok": ["1-g"]}) == {"ok": {"missing": ["1-g"]}}


def test_write_missing_texts_answers_positions_and_refusals(clients, dbs) -> None:
    dbs.read_only.add("ro")
    dbs.db("todos").bulk_docs([_replicated("had", "a")], new_edits=False)
    client = clients()
    client.open(1, "todos")
    client.open(2, "ro")
    rows = [["had", "1-a", '{"v":"a"}'], ["new", "1-b", '{"v":"b"}'],
            ["had", "1-c", '{"v":"c"}'], ["_design/d", "1-e", "{}"]]
    answer = client.ok(1, "write_missing_texts", {"rows": rows})
    assert answer == {"written": [1, 2], "failures": [
        {"id": "_design/d", "rev": "1-e", "error": "forbidden",
         "reason": "writes to design documents are not allowed"}]}
    assert dbs.db("todos").get("had", conflicts=True)["_conflicts"] == ["1-a"]
    assert dbs.db("todos").get("new")["v"] == "b"
    # without a design doc nothing is refused: the rows go to the store as they are
    assert client.ok(1, "write_missing_texts", {"rows": rows[:3]}) == {"written": [],
                                                                        "failures": []}
    # read-only: every revision it lacks refused, nothing written; one it has is not missing
    dbs.db("ro").bulk_docs([_replicated("there", "h")], new_edits=False)
    answer = client.ok(2, "write_missing_texts", {"rows": [["x", "1-f", "{}"],
                                                           ["there", "1-h", '{"v":"h"}']]})
    assert answer["written"] == []
    assert [(f["id"], f["error"]) for f in answer["failures"]] == [("x", "forbidden")]
    assert dbs.db("ro").info()["doc_count"] == 1
    # bad input: the whole call is refused, nothing written
    err = client.error(1, "write_missing_texts", {"rows": [["ok", "1-g", "{}"], ["bad", "2-x", "{}"]]})
    assert (err["status"], err["error"]) == (400, "bad_request") and "row 1" in err["reason"]
    err = client.error(1, "write_missing_texts", {"rows": [["ok", "1-g", '{"_x": 1}']]})
    assert err["status"] == 400 and "_x" in err["reason"]
    err = client.error(1, "write_missing_texts", {"rows": "nope"})
    assert err["status"] == 400 and "rows" in err["reason"]
    assert dbs.db("todos").revs_diff({"ok": ["1-g"]}) == {"ok": {"missing": ["1-g"]}}
    # and the read: texts for the first-generation docs, leaves for the others
    answer = client.ok(1, "changes_texts", {"since": 0, "max_bytes": 1000})
    assert [(row[1], row[4]) for row in answer["results"]] == [("new", '{"v":"b"}'),
                                                               ("had", None)]
    assert client.error(1, "changes_texts", {"max_bytes": -1})["status"] == 400


def test_unexpected_database_error_is_a_generic_500(clients, dbs, caplog) -> None:
    class Exploding(ps.LocalDatabase):
        def info(self) -> dict[str, Any]:
            raise RuntimeError("secret internal detail")

    dbs.dbs["exploding"] = Exploding(":memory:", name="exploding")
    client = clients()
    client.open(1, "exploding")
    with caplog.at_level("ERROR", logger="pouchsync_sync.server"):
        err = client.error(1, "info")
    assert err == {"status": 500, "error": "internal_server_error", "reason": "internal server error"}
    assert any("secret internal detail" in (r.exc_text or "") or r.exc_info for r in caplog.records)
    assert client.ok(1, "all_docs")["total_rows"] == 0


def test_pipelined_calls_on_several_channels(clients) -> None:
    client = clients()
    client.open(1, "a")
    client.open(2, "b")
    ids = {}
    for i in range(20):
        ch = 1 + i % 2
        ids[client.start_call(ch, "put", {"doc": {"_id": f"d{i}"}})] = ch
    for call_id, ch in ids.items():
        reply = client.expect(type="reply", id=call_id)
        assert reply["ch"] == ch and reply["ok"]["ok"]
    assert client.ok(1, "info")["doc_count"] == 10 and client.ok(2, "info")["doc_count"] == 10


def test_reused_call_id_in_flight_is_an_error(clients) -> None:
    client = clients()
    client.open(1, "todos")
    client.send(m.call(1, 500, "changes", {"feed": "longpoll", "since": "now", "timeout": 5}))
    client.send(m.call(1, 500, "info"))
    err = client.expect(type="error")
    assert (err["ch"], err["id"]) == (1, 500) and "already in flight" in err["reason"]


def test_max_calls_in_flight(make_server) -> None:
    server = make_server(max_calls=2)
    client = RawPeer(server.url, credentials=TOKEN)
    try:
        client.open(1, "todos")
        for call_id in (1, 2):
            client.send(m.call(1, call_id, "changes", {"feed": "longpoll", "since": "now", "timeout": 30}))
        client.send(m.call(1, 3, "info"))
        err = client.expect(type="reply", id=3)["error"]
        assert (err["status"], err["error"]) == (429, "too_many_requests")
        client.send(m.close(1))
        client.expect(type="closed", ch=1)
        client.open(2, "todos")
        assert _eventually(lambda: server.stats()["calls_in_flight"] == 0)
        assert client.ok(2, "info")["db_name"] == "todos"
    finally:
        client.close()


# -- bad input ----------------------------------------------------------------------------------

def test_bad_input_gets_errors_and_the_server_keeps_serving(server, clients) -> None:
    client = clients()
    client.open(1, "todos")
    for frame, reason in [
        ("{not json", "malformed JSON"),
        ("[]", "must be a JSON object"),
        ('{"type": "frobnicate"}', "unknown message type 'frobnicate'"),
        ('{"type": "call", "ch": "1", "id": 1}', "'ch' must be an integer"),
        ('{"type": "hello", "versions": [1]}', "cannot receive 'hello'"),
        ('{"type": "granted", "ch": 1, "db": "x", "uuid": "u"}', "does not send 'granted'"),
        ('{"type": "open", "ch": 1, "db": "todos"}', "already in use"),
        ('{"type": "subscribe", "ch": 1, "sub": 1, "bogus": 1}', "unknown field 'bogus'"),
    ]:
        client.send(frame)
        err = client.expect(type="error")
        assert err["status"] == 400 and reason in err["reason"], (frame, err)
    client.send(b"\x00\x01binary")
    assert "binary frames" in client.expect(type="error")["reason"]
    client.send("\udcff".encode("utf-8", "surrogatepass"), opcode=TEXT)
    client.expect_close()  # invalid UTF-8 in a text frame: the transport closes this socket
    other = RawPeer(server.url, credentials=TOKEN)
    try:
        other.open(1, "todos")
        assert other.ok(1, "info")["db_name"] == "todos"
    finally:
        other.close()


def test_oversize_message_closes_with_1009_and_others_keep_working(make_server, caplog) -> None:
    server = make_server(max_message_size=10_000)
    big, small = RawPeer(server.url, credentials=TOKEN), RawPeer(server.url, credentials=TOKEN)
    try:
        with caplog.at_level("INFO"):
            big.open(1, "todos")
            big.send(m.call(1, 1, "put", {"doc": {"_id": "x", "pad": "x" * 20_000}}))
            assert big.expect_close() == [] and big.close_code == 1009
            small.open(1, "todos")
            assert small.ok(1, "put", {"doc": {"_id": "ok", "pad": "x" * 5_000}})["ok"]
            assert _eventually(lambda: server.stats()["connections"] == 1)
        # the closed socket's leftover bytes (the client's close frame) were not read
        # by the WSGI server as a next HTTP request
        assert not [r for r in caplog.records if "Bad request" in r.getMessage()]
    finally:
        big.close()
        small.close()


def test_too_many_errors_close_the_socket(make_server) -> None:
    server = make_server(max_errors=3)
    client = RawPeer(server.url, credentials=TOKEN)
    try:
        for _ in range(3):
            client.send("nope")
        errors = client.expect_close()
        assert len(errors) == 3 and errors[-1]["fatal"] is True
        assert "too many errors" in errors[-1]["reason"] and client.close_code == 1008
    finally:
        client.close()


def test_credentials_are_never_logged(clients, caplog) -> None:
    with caplog.at_level("DEBUG", logger="pouchsync_sync"):
        client = clients()
        client.open(1, "todos")
        client.open(2, "todos", {"token": "another-secret"})
        client.ok(1, "info")
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "channel 1 granted 'todos'" in text and "denied" in text
    assert TOKEN["token"] not in text and "another-secret" not in text


# -- lifecycle ----------------------------------------------------------------------------------

def test_stop_closes_every_socket_with_1001_and_joins_threads(dbs) -> None:
    server = ps.create_server(dbs.on_request).start()
    clients = [RawPeer(server.url, credentials=TOKEN) for _ in range(3)]
    try:
        for client in clients:
            client.open(1, "todos")
            client.send(m.subscribe(1, 1, since="now"))
            client.send(m.call(1, 9, "changes", {"feed": "longpoll", "since": "now", "timeout": 30}))
        assert _eventually(lambda: server.stats()["subscriptions"] == 3)
        server.stop()
        for client in clients:
            client.expect_close()
            assert client.close_code == 1001
        assert server.stats()["connections"] == 0 and server.stats()["followers"] == 0
        server.stop()  # idempotent
    finally:
        for client in clients:
            client.close()
    leftover = [t.name for t in threading.enumerate() if t.name.startswith("pouchsync")]
    assert leftover == []


def test_context_manager_and_serve_forever(dbs) -> None:
    with ps.create_server(dbs.on_request).start() as server:
        client = RawPeer(server.url, credentials=TOKEN)
        client.open(1, "todos")
        client.close()
    server = ps.create_server(dbs.on_request)
    runner = threading.Thread(target=server.serve_forever, args=("127.0.0.1", 0),
                              name="pouchsync-test-serve-forever")
    runner.start()
    try:
        assert _eventually(lambda: server.url is not None)
        client = RawPeer(server.url, credentials=TOKEN)
        assert client.open(1, "todos")["type"] == "granted"
        client.close()
    finally:
        server.stop()
        runner.join(WAIT)
    assert not runner.is_alive()


def test_flask_mount_next_to_an_ordinary_route(dbs) -> None:
    flask = pytest.importorskip("flask")
    import requests
    from werkzeug.serving import make_server

    app = flask.Flask("pouchsync-test")

    @app.route("/hello")
    def hello() -> str:
        return "hello from flask"

    server = ps.create_server(dbs.on_request).init_app(app, path="/sync")
    http = make_server("127.0.0.1", 0, app, threaded=True)
    runner = threading.Thread(target=http.serve_forever, name="pouchsync-test-flask")
    runner.start()
    try:
        base = f"127.0.0.1:{http.server_port}"
        assert requests.get(f"http://{base}/hello", timeout=WAIT).text == "hello from flask"
        assert requests.get(f"http://{base}/nothing", timeout=WAIT).status_code == 404
        client = RawPeer(f"ws://{base}/sync", credentials=TOKEN)
        assert client.open(1, "todos")["type"] == "granted"
        assert client.ok(1, "put", {"doc": {"_id": "via-flask"}})["ok"]
        server.stop()
        client.expect_close()
        assert client.close_code == 1001
        client.close()
    finally:
        server.stop()
        http.shutdown()
        http.server_close()
        runner.join(WAIT)
    assert dbs.dbs["todos"].get("via-flask")["_id"] == "via-flask"


def test_unknown_server_option_is_a_type_error(dbs) -> None:
    with pytest.raises(TypeError, match="unknown server option 'max_chanels'"):
        ps.create_server(dbs.on_request, max_chanels=3)
    with pytest.raises(ValueError, match="max_channels"):
        ps.create_server(dbs.on_request, max_channels=0)


def test_peer_that_stops_reading_is_closed_after_send_timeout(make_server, dbs) -> None:
    server = make_server(send_timeout=0.5, max_calls=500)
    dbs.db("big").put({"_id": "big", "pad": "x" * 1_000_000})
    stuck = RawPeer(server.url, credentials=TOKEN)
    try:
        stuck.open(1, "big")
        for call_id in range(1, 201):  # ~200 MB of replies, far beyond the socket buffers
            stuck.send(m.call(1, call_id, "get", {"doc_id": "big"}))
        assert _eventually(lambda: server.stats()["connections"] == 0, timeout=20)
        other = RawPeer(server.url, credentials=TOKEN)
        try:
            other.open(1, "big")
            assert other.ok(1, "info")["doc_count"] == 1
        finally:
            other.close()
    finally:
        stuck.close()


def test_silent_tcp_peer_is_dropped_after_hello_timeout(make_server) -> None:
    import socket as socket_module

    server = make_server(hello_timeout=0.3)
    port = int(server.url.rstrip("/").rsplit(":", 1)[1])
    with socket_module.create_connection(("127.0.0.1", port), timeout=WAIT) as silent:
        assert silent.recv(100) == b""  # closed by the server, no HTTP request ever sent
    with socket_module.create_connection(("127.0.0.1", port), timeout=WAIT) as half:
        half.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and never the end of the headers
        data = half.recv(1000)
        assert data == b"" or b"408" in data or b"400" in data
    client = RawPeer(server.url, credentials=TOKEN)  # the WebSocket itself has no timeout
    try:
        client.open(1, "todos")
        threading.Event().wait(0.6)
        assert client.ok(1, "info")["db_name"] == "todos"
    finally:
        client.close()
