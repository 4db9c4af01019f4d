// The todo page: todos live in PouchDB (IndexedDB) and sync live with the server
// through pouchsync.js. Everything works offline: writes go to PouchDB, and the sync
// catches up when the server answers again (the client reconnects by itself).
(function () {
  'use strict';

  var TOKEN_KEY = 'todos-token';
  var $ = function (id) { return document.getElementById(id); };

  var db = new PouchDB('todos');
  var client = PouchSync.createClient({initialDelay: 250, maxDelay: 4000});
  var sync = null;

  // -- status line --------------------------------------------------------------------
  function setStatus(state, text) {
    $('status').dataset.state = state;
    $('status').textContent = text || state;
  }
  function say(text) { $('message').textContent = text || ''; }

  var online = false;
  client.on('connect', function () { online = true; if (sync) { setStatus('online'); } });
  client.on('disconnect', function () { online = false; if (sync) { setStatus('offline'); } });
  client.on('reconnect', function (attempt, delay) {
    if (sync) { setStatus('offline', 'offline, retrying in ' + Math.round((delay || 0) / 100) / 10 + ' s'); }
  });
  client.on('error', function (err) { console.warn('pouchsync:', err && err.message); });

  // -- the sync -----------------------------------------------------------------------
  function token() {
    var m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
    if (m) {  // a link with #token=…: keep it, and take it out of the address bar
      localStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
      history.replaceState(null, '', location.pathname + location.search);
    }
    return localStorage.getItem(TOKEN_KEY);
  }

  function startSync() {
    var t = token();
    $('login').hidden = !!t;
    if (!t) {
      setStatus('local', 'local only');
      return;
    }
    sync = client.sync(db, {remoteName: 'todos', credentials: {token: t}});  // live, both ways
    sync.on('active', function () { document.body.dataset.sync = 'active'; });
    sync.on('paused', function () {
      document.body.dataset.sync = 'paused';
      if (online) { setStatus('online'); }
    });
    sync.on('change', function (info) {
      var n = info && info.change && info.change.docs ? info.change.docs.length : 0;
      say(n + ' todo' + (n === 1 ? '' : 's') + (info.direction === 'pull' ? ' received' : ' sent'));
    });
    sync.on('denied', function (err) {
      var doc = err && (err.doc || (err.id ? err : null));
      if (doc) {  // one document refused (as PouchDB reports a 403): the rest goes on
        $('refused').hidden = false;
        $('refused').textContent = 'the server refused ' + (doc.id || doc._id) + ': ' +
          (doc.reason || doc.message);
        return;
      }
      sync.cancel();
      sync = null;
      localStorage.removeItem(TOKEN_KEY);
      setStatus('denied', 'token refused');
      say((err && (err.reason || err.message)) || 'denied');
      $('login').hidden = false;
    });
    sync.on('error', function (err) {
      if (err && err.name === 'Denied') { return; }  // said by the 'denied' listener
      say('sync error: ' + (err && err.message));
    });
  }

  $('login').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var t = $('token').value.trim();
    if (!t) { return; }
    localStorage.setItem(TOKEN_KEY, t);
    $('token').value = '';
    say('');
    startSync();
  });

  // -- the list -----------------------------------------------------------------------
  function item(doc) {
    var li = document.createElement('li');
    li.dataset.id = doc._id;
    li.className = doc.done ? 'done' : '';
    var box = document.createElement('input');
    box.type = 'checkbox';
    box.checked = !!doc.done;
    box.addEventListener('change', function () {
      db.put(Object.assign({}, doc, {done: box.checked})).catch(report);
    });
    var title = document.createElement('span');
    title.className = 'title';
    title.textContent = doc.title;
    var remove = document.createElement('button');
    remove.textContent = '\u00d7';
    remove.title = 'delete';
    remove.addEventListener('click', function () { db.remove(doc).catch(report); });
    li.append(box, title, remove);
    return li;
  }

  var rendering = null;
  function render() {  // coalesces bursts of changes into one redraw
    if (rendering) { return; }
    rendering = setTimeout(function () {
      db.allDocs({include_docs: true}).then(function (res) {
        rendering = null;
        var list = $('todos');
        list.replaceChildren.apply(list, res.rows.filter(function (row) {
          return typeof row.doc.title === 'string';
        }).map(function (row) { return item(row.doc); }));
        document.body.dataset.count = String(list.children.length);
      }, function (err) { rendering = null; report(err); });
    }, 0);
  }

  function report(err) { say('error: ' + (err && err.message)); }

  $('add').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var title = $('title').value.trim();
    if (!title) { return; }
    var id = new Date().toISOString() + '-' + Math.random().toString(36).slice(2, 8);
    db.put({_id: id, title: title, done: false}).then(function () {
      $('title').value = '';
    }, report);
  });

  db.changes({since: 'now', live: true}).on('change', render).on('error', report);
  render();
  startSync();
  client.connect((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/sync');

  // the page's files are cached by a service worker, so it also opens while offline
  if ('serviceWorker' in navigator) {
    navigator.serviceWorker.register('/sw.js').then(function () {
      return navigator.serviceWorker.ready;
    }).then(function () {
      document.body.dataset.offline = 'ready';
    }, function (err) { console.warn('no offline copy of the page:', err && err.message); });
  }

  window.todos = {db: db, client: client, sync: function () { return sync; }};
}());
