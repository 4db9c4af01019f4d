"""Hostile documents over the wire: each refusal is a clear 4xx error and nothing of the
refused document is written (the server's store is checked after every attempt)."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest

from pouchsync_sync import BadRequest, Grant, LocalDatabase
from tests.rawpeer import RawPeer

from .helpers import TOKEN

GOOD_DATA = base64.b64encode(b"hello").decode()
GOOD_DIGEST = "md5-" + base64.b64encode(hashlib.md5(b"hello").digest()).decode()


def _att(**fields: Any) -> dict[str, Any]:
    return {"_id": "att", "_attachments": {"x.txt": {"content_type": "text/plain", **fields}}}


def _replicated(doc: dict[str, Any], rev: str = "1-abc", revisions: Any = None) -> dict[str, Any]:
    pos, rev_id = rev.split("-", 1)
    return {**doc, "_rev": rev, "_revisions": revisions if revisions is not None
            else {"start": int(pos), "ids": [rev_id]}}


# name -> (op, args); every one must be refused with a 4xx and write nothing
REFUSED: dict[str, tuple[str, dict[str, Any]]] = {
    "design put": ("put", {"doc": {"_id": "_design/app", "views": {}}}),
    "design bulk": ("bulk_docs", {"docs": [{"_id": "_design/app"}]}),
    "design replicated": ("bulk_docs", {"docs": [_replicated({"_id": "_design/app"})], "new_edits": False}),
    "design delete": ("delete", {"doc_id": "_design/app", "rev": "1-abc"}),
    "rev garbage": ("put", {"doc": {"_id": "r", "_rev": "garbage"}}),
    "rev zero": ("put", {"doc": {"_id": "r", "_rev": "0-abc"}}),
    "rev no hash": ("put", {"doc": {"_id": "r", "_rev": "1-"}}),
    "rev not a string": ("put", {"doc": {"_id": "r", "_rev": 5}}),
    "rev beyond 2**53": ("bulk_docs", {"docs": [_replicated({"_id": "r"}, rev=f"{2**60}-abc")], "new_edits": False}),
    "replicated without rev": ("bulk_docs", {"docs": [{"_id": "r"}], "new_edits": False}),
    "revisions start a string": ("bulk_docs", {"docs": [_replicated({"_id": "r"}, revisions={"start": "1", "ids": ["abc"]})], "new_edits": False}),
    "revisions not matching rev": ("bulk_docs", {"docs": [_replicated({"_id": "r"}, rev="2-abc", revisions={"start": 2, "ids": ["zzz", "y"]})], "new_edits": False}),
    "revisions ids not strings": ("bulk_docs", {"docs": [_replicated({"_id": "r"}, revisions={"start": 1, "ids": [1]})], "new_edits": False}),
    "revisions empty ids": ("bulk_docs", {"docs": [_replicated({"_id": "r"}, revisions={"start": 1, "ids": []})], "new_edits": False}),
    "revisions too long": ("bulk_docs", {"docs": [_replicated({"_id": "r"}, rev="2-abc", revisions={"start": 2, "ids": ["abc", "b", "c"]})], "new_edits": False}),
    "revisions a list": ("bulk_docs", {"docs": [_replicated({"_id": "r"}, revisions=["abc"])], "new_edits": False}),
    "attachment bad base64": ("put", {"doc": _att(data="!!!not base64")}),
    "attachment bad padding": ("put", {"doc": _att(data="aGVsbG8")}),
    "attachment lying length": ("put", {"doc": _att(data=GOOD_DATA, length=999)}),
    "attachment lying digest": ("put", {"doc": _att(data=GOOD_DATA, digest="md5-AAAAAAAAAAAAAAAAAAAAAA==")}),
    "attachment lying digest, replicated": ("bulk_docs", {"docs": [_replicated(_att(data=GOOD_DATA, digest="md5-AAAAAAAAAAAAAAAAAAAAAA=="))], "new_edits": False}),
    "attachment data not a string": ("put", {"doc": _att(data=5)}),
    "attachment not an object": ("put", {"doc": {"_id": "att", "_attachments": {"x": 5}}}),
    "attachments a list": ("put", {"doc": {"_id": "att", "_attachments": [1]}}),
    "attachment stub we lack": ("put", {"doc": _att(stub=True, digest=GOOD_DIGEST)}),
    "underscore id": ("put", {"doc": {"_id": "_secret"}}),
    "empty id": ("put", {"doc": {"_id": ""}}),
    "id not a string": ("put", {"doc": {"_id": 5}}),
    "reserved field": ("put", {"doc": {"_id": "f", "_frob": 1}}),
    "since garbage": ("changes", {"since": "garbage"}),
    "since an object": ("changes", {"since": {"seq": 1}}),
    "selector unknown operator": ("changes", {"selector": {"a": {"$frob": 1}}}),
    "selector operator at top": ("changes", {"selector": {"$eq": 1}}),
    "selector regex not a string": ("changes", {"selector": {"a": {"$regex": 5}}}),
    "selector $in not a list": ("changes", {"selector": {"a": {"$in": 5}}}),
}


@pytest.fixture
def store(tmp_path) -> Any:
    db = LocalDatabase(tmp_path / "docs.sqlite", name="docs")
    db.put({"_id": "existing", "v": 1})
    yield db
    db.close()


@pytest.fixture
def peer(servers, store) -> Any:
    def on_request(credentials: Any, name: str) -> Any:
        if name == "design-ok":
            return Grant(store, allow_design=True)
        if name == "read-only":
            return Grant(store, read_only=True)
        return store

    server = servers(on_request)
    p = RawPeer(server.url)
    for ch, name in ((1, "docs"), (2, "design-ok"), (3, "read-only")):
        p.send({"type": "open", "ch": ch, "db": name, "credentials": TOKEN})
        assert p.until(lambda m, ch=ch: m.get("ch") == ch)[0]["type"] == "granted"
    yield p
    p.close()


_ids = iter(range(1, 10**9))


def call(peer: RawPeer, ch: int, op: str, args: dict[str, Any]) -> dict[str, Any]:
    call_id = next(_ids)
    peer.send({"type": "call", "ch": ch, "id": call_id, "op": op, "args": args})
    reply, _ = peer.until(lambda m: m.get("type") in ("reply", "error") and m.get("id") == call_id)
    assert isinstance(reply, dict), reply
    return reply


def _refusals(reply: dict[str, Any]) -> list[dict[str, Any]]:
    """The errors in a reply: the call's own, or bulk_docs' per-document ones."""
    if "error" in reply:
        return [reply["error"] if isinstance(reply["error"], dict) else reply]
    if isinstance(reply.get("ok"), list):
        return [r for r in reply["ok"] if "error" in r]
    return []


def _state(db: LocalDatabase) -> Any:
    info = db.info()
    return info["doc_count"], info["doc_del_count"], info["update_seq"], sorted(
        (r["id"], r["value"]["rev"]) for r in db.all_docs()["rows"])


@pytest.mark.parametrize("case", list(REFUSED))
def test_hostile_document_is_refused_with_nothing_written(peer, store, case: str) -> None:
    op, args = REFUSED[case]
    before = _state(store)
    reply = call(peer, 1, op, args)
    errors = _refusals(reply)
    assert errors, f"{case}: accepted: {reply}"
    for err in errors:
        status = err.get("status")
        if status is None:  # a bulk_docs per-document error: {"id", "error", "reason"}
            assert err["error"] in ("forbidden", "bad_request", "missing_stub", "conflict"), err
        else:
            assert 400 <= status < 500, f"{case}: {err}"
        assert err.get("reason"), f"{case}: an error without a reason: {err}"
    assert _state(store) == before, f"{case}: something was written"


def test_design_documents_are_written_only_when_granted(peer, store) -> None:
    reply = call(peer, 2, "put", {"doc": {"_id": "_design/app", "views": {}}})
    assert reply["ok"]["ok"] is True
    refused = call(peer, 1, "put", {"doc": {"_id": "_design/app", "_rev": reply["ok"]["rev"]}})
    assert refused["error"]["status"] == 403 and refused["error"]["error"] == "forbidden"
    assert store.get("_design/app")["_rev"] == reply["ok"]["rev"]


def test_bulk_docs_refuses_per_document_and_writes_the_rest(peer, store) -> None:
    reply = call(peer, 1, "bulk_docs", {"docs": [{"_id": "ok-1"}, {"_id": "_design/x"}, {"_id": "ok-2"}]})
    results = reply["ok"]
    assert [r.get("error") for r in results] == [None, "forbidden", None]
    assert store.get("ok-1") and store.get("ok-2")
    with pytest.raises(Exception):
        store.get("_design/x")


def test_read_only_grant_refuses_every_write_but_checkpoints(peer, store) -> None:
    before = _state(store)
    for op, args in (("put", {"doc": {"_id": "w"}}), ("post", {"doc": {"v": 1}}),
                     ("delete", {"doc_id": "existing", "rev": store.get("existing")["_rev"]}),
                     ("bulk_docs", {"docs": [{"_id": "w1"}, {"_id": "w2"}]}),
                     ("bulk_docs", {"docs": [_replicated({"_id": "w3"})], "new_edits": False})):
        errors = _refusals(call(peer, 3, op, args))
        assert errors and all((e.get("status") == 403 or e.get("error") == "forbidden") for e in errors), (op, errors)
    assert _state(store) == before
    ok = call(peer, 3, "put", {"doc": {"_id": "_local/checkpoint", "last_seq": 1}})
    assert ok["ok"]["ok"] is True
    assert call(peer, 3, "get", {"doc_id": "existing"})["ok"]["v"] == 1


def test_a_document_the_local_store_accepts_always_syncs(servers, clients, local) -> None:
    """A revision position the wire cannot carry exactly (JSON numbers beyond 2**53 are
    floats for orjson and JavaScript) must be refused when written, or it poisons every
    later sync of that database (the whole push fails with 400, forever)."""
    server_db = local("poison")
    server = servers(lambda credentials, name: server_db)
    a, b = local("poison"), local("poison")
    huge = f"{10**22}-abc"
    try:
        a.bulk_docs([_replicated({"_id": "huge"}, rev=huge)], new_edits=False)
        accepted = True
    except BadRequest:
        accepted = False
    a.put({"_id": "normal"})
    result_a = clients().connect(server.url).sync(a).wait(30)
    result_b = clients().connect(server.url).sync(b).wait(30)
    assert result_a.ok and result_b.ok
    assert b.get("normal")
    if accepted:
        assert b.get("huge")["_rev"] == huge
