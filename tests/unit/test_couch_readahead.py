"""The CouchDB backend's changes read-ahead (``store.couch_readahead``) over a fake feed.

The feed is a list in memory; ``fetch`` is the collaborator the backend would pass
(one HTTP request per call), so the tests count requests and control failures.
"""

from __future__ import annotations

import threading

import pytest

from pouchsync_sync.store.couch_readahead import (ReadAhead, is_full_page, page_key, span_rows,
                                                  split_span)

OPTS = (True, False, "all_docs", False)


class Feed:
    """A changes feed of ``n`` rows (seq 1..n); ``fetch`` answers one page like CouchDB."""

    def __init__(self, n: int, limit: int) -> None:
        self.rows = [{"id": f"d{i}", "seq": i, "changes": [{"rev": "1-a"}]}
                     for i in range(1, n + 1)]
        self.limit = limit
        self.requests: list[int] = []
        self.fail_at: int | None = None
        self.lock = threading.Lock()

    def fetch(self, since: int, limit: int | None = None) -> dict:
        with self.lock:
            self.requests.append(since)
            if since == self.fail_at:
                self.fail_at = None
                raise OSError("connection reset")
            rows = [dict(r) for r in self.rows if r["seq"] > since][:limit or self.limit]
        return {"results": rows, "last_seq": rows[-1]["seq"] if rows else since}


def read_all(ra: ReadAhead, feed: Feed) -> list[dict]:
    out, since = [], 0
    while True:
        page = ra.read(since, OPTS, feed.limit, feed.fetch)
        out.extend(page["results"])
        if len(page["results"]) < feed.limit:
            return out
        since = page["last_seq"]


@pytest.fixture
def ra():
    made = ReadAhead(wait_timeout=5.0)
    yield made
    made.close()


def test_pure_decisions():
    assert is_full_page({"results": [1, 2], "last_seq": 2}, 2)
    assert not is_full_page({"results": [1], "last_seq": 1}, 2)          # the feed's end
    assert not is_full_page({"results": [1, 2], "last_seq": 2, "pending": 0}, 2)
    assert not is_full_page({"results": [1, 2]}, 2)                      # no last_seq
    assert not is_full_page(None, 2)
    assert page_key([1, "a"], OPTS) == page_key([1, "a"], OPTS)
    assert page_key(0, OPTS) != page_key("0", OPTS)
    assert page_key(object(), OPTS) is None
    assert [span_rows(n) for n in (1, 100, 500, 700, 2000, 5000)] == [
        4, 400, 2000, 1400, 2000, 5000]


def test_split_span_cuts_full_pages_at_row_seqs():
    rows = [{"id": f"d{i}", "seq": f"{i}-x"} for i in range(1, 8)]
    pages = split_span("0-x", {"results": rows, "last_seq": "7-x", "pending": 5}, 3)
    assert [(since, [r["id"] for r in p["results"]], p["last_seq"], p["pending"])
            for since, p in pages] == [("0-x", ["d1", "d2", "d3"], "3-x", 9),
                                        ("3-x", ["d4", "d5", "d6"], "6-x", 6)]
    whole = split_span(0, {"results": rows[:6], "last_seq": "end"}, 3)
    assert [p["last_seq"] for _, p in whole] == ["3-x", "end"] and "pending" not in whole[0][1]
    no_seq = [dict(r) for r in rows]
    del no_seq[5]["seq"]
    assert len(split_span(0, {"results": no_seq, "last_seq": "7-x"}, 3)) == 1
    assert split_span(0, {"results": rows}, 3) == [] and split_span(0, None, 3) == []


def test_a_paging_reader_gets_every_row_once_and_pages_read_ahead(ra):
    feed = Feed(25, 4)
    rows = read_all(ra, feed)
    assert [r["seq"] for r in rows] == list(range(1, 26))
    stats = ra.stats()
    # pages 1-2 are read on request (page 2's request shows the reader is paging);
    # pages 3-6 come from one span read ahead; the span read from 24 holds no full
    # page, so page 7 (the end) is read again, fresh
    assert stats["served"] == 4
    assert stats["read_ahead"] == 2
    assert feed.requests == [0, 4, 8, 24, 24]
    assert ra.wait_idle(5)


def test_a_long_feed_takes_fewer_requests_than_pages(ra):
    feed = Feed(400, 4)
    rows = read_all(ra, feed)
    assert [r["seq"] for r in rows] == list(range(1, 401))
    assert len(feed.requests) < 101 // 2
    assert ra.stats()["served"] >= 90


def test_a_single_full_page_request_reads_nothing_ahead(ra):
    feed = Feed(10, 1)
    page = ra.read(0, OPTS, 1, feed.fetch)
    assert [r["seq"] for r in page["results"]] == [1]
    assert ra.wait_idle(5)
    assert feed.requests == [0]
    assert ra.stats()["read_ahead"] == 0


def test_other_limits_or_options_are_not_served_a_page(ra):
    feed = Feed(20, 4)
    ra.read(0, OPTS, 4, feed.fetch)
    ra.read(4, OPTS, 4, feed.fetch)          # paging: page from 8 is read ahead
    assert ra.wait_idle(5)
    small = ra.read(8, OPTS, 2, Feed(20, 2).fetch)
    assert [r["seq"] for r in small["results"]] == [9, 10]
    other = ra.read(8, (False, False, "main_only", False), 4, feed.fetch)
    assert ra.stats()["served"] == 0
    assert [r["seq"] for r in other["results"]] == [9, 10, 11, 12]


def test_invalidate_discards_pages_read_before_it(ra):
    feed = Feed(20, 4)
    ra.read(0, OPTS, 4, feed.fetch)
    ra.read(4, OPTS, 4, feed.fetch)
    assert ra.wait_idle(5)
    feed.rows[9]["changes"] = [{"rev": "2-b"}]   # changed after the page was read ahead
    ra.invalidate()
    page = ra.read(8, OPTS, 4, feed.fetch)
    assert page["results"][1]["changes"] == [{"rev": "2-b"}]
    assert ra.stats()["served"] == 0 and ra.stats()["discarded"] == 3  # the span's 3 pages


def test_a_failed_read_ahead_is_read_again_by_the_reader(ra):
    feed = Feed(20, 4)
    ra.read(0, OPTS, 4, feed.fetch)
    feed.fail_at = 8
    ra.read(4, OPTS, 4, feed.fetch)             # its read-ahead of the page from 8 fails
    assert ra.wait_idle(5)
    page = ra.read(8, OPTS, 4, feed.fetch)
    assert [r["seq"] for r in page["results"]] == [9, 10, 11, 12]
    assert ra.stats()["discarded"] == 1


def test_the_end_of_the_feed_is_never_served_from_read_ahead(ra):
    feed = Feed(10, 4)
    ra.read(0, OPTS, 4, feed.fetch)
    ra.read(4, OPTS, 4, feed.fetch)             # reads ahead the partial page from 8
    assert ra.wait_idle(5)
    feed.rows.append({"id": "late", "seq": 11, "changes": [{"rev": "1-c"}]})
    page = ra.read(8, OPTS, 4, feed.fetch)
    assert [r["seq"] for r in page["results"]] == [9, 10, 11]


def test_close_joins_and_reads_ahead_no_more(ra):
    feed = Feed(40, 4)
    ra.read(0, OPTS, 4, feed.fetch)
    ra.read(4, OPTS, 4, feed.fetch)
    ra.close()
    ra.close()
    assert not [t for t in threading.enumerate() if t.name == "pouchsync-couch-readahead"]
    before = ra.stats()["read_ahead"]
    assert [r["seq"] for r in ra.read(8, OPTS, 4, feed.fetch)["results"]] == [9, 10, 11, 12]
    ra.read(12, OPTS, 4, feed.fetch)
    assert ra.stats()["read_ahead"] == before

