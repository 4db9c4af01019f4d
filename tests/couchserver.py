"""Placeholder plugin: the CouchDB-protocol test server fixture lands with issue 3."""
