// couch-guard.js: preloaded into pouchdb-server 4.2.0 with `node --require`.
//
// pouchdb-server is our CouchDB-protocol test server. A few requests crash its whole
// process (the two kinds below); this guard keeps it alive so one bad request fails
// alone, and nothing else changes.
//
// 1. `latest=true` with a revision the document does not have (`?rev=..&latest=true`,
//    `open_revs=[..]&latest=true`, `_bulk_get?latest=true`): pouchdb-merge's
//    `latest()` throws inside a callback. The guard makes it return the asked rev, which
//    the adapter then reports as missing - CouchDB's answer (`{"missing": rev}` / 404).
// 2. Any asynchronous exception (an unhandled 'error' event after a failed `_changes`,
//    `db.info is not a function` on an anonymous PUT once an admin exists) is logged
//    with the prefix `[couch-guard]` and the process keeps serving.
// 3. When COUCH_GUARD_PORT_FILE is set, the port the server really listens on is written
//    there once it listens, so the launcher can start it on port 0 without a race.
// 4. When COUCH_GUARD_PARENT_PID is set, the server exits once that process is gone.
//
// Off with COUCH_NO_GUARD=1 (the launcher then simply does not preload this file).
'use strict';

var fs = require('fs');
var net = require('net');
var path = require('path');
var Module = require('module');

function say(msg) {
  try {
    process.stderr.write('[couch-guard] ' + msg + '\n');
  } catch (e) { /* stderr gone: nothing to do */ }
}

// -- 3. report the listening port ------------------------------------------------------
var portFile = process.env.COUCH_GUARD_PORT_FILE;
if (portFile) {
  var origListen = net.Server.prototype.listen;
  net.Server.prototype.listen = function () {
    var server = this;
    server.once('listening', function () {
      var addr = server.address();
      if (addr && typeof addr === 'object') {
        var tmp = portFile + '.tmp';
        fs.writeFileSync(tmp, String(addr.port));
        fs.renameSync(tmp, portFile);
      }
    });
    return origListen.apply(this, arguments);
  };
}

// -- 1. latest=true with an unknown rev --------------------------------------------------
function patchLatest() {
  var script = process.argv[1];
  if (!script) {
    return say('no main script; latest() not patched');
  }
  var merge;
  try {
    var req = Module.createRequire(fs.realpathSync(script));
    // the adapter pouchdb-server uses resolves pouchdb-merge from its own folder
    var adapterReq = Module.createRequire(req.resolve('pouchdb-adapter-leveldb-core'));
    merge = adapterReq('pouchdb-merge');
  } catch (e) {
    return say('pouchdb-merge not found (' + e.message + '); latest() not patched');
  }
  var origLatest = merge.latest;
  if (typeof origLatest !== 'function' || origLatest.__guarded) {
    return undefined;
  }
  var guarded = function (rev, metadata) {
    try {
      return origLatest.apply(this, arguments);
    } catch (e) {
      // Not in the tree: answer with the rev itself; the adapter finds no body for it
      // and reports it missing, as CouchDB does.
      return rev;
    }
  };
  guarded.__guarded = true;
  merge.latest = guarded;
  return undefined;
}
patchLatest();

// -- 2. keep the process alive -----------------------------------------------------------
process.on('uncaughtException', function (err) {
  say('uncaught exception kept the server alive: ' + (err && err.stack ? err.stack : err));
});
process.on('unhandledRejection', function (reason) {
  say('unhandled rejection: ' + (reason && reason.stack ? reason.stack : reason));
});

// -- 4. stop with the launcher ------------------------------------------------------------
// COUCH_GUARD_PARENT_PID: exit when that process is gone, so a test run that dies
// without stopping its server does not leave it running.
var parentPid = parseInt(process.env.COUCH_GUARD_PARENT_PID || '', 10);
if (parentPid > 0) {
  setInterval(function () {
    try {
      process.kill(parentPid, 0);
    } catch (e) {
      if (e.code !== 'EPERM') {
        say('launcher ' + parentPid + ' is gone; exiting');
        process.exit(0);
      }
    }
  }, 1000).unref();
}

say('loaded (pid ' + process.pid + ', ' + path.basename(process.argv[1] || '?') + ')');
