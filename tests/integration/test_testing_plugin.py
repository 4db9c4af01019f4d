"""The pytest plugin as a user meets it: test files run through ``pytester``.

Each test writes a user's test file, runs pytest on it (in process, or in a subprocess
for the entry-point registration) and checks the outcome and what the run left behind.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import stat
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PLUGIN = "pouchsync_sync.testing.plugin"

USER_TESTS = '''
import pytest

import pouchsync_sync as ps
from pouchsync_sync import signals
from pouchsync_sync.testing import assert_converged, network_fault, running_server, wait_for


def test_server_grants_its_token_and_denies_others(pouchsync_server, pouchsync_client, tmp_path):
    with ps.LocalDatabase(tmp_path / "phone.sqlite", name="todos") as phone:
        phone.put({"_id": "a", "title": "milk"})
        result = pouchsync_client.sync(phone, credentials=pouchsync_server.credentials).wait(30)
        assert result.ok, result
        assert pouchsync_server.database("todos").get("a")["title"] == "milk"
        assert_converged(phone, pouchsync_server.database("todos"))
    with pytest.raises(ps.Denied):
        pouchsync_client.database("todos", credentials={"token": "wrong"}, timeout=10)
    with pytest.raises(ps.Denied):
        pouchsync_client.database("todos", timeout=10)


def test_on_request_can_be_replaced(pouchsync_server, pouchsync_client):
    seen = []

    def reports_only(credentials, name):
        seen.append(name)
        if name != "reports":
            raise ps.Denied("reports only")
        return pouchsync_server.database(name)

    pouchsync_server.on_request = reports_only
    pouchsync_client.database("reports", timeout=10).close()
    with pytest.raises(ps.Denied, match="reports only"):
        pouchsync_client.database("todos", credentials=pouchsync_server.credentials, timeout=10)
    assert seen == ["reports", "todos"]


def test_restart_keeps_url_and_data_while_a_live_sync_reconnects(pouchsync_server,
                                                                  pouchsync_client, tmp_path):
    url = pouchsync_server.url
    pouchsync_server.database("todos").put({"_id": "before"})
    connects = []
    receiver = lambda sender, **kw: connects.append(kw)
    signals.client_connect.connect(receiver, sender=pouchsync_client, weak=False)
    try:
        with ps.LocalDatabase(tmp_path / "phone.sqlite", name="todos") as phone:
            live = pouchsync_client.sync(phone, credentials=pouchsync_server.credentials, live=True)
            wait_for(phone, "before", timeout=30)
            pouchsync_server.stop()
            pouchsync_server.database("todos").put({"_id": "while-down"})
            pouchsync_server.start()
            assert pouchsync_server.url == url
            pouchsync_server.restart()
            assert pouchsync_server.url == url
            assert pouchsync_server.database("todos").get("before")["_id"] == "before"
            wait_for(phone, "while-down", timeout=30)
            phone.put({"_id": "from-phone"})
            wait_for(pouchsync_server.database("todos"), "from-phone", timeout=30)
            live.cancel()
            assert_converged(phone, pouchsync_server.database("todos"))
    finally:
        signals.client_connect.disconnect(receiver, sender=pouchsync_client)
    assert len(connects) >= 1, "the client never reconnected"


@pytest.mark.pouchsync_backend("couch")
def test_the_couch_backend(pouchsync_server, pouchsync_client, couchdb_url, tmp_path):
    served = pouchsync_server.database("todos")
    assert type(served).__name__ == "CouchDatabase"
    served.put({"_id": "on-couch"})
    with ps.LocalDatabase(tmp_path / "phone.sqlite", name="todos") as phone:
        result = pouchsync_client.sync(phone, credentials=pouchsync_server.credentials).wait(30)
        assert result.ok, result
        assert_converged(phone, served)


def test_running_server_for_scripts(tmp_path):
    with running_server(data_dir=tmp_path / "data") as server, ps.Client() as client:
        client.connect(server.url)
        with ps.LocalDatabase(":memory:", name="notes") as notes:
            notes.put({"_id": "n1"})
            assert client.sync(notes, credentials=server.credentials).wait(30).ok
            assert wait_for(server.database("notes"), "n1")["_id"] == "n1"
    assert (tmp_path / "data" / "notes.sqlite").exists()


def test_assert_converged_names_the_document_that_differs_by_one_conflict():
    a, b = ps.LocalDatabase(":memory:", name="left"), ps.LocalDatabase(":memory:", name="right")
    try:
        rev = a.put({"_id": "doc-1", "v": 0})["rev"]
        ps.replicate(a, b)
        first = rev.split("-")[1]
        edit = {"_id": "doc-1", "v": 1, "_revisions": {"start": 2, "ids": ["ffff", first]}}
        a.bulk_docs([dict(edit, _rev="2-ffff")], new_edits=False)
        b.bulk_docs([dict(edit, _rev="2-ffff")], new_edits=False)
        assert_converged(a, b)
        b.bulk_docs([dict(edit, _rev="2-0000", _revisions={"start": 2, "ids": ["0000", first]})],
                    new_edits=False)
        with pytest.raises(AssertionError, match="doc-1") as failure:
            assert_converged(a, b)
        assert "2-0000" in str(failure.value)
    finally:
        a.close()
        b.close()


def test_wait_for_times_out_naming_the_id_and_the_database(tmp_path):
    with ps.LocalDatabase(tmp_path / "inbox.sqlite", name="inbox") as db:
        with pytest.raises(TimeoutError, match="'never'.*'inbox'"):
            wait_for(db, "never", timeout=0.5)


def test_network_fault_cut_and_heal(pouchsync_server, tmp_path):
    with network_fault(pouchsync_server) as fault, \\
            ps.Client(initial_delay=0.02, max_delay=0.2, jitter=0.0) as client:
        fault.connect(client)
        with ps.LocalDatabase(tmp_path / "phone.sqlite", name="todos") as phone:
            live = client.sync(phone, credentials=pouchsync_server.credentials, live=True)
            phone.put({"_id": "a"})
            wait_for(pouchsync_server.database("todos"), "a", timeout=30)
            assert fault.cut() >= 1
            phone.put({"_id": "b"})
            fault.heal()
            wait_for(pouchsync_server.database("todos"), "b", timeout=30)
            assert fault.connections_total >= 2
            live.cancel()
'''


@pytest.fixture
def user_run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Runs a user's file in process with the plugin; a private ``tempfile`` folder that
    each test checks is left empty (no file outside the test's temp folder)."""
    stray = tmp_path / "tempfile-dir"
    stray.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(stray))

    def run(source: str, *args: str) -> pytest.RunResult:
        pytester.makepyfile(test_user=source)
        # other plugins' own files (.pytest_cache, .benchmarks) off: only ours are checked
        return pytester.runpytest("-p", PLUGIN, "-p", "no:cacheprovider", "-p", "no:benchmark",
                                  *args)

    run.stray = stray  # type: ignore[attr-defined]
    return run


def _library_threads() -> set[str]:
    deadline = time.monotonic() + 5.0
    for thread in threading.enumerate():
        if thread.name.startswith("pouchsync"):
            thread.join(max(0.0, deadline - time.monotonic()))
    return {t.name for t in threading.enumerate() if t.name.startswith("pouchsync")}


def test_a_users_test_file_using_each_fixture_passes(user_run, monkeypatch: pytest.MonkeyPatch,
                                                      couchdb_url: str) -> None:
    monkeypatch.setenv("COUCHDB_URL", couchdb_url)  # the session's server: no second npm start
    result = user_run(USER_TESTS)
    result.assert_outcomes(passed=8)
    assert list(user_run.stray.iterdir()) == []


def test_teardown_leaves_no_thread_no_port_and_no_file_outside_the_temp_folder(
        user_run, pytester: pytest.Pytester) -> None:
    before = _library_threads()
    result = user_run('''
import pouchsync_sync as ps
from pouchsync_sync.testing import wait_for

def test_live(pouchsync_server, pouchsync_client, tmp_path):
    with ps.LocalDatabase(tmp_path / "phone.sqlite", name="todos") as phone:
        live = pouchsync_client.sync(phone, credentials=pouchsync_server.credentials, live=True)
        phone.put({"_id": "x"})
        wait_for(pouchsync_server.database("todos"), "x", timeout=30)
        live.cancel()
    print("PORT", pouchsync_server.port, "DIR", pouchsync_server.data_dir, "TMP", tmp_path)
''', "-s")
    result.assert_outcomes(passed=1)
    found = re.search(r"PORT (\d+) DIR (\S+) TMP (\S+)", result.stdout.str())
    assert found, result.stdout.str()
    port, data_dir, tmp = int(found[1]), Path(found[2]), Path(found[3])
    assert _library_threads() <= before
    with socket.socket() as probe:
        probe.settimeout(2.0)
        assert probe.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still listening"
    assert data_dir.is_relative_to(tmp) and (data_dir / "todos.sqlite").exists()
    assert sorted(p.name for p in pytester.path.iterdir() if p.name != "__pycache__") == [
        "test_user.py"]
    assert list(user_run.stray.iterdir()) == []


def _fake_tools(where: Path, marker: Path, *, node: bool = True) -> Path:
    """``npm`` (makes the files an install would) and ``node`` (exits at once) that
    each append their name to ``marker``: proof of whether anything called them."""
    bin_dir = where / "fake-bin"
    bin_dir.mkdir()
    mkdir, touch = shutil.which("mkdir"), shutil.which("touch")  # PATH is only bin_dir
    tools = {"npm": (f"{mkdir} -p node_modules/pouchdb-server/bin && "
                     f"{touch} node_modules/pouchdb-server/bin/pouchdb-server")}
    if node:
        tools["node"] = "exit 3"
    for name, action in tools.items():
        script = bin_dir / name
        script.write_text(f"#!/bin/sh\necho {name} >> '{marker}'\n{action}\n")
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return bin_dir


PLAIN = '''
def test_plain(request):
    assert request.config.pluginmanager.has_plugin("pouchsync_sync.testing.plugin")
'''
USES_COUCH = '''
def test_couch(couchdb_url):
    pass
'''


def test_the_plugin_adds_nothing_to_a_run_that_uses_none_of_its_fixtures(
        user_run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    marker = tmp_path / "called"
    monkeypatch.setenv("PATH", str(_fake_tools(tmp_path, marker)))
    monkeypatch.setenv("COUCH_HOME", str(tmp_path / "couch-home"))
    monkeypatch.delenv("COUCHDB_URL", raising=False)
    before = _library_threads()
    result = user_run(PLAIN)
    result.assert_outcomes(passed=1)
    assert not marker.exists(), marker.read_text()
    assert not (tmp_path / "couch-home").exists()
    assert _library_threads() <= before
    # nothing printed by the plugin (pytest's header names it among the installed
    # plugins when the package is pip-installed: that line is pytest's own)
    said = [line for line in result.stdout.lines
            if "pouchsync" in line and not line.startswith("plugins:")]
    assert said == []
    # the control: a run that does ask for couchdb_url calls the (fake) npm and node
    result = user_run(USES_COUCH)
    result.assert_outcomes(errors=1)
    assert marker.read_text().split() == ["npm", "node"]


def test_couchdb_url_is_skipped_with_a_reason_when_node_is_missing(
        user_run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    marker = tmp_path / "called"
    monkeypatch.setenv("PATH", str(_fake_tools(tmp_path, marker, node=False)))
    monkeypatch.setenv("COUCH_HOME", str(tmp_path / "couch-home"))
    monkeypatch.delenv("COUCHDB_URL", raising=False)
    result = user_run(USES_COUCH, "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*node is not on PATH*COUCHDB_URL*"])
    assert not marker.exists()


def test_an_unknown_backend_is_a_clear_error(user_run) -> None:
    result = user_run('''
import pytest

@pytest.mark.pouchsync_backend("mongo")
def test_it(pouchsync_server):
    pass
''')
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*pouchsync_backend takes one of 'local', 'couch'*"])


@pytest.mark.parametrize("with_conftest", [False, True])
def test_the_entry_point_registers_the_plugin_once(pytester: pytest.Pytester,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path, with_conftest: bool) -> None:
    """Installed (a pytest11 entry point, as setup.cfg declares it) the fixtures are there
    without any conftest; a conftest that also lists the plugin (as ours does, for runs
    from a checkout) does not register it twice."""
    site = tmp_path / "site"
    dist = site / "pouchsync_sync_fake-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: pouchsync-sync-fake\nVersion: 0.1\n")
    entry = re.search(r"pytest11 =\s*\n\s+(.+)\n", (REPO / "setup.cfg").read_text())
    assert entry, "setup.cfg declares no pytest11 entry point"
    (dist / "entry_points.txt").write_text(f"[pytest11]\n{entry[1].strip()}\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), str(REPO)]))
    if with_conftest:
        pytester.makeconftest(f"pytest_plugins = [{PLUGIN!r}]\n")
    pytester.makepyfile(test_user=textwrap.dedent('''
        def test_server(pouchsync_server, request):
            assert pouchsync_server.url.startswith("ws://127.0.0.1:")
            names = [name for name, plugin in request.config.pluginmanager.list_name_plugin()
                     if getattr(plugin, "__name__", "") == "pouchsync_sync.testing.plugin"]
            assert names == ["pouchsync_sync.testing.plugin"], names
    '''))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=120)
    result.assert_outcomes(passed=1)


class _LeakBox:
    """A plugin object for the inner run: hands its test a list that outlives the run,
    so this test can close the client the inner test leaves open."""

    def __init__(self) -> None:
        self.clients: list = []

    @pytest.fixture
    def leak_box(self) -> list:
        return self.clients


def test_pouchsync_client_fails_a_test_that_leaves_a_client_running(
        pytester: pytest.Pytester) -> None:
    box = _LeakBox()
    pytester.makepyfile(test_user='''
import pouchsync_sync as ps

def test_forgets_a_client(pouchsync_server, pouchsync_client, leak_box):
    forgotten = ps.Client(initial_delay=0.02, jitter=0.0)
    leak_box.append(forgotten)
    forgotten.connect(pouchsync_server.url).wait_connected(10)
''')
    try:
        result = pytester.runpytest("-p", PLUGIN, "-p", "no:cacheprovider", plugins=[box])
    finally:
        for client in box.clients:
            client.close()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*client threads still running*pouchsync-client*"])
