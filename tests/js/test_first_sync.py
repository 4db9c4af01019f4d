from pouchsync_sync import LocalDatabase

def test_one_shot_both_ways_first_sync(run_js, js_server):
    srv = js_server.db("todos")
    srv.put({"_id": "s1", "v": 1})
    out = run_js("""
var h = require(process.env.PS_HARNESS);
h.run(async function () {
  var db = h.makeDb('todos');
  await db.put({_id: 'j1', v: 2});
  var client = h.client();
  var log = h.record(client, 'client', []);
  client.connect(h.URL);
  var sync = client.sync(db, {live: false, credentials: {token: h.TOKEN}});
  h.record(sync, 'sync', log);
  var result = await sync;
  var all = await db.allDocs();
  h.report({result: result, ids: all.rows.map(r => r.id), log: log});
  client.end();
});
""")

    assert out[0]["ids"] == ["j1", "s1"]
    assert srv.get("j1")["v"] == 2
