"""Bad input reaches the JS client as a clear error or denied event, never an uncaught
exception or a hung sync: an unreachable URL, another protocol version, a malformed,
binary or oversized frame, a reply of the wrong shape, no welcome, bad arguments."""

from __future__ import annotations

import pytest

from pouchsync_sync import LocalDatabase
from tests.js.badserver import OVERSIZED, BadServer
from tests.fault.hostile import HostileServer

BROKEN = """
var h = require(process.env.PS_HARNESS);
h.run(async function () {
  var client = h.client({maxReceiveSize: Number(process.env.MAX_RECEIVE || 1e8), helloTimeout: 1000});
  var clog = h.record(client, 'client', []);
  var live = client.sync(h.makeDb('a'), {remoteName: 'todos', credentials: {token: 't'}});
  var oneShot = client.sync(h.makeDb('b'), {remoteName: 'todos', live: false, credentials: {token: 't'}});
  var slog = h.record(live, 'live', []);
  h.record(oneShot, 'oneShot', slog);
  client.connect(h.URL);
  var rejected = await oneShot.then(function () { return null; }, function (err) { return {name: err.name, message: err.message}; });
  if (process.env.END_AFTER_RECONNECTS) {
    await h.waitFor(function () { return clog.filter(function (e) { return e.event === 'reconnect'; }).length >= 2; }, 20000, 'reconnects');
    client.end();
  }
  await h.waitFor(function () { return client.state === 'ended'; }, 20000, 'client ended');
  h.report({rejected: rejected, client: clog, syncs: slog, liveState: live.state, oneShotState: oneShot.state});
});
"""


def _run_broken(run_js, url: str, **env: str) -> dict:
    return run_js(BROKEN, timeout=60, SYNC_URL=url, **env)[0]


def _assert_protocol_error(out: dict, words: str) -> None:
    assert out["rejected"]["name"] == "ProtocolError", out
    assert words in out["rejected"]["message"], out["rejected"]
    client_errors = [e for e in out["client"] if e["event"] == "error"]
    assert len(client_errors) == 1 and client_errors[0]["name"] == "ProtocolError"
    for on in ("live", "oneShot"):
        events = [e for e in out["syncs"] if e["on"] == on]
        assert [e["event"] for e in events] == ["error"], events
        assert words in events[0]["message"]
    assert out["liveState"] == "error" and out["oneShotState"] == "error"
    assert not [e for e in out["client"] if e["event"] == "reconnect"]  # no retry loop


@pytest.mark.parametrize("mode, words", [
    ("version", "server speaks versions [7]"),
    ("malformed", "malformed JSON"),
    ("binary", "binary frames are not used"),
    ("oversized", "over the 100000 bytes allowed"),
    ("bad-granted", "'granted' needs a 'uuid' field"),
])
def test_a_server_breaking_the_protocol_gives_one_clear_error_and_stops(run_js, mode, words):
    with LocalDatabase(":memory:", name="todos") as db:
        server = BadServer(db, mode)
        try:
            out = _run_broken(run_js, server.url, MAX_RECEIVE="100000")
        finally:
            server.close()
    _assert_protocol_error(out, words)
    assert OVERSIZED > 100000


def test_a_reply_of_the_wrong_shape_is_a_protocol_error(run_js):
    with LocalDatabase(":memory:", name="todos") as db:
        db.put({"_id": "x"})
        server = HostileServer(db, {"changes_texts": {"results": 5, "last_seq": 1}})
        try:
            out = _run_broken(run_js, server.url)
        finally:
            server.close()
    _assert_protocol_error(out, "the server's reply to changes_texts is malformed ('results' is int, not a list)")


def test_an_unreachable_url_gives_error_events_and_the_one_shot_sync_rejects(run_js, unused_port):
    out = _run_broken(run_js, f"ws://127.0.0.1:{unused_port}/", END_AFTER_RECONNECTS="1")
    assert out["rejected"]["name"] == "TransportError"
    assert f"127.0.0.1:{unused_port}" in out["rejected"]["message"]
    events = [e["event"] for e in out["client"]]
    assert events[:3] == ["error", "disconnect", "reconnect"]
    reconnects = [e for e in out["client"] if e["event"] == "reconnect"]
    assert [e["attempt"] for e in reconnects[:2]] == [1, 2]
    assert all(0 <= e["delay"] <= 500 for e in reconnects)
    assert out["oneShotState"] == "error"
    # a live sync waits for the server (retrying), then end() cancels it
    assert out["liveState"] == "cancelled"
    assert [e["event"] for e in out["syncs"] if e["on"] == "live"] == ["complete"]


def test_no_welcome_within_the_hello_timeout_is_a_transport_error_and_retried(run_js):
    with LocalDatabase(":memory:", name="todos") as db:
        server = BadServer(db, "no-welcome")
        try:
            out = _run_broken(run_js, server.url, END_AFTER_RECONNECTS="1")
        finally:
            server.close()
    assert out["rejected"]["name"] == "TransportError"
    assert "no welcome" in out["rejected"]["message"]


BAD_ARGS = """
var h = require(process.env.PS_HARNESS);
h.run(async function () {
  var client = h.client();
  var db = h.makeDb('x');
  var cases = {
    url: function () { client.connect('http://127.0.0.1:1/'); },
    notUrl: function () { client.connect(42); },
    noDb: function () { client.sync({}, {}); },
    direction: function () { client.sync(db, {direction: 'sideways'}); },
    batchSize: function () { client.sync(db, {batchSize: 0}); },
    remoteName: function () { client.sync(db, {remoteName: ''}); },
    backoff: function () { h.PouchSync.createClient({factor: 0.5}); },
    noWebSocket: function () { h.PouchSync.createClient({WebSocket: null}).connect('ws://127.0.0.1:1/'); }
  };
  var out = {};
  Object.keys(cases).forEach(function (name) {
    try { cases[name](); out[name] = 'no error'; } catch (err) { out[name] = err.name + ': ' + err.message; }
  });
  client.end();
  h.report(out);
});
"""


def test_bad_arguments_throw_at_once_with_a_clear_message(run_js):
    out = run_js(BAD_ARGS)[0]
    assert out["url"].startswith("TypeError: connect() needs a ws:// or wss:// URL")
    assert out["notUrl"].startswith("TypeError: connect() needs")
    assert out["noDb"] == "TypeError: sync() needs a PouchDB database"
    assert out["direction"].startswith("TypeError: direction must be 'both', 'push' or 'pull'")
    assert out["batchSize"] == "TypeError: batchSize must be a positive integer"
    assert out["remoteName"].startswith("TypeError: remoteName must be a non-empty string")
    assert out["backoff"] == "RangeError: factor must be >= 1"
    assert out["noWebSocket"].startswith("TypeError: no WebSocket")


RETRY = """
var h = require(process.env.PS_HARNESS);
h.run(async function () {
  var client = h.client({initialDelay: 50, maxDelay: 100});
  client.connect(h.URL);
  var db = h.makeDb('r');
  var sync = client.sync(db, {remoteName: 'todos', direction: 'pull', credentials: {token: 't'}});
  var paused = [];
  sync.on('paused', function (err) { paused.push(err ? {name: err.name, status: err.status, message: err.message} : null); });
  var errors = h.record(sync, 'sync', []);
  await h.waitFor(function () { return db.get('x').then(function () { return true; }, function () { return false; }); }, 20000, 'doc x');
  await h.waitFor(function () { return sync.state === 'paused'; }, 20000, 'paused');
  h.report({paused: paused, events: errors.map(function (e) { return e.event; })});
  client.end();
});
"""


def test_a_retryable_error_pauses_a_live_sync_with_the_error_and_it_tries_again(run_js):
    from pouchsync_sync.errors import CouchError
    from pouchsync_sync.protocol import ops

    with LocalDatabase(":memory:", name="todos") as db:
        db.put({"_id": "x"})
        failures = [2]

        def flaky(args):
            if failures[0]:
                failures[0] -= 1
                raise CouchError("database unavailable", status=503, error="unavailable")
            kwargs = ops.validate_call("changes_texts", args)
            return ops.encode_result("changes_texts", db.changes_texts(**kwargs))

        server = HostileServer(db, {"changes_texts": flaky})
        try:
            out = run_js(RETRY, SYNC_URL=server.url)[0]
        finally:
            server.close()
    assert out["paused"][:2] == [{"name": "Unavailable", "status": 503,
                                  "message": "database unavailable"}] * 2
    assert out["paused"][-1] is None
    assert "error" not in out["events"]
