/* Helpers for the node scripts of tests/js (run by tests/jsdeps.py's NodeRunner).
 *
 * Scripts print one JSON object per line (`report`) for pytest to read, and must end
 * by themselves: a script that hangs is killed by the runner and the test fails. */
'use strict';
var PouchDB = require('pouchdb');
PouchDB.plugin(require('pouchdb-adapter-memory'));
var WebSocket = require('ws');
var PouchSync = require('pouchsync');

var counter = 0;

/* A fresh in-memory PouchDB named `name` (unique per process). */
function makeDb(name) {
  counter += 1;
  return new PouchDB(name || ('db' + counter), {adapter: 'memory'});
}

function report(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

/* A promise of the first `name` event of `emitter` (its arguments as a list), or a
 * rejection after `ms`. */
function waitEvent(emitter, name, ms) {
  return new Promise(function (resolve, reject) {
    var timer = setTimeout(function () {
      emitter.off(name, on);
      reject(new Error('no ' + name + ' event within ' + ms + ' ms'));
    }, ms || 20000);
    function on() {
      clearTimeout(timer);
      emitter.off(name, on);
      resolve(Array.prototype.slice.call(arguments));
    }
    emitter.on(name, on);
  });
}

/* Resolves when `predicate()` (may return a promise) is true; polls every 20 ms up to `ms`. */
function waitFor(predicate, ms, what) {
  var deadline = Date.now() + (ms || 20000);
  return new Promise(function (resolve, reject) {
    function attempt() {
      Promise.resolve().then(predicate).then(function (ok) {
        if (ok) return resolve(ok);
        if (Date.now() > deadline) return reject(new Error('timed out waiting for ' + (what || 'a condition')));
        setTimeout(attempt, 20);
      }, reject);
    }
    attempt();
  });
}

/* Every event of a sync and of its client, recorded as {on, event, ...}. */
function record(emitter, on, log) {
  ['change', 'paused', 'active', 'denied', 'complete', 'error', 'connect', 'disconnect', 'reconnect'].forEach(function (name) {
    emitter.on(name, function (arg, arg2) {
      var entry = {on: on, event: name};
      if (arg && arg.message) { entry.name = arg.name; entry.message = arg.message; entry.status = arg.status; entry.error = arg.error; entry.id = arg.id; }
      if (name === 'change') { entry.direction = arg.direction; entry.docs = arg.change.docs.length; entry.docs_written = arg.change.docs_written; }
      if (name === 'reconnect') { entry.attempt = arg; entry.delay = arg2; }
      if (name === 'complete') { entry.status = arg.status; }
      log.push(entry);
    });
  });
  return log;
}

function client(options) {
  var opts = {WebSocket: WebSocket, initialDelay: 50, maxDelay: 500};
  for (var key in options || {}) opts[key] = options[key];
  return PouchSync.createClient(opts);
}

/* Run `main()` (a promise); report an uncaught failure and exit 1 on it. */
function run(main) {
  process.on('unhandledRejection', function (err) {
    report({fatal: 'unhandledRejection', message: String(err && err.stack || err)});
    process.exitCode = 1;
  });
  process.on('uncaughtException', function (err) {
    report({fatal: 'uncaughtException', message: String(err && err.stack || err)});
    process.exit(1);
  });
  Promise.resolve().then(main).catch(function (err) {
    // a failed script exits at once (its client may still hold a socket open)
    process.stdout.write(JSON.stringify({fatal: 'failed', message: String(err && err.stack || err)}) + '\n',
      function () { process.exit(1); });
  });
}

module.exports = {PouchDB: PouchDB, WebSocket: WebSocket, PouchSync: PouchSync, makeDb: makeDb,
  report: report, waitEvent: waitEvent, waitFor: waitFor, record: record, client: client, run: run,
  URL: process.env.SYNC_URL, TOKEN: process.env.SYNC_TOKEN};

/* Lines of JSON the test writes to the script's stdin, one promise per `next()`. */
function Stdin() {
  var buffered = [], waiting = [], tail = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', function (chunk) {
    tail += chunk;
    var parts = tail.split('\n');
    tail = parts.pop();
    parts.forEach(function (line) {
      if (!line.trim()) return;
      var msg = JSON.parse(line);
      if (waiting.length) waiting.shift()(msg); else buffered.push(msg);
    });
  });
  this.next = function () {
    if (buffered.length) return Promise.resolve(buffered.shift());
    return new Promise(function (resolve) { waiting.push(resolve); });
  };
  this.close = function () { process.stdin.pause(); process.stdin.destroy(); };
}
module.exports.Stdin = Stdin;
