// The original pouch-websocket-sync 0.3.0 client pulling into a fresh memdown PouchDB 5.
//   node bench/js/orig/client.js WS_URL EXPECTED
// Times from connect until the local db holds EXPECTED docs; prints one JSON line.
'use strict';
const PouchDB = require('pouchdb');
const memdown = require('memdown');
const PouchSync = require('pouch-websocket-sync');

const [url, expected] = [process.argv[2], Number(process.argv[3])];
const guard = setTimeout(() => { console.error('client.js: timed out'); process.exit(2); }, 1800e3);
const db = new PouchDB(`bench-orig-client-${process.pid}`, {db: memdown});
const client = PouchSync.createClient();
client.on('error', (err) => console.error('client error', err && err.message));
const sync = client.sync(db, {remoteName: 'bench'});
sync.on('error', (err) => console.error('sync error', err && err.message));

let done = false;
const t0 = process.hrtime.bigint();
const cpu0 = process.cpuUsage();
function check() {
  if (done) return;
  db.info().then((info) => {
    if (done || info.doc_count < expected) return;
    done = true;
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const cpu = process.cpuUsage(cpu0);
    console.log(JSON.stringify({peer: 'original', docs: info.doc_count, expected, seconds,
                                docs_per_s: info.doc_count / seconds, cpu_s: (cpu.user + cpu.system) / 1e6,
                                peak_rss_mb: process.resourceUsage().maxRSS / 1024}));
    clearTimeout(guard);
    client.end();
    setTimeout(() => process.exit(0), 100);
  });
}
sync.on('change', check);
const poll = setInterval(check, 200);
poll.unref && null;
client.connect(url);
