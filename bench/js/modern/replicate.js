// PouchDB's own HTTP replication of a CouchDB-protocol db into a fresh memory PouchDB.
//   node bench/js/modern/replicate.js DB_URL EXPECTED [RUNS]
// Prints one JSON line per run: {"peer":"pouchdb-http","docs","seconds","docs_per_s"}.
'use strict';
const PouchDB = require('pouchdb');
PouchDB.plugin(require('pouchdb-adapter-memory'));
const [url, expected, runs] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4] || 1)];
const guard = setTimeout(() => { console.error('replicate.js: timed out'); process.exit(2); }, 1800e3);

async function one(run) {
  const target = new PouchDB(`bench-target-${process.pid}-${run}`, {adapter: 'memory'});
  const t0 = process.hrtime.bigint();
  const cpu0 = process.cpuUsage();
  const result = await PouchDB.replicate(url, target, {batch_size: 100});
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  const info = await target.info();
  await target.destroy();
  return {peer: 'pouchdb-http', run, docs: info.doc_count, expected, docs_written: result.docs_written,
          seconds, docs_per_s: info.doc_count / seconds, cpu_s: (cpu.user + cpu.system) / 1e6,
          peak_rss_mb: process.resourceUsage().maxRSS / 1024,
          versions: {pouchdb: require('pouchdb/package.json').version, node: process.version}};
}

(async () => {
  for (let run = 0; run < runs; run++) console.log(JSON.stringify(await one(run)));
  clearTimeout(guard);
})().catch((err) => { console.error(err); process.exit(1); });
