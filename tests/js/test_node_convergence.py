"""Convergence, as a property: random edits on both sides (PouchDB in Node and the
server's embedded store: updates, deletions, new docs, conflicting edits of the same
doc), one sync both ways, and both hold the same leaves of every document and the
same winner. Hypothesis draws the edits."""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SCRIPT = """
var h = require(process.env.PS_HARNESS);
h.run(async function () {
  var stdin = new h.Stdin();
  var db = h.makeDb('conv');
  var client = h.client();
  client.connect(h.URL);
  var opts = {remoteName: process.env.DB, live: false, batchSize: 3, credentials: {token: h.TOKEN}};
  await client.sync(db, opts);
  h.report({seeded: true});
  var edits = (await stdin.next()).edits;          // the server side has made its edits
  for (var i = 0; i < edits.length; i++) {
    var e = edits[i];
    var doc = await db.get(e.id).catch(function () { return null; });
    if (e.op === 'delete') { if (doc) await db.remove(doc); }
    else {
      var body = doc || {_id: e.id};
      body.v = e.value;
      await db.put(body);
    }
  }
  await client.sync(db, opts);
  var all = await db.allDocs({include_docs: false});
  var ids = JSON.parse(process.env.IDS);
  var out = {};
  for (var k = 0; k < ids.length; k++) {
    var leaves = await db.get(ids[k], {open_revs: 'all'}).catch(function () { return []; });
    var winner = await db.get(ids[k]).then(function (d) { return d._rev; }, function (err) { return err.status === 404 ? 'gone:' + err.reason : String(err); });
    out[ids[k]] = {leaves: leaves.map(function (l) { return l.ok ? l.ok._rev + (l.ok._deleted ? ':deleted' : '') : 'missing'; }).sort(), winner: winner};
  }
  h.report({state: out});
  stdin.close();
  client.end();
});
"""

IDS = [f"d{i}" for i in range(5)] + ["new-a", "new-b"]
edit = st.fixed_dictionaries({"id": st.sampled_from(IDS), "op": st.sampled_from(["put", "put", "delete"]),
                              "value": st.integers(0, 3)})
_names = itertools.count()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(js_edits=st.lists(edit, max_size=8), py_edits=st.lists(edit, max_size=8))
def test_random_edits_on_both_sides_converge(start_js, js_server, js_edits, py_edits):
    import json

    name = f"conv{next(_names)}"
    srv = js_server.db(name)
    srv.bulk_docs([{"_id": f"d{i}", "v": 0} for i in range(5)])
    node = start_js(SCRIPT, DB=name, IDS=json.dumps(IDS))
    node.expect(lambda o: o.get("seeded"))
    for e in py_edits:
        try:
            current = srv.get(e["id"])
        except Exception:
            current = None
        if e["op"] == "delete":
            if current is not None:
                srv.delete(e["id"], current["_rev"])
        else:
            body = dict(current or {"_id": e["id"]}, v=e["value"])
            srv.put(body)
    node.send({"edits": js_edits})
    state = node.expect(lambda o: "state" in o, timeout=60)["state"]
    assert node.wait(30) == 0
    for doc_id in IDS:
        try:
            leaves = sorted(item["ok"]["_rev"] + (":deleted" if item["ok"].get("_deleted") else "")
                            for item in srv.get(doc_id, open_revs="all") if "ok" in item)
        except Exception:
            leaves = []
        assert state[doc_id]["leaves"] == leaves, (doc_id, state[doc_id], leaves)
        try:
            winner = srv.get(doc_id)["_rev"]
        except Exception as exc:
            winner = None
            assert state[doc_id]["winner"].startswith("gone:"), (doc_id, state[doc_id], exc)
        if winner is not None:
            assert state[doc_id]["winner"] == winner, (doc_id, state[doc_id], winner)


LIVE_SCRIPT = """
var h = require(process.env.PS_HARNESS);
h.run(async function () {
  var stdin = new h.Stdin();
  var db = h.makeDb('conv');
  var client = h.client();
  client.connect(h.URL);
  var sync = client.sync(db, {remoteName: process.env.DB, batchSize: 2, credentials: {token: h.TOKEN}});
  await h.waitEvent(sync, 'paused', 20000);
  h.report({seeded: true});
  var ids = JSON.parse(process.env.IDS);
  for (;;) {
    var cmd = await stdin.next();
    if (cmd.end) break;
    if (cmd.edits) {
      for (var i = 0; i < cmd.edits.length; i++) {   // while the live sync runs
        for (var attempt = 0; ; attempt++) {          // the pull may write the doc meanwhile: 409, again
          try {
            var e = cmd.edits[i];
            var doc = await db.get(e.id).catch(function () { return null; });
            if (e.op === 'delete') { if (doc) await db.remove(doc); }
            else { var body = doc || {_id: e.id}; body.v = e.value; await db.put(body); }
            break;
          } catch (err) {
            if (err.status !== 409 || attempt > 20) throw err;
          }
        }
      }
      h.report({edited: true});
    }
    if (cmd.state) {
      var out = {};
      for (var k = 0; k < ids.length; k++) {
        var leaves = await db.get(ids[k], {open_revs: 'all'}).catch(function () { return []; });
        out[ids[k]] = leaves.map(function (l) { return l.ok ? l.ok._rev + (l.ok._deleted ? ':deleted' : '') : 'missing'; }).sort();
      }
      h.report({state: out, syncState: sync.state});
    }
  }
  sync.cancel();
  client.end();
  stdin.close();
});
"""


def _server_leaves(srv, ids):
    out = {}
    for doc_id in ids:
        try:
            out[doc_id] = sorted(item["ok"]["_rev"] + (":deleted" if item["ok"].get("_deleted") else "")
                                 for item in srv.get(doc_id, open_revs="all") if "ok" in item)
        except Exception:
            out[doc_id] = []
    return out


def _apply(srv, edits):
    from pouchsync_sync import Conflict, NotFound

    for e in edits:
        for attempt in range(20):  # a live push may write the doc meanwhile: Conflict, again
            try:
                current = srv.get(e["id"])
            except NotFound:
                current = None
            try:
                if e["op"] == "delete":
                    if current is not None:
                        srv.delete(e["id"], current["_rev"])
                else:
                    srv.put(dict(current or {"_id": e["id"]}, v=e["value"]))
                break
            except Conflict:
                assert attempt < 19


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(js_edits=st.lists(edit, max_size=8), py_edits=st.lists(edit, max_size=8))
def test_random_concurrent_edits_during_a_live_sync_converge(start_js, js_server, js_edits, py_edits):
    import json
    import threading
    import time

    name = f"live{next(_names)}"
    srv = js_server.db(name)
    srv.bulk_docs([{"_id": f"d{i}", "v": 0} for i in range(5)])
    node = start_js(LIVE_SCRIPT, DB=name, IDS=json.dumps(IDS))
    node.expect(lambda o: o.get("seeded"))
    node.send({"edits": js_edits})        # both sides edit at once
    _apply(srv, py_edits)
    node.expect(lambda o: o.get("edited"))
    deadline = time.monotonic() + 30
    pause = threading.Event()
    while True:
        node.send({"state": True})
        got = node.expect(lambda o: "state" in o)
        expected = _server_leaves(srv, IDS)
        if got["state"] == expected and got["syncState"] == "paused":
            break
        assert time.monotonic() < deadline, (got, expected)
        pause.wait(0.1)
    node.send({"end": True})
    assert node.wait(30) == 0
