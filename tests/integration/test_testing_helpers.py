"""``pouchsync_sync.testing`` used directly (no plugin): assert_converged, wait_for,
network_fault, running_server, with their error cases. Real stores, real servers on
127.0.0.1, real sockets."""

from __future__ import annotations

import base64
import os
import socket
import tempfile
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pouchsync_sync as ps
from pouchsync_sync import signals
from pouchsync_sync.testing import (
    RunningServer,
    WaitTimeout,
    assert_converged,
    network_fault,
    running_server,
    wait_for,
)
from pouchsync_sync.testing.converge import LINES_PER_DOC, MAX_DOCS

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def pair() -> Iterator[tuple[ps.LocalDatabase, ps.LocalDatabase]]:
    a, b = ps.LocalDatabase(":memory:", name="left"), ps.LocalDatabase(":memory:", name="right")
    yield a, b
    a.close()
    b.close()


def _att(text: str) -> dict[str, Any]:
    return {"content_type": "text/plain", "data": base64.b64encode(text.encode()).decode()}


def _failure(*dbs: ps.Database) -> str:
    with pytest.raises(AssertionError) as caught:
        assert_converged(*dbs)
    return str(caught.value)


# -- assert_converged ---------------------------------------------------------------------
def test_converged_stores_pass_with_deletions_conflicts_and_attachments(pair) -> None:
    a, b = pair
    rev = a.put({"_id": "photo", "_attachments": {"p.txt": _att("pixels")}})["rev"]
    gone = a.put({"_id": "gone"})["rev"]
    a.delete("gone", gone)
    a.bulk_docs([{"_id": "photo", "_rev": "2-aaaa", "v": 1,
                  "_revisions": {"start": 2, "ids": ["aaaa", rev.split("-")[1]]}}], new_edits=False)
    ps.replicate(a, b)
    assert_converged(a, b)
    assert_converged(a, b, a)


def test_a_missing_document_is_named_with_the_side_that_lacks_it(pair) -> None:
    a, b = pair
    a.put({"_id": "only-left"})
    message = _failure(a, b)
    assert "'only-left'" in message and "missing in 'right'" in message


def test_a_different_winner_and_body_are_named(pair) -> None:
    a, b = pair
    a.put({"_id": "x", "v": 1})
    ps.replicate(a, b)
    b.put(dict(b.get("x"), v=2))
    message = _failure(a, b)
    assert "'x'" in message and "winner 1-" in message and "2-" in message


def test_same_revision_with_other_attachment_bytes_is_a_difference(pair) -> None:
    a, b = pair
    doc = {"_id": "att", "_rev": "1-abcd", "_revisions": {"start": 1, "ids": ["abcd"]}}
    a.bulk_docs([dict(doc, _attachments={"f.txt": _att("one")})], new_edits=False)
    b.bulk_docs([dict(doc, _attachments={"f.txt": _att("two")})], new_edits=False)
    message = _failure(a, b)
    assert "attachments of 1-abcd" in message and "'f.txt'" in message


def test_a_different_revision_history_is_named(pair) -> None:
    a, b = pair
    a.bulk_docs([{"_id": "h", "_rev": "2-bbbb", "_revisions": {"start": 2, "ids": ["bbbb", "1111"]}}],
                new_edits=False)
    b.bulk_docs([{"_id": "h", "_rev": "2-bbbb", "_revisions": {"start": 2, "ids": ["bbbb", "2222"]}}],
                new_edits=False)
    assert "revision history of 2-bbbb" in _failure(a, b)


def test_the_diff_is_capped_per_document_and_in_documents(pair) -> None:
    a, b = pair
    for i in range(MAX_DOCS + 5):
        a.bulk_docs([{"_id": f"doc-{i:02d}", "_rev": f"1-{k:04x}", "v": "a",
                      "_revisions": {"start": 1, "ids": [f"{k:04x}"]}} for k in range(8)],
                    new_edits=False)
        b.bulk_docs([{"_id": f"doc-{i:02d}", "_rev": f"1-{k:04x}", "v": "b",
                      "_revisions": {"start": 1, "ids": [f"{k:04x}"]}} for k in range(8)],
                    new_edits=False)
    message = _failure(a, b)
    lines = message.splitlines()
    assert lines[0].startswith(f"databases did not converge: {MAX_DOCS + 5} document(s) differ")
    assert "and 5 more" in lines[0]
    assert len(lines) == 1 + MAX_DOCS * (1 + LINES_PER_DOC)
    assert "... and 5 more" in message  # 8 bodies differ per doc, 3 shown + the count


def test_the_third_database_is_compared_and_named() -> None:
    dbs = [ps.LocalDatabase(":memory:", name=n) for n in ("a", "b", "c")]
    try:
        dbs[0].put({"_id": "k"})
        ps.replicate(dbs[0], dbs[1])
        message = _failure(*dbs)
        assert "('a' vs 'c')" in message and "'b'" not in message
    finally:
        for db in dbs:
            db.close()


def test_bad_arguments_are_refused(pair) -> None:
    with pytest.raises(TypeError, match="at least two"):
        assert_converged(pair[0])
    with pytest.raises(TypeError, match="dict"):
        assert_converged(pair[0], {})  # type: ignore[arg-type]


_docs = st.dictionaries(st.sampled_from([f"d{i}" for i in range(6)]),
                        st.integers(0, 3), min_size=1, max_size=6)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(docs=_docs, edits=st.integers(0, 2), victim=st.integers(0, 5))
def test_rule_replicas_converge_and_any_edit_is_named(docs: dict[str, int], edits: int,
                                                      victim: int) -> None:
    """The rule: a replica passes; one more revision on one side fails naming that id."""
    a, b = ps.LocalDatabase(":memory:", name="a"), ps.LocalDatabase(":memory:", name="b")
    try:
        for doc_id, value in docs.items():
            rev = a.put({"_id": doc_id, "v": value})["rev"]
            for n in range(edits):
                rev = a.put({"_id": doc_id, "_rev": rev, "v": value + n})["rev"]
        ps.replicate(a, b)
        assert_converged(a, b)
        target = sorted(docs)[victim % len(docs)]
        b.put(dict(b.get(target), changed=True))
        message = _failure(a, b)
        assert f"{target!r}" in message
        assert "1 document(s) differ" in message
    finally:
        a.close()
        b.close()


# -- wait_for ----------------------------------------------------------------------------
def test_wait_for_returns_a_document_that_is_there(pair) -> None:
    a, _ = pair
    rev = a.put({"_id": "here", "v": 1})["rev"]
    assert wait_for(a, "here")["v"] == 1
    assert wait_for(a, "here", rev=rev)["_rev"] == rev


def test_wait_for_wakes_on_the_write_from_another_thread(tmp_path: Path) -> None:
    with ps.LocalDatabase(tmp_path / "w.sqlite", name="w") as db:
        got: list[Any] = []
        waiter = threading.Thread(target=lambda: got.append(wait_for(db, "late", timeout=30)),
                                  name="pouchsync-test-waiter")
        waiter.start()
        db.put({"_id": "late", "v": 7})
        waiter.join(35)
        assert got and got[0]["v"] == 7


def test_wait_for_a_conflict_revision(pair) -> None:
    a, _ = pair
    a.put({"_id": "c", "v": 1})
    writer = threading.Thread(target=lambda: a.bulk_docs(
        [{"_id": "c", "_rev": "1-0000", "v": 0, "_revisions": {"start": 1, "ids": ["0000"]}}],
        new_edits=False), name="pouchsync-test-writer")
    writer.start()
    assert wait_for(a, "c", rev="1-0000", timeout=30)["v"] == 0
    writer.join(10)


def test_a_deleted_document_is_not_readable(pair) -> None:
    a, _ = pair
    rev = a.put({"_id": "del"})["rev"]
    a.delete("del", rev)
    with pytest.raises(WaitTimeout, match="'del'.*'left'"):
        wait_for(a, "del", timeout=0.3)


def test_the_timeout_names_the_revision_and_what_the_database_holds(pair) -> None:
    a, _ = pair
    rev = a.put({"_id": "r"})["rev"]
    with pytest.raises(TimeoutError) as caught:
        wait_for(a, "r", rev="9-nope", timeout=0.3)
    assert "'9-nope'" in str(caught.value) and rev in str(caught.value)
    assert isinstance(caught.value, ps.PouchSyncError)


@pytest.mark.parametrize("args, error", [
    (("",), TypeError), ((7,), TypeError), (("x",), None),
])
def test_wait_for_refuses_bad_arguments(pair, args: tuple, error: Any) -> None:
    a, _ = pair
    if error is not None:
        with pytest.raises(error):
            wait_for(a, *args)
        return
    with pytest.raises(ValueError, match="timeout"):
        wait_for(a, *args, timeout=0)
    with pytest.raises(TypeError, match="rev"):
        wait_for(a, *args, rev=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Database"):
        wait_for({}, *args)  # type: ignore[arg-type]


def test_wait_for_over_the_wire_on_a_remote_database() -> None:
    with running_server() as server, ps.Client(initial_delay=0.02, jitter=0.0) as client:
        client.connect(server.url)
        remote = client.database("inbox", credentials=server.credentials, timeout=10)
        writer = threading.Thread(target=lambda: server.database("inbox").put({"_id": "m"}),
                                  name="pouchsync-test-writer")
        writer.start()
        assert wait_for(remote, "m", timeout=30)["_id"] == "m"
        writer.join(10)
        with pytest.raises(WaitTimeout, match="'nothing'.*'inbox'"):
            wait_for(remote, "nothing", timeout=0.5)
        remote.close()


# -- network_fault -----------------------------------------------------------------------
class _Events:
    def __init__(self, signal: Any, sender: Any) -> None:
        self.signal, self.sender = signal, sender
        self.count = 0
        self.cond = threading.Condition()
        signal.connect(self._got, sender=sender, weak=False)

    def _got(self, sender: Any, **kw: Any) -> None:
        with self.cond:
            self.count += 1
            self.cond.notify_all()

    def wait(self, count: int, timeout: float = 30.0) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.count >= count, timeout)

    def close(self) -> None:
        self.signal.disconnect(self._got, sender=self.sender)


def test_stall_hangs_the_link_until_heal(tmp_path: Path) -> None:
    with running_server() as server, network_fault(server) as fault, \
            ps.Client(initial_delay=0.02, max_delay=0.2, jitter=0.0, ping_interval=0.2,
                      connect_timeout=1.0) as client:
        lost = _Events(signals.client_disconnect, client)
        try:
            fault.connect(client)
            with ps.LocalDatabase(tmp_path / "p.sqlite", name="todos") as phone:
                live = client.sync(phone, credentials=server.credentials, live=True)
                phone.put({"_id": "a"})
                wait_for(server.database("todos"), "a", timeout=30)
                assert fault.stall() == 1
                assert lost.wait(1, timeout=10), "the client never noticed the hung link"
                phone.put({"_id": "b"})
                with pytest.raises(WaitTimeout):
                    wait_for(server.database("todos"), "b", timeout=0.5)
                fault.heal()
                wait_for(server.database("todos"), "b", timeout=30)
                live.cancel()
        finally:
            lost.close()


def test_drop_resets_once_and_the_client_comes_back_alone() -> None:
    with running_server() as server, network_fault(server.url) as fault, \
            ps.Client(initial_delay=0.02, max_delay=0.2, jitter=0.0) as client:
        back = _Events(signals.client_connect, client)
        try:
            fault.connect(client)
            assert back.wait(1, timeout=10)
            assert fault.drop() == 1
            assert back.wait(2, timeout=10), "no reconnect after a drop"
            assert fault.connections_total == 2
        finally:
            back.close()


def _refused(port: int) -> bool:
    """True when a connection to ``port`` is accepted and reset or closed at once (the
    reset may surface at connect, as EPIPE or ECONNRESET, or at the first read)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.settimeout(5)  # a stalled (not refused) link raises socket.timeout
            return sock.recv(1) == b""
    except ConnectionError:
        return True


def test_cut_refuses_new_connections_until_heal() -> None:
    with running_server() as server, network_fault(server) as fault:
        fault.cut()
        port = int(fault.url.rstrip("/").rsplit(":", 1)[1])
        assert _refused(port)
        fault.heal()
        with ps.Client(initial_delay=0.02, jitter=0.0) as client:
            fault.connect(client).wait_connected(10)
    assert not [t for t in threading.enumerate() if t.name.startswith("pouchsync-fault-proxy")]


def test_a_connected_client_is_moved_onto_the_proxy_and_back(tmp_path: Path) -> None:
    """network_fault(client): the live sync goes on through the proxy, a cut stops it,
    heal brings it back, and after the block the client is on the server again."""
    with running_server() as server, \
            ps.Client(initial_delay=0.02, max_delay=0.2, jitter=0.0) as client:
        client.connect(server.url)
        with ps.LocalDatabase(tmp_path / "p.sqlite", name="todos") as phone:
            live = client.sync(phone, credentials=server.credentials, live=True)
            phone.put({"_id": "before"})
            wait_for(server.database("todos"), "before", timeout=30)
            with network_fault(client) as fault:
                phone.put({"_id": "through"})
                wait_for(server.database("todos"), "through", timeout=30)
                assert fault.connections_total == 1  # the sync came back through the proxy
                fault.cut()
                phone.put({"_id": "cut"})
                with pytest.raises(WaitTimeout):
                    wait_for(server.database("todos"), "cut", timeout=0.5)
                fault.heal()
                wait_for(server.database("todos"), "cut", timeout=30)
            assert client.url == server.url
            phone.put({"_id": "after"})
            wait_for(server.database("todos"), "after", timeout=30)
            live.cancel()


def test_network_fault_refuses_what_it_cannot_proxy() -> None:
    with pytest.raises(TypeError, match="connected Client"):  # not connected: no URL
        with network_fault(ps.Client()):
            pass
    with pytest.raises(TypeError, match="object with .url or a connected Client"):
        with network_fault(42):
            pass
    with pytest.raises(ValueError, match="with a port"):
        with network_fault("ws://localhost/sync"):
            pass
    with pytest.raises(ValueError, match="wss"):
        with network_fault("wss://127.0.0.1:9/"):
            pass


# -- running_server ----------------------------------------------------------------------
def test_its_own_temp_folder_is_removed_and_the_data_dir_kept(tmp_path: Path) -> None:
    with running_server() as server:
        made = server.data_dir
        server.database("a").put({"_id": "x"})
        assert made is not None and made.is_relative_to(Path(tempfile.gettempdir()))
    assert not made.exists()
    with running_server(data_dir=tmp_path / "mine") as server:
        server.database("a").put({"_id": "x"})
    assert (tmp_path / "mine" / "a.sqlite").exists()


def test_running_server_refuses_bad_input_and_bad_moves(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="callable"):
        RunningServer(on_request="grant")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="unknown server option"):
        RunningServer(data_dir=tmp_path, max_chanels=3)
    with pytest.raises(ValueError, match="max_channels"):
        RunningServer(data_dir=tmp_path, max_channels=0)
    with pytest.raises(ValueError, match="CouchDB URL"):
        RunningServer(backend="couch")
    server = RunningServer(data_dir=tmp_path)
    with pytest.raises(ps.PouchSyncError, match="not been started"):
        server.url
    server.start()
    with pytest.raises(ps.PouchSyncError, match="already running"):
        server.start()
    with pytest.raises(ps.BadRequest):
        server.database("../etc")
    server.close()
    server.close()
    with pytest.raises(ps.PouchSyncError, match="closed"):
        server.start()
    with pytest.raises(ps.PouchSyncError, match="closed"):
        server.database("a")


def test_a_bad_database_name_is_denied_not_a_crash() -> None:
    with running_server() as server, ps.Client(initial_delay=0.02, jitter=0.0) as client:
        client.connect(server.url)
        with pytest.raises(ps.Denied, match="invalid database name"):
            client.database("Bad Name", credentials=server.credentials, timeout=10)
        assert server.stats()["connections"] == 1


@pytest.mark.couch
def test_the_couch_backend_prefixes_names_and_deletes_its_databases(couchdb_url: str) -> None:
    with ps.CouchDB(couchdb_url) as couch:
        with running_server(backend=couchdb_url) as server:
            db = server.database("todos")
            db.put({"_id": "x"})
            real = [n for n in couch.all_dbs() if n.endswith("-todos") and
                    n.startswith("pouchsync-test-")]
            assert len(real) >= 1
            with ps.Client(initial_delay=0.02, jitter=0.0) as client:
                client.connect(server.url)
                remote = client.database("todos", credentials=server.credentials, timeout=10)
                assert wait_for(remote, "x", timeout=30)["_id"] == "x"
                remote.close()
        assert not set(real) & set(couch.all_dbs())


def test_the_helpers_need_no_pytest(tmp_path: Path) -> None:
    """``pouchsync_sync.testing`` works in a script or unittest where pytest is absent."""
    import subprocess
    import sys

    script = tmp_path / "no_pytest.py"
    script.write_text(
        "import sys\n"
        "sys.modules['pytest'] = None  # any import of pytest now fails\n"
        "import pouchsync_sync as ps\n"
        "from pouchsync_sync.testing import assert_converged, running_server, wait_for\n"
        "with running_server() as server, ps.Client() as client:\n"
        "    client.connect(server.url)\n"
        "    with ps.LocalDatabase(':memory:', name='notes') as notes:\n"
        "        notes.put({'_id': 'n'})\n"
        "        assert client.sync(notes, credentials=server.credentials).wait(30).ok\n"
        "        wait_for(server.database('notes'), 'n')\n"
        "        assert_converged(notes, server.database('notes'))\n"
        "print('ok')\n")
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ok"
