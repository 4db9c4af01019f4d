// PouchDB 9 (memory adapter) pulls N docs, then pushes them, through one peer:
//   node bench.js pouchsync PULL_WS_URL PUSH_WS_URL N BATCH
//   node bench.js http PULL_DB_URL PUSH_DB_URL N BATCH
// `pouchsync` syncs through pouchsync.js (one-shot, direction pull then push, remote
// name "bench"); `http` is PouchDB's own HTTP replication (PouchDB.replicate).
// Waits for a line on stdin before each phase (the driver samples the servers' CPU in
// between) and prints one JSON line per phase: {phase, docs, seconds, cpu_s, chars_*}.
'use strict';
const PouchDB = require('pouchdb');
PouchDB.plugin(require('pouchdb-adapter-memory'));
const WebSocket = require('ws');
const PouchSync = require(process.env.POUCHSYNC_JS);
const [mode, pullUrl, pushUrl, count, batch] = [process.argv[2], process.argv[3], process.argv[4],
  Number(process.argv[5]), Number(process.argv[6] || 500)];
const guard = setTimeout(() => { console.error('bench.js: timed out'); process.exit(2); }, 1800e3);

const lines = [];
let waiting = null;
let tail = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => {
  tail += chunk;
  const parts = tail.split('\n');
  tail = parts.pop();
  for (const p of parts) { if (waiting) { const w = waiting; waiting = null; w(p); } else lines.push(p); }
});
const nextLine = () => (lines.length ? Promise.resolve(lines.shift()) : new Promise((r) => { waiting = r; }));

async function timed(phase, fn, client) {
  await nextLine();
  const before = client ? client.stats() : null;
  const t0 = process.hrtime.bigint();
  const cpu0 = process.cpuUsage();
  const res = await fn();
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  const out = {phase, mode, docs: res.docs, seconds, docs_per_s: res.docs / seconds,
               cpu_s: (cpu.user + cpu.system) / 1e6, rss_mb: process.memoryUsage().rss / 1e6};
  if (client) {
    const after = client.stats();
    out.chars_sent = after.chars_sent - before.chars_sent;
    out.chars_received = after.chars_received - before.chars_received;
    out.frames = after.frames_sent - before.frames_sent + after.frames_received - before.frames_received;
  }
  console.log(JSON.stringify(out));
}

(async () => {
  const db = new PouchDB(`bench-${process.pid}`, {adapter: 'memory'});
  if (mode === 'pouchsync') {
    const pull = PouchSync.createClient({WebSocket}).connect(pullUrl);
    await timed('pull', async () => {
      const r = await pull.sync(db, {remoteName: 'bench', live: false, direction: 'pull', batchSize: batch});
      return {docs: r.pull.docs_written};
    }, pull);
    pull.end();
    const push = PouchSync.createClient({WebSocket}).connect(pushUrl);
    await timed('push', async () => {
      const r = await push.sync(db, {remoteName: 'bench', live: false, direction: 'push', batchSize: batch});
      return {docs: r.push.docs_written};
    }, push);
    push.end();
  } else {
    await timed('pull', async () => {
      const r = await PouchDB.replicate(pullUrl, db, {batch_size: batch});
      return {docs: r.docs_written};
    });
    await timed('push', async () => {
      const r = await PouchDB.replicate(db, pushUrl, {batch_size: batch});
      return {docs: r.docs_written};
    });
  }
  const info = await db.info();
  console.log(JSON.stringify({phase: 'end', doc_count: info.doc_count, expected: count,
    versions: {pouchdb: require('pouchdb/package.json').version, node: process.version}}));
  clearTimeout(guard);
  process.stdin.destroy();
})().catch((err) => { console.error(err); process.exit(1); });
