// The original pouch-websocket-sync 0.3.0 server, PouchDB 5.4.5 on memdown, seeded.
//   node bench/js/orig/server.js COUNT
// Listens on 127.0.0.1 (port 0), seeds COUNT docs, prints {"port","seeded"}; every
// database name is granted and served by that one db. Exits when stdin ends.
'use strict';
const http = require('http');
const PouchDB = require('pouchdb');
const memdown = require('memdown');
const PouchSync = require('pouch-websocket-sync');
const {smallDoc} = require('../docs');

const count = Number(process.argv[2]);
const guard = setTimeout(() => process.exit(3), 3600e3);
const db = new PouchDB('bench-orig-server', {db: memdown});

async function seed() {
  for (let first = 0; first < count; first += 1000) {
    const docs = [];
    for (let i = first; i < Math.min(count, first + 1000); i++) docs.push(smallDoc(i));
    await db.bulkDocs(docs);
  }
}

seed().then(() => {
  const httpServer = http.createServer();
  const wss = PouchSync.createServer(httpServer, (credentials, dbName, cb) => cb(null, db));
  wss.on('error', (err) => console.error('ws server error', err && err.message));
  httpServer.listen(0, '127.0.0.1', () => {
    console.log(JSON.stringify({port: httpServer.address().port, seeded: count,
                                versions: {pouchdb: require('pouchdb/package.json').version,
                                           'pouch-websocket-sync': require('pouch-websocket-sync/package.json').version,
                                           memdown: require('memdown/package.json').version,
                                           node: process.version}}));
  });
  process.stdin.on('end', () => { clearTimeout(guard); process.exit(0); });
  process.stdin.resume();
}).catch((err) => { console.error(err); process.exit(1); });
