"""Protocol v1 messages and the op allow-list: decoding, validation, encoding."""

from __future__ import annotations

import base64
import json

import pytest

from pouchsync_sync import jsoncodec
from pouchsync_sync.errors import BadRequest, ProtocolError
from pouchsync_sync.protocol import BadMessage, decode, encode, validate_call
from pouchsync_sync.protocol import messages as m
from pouchsync_sync.protocol import ops


def test_encode_decode_round_trip_is_compact_json() -> None:
    msg = m.call(1, 2, "bulk_docs", {"docs": [{"_id": "é", "n": 1}], "new_edits": False})
    text = encode(msg)
    assert isinstance(text, str) and " " not in text.replace("é", "")
    assert json.loads(text) == msg
    assert decode(text, sender="client") == msg


@pytest.mark.parametrize("frame, reason", [
    ("{nope", "malformed JSON"),
    ("", "malformed JSON"),
    ("[1, 2]", "must be a JSON object"),
    ('"hello"', "must be a JSON object"),
    ('{"versions": [1]}', 'string "type"'),
    ('{"type": 5}', 'string "type"'),
    ('{"type": "frobnicate"}', "unknown message type 'frobnicate'"),
    ('{"type": "hello"}', "needs a 'versions'"),
    ('{"type": "hello", "versions": []}', "non-empty list"),
    ('{"type": "hello", "versions": ["1"]}', "non-empty list"),
    ('{"type": "open", "ch": 0, "db": "x"}', "'ch' must be an integer"),
    ('{"type": "open", "ch": 1.5, "db": "x"}', "'ch' must be an integer"),
    ('{"type": "open", "ch": true, "db": "x"}', "'ch' must be an integer"),
    ('{"type": "open", "ch": 1, "db": ""}', "'db' must be a non-empty string"),
    ('{"type": "open", "ch": 1}', "needs a 'db'"),
    ('{"type": "call", "ch": 1}', "needs a 'id'"),
    ('{"type": "subscribe", "ch": 1, "sub": 1, "style": "x"}', "'style' must be"),
    ('{"type": "subscribe", "ch": 1, "sub": 1, "feed": "continuous"}', "unknown field 'feed'"),
    ('{"type": "welcome", "version": 1, "limits": {}}', "a client does not send 'welcome'"),
])
def test_bad_frames_from_a_client(frame: str, reason: str) -> None:
    with pytest.raises(BadMessage) as info:
        decode(frame, sender="client")
    assert reason in info.value.reason
    assert info.value.status == 400 and info.value.error == "bad_request"
    assert isinstance(info.value, ProtocolError)


def test_binary_frame_is_refused() -> None:
    with pytest.raises(BadMessage, match="binary frames"):
        decode(b'{"type": "hello", "versions": [1]}', sender="client")


def test_bad_message_points_at_channel_call_and_sub() -> None:
    with pytest.raises(BadMessage) as info:
        decode('{"type": "subscribe", "ch": 4, "sub": 2, "include_docs": "yes"}', sender="client")
    assert (info.value.ch, info.value.sub) == (4, 2)
    err = info.value.to_message()
    assert err["type"] == "error" and err["ch"] == 4 and err["sub"] == 2
    assert m.validate(err, sender="server") == {**err, "id": None, "fatal": None}


def test_defaults_filled_and_input_not_mutated() -> None:
    raw = {"type": "open", "ch": 1, "db": "todos"}
    msg = m.validate(raw, sender="client")
    assert msg["credentials"] is None and raw == {"type": "open", "ch": 1, "db": "todos"}


def test_reply_needs_exactly_one_outcome() -> None:
    with pytest.raises(BadMessage, match="exactly one"):
        decode('{"type": "reply", "ch": 1, "id": 1}', sender="server")
    with pytest.raises(BadMessage, match="exactly one"):
        decode('{"type": "reply", "ch": 1, "id": 1, "ok": 1, "error": {}}', sender="server")
    assert decode('{"type": "reply", "ch": 1, "id": 1, "ok": null}', sender="server")["ok"] is None


def test_changes_needs_results_or_error() -> None:
    with pytest.raises(BadMessage, match="either"):
        decode('{"type": "changes", "ch": 1, "sub": 1}', sender="server")
    msg = decode('{"type": "changes", "ch": 1, "sub": 1, "results": [], "last_seq": "9-g"}',
                 sender="server")
    assert msg["last_seq"] == "9-g"


def test_ids_in_javascript_safe_range() -> None:
    decode(encode(m.close(m.MAX_ID)), sender="client")
    with pytest.raises(BadMessage):
        decode(encode(m.close(m.MAX_ID + 1)), sender="client")


# -- ops ----------------------------------------------------------------------------------

def test_every_allowed_op_validates_its_arguments() -> None:
    assert set(ops.OPS) == {"info", "get", "put", "post", "delete", "bulk_docs", "all_docs",
                            "changes", "revs_diff", "bulk_get", "get_attachment",
                            "write_missing", "write_missing_texts", "changes_texts"}
    assert "write_missing" in ops.WRITE_OPS
    assert "write_missing_texts" in ops.WRITE_OPS and "changes_texts" not in ops.WRITE_OPS
    rows = [["a", "1-x", "{}"], ["b", "1-y", "{\"v\":1}"]]
    assert validate_call("write_missing_texts", {"rows": rows}) == {"rows": rows}
    assert validate_call("changes_texts", {"since": 3, "limit": 10, "max_bytes": 0}) == {
        "since": 3, "limit": 10, "max_bytes": 0}
    assert validate_call("write_missing", {"docs": [{"_id": "a"}]}) == {"docs": [{"_id": "a"}]}
    assert validate_call("info", None) == {}
    assert validate_call("get", {"doc_id": "a", "conflicts": True, "rev": None}) == {
        "doc_id": "a", "conflicts": True}
    assert validate_call("get", {"doc_id": "a", "open_revs": "all"})["open_revs"] == "all"
    assert validate_call("changes", {"since": "3-x", "feed": "longpoll", "timeout": 2.5,
                                     "style": "all_docs"})["timeout"] == 2.5
    assert validate_call("revs_diff", {"revs": {"a": ["1-x"]}}) == {"revs": {"a": ["1-x"]}}


@pytest.mark.parametrize("op, args, reason", [
    ("destroy", {}, "unknown op 'destroy'"),
    ("compact", {}, "unknown op 'compact'"),
    ("__class__", {}, "unknown op '__class__'"),
    ("_Database__x", {}, "unknown op"),
    (None, {}, "string 'op'"),
    (["get"], {}, "string 'op'"),
    ("get", [], "must be an object"),
    ("get", {}, "needs the argument 'doc_id'"),
    ("get", {"doc_id": "a", "foo": 1}, "unknown argument 'foo' for get"),
    ("get", {"doc_id": 5}, "argument 'doc_id' of get must be a string"),
    ("get", {"doc_id": "a", "conflicts": 1}, "'conflicts' of get must be true or false"),
    ("get", {"doc_id": "a", "open_revs": "some"}, "'open_revs'"),
    ("put", {"doc": "not a doc"}, "'doc' of put must be an object"),
    ("delete", {"doc_id": "a"}, "needs the argument 'rev'"),
    ("bulk_docs", {"docs": [1]}, "list of objects"),
    ("write_missing_texts", {}, "needs the argument 'rows'"),
    ("write_missing_texts", {"rows": {"a": 1}}, "list of [id, rev, text] rows"),
    ("write_missing_texts", {"rows": [["a", "1-x"]]}, "list of [id, rev, text] rows"),
    ("write_missing_texts", {"rows": [{"id": "a"}]}, "list of [id, rev, text] rows"),
    ("changes_texts", {"max_bytes": -1}, "'max_bytes' of changes_texts must be an integer >= 0"),
    ("changes_texts", {"max_bytes": True}, "'max_bytes' of changes_texts"),
    ("changes_texts", {"limit": 1.5}, "'limit' of changes_texts"),
    ("changes_texts", {"include_docs": True}, "unknown argument 'include_docs' for changes_texts"),
    ("all_docs", {"limit": -1}, "integer >= 0"),
    ("all_docs", {"limit": True}, "integer >= 0"),
    ("changes", {"feed": "continuous"}, '"normal" or "longpoll"'),
    ("changes", {"timeout": "soon"}, "number >= 0"),
    ("revs_diff", {"revs": {"a": "1-x"}}, "id -> list of revs"),
    ("get_attachment", {"doc_id": "a"}, "needs the argument 'name'"),
])
def test_bad_calls_are_bad_requests_naming_the_problem(op, args, reason) -> None:
    with pytest.raises(BadRequest) as info:
        validate_call(op, args)
    assert reason in info.value.reason and info.value.status == 400


def test_written_ids() -> None:
    assert ops.written_ids("put", {"doc": {"_id": "_local/x"}}) == ["_local/x"]
    assert ops.written_ids("post", {"doc": {}}) == [None]
    assert ops.written_ids("delete", {"doc_id": "a", "rev": "1-x"}) == ["a"]
    assert ops.written_ids("bulk_docs", {"docs": [{"_id": "a"}, {"_id": 3}]}) == ["a", None]
    assert ops.written_ids("get", {"doc_id": "a"}) == []


def test_attachment_bytes_travel_as_base64() -> None:
    data = bytes(range(256))
    ok = ops.encode_result("get_attachment", data)
    assert ok == {"data": base64.b64encode(data).decode()}
    assert ops.decode_result("get_attachment", json.loads(json.dumps(ok))) == data
    assert ops.decode_result("info", {"x": 1}) == {"x": 1}
    with pytest.raises(ProtocolError):
        ops.decode_result("get_attachment", {"data": "*not base64*"})


@pytest.mark.parametrize("value", [2**64 + 1, -(2**63) - 1, 10**30, -(10**40), 2**64 - 1,
                                   -(2**63), 2**63])
def test_integers_beyond_64_bits_keep_their_digits_across_the_wire(value: int) -> None:
    """orjson writes none and reads one as a float: frames still carry them exactly."""
    msg = m.call(1, 2, "put", {"doc": {"_id": "n", "n": value, "l": [1, value]}})
    for frame in (m.encode(msg), m.encode_bytes(msg), json.dumps(msg, indent=1)):
        back = m.decode_payload(frame, sender="client")
        assert back == msg and type(back["args"]["doc"]["n"]) is int


def test_digits_in_strings_are_left_as_they_are() -> None:
    for text in ('{"a":"1-%s"}' % ("7" * 30), '{"a":"x,%s"}' % ("7" * 30), '[1.5e300]'):
        assert jsoncodec.loads(text) == json.loads(text)


def test_malformed_frames_are_bad_messages() -> None:
    for bad in ("{bad", "[1e400]", "NaN", '{"type":"hello",'):
        with pytest.raises(m.BadMessage, match="malformed JSON"):
            m.decode(bad, sender="client")


def test_a_text_frame_payload_is_parsed_as_utf8_bytes() -> None:
    text = '{"type":"error","status":400,"error":"x","reason":"caf\u00e9"}'
    for payload in (text, text.encode("utf-8"), bytearray(text.encode("utf-8"))):
        assert m.decode_payload(payload, sender="server")["reason"] == "caf\u00e9"
    for bad in (b"\xff\xfe", b'{"type":"error","reason":"\xed\xa0\x80"}', b"{", b"[1]",
                b'{"type":"nope"}'):
        with pytest.raises(m.BadMessage):
            m.decode_payload(bad, sender="server")
