"""Messages stay under the server's max_message_size: writes are split by size, a doc
no message can carry is a counted too_large failure while the others go on."""

from __future__ import annotations

from tests.js.conftest import JsServer

BIG_DOCS = """
var h = require(process.env.PS_HARNESS);
h.run(async function () {
  var db = h.makeDb('local');
  var docs = [];
  for (var i = 0; i < 40; i++) docs.push({_id: 'mid' + i, pad: 'é'.repeat(5000)});   // 10 KB of UTF-8 each
  for (var k = 0; k < 20; k++) docs.push({_id: 'cjk' + k, pad: '漢'.repeat(5000)});  // 15 KB each, 5,000 chars
  docs.push({_id: 'huge', pad: 'x'.repeat(200000)});                                  // over any message
  await db.bulkDocs(docs);
  var client = h.client();
  client.connect(h.URL);
  var sync = client.sync(db, {remoteName: 'limited', live: false, credentials: {token: h.TOKEN}});
  var log = h.record(sync, 'sync', []);
  var result = await sync;
  var pulled = await db.allDocs({keys: ['srv0', 'srv19'], include_docs: true});
  h.report({result: result, events: log.map(function (e) { return e.event; }),
            pulled: pulled.rows.map(function (r) { return r.doc && r.doc.pad.length; }),
            stats: client.stats()});
  client.end();
});
"""


def test_writes_are_split_under_max_message_size_and_a_huge_doc_is_a_counted_failure(node, tmp_path):
    from tests.js.conftest import HARNESS, TOKEN

    server = JsServer(tmp_path, max_message_size=64 * 1024)
    try:
        srv = server.db("limited")
        srv.bulk_docs([{"_id": f"srv{i}", "pad": "y" * 20000} for i in range(20)])
        proc = node.run(BIG_DOCS, env={"PS_HARNESS": str(HARNESS), "SYNC_URL": server.url,
                                       "SYNC_TOKEN": TOKEN}, timeout=60)
        out = node.json_lines(proc.stdout)[0]
        push = out["result"]["push"]
        assert push["docs_written"] == 60 and push["doc_write_failures"] == 1
        assert [(e["id"], e["error"]) for e in push["errors"]] == [("huge", "too_large")]
        assert out["result"]["pull"]["docs_written"] == 20
        assert out["pulled"] == [20000, 20000]
        assert "error" not in out["events"] and out["events"][-1] == "complete"
        assert srv.info()["doc_count"] == 80
        assert srv.get("cjk3")["pad"] == "漢" * 5000
        assert srv.get("mid7")["pad"] == "é" * 5000
        # the socket was never closed for a message too big (1009): one connection
        assert out["stats"]["connections"] == 1
    finally:
        server.close()


MANY_IDS = """
var h = require(process.env.PS_HARNESS);
h.run(async function () {
  var db = h.makeDb('local');
  var docs = [];
  var long = 'k'.repeat(700);
  for (var i = 0; i < 600; i++) docs.push({_id: long + i, n: i});   // revs_diff of 600 ids: ~450 KB, bulk_get of 100: ~75 KB
  await db.bulkDocs(docs);
  var client = h.client();
  client.connect(h.URL);
  var result = await client.sync(db, {remoteName: 'ids', live: false, direction: 'push', batchSize: 600,
                                      credentials: {token: h.TOKEN}});
  h.report({result: result, stats: client.stats()});
  client.end();
});
"""


def test_a_revs_diff_larger_than_the_budget_is_asked_in_parts(node, tmp_path):
    from tests.js.conftest import HARNESS, TOKEN

    server = JsServer(tmp_path, max_message_size=64 * 1024)
    try:
        proc = node.run(MANY_IDS, env={"PS_HARNESS": str(HARNESS), "SYNC_URL": server.url,
                                       "SYNC_TOKEN": TOKEN}, timeout=60)
        out = node.json_lines(proc.stdout)[0]
        assert out["result"]["push"]["docs_written"] == 600
        assert out["result"]["push"]["doc_write_failures"] == 0
        assert server.db("ids").info()["doc_count"] == 600
        assert out["stats"]["connections"] == 1
        # and back: a pull whose bulk_get of 600 long ids is asked in parts too
        srv = server.db("ids")
        for i in range(0, 600, 100):  # second revisions: not text rows, fetched with bulk_get
            srv.bulk_docs([dict(srv.get("k" * 700 + str(n)), n=-n) for n in range(i, i + 100)])
        proc = node.run(MANY_IDS.replace("direction: 'push'", "direction: 'pull'"),
                        env={"PS_HARNESS": str(HARNESS), "SYNC_URL": server.url,
                             "SYNC_TOKEN": TOKEN}, timeout=60)
        out = node.json_lines(proc.stdout)[0]
        assert out["result"]["pull"]["docs_written"] == 600
        assert out["result"]["pull"]["doc_write_failures"] == 0
    finally:
        server.close()
