"""pouchsync.js in Node (PouchDB 9, memory adapter) against a real SyncServer:
one-shot push, pull and both; live JS -> server -> Python client and back; five
databases over one socket; conflicts; attachments."""

from __future__ import annotations

import base64

import pytest

import pouchsync_sync as ps
from tests.js.conftest import TOKEN

ONE_SHOT = """
var h = require(process.env.PS_HARNESS);
h.run(async function () {
  var db = h.makeDb('todos');
  var seed = JSON.parse(process.env.SEED || '[]');
  if (seed.length) await db.bulkDocs(seed);
  var client = h.client();
  var log = h.record(client, 'client', []);
  client.connect(h.URL);
  var sync = client.sync(db, {live: false, direction: process.env.DIRECTION, batchSize: 7,
                              credentials: {token: h.TOKEN}});
  h.record(sync, 'sync', log);
  var result = await sync;
  var all = await db.allDocs({include_docs: true});
  h.report({result: result, docs: all.rows.map(function (r) { return r.doc; }), log: log});
  client.end();
});
"""


def _seed(prefix: str, count: int) -> list[dict]:
    return [{"_id": f"{prefix}{i:03d}", "n": i, "text": "é" * (i % 5)} for i in range(count)]


def test_one_shot_push_writes_every_doc_and_resolves_with_the_counts(run_js, js_server):
    import json

    out = run_js(ONE_SHOT, DIRECTION="push", SEED=json.dumps(_seed("js", 30)))
    result = out[0]["result"]
    assert result["status"] == "complete" and "pull" not in result
    assert result["push"]["docs_read"] == 30 and result["push"]["docs_written"] == 30
    srv = js_server.db("todos")
    assert srv.info()["doc_count"] == 30
    assert srv.get("js007")["text"] == "éé"
    events = [e["event"] for e in out[0]["log"]]
    assert events[0] == "connect" and events[-1] == "complete"
    assert events.count("change") == 5  # 30 docs in batches of 7


def test_one_shot_pull_reads_every_doc_including_updates_and_deletions(run_js, js_server):
    srv = js_server.db("todos")
    srv.bulk_docs(_seed("py", 20))
    rev = srv.put({"_id": "edited", "v": 1})["rev"]
    srv.put({"_id": "edited", "_rev": rev, "v": 2})
    gone = srv.put({"_id": "gone", "v": 1})["rev"]
    srv.delete("gone", gone)
    out = run_js(ONE_SHOT, DIRECTION="pull")
    result = out[0]["result"]
    assert "push" not in result and result["pull"]["docs_written"] == 22
    docs = {d["_id"]: d for d in out[0]["docs"]}
    assert len(docs) == 21 and "gone" not in docs
    assert docs["edited"]["v"] == 2 and docs["edited"]["_rev"] == srv.get("edited")["_rev"]
    assert docs["py013"]["text"] == "ééé"


def test_one_shot_both_ways_and_a_second_run_replays_nothing(run_js, js_server):
    import json

    srv = js_server.db("todos")
    srv.bulk_docs(_seed("py", 10))
    script = ONE_SHOT.replace("client.end();", """
  var again = client.sync(db, {live: false, credentials: {token: h.TOKEN}});
  h.report({again: await again});
  client.end();""")
    out = run_js(script, DIRECTION="both", SEED=json.dumps(_seed("js", 10)))
    result = out[0]["result"]
    assert result["push"]["docs_written"] == 10 and result["pull"]["docs_written"] == 10
    assert len(out[0]["docs"]) == 20 and srv.info()["doc_count"] == 20
    again = out[1]["again"]
    assert again["docs_read"] == 0 and again["docs_written"] == 0


LIVE_PEER = """
var h = require(process.env.PS_HARNESS);
h.run(async function () {
  var stdin = new h.Stdin();
  var db = h.makeDb('shared');
  var client = h.client();
  client.connect(h.URL);
  var sync = client.sync(db, {credentials: {token: h.TOKEN}});
  var log = h.record(sync, 'sync', []);
  await h.waitEvent(sync, 'paused', 20000);
  h.report({ready: true});
  for (;;) {
    var cmd = await stdin.next();
    if (cmd.put) {
      await db.put(cmd.put);
      h.report({put: cmd.put._id});
    } else if (cmd.waitFor) {
      await h.waitFor(function () {
        return db.get(cmd.waitFor).then(function () { return true; }, function () { return false; });
      }, 20000, cmd.waitFor);
      var doc = await db.get(cmd.waitFor);
      h.report({got: doc});
    } else if (cmd.end) {
      break;
    }
  }
  sync.cancel();
  client.end();
  stdin.close();
  h.report({done: true, log: log});
});
"""


def test_live_js_to_server_to_python_client_and_back(start_js, js_server, tmp_path):
    node = start_js(LIVE_PEER)
    node.expect(lambda o: o.get("ready"))
    py_db = ps.LocalDatabase(tmp_path / "py.sqlite")
    client = ps.create_client()
    try:
        client.connect(js_server.url)
        live = client.sync(py_db, remote_name="shared", credentials={"token": TOKEN}, live=True)
        node.send({"put": {"_id": "from-js", "title": "written in node"}})
        node.expect(lambda o: o.get("put") == "from-js")
        live.wait_in_sync(timeout=30)
        _wait_doc(py_db, "from-js")
        assert py_db.get("from-js")["title"] == "written in node"
        py_db.put({"_id": "from-py", "title": "written in python"})
        node.send({"waitFor": "from-py"})
        got = node.expect(lambda o: "got" in o)["got"]
        assert got["title"] == "written in python"
        node.send({"end": True})
        done = node.expect(lambda o: o.get("done"))
        assert node.wait(30) == 0
        events = [e["event"] for e in done["log"]]
        assert "change" in events and events[-1] == "complete"
        live.cancel()
    finally:
        client.close()
        py_db.close()


def _wait_doc(db: ps.LocalDatabase, doc_id: str, timeout: float = 20.0) -> dict:
    import threading
    import time

    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        try:
            return db.get(doc_id)
        except ps.NotFound:
            if time.monotonic() > deadline:
                raise
            pause.wait(0.02)


FIVE_DBS = """
var h = require(process.env.PS_HARNESS);
h.run(async function () {
  var client = h.client();
  var connects = 0;
  client.on('connect', function () { connects += 1; });
  client.connect(h.URL);
  var names = ['one', 'two', 'three', 'four', 'five'];
  var dbs = names.map(function (n) { return h.makeDb('local-' + n); });
  for (var i = 0; i < names.length; i++) {
    var docs = [];
    for (var k = 0; k < 20; k++) docs.push({_id: names[i] + '-js-' + k, db: names[i]});
    await dbs[i].bulkDocs(docs);
  }
  var syncs = names.map(function (n, i) {
    return client.sync(dbs[i], {remoteName: n, live: false, batchSize: 6, credentials: {token: h.TOKEN}});
  });
  var results = await Promise.all(syncs);
  var contents = {};
  for (var j = 0; j < names.length; j++) {
    var all = await dbs[j].allDocs({include_docs: true});
    contents[names[j]] = all.rows.map(function (r) { return r.doc.db; });
  }
  h.report({contents: contents, connects: connects, written: results.map(function (r) { return r.docs_written; })});
  client.end();
});
"""


def test_five_databases_over_one_socket_without_cross_talk(run_js, js_server):
    names = ["one", "two", "three", "four", "five"]
    for name in names:
        js_server.db(name).bulk_docs([{"_id": f"{name}-py-{k}", "db": name} for k in range(15)])
    out = run_js(FIVE_DBS)[0]
    assert out["connects"] == 1
    assert js_server.server.stats()["connections_total"] == 1
    assert out["written"] == [35] * 5
    for name in names:
        assert out["contents"][name] == [name] * 35
        rows = js_server.db(name).all_docs(include_docs=True)["rows"]
        assert len(rows) == 35 and {r["doc"]["db"] for r in rows} == {name}


CONFLICT = """
var h = require(process.env.PS_HARNESS);
h.run(async function () {
  var db = h.makeDb('conflicts');
  var client = h.client();
  client.connect(h.URL);
  var opts = {live: false, credentials: {token: h.TOKEN}};
  await client.sync(db, opts);
  var doc = await db.get('c');
  doc.side = 'js'; doc.edits = [1, 2, 3];
  await db.put(doc);
  var doc2 = await db.get('c');
  doc2.side = 'js again';
  await db.put(doc2);                       // 3-... on the JS side
  var stdin = new h.Stdin();
  h.report({edited: true});
  await stdin.next();                        // the Python side has made its edit
  await client.sync(db, opts);
  var winner = await db.get('c', {conflicts: true});
  var leaves = await db.get('c', {open_revs: 'all'});
  h.report({winner: winner, leaves: leaves.map(function (l) { return l.ok._rev; }).sort()});
  stdin.close();
  client.end();
});
"""


def test_a_conflict_made_on_both_sides_ends_with_the_same_winner_everywhere(start_js, js_server):
    srv = js_server.db("conflicts")
    rev1 = srv.put({"_id": "c", "side": "start"})["rev"]
    node = start_js(CONFLICT)
    node.expect(lambda o: o.get("edited"))
    rev2 = srv.put({"_id": "c", "_rev": rev1, "side": "python"})["rev"]
    srv.put({"_id": "c", "_rev": rev2, "side": "python again", "x": 1})
    node.send({"go": True})
    out = node.expect(lambda o: "winner" in o)
    assert node.wait(30) == 0
    server_doc = srv.get("c", conflicts=True)
    js_doc = out["winner"]
    assert js_doc["_rev"] == server_doc["_rev"]
    assert js_doc["side"] == server_doc["side"]
    assert sorted(js_doc["_conflicts"]) == sorted(server_doc["_conflicts"])
    assert len(server_doc["_conflicts"]) == 1
    server_leaves = sorted(item["ok"]["_rev"] for item in srv.get("c", open_revs="all"))
    assert out["leaves"] == server_leaves and len(server_leaves) == 2


ATTACHMENTS = """
var h = require(process.env.PS_HARNESS);
h.run(async function () {
  var db = h.makeDb('files');
  await db.put({_id: 'js-file', _attachments: {
    'hello.txt': {content_type: 'text/plain', data: Buffer.from('hello from node').toString('base64')},
    'bytes.bin': {content_type: 'application/octet-stream', data: Buffer.from([0, 1, 2, 255, 254]).toString('base64')}}});
  var client = h.client();
  client.connect(h.URL);
  var result = await client.sync(db, {live: false, credentials: {token: h.TOKEN}});
  var pulled = await db.get('py-file', {attachments: true});
  var att = pulled._attachments['photo.png'];
  h.report({result: result, content_type: att.content_type, data: att.data});
  client.end();
});
"""


def test_attachments_travel_both_ways(run_js, js_server):
    srv = js_server.db("files")
    png = bytes(range(256)) * 40
    srv.put({"_id": "py-file", "_attachments": {"photo.png": {
        "content_type": "image/png", "data": base64.b64encode(png).decode()}}})
    out = run_js(ATTACHMENTS)[0]
    assert out["result"]["push"]["docs_written"] == 1
    assert out["content_type"] == "image/png"
    assert base64.b64decode(out["data"]) == png
    assert srv.get_attachment("js-file", "hello.txt") == b"hello from node"
    assert srv.get_attachment("js-file", "bytes.bin") == bytes([0, 1, 2, 255, 254])


TWO_TABS = """
var h = require(process.env.PS_HARNESS);
h.run(async function () {
  // two "tabs": two PouchDB objects on one database (same name, same storage, same id())
  var tabs = [new h.PouchDB('tab-db', {adapter: 'memory'}), new h.PouchDB('tab-db', {adapter: 'memory'})];
  // IndexedDB gives both tabs the database's one instance id; the memory adapter gives
  // each object its own, so the second tab reports the first one's (same checkpoints)
  tabs[1].id = function () { return tabs[0].id(); };
  var ids = await Promise.all(tabs.map(function (t) { return t.id(); }));
  var clients = tabs.map(function () { return h.client(); });
  var logs = [];
  var syncs = tabs.map(function (t, i) {
    clients[i].connect(h.URL);
    var s = clients[i].sync(t, {remoteName: 'tabs', credentials: {token: h.TOKEN}});
    h.record(s, 'tab' + i, logs);
    return s;
  });
  for (var n = 0; n < 30; n++) await tabs[n % 2].put({_id: 'doc' + n, tab: n % 2});
  await h.waitFor(function () {
    return syncs.every(function (s) { return s.state === 'paused'; }) && logs.filter(function (e) { return e.event === 'change' && e.direction === 'push'; }).length > 0;
  }, 20000, 'both paused').catch(function (err) {
    throw new Error(err.message + ': ' + JSON.stringify({states: syncs.map(function (s) { return s.state; }), log: logs}));
  });
  h.report({sameId: ids[0] === ids[1], errors: logs.filter(function (e) { return e.event === 'error'; })});
  syncs.forEach(function (s) { s.cancel(); });
  clients.forEach(function (c) { c.end(); });
});
"""


def test_two_tabs_on_one_database_share_checkpoints_without_errors(run_js, js_server):
    import threading
    import time

    out = run_js(TWO_TABS)[0]
    assert out["sameId"] is True
    assert out["errors"] == []
    srv = js_server.db("tabs")
    deadline = time.monotonic() + 20
    while srv.info()["doc_count"] < 30:
        assert time.monotonic() < deadline
        threading.Event().wait(0.05)
