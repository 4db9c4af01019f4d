"""The server stopped and restarted mid live sync: the JS client reconnects, every
sync opens its channel again and resumes from its checkpoints; nothing is lost,
nothing is replayed (each document is written once on each side: counted on the
server's database and on the PouchDB), and no replication is left running behind."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any, Mapping, Sequence

from pouchsync_sync import LocalDatabase
from tests.js.conftest import JsServer


class CountingDatabase(LocalDatabase):
    """The embedded store, counting the documents every write op receives (per id)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.written: Counter[str] = Counter()
        self._count_lock = threading.Lock()

    def _count(self, ids: Sequence[str]) -> None:
        with self._count_lock:
            self.written.update(ids)

    def bulk_docs(self, docs: Sequence[Mapping[str, Any]], *, new_edits: bool = True) -> Any:
        self._count([d.get("_id") for d in docs if not str(d.get("_id")).startswith("_local/")])
        return super().bulk_docs(docs, new_edits=new_edits)

    def write_missing(self, docs: Sequence[Mapping[str, Any]]) -> Any:
        self._count([d.get("_id") for d in docs])
        return super().write_missing(docs)


LIVE_THROUGH_RESTART = """
var h = require(process.env.PS_HARNESS);
h.run(async function () {
  var stdin = new h.Stdin();
  var db = h.makeDb('local');
  var written = {};
  var bulkDocs = db.bulkDocs.bind(db);
  db.bulkDocs = function (docs, opts) {   // count what the replicator writes into the PouchDB
    if (opts && opts.new_edits === false) docs.forEach(function (d) { written[d._id] = (written[d._id] || 0) + 1; });
    return bulkDocs.apply(null, arguments);
  };
  var docs = [];
  for (var i = 0; i < 3000; i++) docs.push({_id: 'j' + ('0000' + i).slice(-4), n: i});
  await db.bulkDocs(docs);
  var client = h.client({initialDelay: 100, maxDelay: 300, pingInterval: 1000});
  var log = h.record(client, 'client', []);
  client.connect(h.URL);
  var sync = client.sync(db, {remoteName: 'rc', batchSize: 25, credentials: {token: h.TOKEN}});
  h.record(sync, 'sync', log);
  await h.waitEvent(sync, 'change', 20000);
  h.report({midway: true});
  await stdin.next();                                  // the server is down now
  await db.put({_id: 'js-during-outage'});
  h.report({outageWrite: true});
  await stdin.next();                                  // the server is back
  var wanted = JSON.parse(process.env.SERVER_DOCS);
  await h.waitFor(function () {
    return db.allDocs().then(function (res) { return res.rows.length === 3001 + wanted; });
  }, 40000, 'all docs pulled');
  await h.waitFor(function () { return sync.state === 'paused'; }, 20000, 'paused');
  var replays = Object.keys(written).filter(function (id) { return written[id] > 1; });
  h.report({done: true, replays: replays, pulled: Object.keys(written).length,
            events: log.map(function (e) { return e.on + ':' + e.event; })});
  await stdin.next();
  sync.cancel();
  client.end();
  stdin.close();
});
"""


def test_server_restarted_mid_live_sync_resumes_without_loss_or_replay(start_js, tmp_path):
    server = JsServer(tmp_path, make_db=lambda name: CountingDatabase(tmp_path / f"{name}.sqlite"))
    try:
        srv = server.db("rc")
        srv.bulk_docs([{"_id": f"s{i:04d}", "n": i} for i in range(3000)])
        node = start_js(LIVE_THROUGH_RESTART, server=server, SERVER_DOCS="3001")
        node.expect(lambda o: o.get("midway"), timeout=30)
        server.server.stop()                               # every socket dropped mid-batch
        srv.put({"_id": "server-during-outage"})
        node.send({"down": True})
        node.expect(lambda o: o.get("outageWrite"))
        server.restart_stopped()
        node.send({"up": True})
        done = node.expect(lambda o: o.get("done"), timeout=60)
        assert done["replays"] == []
        assert done["pulled"] == 3001            # every server doc written once into PouchDB
        events = done["events"]
        assert "client:disconnect" in events and "client:reconnect" in events
        assert events.count("client:connect") >= 2
        assert "sync:error" not in events
        # everything arrived on the server, each document written once
        _wait(lambda: srv.info()["doc_count"] == 6002)
        js_ids = [k for k in srv.written if k.startswith("j") or k == "js-during-outage"]
        assert len(js_ids) == 3001
        assert [k for k, n in srv.written.items() if n > 1] == []
        # one channel and one subscription: the old run did not survive
        stats = server.server.stats()
        assert stats["channels"] == 1 and stats["subscriptions"] == 1, stats
        node.send({"end": True})
        assert node.wait(30) == 0
    finally:
        server.close()


def _wait(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        pause.wait(0.02)

