"""Dead-server detection and cut connections: a hung socket (a proxy that stops
forwarding, no FIN, no RST) is found by the client's ping and replaced; a connection
reset mid-frame is reconnected; the live sync goes on through both. Also: the file
works as a plain <script> (a global PouchSync, no module system)."""

from __future__ import annotations

import json

from tests.fault.proxy import FaultProxy

THROUGH_FAULTS = """
var h = require(process.env.PS_HARNESS);
h.run(async function () {
  var stdin = new h.Stdin();
  var db = h.makeDb('local');
  var client = h.client({pingInterval: 300, initialDelay: 50, maxDelay: 200});
  var log = h.record(client, 'client', []);
  client.connect(h.URL);
  var sync = client.sync(db, {remoteName: 'pinged', credentials: {token: h.TOKEN}});
  await h.waitEvent(sync, 'paused', 20000);
  h.report({ready: true});
  for (;;) {
    var cmd = await stdin.next();
    if (cmd.end) break;
    var connects = log.filter(function (e) { return e.event === 'connect'; }).length;
    await h.waitFor(function () {
      return log.filter(function (e) { return e.event === 'connect'; }).length > connects;
    }, 20000, 'a new connection');
    var pushed = h.waitEvent(sync, 'change', 20000);
    await db.put({_id: cmd.write});
    await pushed;                                      // the one change: the push of this doc
    h.report({written: cmd.write, disconnects: log.filter(function (e) { return e.event === 'disconnect'; }).map(function (e) { return e.message; })});
  }
  sync.cancel();
  client.end();
  stdin.close();
  h.report({done: true, events: log.map(function (e) { return e.event; }),
            attempts: log.filter(function (e) { return e.event === 'reconnect'; }).map(function (e) { return e.attempt; })});
});
"""


def test_a_hung_server_is_found_by_the_ping_and_a_cut_connection_is_replaced(start_js, js_server):
    import threading
    import time

    srv = js_server.db("pinged")
    proxy = FaultProxy(js_server.port)
    try:
        node = start_js(THROUGH_FAULTS, SYNC_URL=proxy.url())
        node.expect(lambda o: o.get("ready"))
        assert proxy.stall_current() == 1            # hung: no FIN, no RST
        node.send({"write": "after-stall"})
        out = node.expect(lambda o: o.get("written") == "after-stall")
        assert "did not answer a ping" in out["disconnects"][-1]
        proxy.cut_all()                              # reset
        node.send({"write": "after-cut"})
        node.expect(lambda o: o.get("written") == "after-cut")
        deadline = time.monotonic() + 20
        pause = threading.Event()
        while srv.info()["doc_count"] < 2:
            assert time.monotonic() < deadline
            pause.wait(0.02)
        assert {r["id"] for r in srv.all_docs()["rows"]} == {"after-stall", "after-cut"}
        node.send({"end": True})
        done = node.expect(lambda o: o.get("done"))
        assert node.wait(30) == 0
        assert done["events"].count("connect") == 3
        # each outage starts the backoff again at attempt 1 (reset by the good connection)
        assert done["attempts"][0] == 1 and done["attempts"].count(1) == 2
    finally:
        proxy.close()


AS_SCRIPT = """
var vm = require('vm');
var src = require('fs').readFileSync(process.env.CLIENT_JS, 'utf8');
var page = {};                       // a page's global object: no module, no require
page.self = page;
vm.createContext(page);
vm.runInContext(src, page);
var bare = {};                       // no `self` either (a worker-less, window-less global)
vm.createContext(bare);
vm.runInContext(src, bare);
console.log(JSON.stringify({
  page: typeof page.PouchSync.createClient, version: page.PouchSync.VERSION,
  bare: typeof bare.PouchSync.createClient,
  noWebSocket: (function () { try { page.PouchSync.createClient().connect('ws://x/'); return 'no error'; } catch (e) { return e.message; } }())
}));
"""


def test_the_file_works_as_a_plain_script_defining_a_global(node):
    from tests.jsdeps import CLIENT_JS

    out = json.loads(node.run(AS_SCRIPT, env={"CLIENT_JS": str(CLIENT_JS)}).stdout)
    assert out["page"] == "function" and out["bare"] == "function"
    assert out["version"] == "0.1.0"
    assert out["noWebSocket"].startswith("no WebSocket")


BROWSER_LIKE = """
var h = require(process.env.PS_HARNESS);
// A browser's WebSocket: the WHATWG API only (no ping(), no terminate(), no options).
function BrowserWebSocket(url) {
  var self = this;
  var ws = new h.WebSocket(url, {perMessageDeflate: false});
  this._ws = ws;
  ['onopen', 'onmessage', 'onerror', 'onclose'].forEach(function (name) {
    ws[name] = function (event) { if (self[name]) self[name](event); };
  });
  ws.on('error', function () {});
}
BrowserWebSocket.prototype.send = function (data) { this._ws.send(data); };
BrowserWebSocket.prototype.close = function (code, reason) {
  this._ws.close(code, reason);
  var ws = this._ws;
  setTimeout(function () { ws.terminate(); }, 200).unref();   // a browser does not keep node alive
};
h.run(async function () {
  var stdin = new h.Stdin();
  var db = h.makeDb('local');
  var client = h.PouchSync.createClient({WebSocket: BrowserWebSocket, pingInterval: 300, initialDelay: 50, maxDelay: 200});
  var log = h.record(client, 'client', []);
  client.connect(h.URL);
  var sync = client.sync(db, {remoteName: 'browser', credentials: {token: h.TOKEN}});
  await h.waitEvent(sync, 'paused', 20000);
  h.report({ready: true});
  await stdin.next();                                  // the connection is hung now
  await h.waitFor(function () { return log.filter(function (e) { return e.event === 'connect'; }).length === 2; }, 20000, 'reconnected');
  var pushed = h.waitEvent(sync, 'change', 20000);
  await db.put({_id: 'after-hang'});
  await pushed;
  h.report({done: true, disconnects: log.filter(function (e) { return e.event === 'disconnect'; }).map(function (e) { return e.message; })});
  sync.cancel();
  client.end();
  stdin.close();
});
"""


def test_a_browser_websocket_without_ping_finds_a_hung_server_with_an_info_probe(start_js, js_server):
    import threading
    import time

    srv = js_server.db("browser")
    proxy = FaultProxy(js_server.port)
    try:
        node = start_js(BROWSER_LIKE, SYNC_URL=proxy.url())
        node.expect(lambda o: o.get("ready"))
        assert proxy.stall_current() == 1
        node.send({"go": True})
        out = node.expect(lambda o: o.get("done"))
        assert "did not answer a ping" in out["disconnects"][0]
        assert node.wait(30) == 0
        deadline = time.monotonic() + 20
        while srv.info()["doc_count"] < 1:
            assert time.monotonic() < deadline
            threading.Event().wait(0.05)
    finally:
        proxy.close()
