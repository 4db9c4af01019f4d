"""The project's own start-up of the CouchDB-protocol test server and its guard."""

from __future__ import annotations

import os
import subprocess

import pytest
import requests

from tests.couchserver import launch

pytestmark = pytest.mark.skipif(bool(os.environ.get("COUCHDB_URL")),
                                reason="tests the project's own pouchdb-server start-up")


@pytest.fixture(scope="module")
def server():
    srv = launch()
    yield srv
    srv.stop()


def _alive(url: str) -> bool:
    return requests.get(url + "/", headers={"Accept": "application/json"},
                        timeout=5).json().get("version") == "4.2.0"


def test_bound_to_loopback_on_a_free_port(server):
    assert server.url.startswith("http://127.0.0.1:")
    assert not server.url.endswith(":5984")
    assert _alive(server.url)
    assert (server.run_dir / "config.json").exists()


def test_guard_keeps_the_server_alive_on_crashing_requests(server):
    url = server.url
    http = requests.Session()
    http.headers["Accept"] = "application/json"
    assert http.put(f"{url}/crashy", timeout=5).status_code == 201
    assert http.put(f"{url}/crashy/c", json={"v": 1}, timeout=5).status_code == 201
    # 1. latest=true with a rev the doc does not have: CouchDB's "missing", not a crash
    resp = http.get(f"{url}/crashy/c", params={"open_revs": '["9-zzz"]', "latest": "true"},
                    timeout=5)
    assert resp.json() == [{"missing": "9-zzz"}]
    resp = http.post(f"{url}/crashy/_bulk_get", params={"latest": "true"},
                     json={"docs": [{"id": "c", "rev": "9-zzz"}]}, timeout=5)
    assert resp.json()["results"][0]["docs"] == [{"missing": "9-zzz"}]
    # 2. a _changes filter that fails after routing: the client gets its 404, server lives
    resp = http.post(f"{url}/crashy/_changes", params={"filter": "_selector"},
                     json={"selector": {}}, timeout=5)
    assert resp.status_code == 404
    assert _alive(url)
    assert any("kept the server alive" in m or "unhandled" in m
               for m in server.guard_messages())


def test_stop_ends_the_process_group():
    srv = launch()
    pid = srv.proc.pid
    srv.stop()
    srv.stop()  # idempotent
    assert srv.proc.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
    assert not srv.run_dir.exists()
    with pytest.raises(requests.ConnectionError):
        requests.get(srv.url + "/", timeout=2)


def test_module_entry_point_installs():
    out = subprocess.run(["python3", "-m", "tests.couchserver", "--install"],
                         capture_output=True, text=True, timeout=600, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
    assert out.stdout.strip().endswith("pouchdb-server")
