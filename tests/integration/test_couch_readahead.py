"""The CouchDB backend reads the next ``_changes`` page ahead for a paging reader,
against the real CouchDB-protocol server: same rows, writes through the handle seen,
the feed's end always read fresh."""

from __future__ import annotations

import pytest

from pouchsync_sync import CouchDB


@pytest.fixture
def db(backend_couch):
    made = backend_couch("readahead")
    made.bulk_docs([{"_id": f"d{i:03d}", "n": i} for i in range(30)])
    yield made
    made.close()


def pages(db, since, limit, **kw):
    """Every page from ``since`` as a list of row lists, until a page is not full."""
    out = []
    while True:
        page = db.changes(since=since, limit=limit, **kw)
        out.append(page["results"])
        if len(page["results"]) < limit:
            return out
        since = page["last_seq"]


def test_paged_read_has_the_rows_of_one_read(db):
    whole = db.changes(include_docs=True, style="all_docs")["results"]
    paged = [row for page in pages(db, 0, 7, include_docs=True, style="all_docs") for row in page]
    assert paged == whole
    assert db.readahead.stats()["served"] >= 2


def test_a_write_through_the_handle_is_seen_by_the_next_page(db):
    first = db.changes(since=0, limit=10)
    second = db.changes(since=first["last_seq"], limit=10)   # paging: rows 21-30 read ahead
    assert db.readahead.wait_idle(10)
    assert db.readahead.stats()["read_ahead"] == 1
    doc = db.get("d025")
    db.put(dict(doc, n=-1))                                  # moves d025 to the feed's end
    rest = [row for page in pages(db, second["last_seq"], 10, include_docs=True)
            for row in page]
    assert [row["doc"]["n"] for row in rest if row["id"] == "d025"] == [-1]
    assert db.readahead.stats()["served"] == 0


def test_the_feeds_end_is_read_fresh(db, couch_url):
    first = db.changes(since=0, limit=12)
    second = db.changes(since=first["last_seq"], limit=12)   # reads ahead the last 6 rows
    assert db.readahead.wait_idle(10)
    with CouchDB(couch_url) as other:                        # not through this handle
        other.database(db.name).put({"_id": "zz-late"})
    last = db.changes(since=second["last_seq"], limit=12)
    assert [row["id"] for row in last["results"]][-1] == "zz-late"


def test_checkpoint_writes_keep_the_page_read_ahead(db):
    first = db.changes(since=0, limit=10)
    second = db.changes(since=first["last_seq"], limit=10)
    assert db.readahead.wait_idle(10)
    db.put({"_id": "_local/checkpoint", "last_seq": second["last_seq"]})
    third = db.changes(since=second["last_seq"], limit=10)
    assert [row["id"] for row in third["results"]] == [f"d{i:03d}" for i in range(20, 30)]
    assert db.readahead.stats()["served"] == 1

