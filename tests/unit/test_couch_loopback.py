"""Which CouchDB URLs name this machine (``store.couch_names.is_loopback_url``): the
CouchDB backend asks for compressed answers only from other machines."""

from __future__ import annotations

import pytest

from pouchsync_sync.store.couch_names import is_loopback_url


@pytest.mark.parametrize("url, loopback", [
    ("http://127.0.0.1:5984", True), ("http://127.8.0.1", True), ("http://[::1]:5984", True),
    ("http://localhost:5984/x", True), ("http://a:b@LOCALHOST", True),
    ("http://10.0.0.2:5984", False), ("https://couch.example.com", False),
    ("http://localhost.example.com", False), ("http://[::2]", False)])
def test_loopback_urls(url, loopback):
    assert is_loopback_url(url) is loopback
