/*
 * pouchsync.js: the JavaScript client of pouchsync_sync (protocol v1, docs/protocol.md).
 *
 * Syncs a PouchDB (8 or 9; any adapter) with a pouchsync_sync SyncServer through one
 * WebSocket, with the client API of the original pouch-websocket-sync:
 *
 *   var client = PouchSync.createClient();          // Node: createClient({WebSocket: require('ws')})
 *   var sync = client.sync(db, {remoteName: 'todos', credentials: {token: 't'}});
 *   sync.on('change', fn); sync.on('paused', fn); sync.on('denied', fn);
 *   client.connect('ws://host:3000/');
 *   sync.cancel(); client.end();
 *
 * One plain file, no build step: a <script> defines the global PouchSync, Node's
 * require() returns the same object. docs/js-client.md is its reference.
 *
 * Theory of operation. The file has five parts, each usable on its own:
 *   1. Emitter: on/once/off/removeListener/emit; a listener that throws is reported
 *      on the console and never breaks the client.
 *   2. protocol (sans-IO, exported as PouchSync._protocol): message builders,
 *      validation of every frame received (the same schemas as
 *      pouchsync_sync/protocol/messages.py) and of every reply's shape (ops.py).
 *   3. Backoff: the reconnect delay, a pure function of the attempt number.
 *   4. Client: the socket (hello/welcome, reconnect with backoff, ping), channels
 *      (open -> granted|denied, close -> closed) and pipelined calls matched by id.
 *   5. Sync and Replication: a replicator of our own on the protocol's bulk
 *      operations (CouchDB replication protocol: find common ancestry from
 *      _local checkpoints on both sides, read changes, diff revisions, fetch the
 *      missing ones with their history, write them with new_edits=false, record the
 *      checkpoint). Pull reads changes_texts (first-generation docs arrive as
 *      JSON text, no revs_diff/bulk_get round trip) and then subscribes to the
 *      server's live changes; push follows the PouchDB's live changes feed.
 *      After a reconnect each sync opens its channel again and resumes from its
 *      checkpoints; the previous run is stopped first (no zombie replication).
 */
(function (root, factory) {
  'use strict';
  if (typeof module === 'object' && module && module.exports) {
    module.exports = factory();
  } else {
    root.PouchSync = factory();
  }
}(typeof self !== 'undefined' ? self : this, function () {
  'use strict';

  var VERSION = '0.1.0';
  var AGENT = 'pouchsync.js/' + VERSION;
  var MAX_ID = 9007199254740991; // 2**53 - 1

  // ---------------------------------------------------------------- 1. Emitter
  function Emitter() {
    this._listeners = {};
  }
  Emitter.prototype.on = function (name, fn) {
    if (typeof fn !== 'function') throw new TypeError('listener must be a function');
    (this._listeners[name] = this._listeners[name] || []).push({fn: fn, once: false});
    return this;
  };
  Emitter.prototype.addListener = Emitter.prototype.on;
  Emitter.prototype.once = function (name, fn) {
    if (typeof fn !== 'function') throw new TypeError('listener must be a function');
    (this._listeners[name] = this._listeners[name] || []).push({fn: fn, once: true});
    return this;
  };
  Emitter.prototype.off = function (name, fn) {
    var list = this._listeners[name];
    if (!list) return this;
    for (var i = list.length - 1; i >= 0; i--) {
      if (list[i].fn === fn) { list.splice(i, 1); break; }
    }
    return this;
  };
  Emitter.prototype.removeListener = Emitter.prototype.off;
  Emitter.prototype.removeAllListeners = function (name) {
    if (name === undefined) this._listeners = {}; else delete this._listeners[name];
    return this;
  };
  Emitter.prototype.listenerCount = function (name) {
    return (this._listeners[name] || []).length;
  };
  /* Calls the listeners in order. An exception in one is reported (console.error) and
   * the others still run: a user's bug never stops a sync. 'error' without a listener
   * is not thrown (unlike Node's EventEmitter, and unlike the original library). */
  Emitter.prototype.emit = function (name) {
    var list = this._listeners[name];
    if (!list || !list.length) return false;
    var args = Array.prototype.slice.call(arguments, 1);
    var copy = list.slice();
    for (var i = 0; i < copy.length; i++) {
      if (copy[i].once) this.off(name, copy[i].fn);
      try {
        copy[i].fn.apply(this, args);
      } catch (exc) {
        if (typeof console !== 'undefined') console.error('pouchsync: a ' + name + ' listener threw', exc);
      }
    }
    return true;
  };

  // ---------------------------------------------------------------- errors
  var ERROR_NAMES = {
    bad_request: 'BadRequest', unauthorized: 'Unauthorized', forbidden: 'Forbidden',
    not_found: 'NotFound', conflict: 'Conflict', denied: 'Denied',
    too_many_requests: 'TooManyRequests', unavailable: 'Unavailable',
    unsupported_version: 'UnsupportedVersion', too_large: 'PayloadTooLarge'
  };

  /* Every error the client reports: an Error with CouchDB's {status, error, reason}
   * and a name telling what it is (Denied, Forbidden, ProtocolError, TransportError,
   * Cancelled, ...). */
  function SyncError(name, message, fields) {
    var err = new Error(message);
    err.name = name;
    fields = fields || {};
    err.status = fields.status;
    err.error = fields.error;
    err.reason = fields.reason !== undefined ? fields.reason : message;
    if (fields.id !== undefined) err.id = fields.id;
    if (fields.rev !== undefined) err.rev = fields.rev;
    if (fields.retryable) err.retryable = true;
    return err;
  }
  function errorFromJson(obj, prefix) {
    obj = obj || {};
    var name = ERROR_NAMES[obj.error] || 'CouchError';
    var reason = typeof obj.reason === 'string' ? obj.reason : String(obj.error);
    return SyncError(name, (prefix ? prefix + ': ' : '') + reason,
      {status: obj.status, error: obj.error, reason: reason});
  }
  function protocolError(message) {
    return SyncError('ProtocolError', message, {status: 400, error: 'protocol_error'});
  }
  function transportError(message) {
    return SyncError('TransportError', message, {status: 503, error: 'unavailable', retryable: true});
  }
  function oversized(max) {
    return protocolError('the server sent a frame over the ' + max + ' bytes allowed (maxReceiveSize)');
  }
  function cancelledError(message) {
    return SyncError('Cancelled', message || 'cancelled', {error: 'cancelled'});
  }

  // ---------------------------------------------------------------- 2. protocol (sans-IO)
  var protocol = (function () {
    var CLIENT_TYPES = ['hello', 'open', 'close', 'call', 'subscribe', 'unsubscribe'];
    var SERVER_TYPES = ['welcome', 'error', 'granted', 'denied', 'closed', 'reply', 'changes'];

    // Python's names of the JSON types, so that messages read the same on both sides
    function typeName(v) {
      if (v === null || v === undefined) return 'NoneType';
      if (Array.isArray(v)) return 'list';
      if (typeof v === 'number') return Number.isInteger(v) ? 'int' : 'float';
      if (typeof v === 'object') return 'dict';
      if (typeof v === 'string') return 'str';
      if (typeof v === 'boolean') return 'bool';
      return typeof v;
    }
    function isObj(v) { return v !== null && typeof v === 'object' && !Array.isArray(v); }
    function isInt(v) { return typeof v === 'number' && Number.isInteger(v); }
    // field checkers: return an error text, or null when the value is fine
    var check = {
      posInt: function (v) { return isInt(v) && v >= 1 && v <= MAX_ID ? null : 'must be an integer in 1..' + MAX_ID; },
      int: function (v) { return isInt(v) ? null : 'must be an integer'; },
      str: function (v) { return typeof v === 'string' ? null : 'must be a string'; },
      bool: function (v) { return typeof v === 'boolean' ? null : 'must be true or false'; },
      obj: function (v) { return isObj(v) ? null : 'must be an object'; },
      list: function (v) { return Array.isArray(v) ? null : 'must be a list'; },
      any: function () { return null; },
      versions: function (v) {
        return Array.isArray(v) && v.length && v.every(isInt) ? null : 'must be a non-empty list of integers';
      },
      agent: function (v) { return typeof v === 'string' && v.length <= 200 ? null : 'must be a string of at most 200 characters'; },
      dbName: function (v) {
        return typeof v === 'string' && v.length && v.length <= 1024 ? null : 'must be a non-empty string of at most 1024 characters';
      },
      strList: function (v) {
        return Array.isArray(v) && v.every(function (s) { return typeof s === 'string'; }) ? null : 'must be a list of strings';
      },
      style: function (v) { return v === 'main_only' || v === 'all_docs' ? null : 'must be "main_only" or "all_docs"'; }
    };
    var REQ = true, OPT = false;
    // type -> {field: [checker, required]}; the twin of messages.py's _SCHEMAS
    var SCHEMAS = {
      hello: {versions: [check.versions, REQ], agent: [check.agent, OPT]},
      welcome: {version: [check.int, REQ], agent: [check.str, OPT], limits: [check.obj, REQ]},
      error: {status: [check.int, REQ], error: [check.str, REQ], reason: [check.str, REQ],
        ch: [check.posInt, OPT], id: [check.posInt, OPT], sub: [check.posInt, OPT], fatal: [check.bool, OPT]},
      open: {ch: [check.posInt, REQ], db: [check.dbName, REQ], credentials: [check.any, OPT]},
      granted: {ch: [check.posInt, REQ], db: [check.str, REQ], uuid: [check.str, REQ], read_only: [check.bool, OPT]},
      denied: {ch: [check.posInt, REQ], status: [check.int, REQ], error: [check.str, REQ], reason: [check.str, REQ]},
      close: {ch: [check.posInt, REQ]},
      closed: {ch: [check.posInt, REQ]},
      call: {ch: [check.posInt, REQ], id: [check.posInt, REQ], op: [check.any, OPT], args: [check.any, OPT]},
      reply: {ch: [check.posInt, REQ], id: [check.posInt, REQ], ok: [check.any, OPT], error: [check.obj, OPT]},
      subscribe: {ch: [check.posInt, REQ], sub: [check.posInt, REQ], since: [check.any, OPT], style: [check.style, OPT],
        include_docs: [check.bool, OPT], conflicts: [check.bool, OPT], doc_ids: [check.strList, OPT],
        selector: [check.obj, OPT], batch: [check.posInt, OPT]},
      unsubscribe: {ch: [check.posInt, REQ], sub: [check.posInt, REQ]},
      changes: {ch: [check.posInt, REQ], sub: [check.posInt, REQ], results: [check.list, OPT], last_seq: [check.any, OPT],
        pending: [check.int, OPT], error: [check.obj, OPT]}
    };
    var STRICT = {subscribe: true};

    /* Check a decoded message sent by `sender` ('client' or 'server'); returns it or
     * throws a ProtocolError saying what is wrong (the same rules as messages.validate). */
    function validate(msg, sender) {
      if (!isObj(msg)) throw protocolError('a message must be a JSON object, got ' + typeName(msg));
      var kind = msg.type;
      if (typeof kind !== 'string') throw protocolError('a message needs a string "type"');
      var allowed = sender === 'client' ? CLIENT_TYPES : SERVER_TYPES;
      if (allowed.indexOf(kind) < 0) {
        if (SCHEMAS.hasOwnProperty(kind)) throw protocolError('a ' + sender + ' does not send \'' + kind + '\' messages');
        throw protocolError('unknown message type \'' + kind.slice(0, 50) + '\'');
      }
      var schema = SCHEMAS[kind];
      for (var field in schema) {
        var rule = schema[field];
        var value = msg[field];
        if (!msg.hasOwnProperty(field) || (value === null && !rule[1])) {
          if (rule[1]) throw protocolError('\'' + kind + '\' needs a \'' + field + '\' field');
          continue;
        }
        var problem = rule[0](value);
        if (problem) throw protocolError('\'' + kind + '\' field \'' + field + '\' ' + problem);
      }
      if (STRICT[kind]) {
        for (var key in msg) {
          if (key !== 'type' && !schema.hasOwnProperty(key)) {
            throw protocolError('unknown field \'' + key.slice(0, 50) + '\' in \'' + kind + '\'');
          }
        }
      }
      if (kind === 'reply') {
        var hasOk = msg.hasOwnProperty('ok'), hasError = msg.error !== undefined && msg.error !== null;
        if (hasOk === hasError) throw protocolError('a reply has exactly one of \'ok\' and \'error\'');
      } else if (kind === 'changes') {
        var hasResults = msg.results !== undefined && msg.results !== null;
        var hasErr = msg.error !== undefined && msg.error !== null;
        if (hasResults === hasErr) throw protocolError('a changes message has either \'results\' or \'error\'');
      }
      return msg;
    }

    /* Parse one text frame sent by `sender` and validate it (ProtocolError if bad). */
    function decode(data, sender) {
      if (typeof data !== 'string') throw protocolError('binary frames are not used in protocol v1');
      var msg;
      try {
        msg = JSON.parse(data);
      } catch (exc) {
        throw protocolError('malformed JSON: ' + exc.message);
      }
      return validate(msg, sender);
    }

    function encode(msg) { return JSON.stringify(msg); }

    // -- reply shapes (ops.py reply_problem): each returns what is wrong, or null
    function notObj(v, what) { return isObj(v) ? null : what + ' is ' + typeName(v) + ', not an object'; }
    function notObjs(v, what) {
      if (!Array.isArray(v)) return what + ' is ' + typeName(v) + ', not a list';
      for (var i = 0; i < v.length; i++) if (!isObj(v[i])) return what + ' holds a ' + typeName(v[i]) + ', not an object';
      return null;
    }
    function notStrs(v, what) {
      if (!Array.isArray(v)) return what + ' is ' + typeName(v) + ', not a list';
      for (var i = 0; i < v.length; i++) if (typeof v[i] !== 'string') return what + ' holds a ' + typeName(v[i]) + ', not a string';
      return null;
    }
    function feedShape(ok, rowProblem) {
      var p = notObj(ok, 'the answer');
      if (p) return p;
      if (!Array.isArray(ok.results)) return '\'results\' is ' + typeName(ok.results) + ', not a list';
      for (var i = 0; i < ok.results.length; i++) {
        p = rowProblem(ok.results[i]);
        if (p) return p;
      }
      if (ok.pending !== undefined && ok.pending !== null && !isInt(ok.pending)) {
        return '\'pending\' is ' + typeName(ok.pending) + ', not an integer';
      }
      return null;
    }
    function changeRowProblem(row) {
      if (!isObj(row)) return '\'results\' holds a ' + typeName(row) + ', not a change row';
      if (typeof row.id !== 'string' || !Array.isArray(row.changes)) return 'a change row has no string \'id\' and list \'changes\'';
      for (var i = 0; i < row.changes.length; i++) {
        if (!isObj(row.changes[i])) return 'a change row\'s \'changes\' holds a ' + typeName(row.changes[i]) + ', not an object';
      }
      return null;
    }
    function textRowProblem(row) {
      if (!Array.isArray(row) || row.length !== 5) return '\'results\' holds a row that is not [seq, id, leaves, deleted, text]';
      if (typeof row[1] !== 'string' || !Array.isArray(row[2]) || typeof row[3] !== 'boolean' ||
          (row[4] !== null && typeof row[4] !== 'string')) {
        return 'a row is not [seq, string id, list of leaves, boolean, text or null]';
      }
      for (var i = 0; i < row[2].length; i++) if (typeof row[2][i] !== 'string') return 'a row\'s leaves hold a non-string';
      return null;
    }
    function writeMissingShape(ok, args, sent) {
      var p = notObj(ok, 'the answer') || notObjs(ok.failures, '\'failures\'');
      if (p) return p;
      var count = ((args || {})[sent] || []).length;
      if (!Array.isArray(ok.written) || !ok.written.every(function (i) { return isInt(i) && i >= 0 && i < count; })) {
        return '\'written\' is not a list of indexes into the ' + sent + ' sent';
      }
      return null;
    }
    function writeShape(ok) {
      var p = notObj(ok, 'the answer');
      if (!p && !(typeof ok.id === 'string' && typeof ok.rev === 'string')) p = 'the answer has no string \'id\' and \'rev\'';
      return p;
    }
    var SHAPES = {
      info: function (ok) { return notObj(ok, 'the answer'); },
      get: function (ok, args) {
        if (args.open_revs === undefined || args.open_revs === null) {
          if (!isObj(ok)) return 'the answer is ' + typeName(ok) + ', not a document';
          return typeof ok._id === 'string' ? null : 'the document has no string \'_id\'';
        }
        var p = notObjs(ok, 'the answer (open_revs)');
        if (p) return p;
        for (var i = 0; i < ok.length; i++) {
          if (!isObj(ok[i].ok) && !ok[i].hasOwnProperty('missing')) return 'an open_revs entry is neither {"ok": doc} nor {"missing": rev}';
        }
        return null;
      },
      put: writeShape, post: writeShape, 'delete': writeShape,
      bulk_docs: function (ok) { return notObjs(ok, 'the answer'); },
      write_missing: function (ok, args) { return writeMissingShape(ok, args, 'docs'); },
      write_missing_texts: function (ok, args) { return writeMissingShape(ok, args, 'rows'); },
      all_docs: function (ok) { return notObj(ok, 'the answer') || notObjs(ok.rows, '\'rows\''); },
      changes: function (ok) { return feedShape(ok, changeRowProblem); },
      changes_texts: function (ok) { return feedShape(ok, textRowProblem); },
      revs_diff: function (ok) {
        var p = notObj(ok, 'the answer');
        if (p) return p;
        for (var id in ok) {
          var entry = ok[id];
          if (!isObj(entry)) return 'an entry is ' + typeName(entry) + ', not an object';
          var keys = ['missing', 'possible_ancestors'];
          for (var k = 0; k < keys.length; k++) {
            if (entry[keys[k]] !== undefined && entry[keys[k]] !== null) {
              p = notStrs(entry[keys[k]], 'an entry\'s \'' + keys[k] + '\'');
              if (p) return p;
            }
          }
        }
        return null;
      },
      bulk_get: function (ok) {
        var p = notObj(ok, 'the answer') || notObjs(ok.results, '\'results\'');
        if (p) return p;
        for (var i = 0; i < ok.results.length; i++) {
          p = notObjs(ok.results[i].docs, 'a result\'s \'docs\'');
          if (p) return p;
        }
        return null;
      },
      get_attachment: function (ok) {
        return isObj(ok) && typeof ok.data === 'string' ? null : 'get_attachment reply without base64 data';
      }
    };

    /* What is wrong with the shape of a reply's `ok` to `op`, or null. */
    function replyProblem(op, ok, args) {
      var shape = SHAPES[op];
      return shape ? shape(ok, args || {}) : null;
    }
    /* `ok` itself when its shape is right, else a ProtocolError naming the op. */
    function checkResult(op, ok, args) {
      var problem = replyProblem(op, ok, args);
      if (problem) {
        var text = JSON.stringify(ok);
        if (text && text.length > 120) text = text.slice(0, 120) + '...(' + text.length + ' chars)';
        throw protocolError('the server\'s reply to ' + op + ' is malformed (' + problem + '): ' + text);
      }
      return ok;
    }

    // -- builders of what a client sends
    function hello(agent) { return {type: 'hello', versions: [1], agent: agent || AGENT}; }
    function open(ch, db, credentials) {
      return {type: 'open', ch: ch, db: db, credentials: credentials === undefined ? null : credentials};
    }
    function close(ch) { return {type: 'close', ch: ch}; }
    function call(ch, id, op, args) { return {type: 'call', ch: ch, id: id, op: op, args: args || {}}; }
    function subscribe(ch, sub, options) {
      var msg = {type: 'subscribe', ch: ch, sub: sub};
      for (var key in options || {}) if (options[key] !== undefined) msg[key] = options[key];
      return msg;
    }
    function unsubscribe(ch, sub) { return {type: 'unsubscribe', ch: ch, sub: sub}; }

    return {
      VERSIONS: [1], CLIENT_TYPES: CLIENT_TYPES, SERVER_TYPES: SERVER_TYPES,
      validate: validate, decode: decode, encode: encode, replyProblem: replyProblem,
      checkResult: checkResult, hello: hello, open: open, close: close, call: call,
      subscribe: subscribe, unsubscribe: unsubscribe, errorFromJson: errorFromJson
    };
  }());

  /* UTF-8 length of a string (the wire size of a text frame). */
  function utf8Length(s) {
    if (typeof Buffer !== 'undefined' && Buffer.byteLength) return Buffer.byteLength(s, 'utf8');
    var n = 0;
    for (var i = 0; i < s.length; i++) {
      var c = s.charCodeAt(i);
      if (c < 0x80) n += 1;
      else if (c < 0x800) n += 2;
      else if (c >= 0xd800 && c < 0xdc00 && i + 1 < s.length) { n += 4; i++; }
      else n += 3;
    }
    return n;
  }

  // ---------------------------------------------------------------- 3. Backoff
  /* The reconnect policy (the twin of pouchsync_sync/client/backoff.py, in ms):
   *   base(n)  = min(maxDelay, initialDelay * factor ** (n - 1))     n = 1, 2, ...
   *   delay(n) = base(n) * (1 - jitter * r)                           r in [0, 1)
   * The attempt count is reset once a connection gets its welcome. */
  function Backoff(options) {
    options = options || {};
    this.initialDelay = options.initialDelay !== undefined ? options.initialDelay : 1000;
    this.maxDelay = options.maxDelay !== undefined ? options.maxDelay : 30000;
    this.factor = options.factor !== undefined ? options.factor : 2;
    this.jitter = options.jitter !== undefined ? options.jitter : 0.5;
    if (!(this.initialDelay >= 0) || !isFinite(this.initialDelay)) throw new RangeError('initialDelay must be >= 0');
    if (!(this.maxDelay >= 0)) throw new RangeError('maxDelay must be >= 0');
    if (!(this.factor >= 1)) throw new RangeError('factor must be >= 1');
    if (!(this.jitter >= 0 && this.jitter <= 1)) throw new RangeError('jitter must be within [0, 1]');
  }
  Backoff.prototype.baseDelay = function (attempt) {
    if (attempt < 1) throw new RangeError('attempt is 1-based');
    return Math.min(this.maxDelay, this.initialDelay * Math.pow(this.factor, attempt - 1));
  };
  Backoff.prototype.delay = function (attempt, r) {
    r = Math.min(Math.max(r || 0, 0), 1);
    return this.baseDelay(attempt) * (1 - this.jitter * r);
  };

  // ---------------------------------------------------------------- 4. Client
  var DEFAULTS = {
    initialDelay: 1000, maxDelay: 30000, factor: 2, jitter: 0.5,
    pingInterval: 20000,   // ms between pings (false: no ping); unanswered by the next one: dead
    helloTimeout: 10000,   // ms to wait for the welcome
    maxReceiveSize: 256 * 1024 * 1024  // a frame larger than this from the server is a protocol error
  };

  function pick(options, key) {
    return options && options[key] !== undefined ? options[key] : DEFAULTS[key];
  }

  /* One connection to a server, shared by every sync of the client.
   * Events: connect(), disconnect(err|null), reconnect(attempt, delay), error(err). */
  function Client(options) {
    Emitter.call(this);
    options = options || {};
    this.options = options;
    this.backoff = new Backoff({
      initialDelay: pick(options, 'initialDelay'), maxDelay: pick(options, 'maxDelay'),
      factor: pick(options, 'factor'), jitter: pick(options, 'jitter')
    });
    this._random = options.random || Math.random;
    this.WebSocket = options.WebSocket || (typeof WebSocket !== 'undefined' ? WebSocket : null);
    this.url = null;
    this.state = 'idle';        // idle | connecting | open | waiting | ended
    this.limits = null;         // the welcome's limits while open
    this._ws = null;
    this._attempt = 0;          // failed attempts in a row
    this._retryTimer = null;
    this._helloTimer = null;
    this._pingTimer = null;
    this._pingPending = false;
    this._lastError = null;
    this._channels = {};        // ch -> Channel
    this._nextCh = 1;
    this._stats = {frames_sent: 0, chars_sent: 0, frames_received: 0, chars_received: 0, connections: 0};
    this._inflight = 0;         // calls sent and not answered (all channels)
    this._slotQueue = [];       // sends waiting for a call slot
    this._syncs = [];
  }
  Client.prototype = Object.create(Emitter.prototype);
  Client.prototype.constructor = Client;

  /* Start connecting to `url` (ws:// or wss://); reconnects by itself. Returns the client. */
  Client.prototype.connect = function (url) {
    if (this.state === 'ended') throw new Error('this client has ended; create a new one');
    if (typeof url !== 'string' || !/^wss?:\/\//i.test(url)) {
      throw new TypeError('connect() needs a ws:// or wss:// URL, got ' + JSON.stringify(url));
    }
    if (!this.WebSocket) {
      throw new TypeError('no WebSocket: pass createClient({WebSocket: require(\'ws\')}) in Node');
    }
    if (this.url !== null) throw new Error('connect() was already called');
    this.url = url;
    this._open();
    return this;
  };

  /* A new Sync of `db` (a PouchDB) with the server's `remoteName`; see Sync. */
  Client.prototype.sync = function (db, options) {
    if (this.state === 'ended') throw new Error('this client has ended; create a new one');
    var sync = new Sync(this, db, options || {});
    this._syncs.push(sync);
    if (this.state === 'open') sync._connected();
    return sync;
  };

  /* Cancel every sync and close the socket (1000). No timer is left. Idempotent. */
  Client.prototype.end = function () {
    if (this.state === 'ended') return;
    var syncs = this._syncs.slice();
    for (var i = 0; i < syncs.length; i++) syncs[i].cancel();
    this.state = 'ended';
    this._clearTimers();
    var ws = this._ws;
    this._ws = null;
    this._failChannels(cancelledError('the client ended'));
    if (ws) {
      detach(ws);
      try { ws.close(1000, 'client end'); } catch (exc) { /* already closing */ }
      this.emit('disconnect', null);
    }
  };
  Client.prototype.destroy = Client.prototype.end;
  Client.prototype.close = Client.prototype.end;

  Client.prototype._clearTimers = function () {
    clearTimeout(this._retryTimer); this._retryTimer = null;
    clearTimeout(this._helloTimer); this._helloTimer = null;
    clearInterval(this._pingTimer); this._pingTimer = null;
  };

  function detach(ws) {
    ws.onopen = ws.onmessage = ws.onerror = null;
    ws.onclose = null;
    if (typeof ws.removeAllListeners === 'function' && typeof ws.on === 'function') {
      ws.removeAllListeners('pong');
      ws.on('error', function () { /* late errors of a socket we left */ });
    }
  }

  Client.prototype._open = function () {
    var self = this;
    this.state = 'connecting';
    this._lastError = null;
    var ws;
    try {
      // the third argument is for Node's ws (browsers ignore it): its own frame size
      // check, and no permessage-deflate (CPU for nothing on the fast networks a sync
      // server usually sits on; pass perMessageDeflate: true to offer it)
      ws = new this.WebSocket(this.url, [], {maxPayload: pick(this.options, 'maxReceiveSize'),
        perMessageDeflate: !!this.options.perMessageDeflate});
    } catch (exc) {
      this._lastError = transportError('cannot connect to ' + this.url + ': ' + exc.message);
      this._scheduleRetry();
      return;
    }
    this._ws = ws;
    ws.onopen = function () {
      if (self._ws !== ws) return;
      self._send(protocol.hello());
      self._helloTimer = setTimeout(function () {
        self._fail(transportError('no welcome from ' + self.url + ' within ' + pick(self.options, 'helloTimeout') + ' ms'), 1000);
      }, pick(self.options, 'helloTimeout'));
    };
    ws.onmessage = function (event) {
      if (self._ws !== ws) return;
      self._pingPending = false;
      self._receive(event.data);
    };
    ws.onerror = function (event) {
      if (self._ws !== ws) return;
      if (event && event.error && event.error.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') {
        self._lastError = oversized(pick(self.options, 'maxReceiveSize'));  // ws checked maxPayload
        return;
      }
      var message = (event && (event.message || (event.error && event.error.message))) || 'WebSocket error';
      self._lastError = transportError('connection to ' + self.url + ' failed: ' + message);
    };
    ws.onclose = function (event) {
      if (self._ws !== ws) return;
      if (self._lastError && self._lastError.name === 'ProtocolError') return self._fatal(self._lastError);
      self._closed(event ? event.code : 1006, event ? event.reason : '');
    };
    if (typeof ws.on === 'function' && typeof ws.ping === 'function') {
      ws.on('pong', function () { self._pingPending = false; });
    }
  };

  Client.prototype._send = function (msg) {
    var text = protocol.encode(msg);
    this._sendText(text);
    return text.length;
  };
  Client.prototype._sendText = function (text) {
    if (!this._ws) throw transportError('not connected');
    this._ws.send(text);
    this._stats.frames_sent += 1;
    this._stats.chars_sent += text.length;
  };

  /* Counters since the client was made: frames and characters (UTF-16 code units:
   * bytes for ASCII text) sent and received, connections made. */
  Client.prototype.stats = function () {
    var out = {};
    for (var key in this._stats) out[key] = this._stats[key];
    return out;
  };

  Client.prototype._receive = function (data) {
    var max = pick(this.options, 'maxReceiveSize');
    this._stats.frames_received += 1;
    this._stats.chars_received += typeof data === 'string' ? data.length : (data.byteLength || data.length || 0);
    if (typeof data === 'string' && data.length > max / 3 && utf8Length(data) > max) {
      this._fatal(oversized(max));
      return;
    }
    var msg;
    try {
      msg = protocol.decode(data, 'server');
    } catch (exc) {
      this._fatal(exc);
      return;
    }
    if (this.state === 'connecting') {
      if (msg.type === 'welcome') return this._welcome(msg);
      if (msg.type === 'error') {
        var err = errorFromJson(msg, 'the server refused the connection');
        if (msg.error === 'unsupported_version') err.name = 'ProtocolError';
        return this._fatal(err);
      }
      return this._fatal(protocolError('expected a welcome first, got \'' + msg.type + '\''));
    }
    if (msg.type === 'welcome') return this._fatal(protocolError('a second welcome'));
    if (msg.type === 'error') return this._connectionError(msg);
    var channel = this._channels[msg.ch];
    if (!channel) return; // a late message for a channel we forgot (closed): ignore
    channel._receive(msg);
  };

  Client.prototype._welcome = function (msg) {
    clearTimeout(this._helloTimer); this._helloTimer = null;
    if (msg.version !== 1) return this._fatal(protocolError('the server chose protocol version ' + msg.version + ', this client speaks [1]'));
    this.limits = msg.limits;
    this.state = 'open';
    this._stats.connections += 1;
    this._attempt = 0; // a good connection resets the backoff
    this._startPing();
    this.emit('connect');
    var syncs = this._syncs.slice();
    for (var i = 0; i < syncs.length; i++) {
      if (this.state !== 'open') break;
      syncs[i]._connected();
    }
  };

  Client.prototype._connectionError = function (msg) {
    var err = errorFromJson(msg, 'server error');
    if (msg.id && msg.ch && this._channels[msg.ch]) {
      this._channels[msg.ch]._failCall(msg.id, err);
      return;
    }
    if (msg.ch && this._channels[msg.ch] && !msg.fatal) {
      this._channels[msg.ch]._fail(err);
      return;
    }
    this.emit('error', err);  // fatal: the server closes the socket next
  };

  /* A broken protocol: report it to the client and every sync, close the socket and
   * stop (reconnecting to a server that broke the protocol would only break again). */
  Client.prototype._fatal = function (err) {
    this.emit('error', err);
    var syncs = this._syncs.slice();
    for (var i = 0; i < syncs.length; i++) syncs[i]._abort(err);
    this._fail(err, 1002, true);
  };

  /* Drop the current socket (code sent to the server) and reconnect unless `stop`. */
  Client.prototype._fail = function (err, code, stop) {
    var ws = this._ws;
    if (!ws) return;
    this._lastError = err;
    detach(ws);
    try {
      if (typeof ws.terminate === 'function' && code !== 1002) ws.terminate(); else ws.close(code === 1002 ? 1000 : code, '');
    } catch (exc) { /* already closed */ }
    this._closed(1006, err.message, stop);
  };

  Client.prototype._startPing = function () {
    var self = this;
    var interval = pick(this.options, 'pingInterval');
    if (!interval) return;
    this._pingPending = false;
    this._pingTimer = setInterval(function () {
      if (self._pingPending) {
        self._fail(transportError('the server did not answer a ping within ' + interval + ' ms'), 1000);
        return;
      }
      self._pingPending = true;
      var ws = self._ws;
      if (ws && typeof ws.ping === 'function') {
        try { ws.ping(); } catch (exc) { /* closing */ }
      } else {
        self._probe();
      }
    }, interval);
  };

  /* Browsers cannot send WebSocket pings: ask an open channel for its `info` instead
   * (any message received counts as an answer). */
  Client.prototype._probe = function () {
    for (var ch in this._channels) {
      var channel = this._channels[ch];
      if (channel.state === 'open') {
        channel.call('info', {}).catch(function () { /* the reply itself is the answer */ });
        return;
      }
    }
    this._pingPending = false; // nothing to ask: the server pings us and drops us if we are gone
  };

  Client.prototype._closed = function (code, reason, stop) {
    var wasOpen = this.state === 'open';
    this._ws = null;
    this.limits = null;
    clearTimeout(this._helloTimer); this._helloTimer = null;
    clearInterval(this._pingTimer); this._pingTimer = null;
    if (this.state === 'ended') return;
    var err = this._lastError || transportError('the connection to ' + this.url + ' closed (' + code + (reason ? ' ' + reason : '') + ')');
    err.code = code;
    this._failChannels(err);
    var syncs = this._syncs.slice();
    for (var i = 0; i < syncs.length; i++) syncs[i]._disconnected(err);
    if (!wasOpen && !stop) this.emit('error', err);
    this.emit('disconnect', err);
    if (stop) {
      this.state = 'idle';
      this.end();
      return;
    }
    this._scheduleRetry();
  };

  Client.prototype._scheduleRetry = function () {
    var self = this;
    if (this.state === 'ended') return;
    this.state = 'waiting';
    this._attempt += 1;
    var attempt = this._attempt;
    var delay = this.backoff.delay(attempt, this._random());
    this.emit('reconnect', attempt, delay);
    if (this.state !== 'waiting') return; // a listener ended the client
    this._retryTimer = setTimeout(function () {
      self._retryTimer = null;
      if (self.state === 'waiting') self._open();
    }, delay);
  };

  /* Calls in flight stay within the welcome's max_calls (the server answers 429 above
   * it): `send()` runs now if a slot is free, else when one frees up; it returns
   * whether it took the slot. */
  Client.prototype._whenSlot = function (send) {
    var max = (this.limits && this.limits.max_calls) || 64;
    if (this._inflight < max && !this._slotQueue.length) {
      if (send()) this._inflight += 1;
      return;
    }
    this._slotQueue.push(send);
  };

  Client.prototype._slotFree = function () {
    this._inflight = Math.max(0, this._inflight - 1);
    var max = (this.limits && this.limits.max_calls) || 64;
    while (this._slotQueue.length && this._inflight < max) {
      if (this._slotQueue.shift()()) this._inflight += 1;
    }
  };

  Client.prototype._failChannels = function (err) {
    this._inflight = 0;
    this._slotQueue = [];
    var channels = this._channels;
    this._channels = {};
    for (var ch in channels) channels[ch]._gone(err);
  };

  Client.prototype._openChannel = function (db, credentials) {
    if (this.state !== 'open') return Promise.reject(transportError('not connected'));
    var ch = this._nextCh;
    while (this._channels[ch]) ch = ch >= MAX_ID ? 1 : ch + 1;
    this._nextCh = ch >= MAX_ID ? 1 : ch + 1;
    var channel = new Channel(this, ch, db);
    this._channels[ch] = channel;
    this._send(protocol.open(ch, db, credentials));
    return channel._opened;
  };

  Client.prototype._forget = function (channel) {
    if (this._channels[channel.ch] === channel) delete this._channels[channel.ch];
  };

  Client.prototype.maxMessageSize = function () {
    var size = this.limits && this.limits.max_message_size;
    return typeof size === 'number' && size > 0 ? size : 64 * 1024 * 1024;
  };

  /* One channel (one database) on the socket: calls and subscriptions. */
  function Channel(client, ch, db) {
    var self = this;
    this.client = client;
    this.ch = ch;
    this.db = db;
    this.state = 'opening';     // opening | open | closing | gone
    this.uuid = null;
    this.readOnly = false;
    this._calls = {};           // id -> {resolve, reject, op, args}
    this._nextId = 1;
    this._subs = {};            // sub -> function(msg)
    this._nextSub = 1;
    this._opened = new Promise(function (resolve, reject) { self._openResolve = resolve; self._openReject = reject; });
    this._closedWaiters = [];
  }

  Channel.prototype._receive = function (msg) {
    if (this.state === 'closing') {
      if (msg.type === 'closed') this._gone(cancelledError('channel closed'));
      return; // granted/denied/reply/changes on their way before closed: ignored
    }
    switch (msg.type) {
      case 'granted':
        if (this.state !== 'opening') return this.client._fatal(protocolError('granted for channel ' + this.ch + ' which is ' + this.state));
        this.state = 'open';
        this.uuid = msg.uuid;
        this.readOnly = !!msg.read_only;
        this._openResolve(this);
        return;
      case 'denied':
        if (this.state !== 'opening') return this.client._fatal(protocolError('denied for channel ' + this.ch + ' which is ' + this.state));
        this.state = 'gone';
        this.client._forget(this);
        this._openReject(errorFromJson(msg, 'the server denied database \'' + this.db + '\''));
        return;
      case 'reply':
        var pending = this._calls[msg.id];
        if (!pending || !pending.sent) return this.client._fatal(protocolError('a reply to call ' + msg.id + ' which is not in flight on channel ' + this.ch));
        delete this._calls[msg.id];
        this.client._slotFree();
        if (msg.error !== undefined && msg.error !== null) {
          pending.reject(errorFromJson(msg.error, msg.error.error === 'bad_request' ? pending.op : ''));
          return;
        }
        var problem = protocol.replyProblem(pending.op, msg.ok, pending.args);
        if (problem) {
          try { protocol.checkResult(pending.op, msg.ok, pending.args); } catch (err) { this.client._fatal(err); }
          return;
        }
        pending.resolve(msg.ok);
        return;
      case 'changes':
        var handler = this._subs[msg.sub];
        if (!handler) return; // unsubscribed: changes already on the way are ignored
        if (msg.error) delete this._subs[msg.sub];
        if (msg.results) {
          try { protocol.checkResult('changes', msg, {}); } catch (err) { return this.client._fatal(err); }
        }
        handler(msg);
        return;
      case 'closed':
        return this.client._fatal(protocolError('closed for channel ' + this.ch + ' which is ' + this.state));
    }
  };

  /* Call `op` with `args`; a promise of the reply's `ok`. */
  Channel.prototype.call = function (op, args) {
    return this.callText(op, args || {}, null);
  };

  /* Like call, but the args are given as their JSON text (`argsText`) when not null:
   * the replicator builds big write frames from doc texts it already measured. */
  Channel.prototype.callText = function (op, args, argsText) {
    var self = this;
    if (this.state !== 'open') return Promise.reject(this._error || transportError('channel ' + this.ch + ' is not open'));
    var id = this._nextId;
    while (this._calls[id]) id = id >= MAX_ID ? 1 : id + 1;
    this._nextId = id >= MAX_ID ? 1 : id + 1;
    var text = argsText === null
      ? protocol.encode(protocol.call(this.ch, id, op, args))
      : '{"type":"call","ch":' + this.ch + ',"id":' + id + ',"op":' + JSON.stringify(op) + ',"args":' + argsText + '}';
    var max = this.client.maxMessageSize();
    if (text.length > max / 3 && utf8Length(text) > max) {
      return Promise.reject(SyncError('PayloadTooLarge', op + ' call of ' + utf8Length(text) + ' bytes is over the server\'s max_message_size ' + max,
        {status: 413, error: 'too_large'}));
    }
    return new Promise(function (resolve, reject) {
      var pending = {resolve: resolve, reject: reject, op: op, args: args, sent: false};
      self._calls[id] = pending;
      self.client._whenSlot(function () {
        if (self._calls[id] !== pending) return false; // rejected while it waited
        try {
          self.client._sendText(text);
        } catch (exc) {
          delete self._calls[id];
          reject(transportError('send failed: ' + exc.message));
          return false;
        }
        pending.sent = true;
        return true;
      });
    });
  };

  /* Subscribe to the server's live changes; `handler(msg)` gets each `changes` message.
   * Returns the subscription number. */
  Channel.prototype.subscribe = function (options, handler) {
    if (this.state !== 'open') throw transportError('channel ' + this.ch + ' is not open');
    var sub = this._nextSub++;
    this._subs[sub] = handler;
    this.client._send(protocol.subscribe(this.ch, sub, options));
    return sub;
  };

  Channel.prototype.unsubscribe = function (sub) {
    if (!this._subs[sub]) return;
    delete this._subs[sub];
    if (this.state === 'open') this.client._send(protocol.unsubscribe(this.ch, sub));
  };

  /* Close the channel on the wire (the server drops its feeds and calls); idempotent. */
  Channel.prototype.close = function () {
    if (this.state === 'gone' || this.state === 'closing') return;
    var err = cancelledError('channel closed');
    this._rejectAll(err);
    this._openReject(err);
    this.state = 'closing';
    try {
      this.client._send(protocol.close(this.ch));
    } catch (exc) {
      this._gone(err);
    }
  };

  Channel.prototype._rejectAll = function (err) {
    var calls = this._calls;
    this._calls = {};
    this._subs = {};
    for (var id in calls) {
      if (calls[id].sent) this.client._slotFree();
      calls[id].reject(err);
    }
  };

  Channel.prototype._failCall = function (id, err) {
    var pending = this._calls[id];
    if (!pending) return;
    delete this._calls[id];
    if (pending.sent) this.client._slotFree();
    pending.reject(err);
  };

  Channel.prototype._fail = function (err) {
    this._error = err;
    this._rejectAll(err);
  };

  /* The channel is gone (closed, or the socket dropped). */
  Channel.prototype._gone = function (err) {
    if (this.state === 'gone') return;
    this.state = 'gone';
    this._error = err;
    this.client._forget(this);
    this._rejectAll(err);
    this._openReject(err);
  };

  // ---------------------------------------------------------------- 5. Sync and Replication
  /* A short stable hash (cyrb53) as 14 hex digits: the replication id. */
  function hash(text) {
    var h1 = 0xdeadbeef, h2 = 0x41c6ce57;
    for (var i = 0; i < text.length; i++) {
      var c = text.charCodeAt(i);
      h1 = Math.imul(h1 ^ c, 2654435761);
      h2 = Math.imul(h2 ^ c, 1597334677);
    }
    h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
    h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
    var n = 4294967296 * (2097151 & h2) + (h1 >>> 0);
    var hex = n.toString(16);
    while (hex.length < 14) hex = '0' + hex;
    return hex;
  }

  function randomId() {
    var s = '';
    for (var i = 0; i < 4; i++) s += Math.floor(Math.random() * 4294967296).toString(16);
    return s;
  }

  function revGeneration(rev) { return parseInt(rev, 10); }

  /* Split `texts` (JSON texts of docs) into chunks whose joined size stays under
   * `budget` bytes; a text alone over the budget comes back in `tooLarge`. */
  function chunkTexts(texts, budget) {
    var chunks = [], tooLarge = [], current = [], size = 0;
    for (var i = 0; i < texts.length; i++) {
      var n = utf8Length(texts[i]);
      if (n > budget) { tooLarge.push(i); continue; }
      if (current.length && size + n + 1 > budget) { chunks.push(current); current = []; size = 0; }
      current.push(i);
      size += n + 1;
    }
    if (current.length) chunks.push(current);
    return {chunks: chunks, tooLarge: tooLarge};
  }

  function emptyStats(direction) {
    return {direction: direction, ok: true, status: 'active', docs_read: 0, docs_written: 0,
      doc_write_failures: 0, errors: [], last_seq: null, start_time: new Date().toISOString()};
  }

  /* The side of a replication in the local PouchDB. */
  function LocalPeer(db) { this.db = db; }
  /* Rows {seq, id, revs (leaves), deleted, text, doc}: `doc` is set for a doc whose
   * only revision is its first and has no attachments (its whole history is itself:
   * no bulkGet needed), as PouchDB's own replicator does with allDocs. */
  LocalPeer.prototype.changes = function (since, limit) {
    return this.db.changes({since: since, limit: limit, style: 'all_docs', include_docs: true, return_docs: true}).then(function (res) {
      return {rows: res.results.map(function (r) {
        var revs = r.changes.map(function (c) { return c.rev; });
        return {seq: r.seq, id: r.id, revs: revs, deleted: !!r.deleted, text: null, doc: firstGeneration(r.doc, revs)};
      }), last_seq: res.last_seq, pending: res.results.length < limit ? 0 : undefined, limit: limit};
    });
  };

  /* `doc` when it is a whole first-generation document (see LocalPeer.changes), else null. */
  function firstGeneration(doc, revs) {
    if (!doc || revs.length !== 1 || doc._rev !== revs[0] || doc._deleted || doc._attachments ||
        revGeneration(revs[0]) !== 1) {
      return null;
    }
    return doc;
  }
  LocalPeer.prototype.revsDiff = function (revs) { return this.db.revsDiff(revs); };
  LocalPeer.prototype.bulkGet = function (docs) {
    return this.db.bulkGet({docs: docs, revs: true, attachments: true, latest: true});
  };
  LocalPeer.prototype.getLocal = function (id) {
    return this.db.get(id).catch(function (err) {
      if (err && err.status === 404) return null;
      throw err;
    });
  };
  LocalPeer.prototype.putLocal = function (doc) { return this.db.put(doc); };
  LocalPeer.prototype.write = function (docs) {
    return this.db.bulkDocs(docs, {new_edits: false}).then(function (res) {
      var failures = [];
      (res || []).forEach(function (r) { if (r && r.error) failures.push(r); });
      return failures;
    });
  };

  /* The side of a replication on the server, through a channel. */
  function RemotePeer(channel, maxMessageSize) {
    this.channel = channel;
    this.budget = Math.floor(maxMessageSize / 2) - 4096; // JSON escaping may double a text
    this.textsKnown = true;
    this.limitCap = Infinity;   // lowered when a reply was too large for the server
  }
  /* A batch of changes: changes_texts (or changes from a server without it). A reply
   * the server finds over its max_reply_size (413 too_large) is asked again with half
   * the limit, and later reads keep to that smaller limit. */
  RemotePeer.prototype.changes = function (since, limit) {
    var self = this;
    limit = Math.max(1, Math.min(limit, this.limitCap));
    var asked = this.textsKnown
      ? this.channel.call('changes_texts', {since: since, limit: limit, max_bytes: Math.min(this.budget, 8 * 1024 * 1024)}).then(function (ok) {
        return {rows: ok.results.map(function (r) {
          return {seq: r[0], id: r[1], revs: r[2], deleted: r[3], text: r[4], doc: null};
        }), last_seq: ok.last_seq, pending: ok.pending, limit: limit};
      })
      : this.channel.call('changes', {since: since, limit: limit, style: 'all_docs'}).then(function (ok) {
        return {rows: ok.results.map(function (r) {
          return {seq: r.seq, id: r.id, revs: r.changes.map(function (c) { return c.rev; }), deleted: !!r.deleted, text: null, doc: null};
        }), last_seq: ok.last_seq, pending: ok.pending, limit: limit};
      });
    return asked.catch(function (err) {
      if (self.textsKnown && err.name === 'BadRequest' && /unknown op/.test(err.message)) {
        self.textsKnown = false;
        return self.changes(since, limit);
      }
      if (err.status === 413 && limit > 1) {
        self.limitCap = limit >> 1;
        return self.changes(since, self.limitCap);
      }
      throw err;
    });
  };
  /* revs_diff, in parts when the question alone would pass the message budget (a server
   * with a small max_message_size and a large batch). */
  RemotePeer.prototype.revsDiff = function (revs) {
    var self = this;
    var ids = Object.keys(revs);
    if (ids.length < 2 || utf8Length(JSON.stringify(revs)) <= this.budget) {
      return this.channel.call('revs_diff', {revs: revs});
    }
    var halves = [ids.slice(0, ids.length >> 1), ids.slice(ids.length >> 1)].map(function (part) {
      var sub = {};
      part.forEach(function (id) { sub[id] = revs[id]; });
      return self.revsDiff(sub);
    });
    return Promise.all(halves).then(function (answers) {
      var out = {};
      answers.forEach(function (a) { for (var id in a) out[id] = a[id]; });
      return out;
    });
  };
  /* bulk_get in parts when the question would pass the message budget, or when the
   * server finds the answer over its max_reply_size (413); a single revision too
   * large for any reply comes back as a too_large error entry (a counted failure). */
  RemotePeer.prototype.bulkGet = function (docs) {
    var self = this;
    function inHalves() {
      var half = docs.length >> 1;
      return Promise.all([self.bulkGet(docs.slice(0, half)), self.bulkGet(docs.slice(half))]).then(function (answers) {
        return {results: answers[0].results.concat(answers[1].results)};
      });
    }
    if (docs.length > 1 && utf8Length(JSON.stringify(docs)) > this.budget) return inHalves();
    return this.channel.call('bulk_get', {docs: docs, revs: true, attachments: true, latest: true}).catch(function (err) {
      if (err.status !== 413) throw err;
      if (docs.length > 1) return inHalves();
      return {results: [{id: docs[0].id, docs: [{error: {id: docs[0].id, rev: docs[0].rev, error: 'too_large',
        reason: err.reason || err.message}}]}]};
    });
  };
  RemotePeer.prototype.getLocal = function (id) {
    return this.channel.call('get', {doc_id: id}).catch(function (err) {
      if (err && err.status === 404) return null;
      throw err;
    });
  };
  RemotePeer.prototype.putLocal = function (doc) { return this.channel.call('put', {doc: doc}); };
  /* bulk_docs new_edits=false in chunks under half the server's max_message_size; a
   * doc no message can carry is a too_large failure. Returns the failures. */
  RemotePeer.prototype.write = function (docs) {
    var self = this;
    var texts = docs.map(function (d) { return JSON.stringify(d); });
    var plan = chunkTexts(texts, this.budget);
    var failures = plan.tooLarge.map(function (i) {
      return {id: docs[i]._id, rev: docs[i]._rev, error: 'too_large', reason: 'the document is larger than the server\'s max_message_size allows'};
    });
    return Promise.all(plan.chunks.map(function (chunk) {
      var argsText = '{"docs":[' + chunk.map(function (i) { return texts[i]; }).join(',') + '],"new_edits":false}';
      return self.channel.callText('bulk_docs', {docs: chunk}, argsText);
    })).then(function (answers) {
      answers.forEach(function (answer) {
        answer.forEach(function (r) { if (r && r.error) failures.push(r); });
      });
      return failures;
    });
  };

  /* One direction of a sync: source -> target, with checkpoints `_local/<repId>` on
   * both. `run()` replicates until caught up (one batch after another); live
   * replications call it again when the source changes. Steps are named after the
   * CouchDB replication protocol (docs.couchdb.org/en/stable/replication/protocol.html). */
  function Replication(sync, direction, source, target, repId) {
    this.sync = sync;
    this.direction = direction;
    this.source = source;
    this.target = target;
    this.logId = '_local/' + repId;
    this.sessionId = randomId();
    this.since = null;           // null until findCommonAncestry
    this.stats = sync._stats[direction];
    this.sourceLog = null;
    this.targetLog = null;
    this.sourceLogWritable = true;
    this.lastCheckpoint = 0;
  }

  /* Retrieve both replication logs and compare them: the sequence both agree on. */
  Replication.prototype.findCommonAncestry = function () {
    var self = this;
    return Promise.all([this.source.getLocal(this.logId), this.target.getLocal(this.logId)]).then(function (logs) {
      self.sourceLog = logs[0];
      self.targetLog = logs[1];
      self.since = compareLogs(logs[0], logs[1]);
      if (self.stats.last_seq === null) self.stats.last_seq = self.since;
      return self.since;
    });
  };

  function compareLogs(sourceLog, targetLog) {
    if (!sourceLog || !targetLog) return 0;
    if (sourceLog.session_id && sourceLog.session_id === targetLog.session_id) return sourceLog.last_seq;
    var sh = sourceLog.history || [], th = targetLog.history || [];
    for (var i = 0; i < sh.length; i++) {
      for (var j = 0; j < th.length; j++) {
        if (sh[i].session_id && sh[i].session_id === th[j].session_id) return sh[i].last_seq;
      }
    }
    return 0;
  }

  /* Read batches and replicate them until the source has nothing new; resolves true
   * when caught up. Pipelined: the next batch of changes is read while this one is
   * replicated, and up to two batches are replicated at once (batch N+1 starts when
   * batch N-1 is written), so neither side waits for the other's round trips. A
   * checkpoint is recorded in order, only after its batch and every batch before it
   * are written. */
  Replication.prototype.run = function (isStale) {
    var self = this;
    var batchSize = this.sync.batchSize;
    var previous = Promise.resolve();      // the write of the batch before the last
    var checkpoints = Promise.resolve();   // the chain of checkpoints, in batch order
    function read(since) {
      var p = self.source.changes(since, batchSize);
      p.catch(function () { /* seen when awaited */ });
      return p;
    }
    var next = read(this.since);
    function step() {
      return next.then(function (batch) {
        if (isStale()) return false;
        // caught up: the read said so (pending 0), or it returned less than it asked for
        var caughtUp = batch.rows.length === 0 || batch.pending === 0 ||
          ((batch.pending === undefined || batch.pending === null) && batch.rows.length < (batch.limit || batchSize));
        if (!batch.rows.length) return checkpoints.then(function () { return true; });
        next = caughtUp ? null : read(batch.last_seq);
        var write = self.replicateBatch(batch, isStale);
        write.catch(function () { /* seen through checkpoints or the gate */ });
        checkpoints = Promise.all([checkpoints, write]).then(function () {
          if (!isStale()) return self.recordCheckpoint(batch.last_seq, caughtUp);
        });
        checkpoints.catch(function () { /* seen when awaited */ });
        if (caughtUp) return checkpoints.then(function () { return !isStale(); });
        var gate = previous;
        previous = write;
        return gate.then(step);
      });
    }
    return step();
  };

  /* Replicate one batch of changes: revision difference, fetch, upload. */
  Replication.prototype.replicateBatch = function (batch, isStale) {
    var self = this;
    this.sync._active(this.direction);
    return this.calculateRevisionDifference(batch.rows).then(function (missing) {
      if (isStale()) return null;
      return self.fetchChangedDocuments(batch.rows, missing).then(function (docs) {
        if (isStale() || !docs.length) return docs;
        self.stats.docs_read += docs.length;
        return self.uploadBatch(docs);
      });
    }).then(function (written) {
      if (isStale() || written === null) return;
      self.stats.last_seq = batch.last_seq;
      // as PouchDB: a change event lists the docs written, and there is none without
      if (written && written.length) self.sync._change(self.direction, written);
    });
  };

  Replication.prototype.calculateRevisionDifference = function (rows) {
    var revs = {};
    rows.forEach(function (r) { revs[r.id] = (revs[r.id] || []).concat(r.revs); });
    return this.target.revsDiff(revs);
  };

  /* The missing revisions with their history: a first-generation doc that came as a
   * text row is built from it; the others come from the source's bulk_get. */
  Replication.prototype.fetchChangedDocuments = function (rows, missing) {
    var docs = [], wanted = [];
    var byId = {};
    rows.forEach(function (r) { byId[r.id] = r; });
    Object.keys(missing || {}).forEach(function (id) {
      var revs = missing[id].missing || [];
      var row = byId[id];
      if (row && (row.text || row.doc) && revs.length === 1 && row.revs.length === 1 && revs[0] === row.revs[0] &&
          revGeneration(revs[0]) === 1) {
        var doc = row.doc;
        if (!doc) {
          try { doc = JSON.parse(row.text); } catch (exc) { throw protocolError('changes_texts row ' + JSON.stringify(id) + ' is not JSON'); }
        }
        doc._id = id;
        doc._rev = revs[0];
        doc._revisions = {start: 1, ids: [revs[0].slice(revs[0].indexOf('-') + 1)]};
        docs.push(doc);
        return;
      }
      revs.forEach(function (rev) { wanted.push({id: id, rev: rev}); });
    });
    if (!wanted.length) return Promise.resolve(docs);
    var self = this;
    var chunks = [];
    for (var i = 0; i < wanted.length; i += 100) chunks.push(wanted.slice(i, i + 100));
    return Promise.all(chunks.map(function (chunk) { return self.source.bulkGet(chunk); })).then(function (answers) {
      answers.forEach(function (answer) {
        answer.results.forEach(function (result) {
          result.docs.forEach(function (entry) {
            if (entry.ok) {
              docs.push(entry.ok);
            } else {
              self.stats.doc_write_failures += 1;
              self.stats.errors.push(entry.error || entry);
            }
          });
        });
      });
      return docs;
    });
  };

  /* Upload the docs with new_edits=false; refusals are per document (a 'denied' event
   * for a grant refusal) and do not stop the replication. Resolves with the docs
   * written (those not refused). */
  Replication.prototype.uploadBatch = function (docs) {
    var self = this;
    return this.target.write(docs).then(function (failures) {
      var refused = {};  // "id\nrev" of a refused revision, "id\n" when the refusal names none
      failures.forEach(function (f) { refused[f.id + '\n' + (f.rev || '')] = true; });
      self.stats.docs_written += docs.length - failures.length;
      self.stats.doc_write_failures += failures.length;
      failures.forEach(function (f) {
        var err = SyncError(f.error === 'forbidden' || f.error === 'unauthorized' ? 'Forbidden' : 'CouchError',
          (f.reason || f.error) + ' (' + f.id + ')', {status: f.error === 'too_large' ? 413 : 403, error: f.error, reason: f.reason, id: f.id, rev: f.rev});
        self.stats.errors.push(err);
        if (f.error === 'forbidden' || f.error === 'unauthorized') {
          err.status = f.error === 'forbidden' ? 403 : 401;
          self.sync._deniedDoc(self.direction, err);
        }
      });
      if (!failures.length) return docs;
      return docs.filter(function (doc) {
        return !refused[doc._id + '\n' + doc._rev] && !refused[doc._id + '\n'];
      });
    });
  };

  /* Record Replication Checkpoint: the target's log first, then the source's. During
   * a backlog at most one per `checkpointInterval` ms; always when caught up. */
  Replication.prototype.recordCheckpoint = function (lastSeq, caughtUp) {
    var self = this;
    this.since = lastSeq;
    var now = Date.now();
    if (!caughtUp && now - this.lastCheckpoint < this.sync.checkpointInterval) return Promise.resolve();
    this.lastCheckpoint = now;
    function updated(previous) {
      var history = ((previous && previous.history) || []).filter(function (h) { return h.session_id !== self.sessionId; });
      history.unshift({session_id: self.sessionId, last_seq: lastSeq});
      var doc = {_id: self.logId, session_id: self.sessionId, last_seq: lastSeq, replicator: 'pouchsync.js',
        version: 1, history: history.slice(0, 5)};
      if (previous && previous._rev) doc._rev = previous._rev;
      return doc;
    }
    // Another writer of the same log (a second tab on the same IndexedDB database)
    // makes the put a 409: read the log again and write on top of it; after three
    // conflicts in a row leave this checkpoint to the other writer (a checkpoint only
    // saves work: the next one is written on top of what was read).
    function write(peer, previous, attempt) {
      var doc = updated(previous);
      return peer.putLocal(doc).then(function (res) {
        doc._rev = res.rev;
        return doc;
      }, function (err) {
        if (!err || err.status !== 409) throw err;
        return peer.getLocal(self.logId).then(function (current) {
          return (attempt || 0) < 2 ? write(peer, current, (attempt || 0) + 1) : current;
        });
      });
    }
    return write(this.target, this.targetLog).then(function (doc) {
      self.targetLog = doc;
      if (!self.sourceLogWritable) return null;
      return write(self.source, self.sourceLog).then(function (sdoc) { self.sourceLog = sdoc; }, function (err) {
        if (err && (err.status === 403 || err.status === 401)) { self.sourceLogWritable = false; return; }
        throw err;
      });
    });
  };

  /* A sync of one PouchDB with one server database, both ways by default.
   * Events: change, paused, active, denied, complete, error (see docs/js-client.md).
   * A one-shot sync (live: false) is also a thenable. */
  function Sync(client, db, options) {
    var self = this;
    Emitter.call(this);
    if (!db || typeof db.changes !== 'function' || typeof db.bulkDocs !== 'function') {
      throw new TypeError('sync() needs a PouchDB database');
    }
    var direction = options.direction === undefined ? 'both' : options.direction;
    if (['both', 'push', 'pull'].indexOf(direction) < 0) {
      throw new TypeError('direction must be \'both\', \'push\' or \'pull\', got ' + JSON.stringify(direction));
    }
    var remoteName = options.remoteName === undefined ? db.name : options.remoteName;
    if (typeof remoteName !== 'string' || !remoteName.length || remoteName.length > 1024) {
      throw new TypeError('remoteName must be a non-empty string of at most 1024 characters');
    }
    var batchSize = options.batchSize === undefined ? 500 : options.batchSize;
    if (!(Number.isInteger(batchSize) && batchSize >= 1)) throw new TypeError('batchSize must be a positive integer');
    this.client = client;
    this.db = db;
    this.remoteName = remoteName;
    this.credentials = options.credentials === undefined ? null : options.credentials;
    this.live = options.live === undefined ? true : !!options.live;
    this.retry = options.retry === undefined ? this.live : !!options.retry;
    this.direction = direction;
    this.batchSize = batchSize;
    this.checkpointInterval = options.checkpointInterval === undefined ? 1000 : options.checkpointInterval;
    this.state = 'pending';   // pending | active | paused | complete | cancelled | denied | error
    this.channel = null;
    this.readOnly = false;
    this._gen = 0;            // bumped by every disconnect/end: a stale run stops at its next step
    this._stats = {push: emptyStats('push'), pull: emptyStats('pull')};
    this._busy = {push: false, pull: false};
    this._done = {push: direction === 'pull', pull: direction === 'push'};
    this._localFeed = null;
    this._sub = null;
    this._repIds = null;
    this._retries = 0;        // retryable failures in a row (backoff of _failed)
    this._retryTimer = null;
    this._promise = new Promise(function (resolve, reject) { self._resolve = resolve; self._reject = reject; });
    this._promise.catch(function () { /* reported by events too; avoid unhandled rejections */ });
  }
  Sync.prototype = Object.create(Emitter.prototype);
  Sync.prototype.constructor = Sync;

  Sync.prototype.then = function (onOk, onErr) { return this._promise.then(onOk, onErr); };
  Sync.prototype['catch'] = function (onErr) { return this._promise.then(null, onErr); };

  Sync.prototype._ended = function () {
    return this.state === 'complete' || this.state === 'cancelled' || this.state === 'denied' || this.state === 'error';
  };

  /* Stop: close the channel on the wire, stop the live feeds, emit 'complete' once. */
  Sync.prototype.cancel = function () {
    if (this._ended()) return;
    this.state = 'cancelled';
    this._stop(true);
    var result = this._result('cancelled');
    this.emit('complete', result);
    this._resolve(result);
    this._detach();
  };

  Sync.prototype._detach = function () {
    var list = this.client._syncs;
    var i = list.indexOf(this);
    if (i >= 0) list.splice(i, 1);
  };

  Sync.prototype._stop = function (closeChannel) {
    this._gen += 1;
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    if (this._localFeed) { this._localFeed.cancel(); this._localFeed = null; }
    var channel = this.channel;
    this.channel = null;
    this._sub = null;
    if (channel && closeChannel) channel.close();
    this._busy = {push: false, pull: false};
  };

  Sync.prototype._result = function (status) {
    var now = new Date().toISOString();
    var out = {ok: status !== 'error' && status !== 'denied', status: status, end_time: now};
    var self = this;
    ['push', 'pull'].forEach(function (d) {
      if (self.direction === 'both' || self.direction === d) {
        var s = self._stats[d];
        out[d] = {ok: s.ok, status: status, docs_read: s.docs_read, docs_written: s.docs_written,
          doc_write_failures: s.doc_write_failures, errors: s.errors.slice(), last_seq: s.last_seq,
          start_time: s.start_time, end_time: now};
      }
    });
    out.docs_read = (out.push ? out.push.docs_read : 0) + (out.pull ? out.pull.docs_read : 0);
    out.docs_written = (out.push ? out.push.docs_written : 0) + (out.pull ? out.pull.docs_written : 0);
    return out;
  };

  /* End with an error (error event; a one-shot sync rejects). */
  Sync.prototype._abort = function (err) {
    if (this._ended()) return;
    this.state = err.name === 'Denied' ? 'denied' : 'error';
    this._stop(true);
    if (err.name === 'Denied') this.emit('denied', err);
    this.emit('error', err);
    this._reject(err);
    this._detach();
  };

  Sync.prototype._connected = function () {
    var self = this;
    if (this._ended() || this.channel) return;
    var gen = ++this._gen;
    function stale() { return gen !== self._gen || self._ended(); }
    this.client._openChannel(this.remoteName, this.credentials).then(function (channel) {
      if (stale()) { channel.close(); return; }
      self.channel = channel;
      self.readOnly = channel.readOnly;
      return self._start(channel, stale);
    }).catch(function (err) {
      if (stale()) return;
      self._failed(err);
    });
  };

  /* A failure of a running sync: a denial, a broken protocol or a one-shot sync
   * without retry ends it; a lost connection waits for the next one. */
  Sync.prototype._failed = function (err) {
    var self = this;
    if (this._ended()) return;
    var retryable = err.name === 'TransportError' || err.name === 'Cancelled' || err.retryable ||
      err.error === 'shutting_down' || err.error === 'unavailable' || err.error === 'too_many_requests';
    if (!retryable || !this.retry) return this._abort(err);
    // a retryable failure on a live connection (the server's database unavailable, a
    // 429): close the channel, say 'paused' with the error (as PouchDB's retry does)
    // and open it again after the client's backoff
    this._stop(true);
    this.state = 'pending';
    this._retries += 1;
    var delay = this.client.backoff.delay(this._retries, this.client._random());
    this.emit('paused', err);
    this._retryTimer = setTimeout(function () {
      self._retryTimer = null;
      if (self.client.state === 'open') self._connected();
    }, delay);
  };

  Sync.prototype._disconnected = function (err) {
    if (this._ended()) return;
    this._stop(false);
    if (!this.retry) { this._abort(err); return; }
    if (this.state === 'active' || this.state === 'paused') {
      this.state = 'pending';
    }
  };

  Sync.prototype._replicationIds = function (channel) {
    var self = this;
    if (this._repIds) return Promise.resolve(this._repIds);
    var getId = typeof this.db.id === 'function' ? this.db.id() : Promise.resolve(this.db.name);
    return Promise.resolve(getId).then(function (localId) {
      var base = JSON.stringify([localId, channel.uuid, self.remoteName]);
      self._repIds = {
        push: 'pouchsyncjs-push-' + hash('push' + base),
        pull: 'pouchsyncjs-pull-' + hash('pull' + base)
      };
      return self._repIds;
    });
  };

  Sync.prototype._start = function (channel, stale) {
    var self = this;
    var local = new LocalPeer(this.db);
    var remote = new RemotePeer(channel, this.client.maxMessageSize());
    this._done = {push: this.direction === 'pull', pull: this.direction === 'push'};
    return this._replicationIds(channel).then(function (ids) {
      if (stale()) return;
      var push = self.direction === 'pull' ? null : new Replication(self, 'push', local, remote, ids.push);
      var pull = self.direction === 'push' ? null : new Replication(self, 'pull', remote, local, ids.pull);
      var done;
      if (push && pull && !self.live) {
        // One-shot both ways: pull first, then push. A PouchDB changes read that races
        // with a write of the same doc can miss that doc (the adapter skips an entry
        // whose doc moved to a later seq, which the read's snapshot does not hold); a
        // live push re-reads after every local change event, a one-shot one must not
        // read while the pull writes.
        done = self._runPull(pull, channel, stale).then(function () {
          if (!stale()) return self._runPush(push, stale);
        });
      } else {
        done = Promise.all([push && self._runPush(push, stale), pull && self._runPull(pull, channel, stale)]);
      }
      return done.then(function () {
        if (stale()) return;
        if (!self.live) return self._complete();
        self._paused();
      });
    });
  };

  /* Push: catch up, then (live) follow the PouchDB's changes feed; a change while a
   * run is going sets `dirty` so the run goes on. */
  Sync.prototype._runPush = function (rep, stale) {
    var self = this;
    var dirty = false;
    function loop() {
      dirty = false;
      self._busy.push = true;
      return rep.run(stale).then(function () {
        if (stale()) return;
        if (dirty) return loop();
        self._busy.push = false;
        self._done.push = true;
        self._maybePaused();
      });
    }
    function onError(err) {
      if (stale()) return;
      self._failed(err);
    }
    return rep.findCommonAncestry().then(function () {
      if (stale()) return;
      if (self.live) {
        var feed = self.db.changes({since: 'now', live: true, return_docs: false});
        self._localFeed = feed;
        feed.on('change', function () {
          if (stale()) return;
          if (self._busy.push) { dirty = true; return; }
          loop().catch(onError);
        });
        feed.on('error', onError);
      }
      return loop();
    });
  };

  /* Pull: catch up with changes_texts batches, then (live) subscribe to the server's
   * changes from the last sequence and replicate each delivery in order. */
  Sync.prototype._runPull = function (rep, channel, stale) {
    var self = this;
    return rep.findCommonAncestry().then(function () {
      self._busy.pull = true;
      return rep.run(stale);
    }).then(function () {
      if (stale()) return;
      self._busy.pull = false;
      self._done.pull = true;
      if (!self.live) return;
      var queue = Promise.resolve();
      self._sub = channel.subscribe({since: rep.since, style: 'all_docs', include_docs: true}, function (msg) {
        if (stale()) return;
        if (msg.error) { self._failed(errorFromJson(msg.error, 'live changes')); return; }
        var batch = {rows: msg.results.map(function (r) {
          var revs = r.changes.map(function (c) { return c.rev; });
          // a first-generation doc delivered whole needs no bulk_get
          return {seq: r.seq, id: r.id, revs: revs, deleted: !!r.deleted, text: null, doc: firstGeneration(r.doc, revs)};
        }), last_seq: msg.last_seq};
        self._busy.pull = true;
        queue = queue.then(function () {
          if (stale()) return;
          return rep.replicateBatch(batch, stale).then(function () {
            if (stale()) return;
            return rep.recordCheckpoint(batch.last_seq, true);
          }).then(function () {
            if (stale()) return;
            self._busy.pull = false;
            self._maybePaused();
          });
        }).catch(function (err) { if (!stale()) self._failed(err); });
      });
    });
  };

  Sync.prototype._active = function (direction) {
    if (this.state !== 'active' && !this._ended()) {
      this.state = 'active';
      this.emit('active', {direction: direction});
    }
  };

  Sync.prototype._maybePaused = function () {
    if (!this.live || this._ended()) return;
    if (this._done.push && this._done.pull && !this._busy.push && !this._busy.pull) this._paused();
  };

  Sync.prototype._paused = function () {
    if (this._ended() || this.state === 'paused') return;
    this._retries = 0;
    this.state = 'paused';
    this.emit('paused', null);
  };

  Sync.prototype._change = function (direction, docs) {
    var s = this._stats[direction];
    this.emit('change', {direction: direction, change: {
      ok: true, docs: docs, docs_read: s.docs_read, docs_written: s.docs_written,
      doc_write_failures: s.doc_write_failures, errors: s.errors.slice(), last_seq: s.last_seq,
      start_time: s.start_time, status: 'active'}});
  };

  Sync.prototype._deniedDoc = function (direction, err) {
    err.direction = direction;
    this.emit('denied', err);
  };

  Sync.prototype._complete = function () {
    if (this._ended()) return;
    this.state = 'complete';
    this._stop(true);
    var result = this._result('complete');
    this.emit('complete', result);
    this._resolve(result);
    this._detach();
  };

  // ---------------------------------------------------------------- exports
  function createClient(options) { return new Client(options); }

  return {
    VERSION: VERSION,
    createClient: createClient,
    Client: Client,
    Sync: Sync,
    Backoff: Backoff,
    Emitter: Emitter,
    _protocol: protocol,
    _hash: hash
  };
}));
