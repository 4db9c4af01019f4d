"""cancel() before connect, mid-batch and after complete; end()/destroy() leave no
timer or socket: the node process exits by itself (the runner's timeout fails it)."""

from __future__ import annotations

import threading
import time

CANCEL_BEFORE_CONNECT = """
var h = require(process.env.PS_HARNESS);
h.run(async function () {
  var client = h.client();
  var db = h.makeDb('todos');
  await db.put({_id: 'never-sent'});
  var sync = client.sync(db, {credentials: {token: h.TOKEN}});
  var log = h.record(sync, 'sync', []);
  sync.cancel();
  sync.cancel();                      // idempotent
  var result = await sync;           // a cancelled sync resolves
  client.connect(h.URL);
  await h.waitEvent(client, 'connect', 20000);
  var other = await client.sync(h.makeDb(), {remoteName: 'other', live: false, credentials: {token: h.TOKEN}});
  h.report({result: result, events: log.map(function (e) { return e.event; }), state: sync.state, other: other.status});
  client.end();
});
"""


def test_cancel_before_connect_emits_complete_and_never_opens_a_channel(run_js, js_server):
    out = run_js(CANCEL_BEFORE_CONNECT)[0]
    assert out["events"] == ["complete"]
    assert out["result"]["status"] == "cancelled" and out["state"] == "cancelled"
    assert out["other"] == "complete"
    assert [name for _, name in js_server.requests] == ["other"]
    assert "todos" not in js_server.dbs


CANCEL_MID_BATCH = """
var h = require(process.env.PS_HARNESS);
h.run(async function () {
  var stdin = new h.Stdin();
  var client = h.client();
  client.connect(h.URL);
  var db = h.makeDb('big');
  var sync = client.sync(db, {live: false, batchSize: 20, credentials: {token: h.TOKEN}});
  var log = h.record(sync, 'sync', []);
  var first = await h.waitEvent(sync, 'change', 20000);
  sync.cancel();
  var result = await sync;
  var count = (await db.allDocs()).rows.length;
  // wait a little for anything late: nothing more may be written or emitted
  await new Promise(function (r) { setTimeout(r, 300); });
  var later = (await db.allDocs()).rows.length;
  h.report({cancelled: true, result: result, count: count, later: later,
            events: log.map(function (e) { return e.event; })});
  await stdin.next();
  stdin.close();
  client.end();
});
"""


def test_cancel_mid_batch_closes_the_channel_on_the_wire_and_stops(start_js, js_server):
    js_server.db("big").bulk_docs([{"_id": f"d{i:05d}", "pad": "x" * 200} for i in range(2000)])
    node = start_js(CANCEL_MID_BATCH)
    out = node.expect(lambda o: o.get("cancelled"))
    assert out["result"]["status"] == "cancelled"
    assert 0 < out["count"] < 2000 and out["later"] == out["count"]
    events = out["events"]
    assert events.count("complete") == 1 and events[-1] == "complete"
    assert "error" not in events
    # the socket is still open, the channel is gone on the server
    _wait(lambda: js_server.server.stats()["channels"] == 0)
    assert js_server.server.stats()["connections"] == 1
    node.send({"end": True})
    assert node.wait(30) == 0


CANCEL_AFTER_COMPLETE = """
var h = require(process.env.PS_HARNESS);
h.run(async function () {
  var client = h.client();
  client.connect(h.URL);
  var sync = client.sync(h.makeDb('todos'), {live: false, credentials: {token: h.TOKEN}});
  var log = h.record(sync, 'sync', []);
  var result = await sync;
  sync.cancel();
  sync.cancel();
  h.report({result: result, events: log.map(function (e) { return e.event; }), state: sync.state});
  client.destroy();
  client.destroy();
});
"""


def test_cancel_after_complete_is_a_no_op(run_js, js_server):
    js_server.db("todos").put({"_id": "x"})
    out = run_js(CANCEL_AFTER_COMPLETE)[0]
    assert out["result"]["status"] == "complete" and out["state"] == "complete"
    assert out["events"].count("complete") == 1 and out["events"][-1] == "complete"


END_LIVE = """
var h = require(process.env.PS_HARNESS);
h.run(async function () {
  var client = h.client({pingInterval: 60000});
  var clog = h.record(client, 'client', []);
  client.connect(h.URL);
  var syncs = ['a', 'b', 'c'].map(function (n) {
    return client.sync(h.makeDb(n), {credentials: {token: h.TOKEN}});
  });
  var logs = syncs.map(function (s) { return h.record(s, 'sync', []); });
  await Promise.all(syncs.map(function (s) { return h.waitEvent(s, 'paused', 20000); }));
  client.end();
  var states = syncs.map(function (s) { return s.state; });
  // ws finishes its closing handshake (its close timer ends with it); then nothing is left
  setTimeout(function () {
    var resources = process.getActiveResourcesInfo().filter(function (r) { return r !== 'TTYWrap'; });
    h.report({states: states, completes: logs.map(function (l) { return l.filter(function (e) { return e.event === 'complete'; }).length; }),
              client: clog.map(function (e) { return e.event; }), resources: resources});
  }, 500);
  // nothing else: node must exit by itself
});
"""


def test_end_cancels_every_sync_and_leaves_no_timer_or_socket(node, js_server):
    from tests.js.conftest import HARNESS, TOKEN

    started = time.monotonic()
    proc = node.run(END_LIVE, env={"PS_HARNESS": str(HARNESS), "SYNC_URL": js_server.url,
                                   "SYNC_TOKEN": TOKEN}, timeout=30)
    out = node.json_lines(proc.stdout)[0]
    assert out["states"] == ["cancelled"] * 3
    assert out["completes"] == [1, 1, 1]
    assert out["client"] == ["connect", "disconnect"]
    # the one Timeout left is the report's own (running) timer; PipeWraps are stdio
    assert out["resources"].count("Timeout") == 1 and "TCPSocketWrap" not in out["resources"], \
        out["resources"]
    assert time.monotonic() - started < 30
    _wait(lambda: js_server.server.stats()["connections"] == 0)


END_WHILE_RETRYING = """
var h = require(process.env.PS_HARNESS);
h.run(async function () {
  var client = h.client({initialDelay: 60000, maxDelay: 60000});
  var log = h.record(client, 'client', []);
  var sync = client.sync(h.makeDb('x'), {credentials: {token: h.TOKEN}});
  client.connect(process.env.DEAD_URL);
  await h.waitEvent(client, 'reconnect', 20000);
  client.end();
  h.report({events: log.map(function (e) { return e.event; }), state: sync.state});
});
"""


def test_end_while_waiting_to_reconnect_leaves_no_timer(run_js, unused_port):
    out = run_js(END_WHILE_RETRYING, timeout=30, DEAD_URL=f"ws://127.0.0.1:{unused_port}/")[0]
    assert out["events"][:3] == ["error", "disconnect", "reconnect"]
    assert out["state"] == "cancelled"


def _wait(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        pause.wait(0.02)
