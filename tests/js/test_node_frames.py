"""The shared frame table (tests/fixtures/protocol_frames.json) against pouchsync.js's
protocol code (PouchSync._protocol); tests/unit/test_protocol_frames.py checks the same
table against the Python code."""

from __future__ import annotations

import json
from pathlib import Path

TABLE_PATH = Path(__file__).resolve().parents[1] / "fixtures" / "protocol_frames.json"

CHECK = """
var P = require('pouchsync')._protocol;
var table = JSON.parse(require('fs').readFileSync(process.env.TABLE, 'utf8'));
var out = {frames: [], shapes: []};
table.frames.forEach(function (e) {
  var r = {name: e.name};
  try {
    var msg = P.decode(e.text, e.sender);
    r.ok = true;
    r.type = msg.type;
    if (e.op) r.shape = P.replyProblem(e.op, msg.ok, e.args);
  } catch (err) { r.ok = false; r.error = err.name + ': ' + err.message; }
  out.frames.push(r);
});
table.reply_shapes.forEach(function (e) {
  out.shapes.push({name: e.name, problem: P.replyProblem(e.op, e.ok, e.args)});
});
// the builders make what the docs show
out.built = [P.hello('pouchsync_sync/0.1.0'), P.open(1, 'todos', {token: 'some token'}), P.close(1),
             P.call(1, 17, 'revs_diff', {revs: {a: ['2-7051cbe5c8faecd085a3fa619e6e6337']}}),
             P.subscribe(1, 3, {since: 42, style: 'all_docs', include_docs: true, conflicts: false,
                                doc_ids: ['a', 'b'], selector: null, batch: 500}),
             P.unsubscribe(1, 3)];
console.log(JSON.stringify(out));
"""


def test_frame_table_against_pouchsync_js(node):
    table = json.loads(TABLE_PATH.read_text())
    proc = node.run(CHECK, env={"TABLE": str(TABLE_PATH)}, timeout=60)
    out = json.loads(proc.stdout)
    assert len(out["frames"]) == len(table["frames"])
    assert len(out["shapes"]) == len(table["reply_shapes"])
    for entry, got in zip(table["frames"], out["frames"]):
        if entry["valid"]:
            assert got["ok"], (entry, got)
            assert got["type"] == json.loads(entry["text"])["type"]
            if "op" in entry:
                assert got["shape"] is None, (entry, got)
        else:
            assert not got["ok"], entry
            assert got["error"].startswith("ProtocolError: "), got
            assert entry["problem"] in got["error"], (entry, got)
    for entry, got in zip(table["reply_shapes"], out["shapes"]):
        if entry["valid"]:
            assert got["problem"] is None, (entry, got)
        else:
            assert got["problem"] is not None and entry["problem"] in got["problem"], (entry, got)
    sent = {json.dumps(json.loads(f["text"]), sort_keys=True) for f in table["frames"] if f["valid"]}
    for built in out["built"]:
        assert json.dumps(built, sort_keys=True) in sent, built
