"""Database names chosen by clients: ``on_request`` sees exactly what was sent, and no
name reaches another CouchDB resource or a file outside the data directory.

Three servers: one whose ``on_request`` only records; one backed by CouchDB
(``couch.database(name)``), with the tests' proxy recording every HTTP request line in
front of CouchDB; one with the CLI's embedded mapping (``DataDir``: one SQLite file per
name in a directory).
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from pouchsync_sync import CouchDB, Denied, create_server
from pouchsync_sync.datadir import DataDir
from pouchsync_sync.protocol.fields import MAX_DB_NAME
from tests.rawpeer import RawPeer

from .proxy import FaultProxy

BAD_NAMES = [
    "../_users", "_users", "_replicator", "a/b", "", "x" * 10_000, "café", "日本語",
    "%2e%2e%2f_users", "..%2f_users", "..%2F_users", "a%2fb", "%5f_users", "_users%00",
    "a\x00b", "a?b=c", "a#b", "/_users", "_users/", " _users", "_all_dbs", "_session",
    "..", ".", "a\\b", "/etc/passwd", "../../../tmp/evil", "a/../_users", "A",
    "a" * 238, "a" * 239, "db\n", "\u202e_users", "_design/x", "a//b", "a/./b",
    "_users?rev=1", "http://evil/", "a%00", "x" * (MAX_DB_NAME + 1), "valid-name",
]


def _open_all(url: str, calls: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """Open a channel per name on one socket (plus the given calls when granted);
    name -> the answer to the open."""
    peer = RawPeer(url)
    answers: dict[str, dict[str, Any]] = {}
    try:
        for ch, name in enumerate(BAD_NAMES, start=1):
            peer.send({"type": "open", "ch": ch, "db": name, "credentials": {"token": "t"}})
            answer, _ = peer.until(lambda m, ch=ch: m.get("ch") == ch and m.get("type") in
                                   ("granted", "denied", "error"))
            assert isinstance(answer, dict), answer
            answers[name] = answer
            if answer["type"] == "granted":
                for i, op in enumerate(calls, start=1):
                    args = {"doc_id": "some-doc"} if op == "get" else {}
                    peer.send({"type": "call", "ch": ch, "id": i, "op": op, "args": args})
                    reply, _ = peer.until(lambda m, ch=ch, i=i: m.get("type") == "reply"
                                          and m.get("ch") == ch and m.get("id") == i)
                    assert isinstance(reply, dict), reply
                    if "error" in reply:
                        assert reply["error"]["status"] < 500, (name, op, reply)
                peer.send({"type": "close", "ch": ch})
                peer.until(lambda m, ch=ch: m.get("type") == "closed" and m.get("ch") == ch)
    finally:
        peer.close()
    return answers


def _protocol_refuses(name: str) -> bool:
    return not name or len(name) > MAX_DB_NAME


def test_on_request_sees_names_exactly_as_sent(servers) -> None:
    seen: list[str] = []
    lock = threading.Lock()

    def on_request(credentials: Any, name: str) -> Any:
        with lock:
            seen.append(name)
        raise Denied("recording only")

    server = servers(on_request)
    answers = _open_all(server.url)
    expected = [n for n in BAD_NAMES if not _protocol_refuses(n)]
    assert seen == expected
    for name in BAD_NAMES:
        if _protocol_refuses(name):  # refused by the protocol, before on_request
            assert answers[name]["type"] == "error" and answers[name]["status"] == 400
        else:
            assert answers[name]["type"] == "denied", answers[name]
    print(f"\nnames: {len(BAD_NAMES)} bad names tried, {len(seen)} reached on_request verbatim")


_REQUEST_LINE = re.compile(rb"(?:GET|PUT|POST|DELETE|HEAD|COPY|OPTIONS) (\S+) HTTP/1\.[01]\r\n")


def test_couch_backed_names_reach_only_their_own_database(servers, couch_url: str) -> None:
    parts = urlsplit(couch_url)
    with FaultProxy(parts.port, parts.hostname or "127.0.0.1") as proxy:
        proxy.record = True
        couch = CouchDB(f"http://127.0.0.1:{proxy.port}")
        granted: list[str] = []

        def on_request(credentials: Any, name: str) -> Any:
            db = couch.database(name)  # what an app would write
            granted.append(name)
            return db

        try:
            server = servers(on_request)
            answers = _open_all(server.url, calls=("info", "changes", "all_docs", "get"))
        finally:
            couch.close()
        paths = [unquote(m.group(1).decode()) for chunk in proxy.sent
                 for m in _REQUEST_LINE.finditer(bytes(chunk))]
        raw_paths = [m.group(1).decode() for chunk in proxy.sent
                     for m in _REQUEST_LINE.finditer(bytes(chunk))]
    assert granted, "no name was valid for CouchDB: the test proves nothing"
    assert "a/b" in granted  # a valid CouchDB name with a slash: one encoded segment
    assert not {"_users", "_replicator", "../_users", "a/../_users"} & set(granted)
    # every request went to "/" or to a database that on_request granted, by its
    # exact name (a/b as one encoded segment: /a%2Fb/...)
    for raw in raw_paths:
        path = raw.split("?", 1)[0]
        if path == "/":
            continue
        first = unquote(path.split("/")[1])
        assert first in granted, f"request {raw!r} reached {first!r}, not a granted database"
    for name in BAD_NAMES:
        if name not in granted:
            assert answers[name]["type"] in ("denied", "error"), answers[name]
            # and no request named it
            assert not any(p.split("?", 1)[0].startswith(f"/{name}/") for p in paths if name)
    assert any(r.startswith("/a%2Fb") for r in raw_paths), raw_paths[:20]
    print(f"\ncouch names: {len(BAD_NAMES)} tried, granted {sorted(granted)}, "
          f"{len(raw_paths)} requests all to their own database")


def test_datadir_names_never_leave_the_directory(servers, tmp_path: Path) -> None:
    root = tmp_path / "data"
    datadir = DataDir(root)
    outside_before = sorted(os.listdir(tmp_path))
    granted: list[str] = []

    def on_request(credentials: Any, name: str) -> Any:
        db = datadir.database(name)  # raises BadRequest for a bad name: a denial
        granted.append(name)
        return db

    try:
        server = servers(on_request)
        answers = _open_all(server.url, calls=("info",))
        server.stop()
    finally:
        datadir.close()
    assert sorted(os.listdir(tmp_path)) == outside_before  # nothing new beside the dir
    files = sorted(os.listdir(root))
    for name in granted:
        assert re.fullmatch(r"[a-z][a-z0-9_$()+-]*", name), name
    allowed = {f"{n}.sqlite{s}" for n in granted for s in ("", "-wal", "-shm")}
    assert set(files) <= allowed, files
    assert not Path("/tmp/evil").exists() and not (tmp_path.parent / "evil").exists()
    for name in BAD_NAMES:
        if name not in granted:
            assert answers[name]["type"] in ("denied", "error"), (name, answers[name])
    assert set(granted) == {"valid-name", "a" * 238}


WEIRD_IDS = ["a/b", "a%2Fb", "%2e%2e", "..", ".", "é-ü-日本", " spaced ", "x" * 2000, "?q=1",
             "#frag", "a\\b", "plus+sign", "semi;colon", "tab\tid", "new\nline", "%", "a?b#c/d",
             "x_design%2fx", "emoji-\U0001f600", "\u202eevil"]


def test_weird_document_ids_round_trip_through_a_couch_backed_server(servers, clients, local,
                                                                     couch_url: str) -> None:
    """Documents with hostile ids pushed by one client into a CouchDB-backed server and
    pulled by another arrive intact, each under its own id (no id reaches another
    document's URL)."""
    name = f"weird-ids-{threading.get_ident() % 100000}"
    couch = CouchDB(couch_url)
    couch.database(name, create=True)
    try:
        server = servers(lambda credentials, db_name: couch.database(name))
        a, b = local(name), local(name)
        for i, doc_id in enumerate(WEIRD_IDS):
            a.put({"_id": doc_id, "i": i})
        pushed = clients().connect(server.url).sync(a, direction="push").wait(60)
        assert pushed.ok and pushed.doc_write_failures == 0, (pushed, pushed.push and pushed.push.errors)
        pulled = clients().connect(server.url).sync(b, direction="pull").wait(60)
        assert pulled.ok and pulled.docs_pulled == len(WEIRD_IDS), pulled
        for i, doc_id in enumerate(WEIRD_IDS):
            assert b.get(doc_id)["i"] == i, doc_id
            assert couch.database(name).get(doc_id)["i"] == i, doc_id
        assert couch.database(name).info()["doc_count"] == len(WEIRD_IDS)
    finally:
        with contextlib.suppress(Exception):
            couch.delete_database(name)
        couch.close()
