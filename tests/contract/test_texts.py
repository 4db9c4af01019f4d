"""Contract: ``changes_texts`` / ``write_missing_texts`` (first-generation docs as their
JSON text) on every backend."""

from __future__ import annotations

import base64
import json

import pytest

from pouchsync_sync import BadRequest, NotFound

REV_A = "1-" + "a" * 32
REV_B = "1-" + "b" * 32


def _texts(db, **kwargs):
    return db.changes_texts(**kwargs)


def _by_id(answer):
    return {row[1]: row for row in answer["results"]}


def _size(text):
    return len(text.encode("utf-8"))


def _counts(db):
    info = db.info()
    return info["update_seq"], info["doc_count"]


def _refused(case, call, *args, **kwargs):
    """``call`` raises ``BadRequest`` (a failure naming ``case`` otherwise)."""
    try:
        call(*args, **kwargs)
    except BadRequest:
        return
    except Exception as exc:  # noqa: BLE001 - the test reports which case raised what
        pytest.fail(f"{case!r}: {exc!r} instead of BadRequest")
    pytest.fail(f"{case!r}: accepted")


def _fill(db):
    """One doc of each kind; ``{id: body or None}`` (None: must have no text)."""
    db.put({"_id": "plain", "n": 1, "s": "x", "list": [1, 2.5, None, True], "o": {"k": {}}})
    db.put({"_id": "unicode", "s": "héllo ☃ 𝄞 日本"})
    db.put({"_id": "nested_underscore", "o": {"_x": 1, "_attachments": 2}, "l": ["_y"]})
    db.put({"_id": "_design/app", "views": {"all": {"map": "function (doc) { emit(doc._id); }"}}})
    rev = db.put({"_id": "edited", "v": 1})["rev"]
    db.put({"_id": "edited", "_rev": rev, "v": 2})
    rev = db.put({"_id": "deleted", "v": 1})["rev"]
    db.delete("deleted", rev)
    db.bulk_docs([{"_id": "conflicted", "_rev": REV_A, "_revisions": {"start": 1, "ids": ["a" * 32]},
                   "side": "a"},
                  {"_id": "conflicted", "_rev": REV_B, "_revisions": {"start": 1, "ids": ["b" * 32]},
                   "side": "b"}], new_edits=False)
    db.put({"_id": "att", "v": 1, "_attachments": {
        "a.txt": {"content_type": "text/plain", "data": base64.b64encode(b"hello").decode()}}})
    db.bulk_docs([{"_id": "born_deleted", "_rev": REV_A, "_revisions": {"start": 1, "ids": ["a" * 32]},
                   "_deleted": True}], new_edits=False)
    db.put({"_id": "_local/secret", "v": 1})
    db.put({"_id": "naïve id ☃/x", "k": "v"})
    db.put({"_id": "last", "empty": ""})
    return {
        "plain": {"n": 1, "s": "x", "list": [1, 2.5, None, True], "o": {"k": {}}},
        "unicode": {"s": "héllo ☃ 𝄞 日本"},
        "nested_underscore": {"o": {"_x": 1, "_attachments": 2}, "l": ["_y"]},
        "_design/app": {"views": {"all": {"map": "function (doc) { emit(doc._id); }"}}},
        "edited": None, "deleted": None, "conflicted": None, "att": None, "born_deleted": None,
        "naïve id ☃/x": {"k": "v"}, "last": {"empty": ""},
    }


# -- changes_texts ---------------------------------------------------------------------

def test_changes_texts_row_shape(db):
    db.put({"_id": "a", "v": 1})
    rev = db.put({"_id": "b", "v": 1})["rev"]
    db.delete("b", rev)
    answer = _texts(db)
    assert set(answer) <= {"results", "last_seq", "pending"} and "last_seq" in answer
    assert len(answer["results"]) == 2
    for row in answer["results"]:
        assert isinstance(row, list) and len(row) == 5
        seq, doc_id, leaves, deleted, text = row
        assert seq is not None and isinstance(doc_id, str)
        assert isinstance(leaves, list) and leaves and all(isinstance(r, str) for r in leaves)
        assert deleted is True or deleted is False
        assert text is None or isinstance(text, str)
    a, b = answer["results"]
    assert a[1:4] == ["a", [db.get("a")["_rev"]], False] and json.loads(a[4]) == {"v": 1}
    assert b[1] == "b" and b[2][0].startswith("2-") and b[3] is True and b[4] is None
    assert _texts(db, since=answer["last_seq"])["results"] == []


def test_changes_texts_text_only_for_plain_first_generation_docs(db):
    expected = _fill(db)
    rows = _by_id(_texts(db))
    assert set(rows) == set(expected)  # _local/ docs never appear
    for doc_id, body in expected.items():
        text = rows[doc_id][4]
        if body is None:
            assert text is None, doc_id
        else:
            assert text is not None, doc_id
            assert json.loads(text) == body, doc_id
            assert "_id" not in json.loads(text) and "_rev" not in json.loads(text)
            assert rows[doc_id][2] == [db.get(doc_id)["_rev"]]
    assert rows["deleted"][3] is True and rows["born_deleted"][3] is True
    assert rows["born_deleted"][2] == [REV_A]
    assert all(not r[3] for i, r in rows.items() if i not in ("deleted", "born_deleted"))
    assert sorted(rows["conflicted"][2]) == [REV_A, REV_B]
    assert rows["edited"][2][0].startswith("2-") and rows["att"][2][0].startswith("1-")


def test_changes_texts_text_is_compact_json(db):
    db.put({"_id": "a", "k": [1, {"x": "y"}], "u": "ü"})
    text = _texts(db)["results"][0][4]
    assert json.loads(text) == {"k": [1, {"x": "y"}], "u": "ü"}
    assert text == json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)


def _same_as_changes(db, **kwargs):
    texts = _texts(db, **kwargs)
    changes = db.changes(style="all_docs", **kwargs)
    assert [(r[0], r[1]) for r in texts["results"]] == [
        (r["seq"], r["id"]) for r in changes["results"]], kwargs
    for row, change in zip(texts["results"], changes["results"]):
        assert sorted(row[2]) == sorted(c["rev"] for c in change["changes"]), kwargs
        assert row[3] is bool(change.get("deleted")), kwargs
    assert texts["last_seq"] == changes["last_seq"], kwargs
    if "pending" in changes:
        assert texts.get("pending") == changes["pending"], kwargs
    return texts


def test_changes_texts_agree_with_changes_all_docs(db):
    _fill(db)
    for i in range(5):
        db.put({"_id": f"more{i}", "i": i})
    rev = db.get("plain")["_rev"]
    db.put({"_id": "plain", "_rev": rev, "n": 2})  # moves to the end of the feed
    seqs = [None] + [row["seq"] for row in db.changes()["results"]]
    for since in seqs[::3] + seqs[-1:]:
        for limit in (None, 0, 1, 2, 5, 100):
            kwargs = {} if since is None else {"since": since}
            if limit is not None:
                kwargs["limit"] = limit
            _same_as_changes(db, **kwargs)
    # paging by last_seq visits every row once, in the feed's order
    seen, since = [], 0
    for _ in range(50):
        page = _same_as_changes(db, since=since, limit=4)
        if not page["results"]:
            break
        seen.extend(row[1] for row in page["results"])
        since = page["last_seq"]
    assert seen == [row["id"] for row in db.changes()["results"]]
    now = _texts(db, since="now")
    assert now["results"] == [] and now["last_seq"] == db.changes(since="now")["last_seq"]


def test_changes_texts_empty_database(db):
    answer = _texts(db)
    assert answer["results"] == []
    assert answer["last_seq"] == db.changes()["last_seq"]


def _accented(n, fill):
    """A doc body whose text is 8 ASCII + ``n`` two-byte characters."""
    return {"s": fill * n}


def test_changes_texts_max_bytes(db):
    for i in range(5):
        db.put({"_id": f"d{i}", **_accented(20, "é")})
    full = [row[4] for row in _texts(db)["results"]]
    size = _size(full[0])
    assert all(_size(t) == size for t in full) and size > len(full[0])  # UTF-8 counted
    assert [row[4] for row in _texts(db, max_bytes=0)["results"]] == [None] * 5
    assert [row[4] for row in _texts(db, max_bytes=None)["results"]] == full
    assert [row[4] for row in _texts(db, max_bytes=10**12)["results"]] == full
    # 2 * size bytes hold two of these texts (three if characters were counted)
    assert 3 * len(full[0]) <= 2 * size
    assert [row[4] for row in _texts(db, max_bytes=2 * size)["results"]] == full[:2] + [None] * 3
    assert [row[4] for row in _texts(db, max_bytes=2 * size - 1)["results"]] == full[:1] + [None] * 4
    assert [row[4] for row in _texts(db, max_bytes=size)["results"]] == full[:1] + [None] * 4
    assert [row[4] for row in _texts(db, max_bytes=size - 1)["results"]] == [None] * 5
    # the rows are all there whatever the budget
    rows = _texts(db, max_bytes=0)
    assert [r[:4] for r in rows["results"]] == [r[:4] for r in _texts(db)["results"]]
    # the budget is per answer: the next page has its own
    assert _texts(db, since=rows["results"][0][0], max_bytes=size)["results"][0][4] == full[1]


def test_changes_texts_max_bytes_counts_only_texts_given(db):
    rev = db.put({"_id": "edited", **_accented(50, "ж")})["rev"]
    db.put({"_id": "edited", "_rev": rev, **_accented(50, "ж")})  # no text: costs nothing
    db.put({"_id": "big", **_accented(100, "€")})
    db.put({"_id": "small", "v": "ü"})
    texts = [row[4] for row in _texts(db)["results"]]
    assert texts[0] is None
    small = _size(texts[2])
    # the big text does not fit; the small one after it does (the texts given total <= max_bytes)
    assert [row[4] for row in _texts(db, max_bytes=small)["results"]] == [None, None, texts[2]]
    both = _size(texts[1]) + small
    assert [row[4] for row in _texts(db, max_bytes=both)["results"]] == texts


def test_changes_texts_bad_arguments(db):
    db.put({"_id": "a"})
    for kwargs in ({"max_bytes": -1}, {"max_bytes": True}, {"max_bytes": False},
                   {"max_bytes": "x"}, {"max_bytes": 1.5}, {"max_bytes": [1]}, {"limit": -1}):
        _refused(kwargs, _texts, db, **kwargs)


# -- write_missing_texts ---------------------------------------------------------------

def _text_rows(db):
    return [[row[1], row[2][0], row[4]] for row in _texts(db)["results"] if row[4] is not None]


def test_round_trip_through_texts(make_db):
    a, b = make_db("texts-a"), make_db("texts-b")
    expected = _fill(a)
    rows = _text_rows(a)
    assert {row[0] for row in rows} == {i for i, body in expected.items() if body is not None}
    written, failures = b.write_missing_texts(rows)
    assert written == list(range(len(rows))) and failures == []
    for doc_id, _, _ in rows:
        assert b.get(doc_id) == a.get(doc_id)
    assert b.info()["doc_count"] == len(rows)
    back = _by_id(_texts(b))
    for doc_id, rev, text in rows:
        assert back[doc_id][2] == [rev] and json.loads(back[doc_id][4]) == json.loads(text)
    # a second call writes nothing
    seq = b.info()["update_seq"]
    assert b.write_missing_texts(rows) == ([], [])
    assert b.info()["update_seq"] == seq
    # a batch partly known writes only the new rows, at their positions
    a.put({"_id": "new1", "v": "ñ"})
    a.put({"_id": "new2", "v": [1]})
    rows2 = _text_rows(a)
    new = [i for i, row in enumerate(rows2) if row[0] in ("new1", "new2")]
    assert len(new) == 2
    mixed = rows2[new[0]:new[0] + 1] + rows + rows2[new[1]:new[1] + 1]
    assert b.write_missing_texts(mixed) == ([0, len(mixed) - 1], [])
    assert b.get("new1") == a.get("new1") and b.get("new2") == a.get("new2")
    assert b.write_missing_texts(mixed) == ([], [])


def test_write_missing_texts_matches_write_missing(make_db):
    by_texts, by_docs = make_db("by-texts"), make_db("by-docs")
    bodies = {"a": {"x": 1}, "b": {"s": "ü€𝄞", "l": [{"_n": None}, 1.25, -3]}, "_design/d": {"v": {}}}
    rows = [[doc_id, f"1-{i:032x}", json.dumps(body)] for i, (doc_id, body) in enumerate(bodies.items())]
    assert by_texts.write_missing_texts(rows) == ([0, 1, 2], [])
    docs = [{"_id": i, "_rev": r, "_revisions": {"start": 1, "ids": [r[2:]]}, **json.loads(t)}
            for i, r, t in rows]
    written, failures = by_docs.write_missing(docs)
    assert len(written) == 3 and failures == []
    for doc_id in bodies:
        assert by_texts.get(doc_id) == by_docs.get(doc_id)
        assert by_texts.get(doc_id, revs=True)["_revisions"] == by_docs.get(doc_id, revs=True)["_revisions"]
    assert (by_texts.all_docs(include_docs=True)["rows"]
            == by_docs.all_docs(include_docs=True)["rows"])
    assert by_texts.info()["doc_count"] == by_docs.info()["doc_count"] == 3


def test_write_missing_texts_empty_batch(db):
    before = _counts(db)
    assert db.write_missing_texts([]) == ([], [])
    assert _counts(db) == before


def test_write_missing_texts_same_revision_twice(db):
    rows = [["x", REV_A, '{"v":1}'], ["y", REV_A, '{"w":1}'], ["x", REV_A, '{"v":2}']]
    assert db.write_missing_texts(rows) == ([0, 1], [])
    assert db.get("x") == {"_id": "x", "_rev": REV_A, "v": 1}  # the first position's
    assert [row["id"] for row in db.changes()["results"]] == ["x", "y"]
    assert db.info()["doc_count"] == 2


def test_write_missing_texts_two_first_revisions_of_one_new_doc(db):
    rows = [["c", REV_A, '{"side":"a"}'], ["other", REV_A, "{}"], ["c", REV_B, '{"side":"b"}']]
    assert db.write_missing_texts(rows) == ([0, 1, 2], [])
    doc = db.get("c", conflicts=True)
    assert doc["_rev"] == REV_B and doc["side"] == "b"  # the higher hash wins
    assert doc["_conflicts"] == [REV_A]
    assert db.get("c", rev=REV_A)["side"] == "a"
    row = _by_id(_texts(db))["c"]
    assert sorted(row[2]) == [REV_A, REV_B] and row[4] is None
    assert db.info()["doc_count"] == 2
    assert db.write_missing_texts(rows) == ([], [])


def test_write_missing_texts_revisions_repeated_in_one_batch(db):
    rev_c = "1-" + "c" * 32
    rows = [["c", REV_A, "{}"], ["c", REV_B, '{"b":1}'], ["c", REV_B, '{"b":2}'],
            ["c", REV_A, "{}"], ["c", rev_c, "{}"]]
    assert db.write_missing_texts(rows) == ([0, 1, 4], [])
    doc = db.get("c", conflicts=True)
    assert doc["_rev"] == rev_c and sorted(doc["_conflicts"]) == [REV_A, REV_B]
    assert db.get("c", rev=REV_B) == {"_id": "c", "_rev": REV_B, "b": 1}
    assert db.write_missing_texts([["d", REV_A, "{}"], ["c", rev_c, "{}"], ["d", REV_B, "{}"],
                                   ["d", REV_B, "{}"]]) == ([0, 2], [])


def test_write_missing_texts_new_first_revision_of_a_known_doc_is_a_conflict(db):
    db.write_missing_texts([["c", REV_A, '{"side":"a"}']])
    assert db.write_missing_texts([["c", REV_A, "{}"], ["c", REV_B, '{"side":"b"}']]) == ([1], [])
    assert db.get("c", conflicts=True)["_conflicts"] == [REV_A]


def test_write_missing_texts_skips_an_ancestor(db):
    first = db.put({"_id": "h", "v": 1})["rev"]
    second = db.put({"_id": "h", "_rev": first, "v": 2})["rev"]
    before = _counts(db)
    assert db.write_missing_texts([["h", first, '{"v":1}']]) == ([], [])
    assert _counts(db) == before
    assert db.get("h") == {"_id": "h", "_rev": second, "v": 2}
    assert "_conflicts" not in db.get("h", conflicts=True)


def test_write_missing_texts_over_a_deleted_doc(db):
    rev = db.put({"_id": "gone", "v": 1})["rev"]
    db.delete("gone", rev)
    assert db.write_missing_texts([["gone", rev, '{"v":1}']]) == ([], [])
    with pytest.raises(NotFound):
        db.get("gone")
    # another first revision brings the doc back (a live leaf beats a deleted one)
    other = REV_B if rev != REV_B else REV_A
    assert db.write_missing_texts([["gone", other, '{"v":9}']]) == ([0], [])
    assert db.get("gone") == {"_id": "gone", "_rev": other, "v": 9}


GOOD = ["good", REV_A, '{"ok":true}']

BAD_ROWS = [
    ("str-row", "not a row"),
    ("none-row", None),
    ("dict-row", {"id": "x", "rev": REV_A, "text": "{}"}),
    ("two-items", ["x", REV_A]),
    ("four-items", ["x", REV_A, "{}", "extra"]),
    ("empty-id", ["", REV_A, "{}"]),
    ("int-id", [5, REV_A, "{}"]),
    ("none-id", [None, REV_A, "{}"]),
    ("underscore-id", ["_bad", REV_A, "{}"]),
    ("local-id", ["_local/x", REV_A, "{}"]),
    ("second-generation", ["x", "2-" + "a" * 32, "{}"]),
    ("rev-without-hash", ["x", "1-", "{}"]),
    ("rev-without-pos", ["x", "abc", "{}"]),
    ("rev-zero", ["x", "0-abc", "{}"]),
    ("int-rev", ["x", 1, "{}"]),
    ("none-rev", ["x", None, "{}"]),
    ("int-text", ["x", REV_A, 5]),
    ("none-text", ["x", REV_A, None]),
    ("dict-text", ["x", REV_A, {"v": 1}]),
    ("empty-text", ["x", REV_A, ""]),
    ("not-json", ["x", REV_A, "not json"]),
    ("truncated", ["x", REV_A, '{"a":1']),
    ("trailing", ["x", REV_A, '{"a":1}}']),
    ("array", ["x", REV_A, "[]"]),
    ("string", ["x", REV_A, '"s"']),
    ("number", ["x", REV_A, "1"]),
    ("null", ["x", REV_A, "null"]),
    ("_id-key", ["x", REV_A, '{"_id":"x"}']),
    ("_rev-key", ["x", REV_A, '{"_rev":"1-a"}']),
    ("_deleted-key", ["x", REV_A, '{"v":1,"_deleted":true}']),
    ("_attachments-key", ["x", REV_A, '{"_attachments":{}}']),
    ("_x-key", ["x", REV_A, '{"_x":1}']),
    ("escaped-_x-key", ["x", REV_A, '{"\\u005fx":1}']),
    ("nan", ["x", REV_A, '{"a":NaN}']),
    ("infinity", ["x", REV_A, '{"a":[Infinity]}']),
    ("minus-infinity", ["x", REV_A, '{"a":{"b":-Infinity}}']),
    ("overflowing-float", ["x", REV_A, '{"a":1e999}']),
    ("lone-surrogate", ["x", REV_A, '{"a":"\\ud800"}']),
]


def test_write_missing_texts_bad_row_refuses_the_batch(db):
    db.put({"_id": "before", "v": 1})
    before = _counts(db)
    for name, bad in BAD_ROWS:
        _refused(name, db.write_missing_texts, [GOOD, bad])
        assert _counts(db) == before, name
        with pytest.raises(NotFound):
            db.get("good")
        assert [row["id"] for row in db.changes()["results"]] == ["before"], name
    # the good row alone is fine (the refusals were the bad rows')
    assert db.write_missing_texts([GOOD]) == ([0], [])


def test_write_missing_texts_rows_must_be_a_list(db):
    for rows in ("abc", None, 5, {"good": GOOD}):
        _refused(rows, db.write_missing_texts, rows)
    assert db.info()["doc_count"] == 0


def test_changes_texts_large_arguments(db):
    db.put({"_id": "a", "v": "ü"})
    db.put({"_id": "b", "v": 1})
    full = _texts(db)
    for kwargs in ({"max_bytes": 2**62}, {"limit": 2**62}, {"limit": 2**62, "max_bytes": 2**62}):
        assert _texts(db, **kwargs)["results"] == full["results"], kwargs
