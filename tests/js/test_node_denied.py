"""Refusals: a whole database denied (wrong, missing, malformed credentials; a database
the server does not know) and documents refused by the grant (read-only, _design/)."""

from __future__ import annotations

import pytest

DENIED = """
var h = require(process.env.PS_HARNESS);
h.run(async function () {
  var client = h.client();
  var log = h.record(client, 'client', []);
  client.connect(h.URL);
  var cases = JSON.parse(process.env.CASES);
  var outcomes = [];
  for (var i = 0; i < cases.length; i++) {
    var opts = {remoteName: cases[i].db, live: cases[i].live};
    if (cases[i].credentials !== undefined) opts.credentials = cases[i].credentials;
    var sync = client.sync(h.makeDb(), opts);
    var events = h.record(sync, 'sync', []);
    var outcome;
    try {
      await sync.then(function () { throw new Error('resolved'); }, function (err) { outcome = err; });
      if (!outcome) { // a live sync is thenable too: it rejects the same way
        outcome = {name: 'none'};
      }
    } catch (exc) { outcome = {name: 'resolved', message: exc.message}; }
    outcomes.push({name: outcome.name, message: outcome.message, status: outcome.status,
                   error: outcome.error, events: events, state: sync.state});
  }
  // the client goes on serving other databases
  var ok = await client.sync(h.makeDb(), {remoteName: 'fine', live: false, credentials: {token: h.TOKEN}});
  h.report({outcomes: outcomes, ok: ok.status, clientEvents: log.map(function (e) { return e.event; })});
  client.end();
});
"""

CASES = [
    {"db": "todos", "credentials": {"token": "wrong"}, "live": False},
    {"db": "todos", "live": False},                       # missing
    {"db": "todos", "credentials": "not-an-object", "live": True},   # malformed
    {"db": "todos", "credentials": [1, 2, {"token": None}], "live": True},
    {"db": "unknown-db", "credentials": {"token": "js token"}, "live": False},
]


def test_denied_databases_give_a_denied_and_an_error_event_with_the_servers_reason(run_js, js_server):
    import json

    out = run_js(DENIED, CASES=json.dumps(CASES))[0]
    outcomes = out["outcomes"]
    assert len(outcomes) == len(CASES)
    for case, outcome in zip(CASES, outcomes):
        assert outcome["name"] == "Denied", (case, outcome)
        assert outcome["status"] == 403 and outcome["error"] == "denied"
        assert outcome["state"] == "denied"
        events = [e["event"] for e in outcome["events"]]
        assert events == ["denied", "error"], (case, events)
        assert outcome["events"][0]["message"] == outcome["message"]
    assert "wrong or missing token" in outcomes[0]["message"]
    assert "wrong or missing token" in outcomes[1]["message"]
    assert "no database named 'unknown-db'" in outcomes[4]["message"]
    assert out["ok"] == "complete"
    assert out["clientEvents"] == ["connect"]
    # a denied sync is not retried: one request per case, plus the good one
    assert len(js_server.requests) == len(CASES) + 1


REFUSED = """
var h = require(process.env.PS_HARNESS);
h.run(async function () {
  var db = h.makeDb('local');
  await db.bulkDocs([{_id: 'a', v: 1}, {_id: '_design/views', views: {}}, {_id: 'b', v: 2}]);
  var client = h.client();
  client.connect(h.URL);
  var sync = client.sync(db, {remoteName: process.env.DB, live: process.env.LIVE === '1',
                              credentials: {token: h.TOKEN}});
  var denied = [], changed = [];
  sync.on('denied', function (err) { denied.push({id: err.id, status: err.status, error: err.error, name: err.name, direction: err.direction}); });
  sync.on('change', function (info) {
    changed.push({direction: info.direction, ids: info.change.docs.map(function (d) { return d._id; })});
  });
  var log = h.record(sync, 'sync', []);
  if (process.env.LIVE === '1') {
    await h.waitEvent(sync, 'paused', 20000);
    await db.put({_id: '_design/later', views: {}});
    await db.put({_id: 'c', v: 3});
    await h.waitFor(function () { return denied.length >= (process.env.DB.indexOf('ro-') === 0 ? 5 : 2); }, 20000, 'denials');
    await h.waitFor(function () { return db.get('from-server').then(function () { return true; }, function () { return false; }); }, 20000, 'pull');
    sync.cancel();
    h.report({denied: denied, changed: changed, state: sync.state, events: log.map(function (e) { return e.event; })});
  } else {
    var result = await sync;
    h.report({denied: denied, changed: changed, result: result, events: log.map(function (e) { return e.event; })});
  }
  client.end();
});
"""


def test_design_doc_refused_per_document_while_the_others_go_on(run_js, js_server):
    srv = js_server.db("rw")
    srv.put({"_id": "from-server", "v": 0})
    out = run_js(REFUSED, DB="rw", LIVE="0")[0]
    assert out["denied"] == [{"id": "_design/views", "status": 403, "error": "forbidden",
                              "name": "Forbidden", "direction": "push"}]
    push = out["result"]["push"]
    assert push["docs_written"] == 2 and push["doc_write_failures"] == 1
    assert out["result"]["status"] == "complete"
    assert out["events"][-1] == "complete" and "error" not in out["events"]
    ids = [r["id"] for r in srv.all_docs()["rows"]]
    assert ids == ["a", "b", "from-server"]
    # as PouchDB: change events list the docs written, never a refused one
    pushed = [i for c in out["changed"] if c["direction"] == "push" for i in c["ids"]]
    assert sorted(pushed) == ["a", "b"]


@pytest.mark.parametrize("live", ["0", "1"])
def test_read_only_grant_refuses_every_push_per_document_and_pull_goes_on(run_js, js_server, live):
    srv = js_server.db("ro-shared")
    srv.put({"_id": "from-server", "v": 0})
    out = run_js(REFUSED, DB="ro-shared", LIVE=live)[0]
    denied_ids = sorted(d["id"] for d in out["denied"])
    expected = ["_design/views", "a", "b"] + (["_design/later", "c"] if live == "1" else [])
    assert denied_ids == sorted(expected)
    assert {d["status"] for d in out["denied"]} == {403}
    assert [r["id"] for r in srv.all_docs()["rows"]] == ["from-server"]
    assert "error" not in out["events"]
    # nothing was written by the push, so no push change event (PouchDB emits none)
    assert [c for c in out["changed"] if c["direction"] == "push"] == []
    if live == "0":
        assert out["result"]["pull"]["docs_written"] == 1
        assert out["result"]["push"]["doc_write_failures"] == 3
