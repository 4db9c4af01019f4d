"""``write_missing`` over the websocket: one call per batch of whole docs, and the way
back to ``revs_diff`` + ``bulk_docs`` against a server that does not know the op."""

from __future__ import annotations

import threading
from typing import Any, Iterator

import pytest

from pouchsync_sync import BadRequest, Client, LocalDatabase
from tests.fault.hostile import HostileServer


def _replicated(doc_id: str, h: str) -> dict[str, Any]:
    return {"_id": doc_id, "_rev": f"1-{h}", "_revisions": {"start": 1, "ids": [h]}, "v": h}


@pytest.fixture
def server_db(tmp_path) -> Iterator[LocalDatabase]:
    with LocalDatabase(tmp_path / "server.sqlite", name="todos") as db:
        yield db


@pytest.fixture
def client() -> Iterator[Client]:
    c = Client(initial_delay=0.02, max_delay=0.25, jitter=0.0)
    yield c
    c.close()


def _unknown_op(args: Any) -> Any:
    raise BadRequest("unknown op 'write_missing'")


def test_remote_write_missing_is_one_call(server_db, client) -> None:
    server = HostileServer(server_db, {})
    try:
        db = client.connect(server.url).database("todos", timeout=10)
        server_db.bulk_docs([_replicated("had", "a")], new_edits=False)
        docs = [_replicated("had", "a"), _replicated("new", "b")]
        written, failures = db.write_missing(docs)
        assert written == [docs[1]] and written[0] is docs[1] and failures == []
        assert server.calls.count("write_missing") == 1 and "revs_diff" not in server.calls
        assert server_db.get("new")["v"] == "b"
    finally:
        server.close()


def test_an_older_server_is_asked_the_long_way(server_db, client) -> None:
    server = HostileServer(server_db, {"write_missing": _unknown_op})
    try:
        db = client.connect(server.url).database("todos", timeout=10)
        server_db.bulk_docs([_replicated("had", "a")], new_edits=False)
        docs = [_replicated("had", "a"), _replicated("new", "b")]
        assert db.write_missing(docs) == ([docs[1]], [])
        assert server.calls[-3:] == ["write_missing", "revs_diff", "bulk_docs"]
        # remembered: the next batch goes straight to revs_diff
        assert db.write_missing([_replicated("more", "c")]) == ([_replicated("more", "c")], [])
        assert server.calls[-2:] == ["revs_diff", "bulk_docs"]
        assert server.calls.count("write_missing") == 1
        assert server_db.get("more")["v"] == "c"
    finally:
        server.close()


def test_other_errors_of_the_op_are_not_taken_for_an_older_server(server_db, client) -> None:
    server = HostileServer(server_db, {"write_missing": lambda args: (_ for _ in ()).throw(
        BadRequest("Document must be a JSON object"))})
    try:
        db = client.connect(server.url).database("todos", timeout=10)
        with pytest.raises(BadRequest, match="JSON object"):
            db.write_missing([_replicated("x", "a")])
        assert "revs_diff" not in server.calls
    finally:
        server.close()


def test_a_push_of_new_docs_goes_as_text_rows(server_db, client, tmp_path) -> None:
    server = HostileServer(server_db, {})
    try:
        with LocalDatabase(tmp_path / "local.sqlite", name="local") as local:
            local.bulk_docs([{"_id": f"d{i:04d}", "n": i} for i in range(600)])
            sync = client.connect(server.url).sync(local, remote_name="todos", direction="push",
                                                   batch_size=100)
            result = sync.wait(timeout=60)
            assert result.ok and result.docs_pushed == 600 and result.push.docs_read == 600
            assert server_db.info()["doc_count"] == 600
            # new first-generation docs go whole, as text rows, one call per batch: no diff
            assert server.calls.count("write_missing_texts") == 6
            assert "revs_diff" not in server.calls and "bulk_docs" not in server.calls
    finally:
        server.close()


class Overlapping(LocalDatabase):
    """A server store whose first text write waits (at most 10 s) for a second to arrive."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.second = threading.Event()
        self.calls = 0
        self.overlapped = False
        self._count = threading.Lock()

    def write_missing_texts(self, rows: Any) -> Any:
        with self._count:
            self.calls += 1
            first = self.calls == 1
        if first:
            self.overlapped = self.second.wait(10)
        else:
            self.second.set()
        return super().write_missing_texts(rows)


def test_a_push_keeps_two_writes_in_flight_and_converges(tmp_path, client) -> None:
    from pouchsync_sync.server import create_server

    store = Overlapping(tmp_path / "server.sqlite", name="todos")
    srv = create_server(lambda credentials, name: store).start()
    try:
        with LocalDatabase(tmp_path / "local.sqlite", name="local") as local:
            local.bulk_docs([{"_id": f"d{i:04d}", "n": i} for i in range(600)])
            sync = client.connect(srv.url).sync(local, remote_name="todos", direction="push",
                                                batch_size=100, checkpoint_interval=0)
            result = sync.wait(timeout=60)
            assert result.ok and result.docs_pushed == 600
            assert store.overlapped  # the second write reached the server before the first ended
            assert store.calls == 6 and store.info()["doc_count"] == 600
            assert store.all_docs()["rows"] == local.all_docs()["rows"]
            # the checkpoint covers every batch: a second push has nothing to write
            again = client.sync(local, remote_name="todos", direction="push", batch_size=100)
            assert again.wait(timeout=60).ok and store.calls == 6
    finally:
        srv.stop()
        store.close()


def _unknown(op: str) -> Any:
    def answer(args: Any) -> Any:
        raise BadRequest(f"unknown op {op!r}")
    return answer


def test_a_server_without_the_text_ops_is_synced_the_long_way(server_db, client,
                                                                 tmp_path) -> None:
    server = HostileServer(server_db, {"changes_texts": _unknown("changes_texts"),
                                       "write_missing_texts": _unknown("write_missing_texts")})
    try:
        server_db.bulk_docs([{"_id": f"s{i:03d}", "n": i} for i in range(120)])
        with LocalDatabase(tmp_path / "local.sqlite", name="local") as local:
            local.bulk_docs([{"_id": f"l{i:03d}", "n": i} for i in range(130)])
            sync = client.connect(server.url).sync(local, remote_name="todos", batch_size=50)
            result = sync.wait(timeout=60)
            assert result.ok and result.docs_pulled == 120 and result.docs_pushed == 130
            assert local.info()["doc_count"] == server_db.info()["doc_count"] == 250
            # each text op was tried once (the writes twice at most: two are in flight
            # before the first answer), then the RemoteDatabase went the long way
            assert server.calls.count("changes_texts") == 1
            assert 1 <= server.calls.count("write_missing_texts") <= 2
            assert "changes" in server.calls and "write_missing" in server.calls
    finally:
        server.close()


def test_other_errors_of_a_text_op_are_not_taken_for_an_older_server(server_db, client) -> None:
    server = HostileServer(server_db, {"write_missing_texts": lambda args: (_ for _ in ()).throw(
        BadRequest("row 0: must be [id, rev, text]"))})
    try:
        db = client.connect(server.url).database("todos", timeout=10)
        with pytest.raises(BadRequest, match="row 0"):
            db.write_missing_texts([["x", "1-a", "{}"]])
        assert "write_missing" not in server.calls and "revs_diff" not in server.calls
        assert server.calls.count("write_missing_texts") == 1
    finally:
        server.close()


def test_a_live_sync_ends_its_pipeline_threads_once_caught_up(tmp_path, client) -> None:
    from pouchsync_sync.server import create_server

    store = LocalDatabase(tmp_path / "server.sqlite", name="todos")
    srv = create_server(lambda credentials, name: store).start()
    try:
        with LocalDatabase(tmp_path / "local.sqlite", name="local") as local:
            local.bulk_docs([{"_id": f"d{i:04d}", "n": i} for i in range(600)])
            sync = client.connect(srv.url).sync(local, remote_name="todos", direction="push",
                                                live=True, batch_size=100)
            assert sync.wait_in_sync(60)
            assert store.info()["doc_count"] == 600
            pipeline = [t for t in threading.enumerate()
                        if t.name.startswith(("pouchsync-upload", "pouchsync-changes-ahead"))]
            for thread in pipeline:  # ending, if not ended yet: the backlog is done
                thread.join(10)
            assert not [t.name for t in pipeline if t.is_alive()]
            local.put({"_id": "later"})  # the live sync goes on without them
            assert sync.wait_in_sync(60) and store.get("later")["_id"] == "later"
            sync.cancel()
            sync.wait(timeout=30)
    finally:
        srv.stop()
        store.close()


def test_a_push_fits_the_servers_message_size_and_refuses_only_a_doc_too_big(tmp_path,
                                                                             client) -> None:
    from pouchsync_sync.client.policy import batch_bytes_for
    from pouchsync_sync.server import create_server

    limit = 256 * 1024
    store = LocalDatabase(tmp_path / "server.sqlite", name="todos")
    srv = create_server(lambda credentials, name: store, max_message_size=limit).start()
    try:
        with LocalDatabase(tmp_path / "local.sqlite", name="local") as local:
            local.bulk_docs([{"_id": f"d{i:04d}", "text": "x" * 3000} for i in range(300)])
            big = local.put({"_id": "huge", "text": "y" * (limit + 1)})
            # second generation: goes by revs_diff + bulk_docs, as one big doc would
            edited = local.get("d0001")
            local.put({**edited, "text": "edited"})
            sync = client.connect(srv.url).sync(local, remote_name="todos", direction="push")
            result = sync.wait(timeout=60)
            # everything but the one doc no message can carry; that one is a refusal
            assert result.state.value == "complete"
            assert result.docs_pushed == 300 and result.doc_write_failures == 1
            assert result.push.errors == [{"id": "huge", "rev": big["rev"], "error": "too_large",
                                           "reason": result.push.errors[0]["reason"]}]
            assert "max_message_size" in result.push.errors[0]["reason"]
            assert store.info()["doc_count"] == 300 and store.get("d0001")["text"] == "edited"
    finally:
        srv.stop()
        store.close()
    assert batch_bytes_for(limit) < limit // 2
    assert batch_bytes_for(64 * 1024 * 1024) == 8 * 1024 * 1024
    assert batch_bytes_for(1 << 20) == (1 << 19) - 65536 and batch_bytes_for(10) >= 1
