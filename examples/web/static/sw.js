// The todo page's service worker: the page's four files are kept in a cache so the page
// also opens (and reloads) while the server is down. Network first, so a running server
// always serves the current files; the cache only answers when the network fails.
'use strict';

var CACHE = 'todos-v1';
var FILES = ['/', '/todos.js', '/vendor/pouchdb.min.js', '/sync/pouchsync.js'];

self.addEventListener('install', function (event) {
  event.waitUntil(caches.open(CACHE).then(function (cache) {
    return cache.addAll(FILES);
  }).then(function () { return self.skipWaiting(); }));
});

self.addEventListener('activate', function (event) {
  event.waitUntil(caches.keys().then(function (names) {
    return Promise.all(names.filter(function (n) { return n !== CACHE; }).map(function (n) {
      return caches.delete(n);
    }));
  }).then(function () { return self.clients.claim(); }));
});

self.addEventListener('fetch', function (event) {
  var url = new URL(event.request.url);
  if (event.request.method !== 'GET' || url.origin !== location.origin ||
      FILES.indexOf(url.pathname) < 0) {
    return;  // everything else (the WebSocket included) goes to the network as usual
  }
  event.respondWith(fetch(event.request).then(function (response) {
    if (response.ok) {
      var copy = response.clone();
      caches.open(CACHE).then(function (cache) { return cache.put(url.pathname, copy); });
    }
    return response;
  }, function () {
    return caches.match(url.pathname).then(function (cached) {
      return cached || Response.error();
    });
  }));
});
