"""Properties of the embedded store's text rows (``LocalDatabase.changes_texts`` and
``write_missing_texts``) against its ordinary doc paths, on random JSON bodies."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pouchsync_sync import BadRequest, LocalDatabase
from pouchsync_sync.store.base import Database
from pouchsync_sync.store.validate import exact_json_text

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

EDGE_INTS = [0, -1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**63 + 1, 2**64 - 1, 2**64, 2**64 + 1,
             -(2**63), -(2**63) - 1, -(2**64), 10**30, -(10**30)]

INTS = st.one_of(st.integers(-1000, 1000), st.sampled_from(EDGE_INTS),
                 st.integers(-(2**64) - 3, 2**64 + 3))
FLOATS = st.floats(allow_nan=False, allow_infinity=False)
SCALARS = st.one_of(st.none(), st.booleans(), INTS, FLOATS, st.text(max_size=12))
KEYS = st.text(max_size=8)  # nested keys may start with "_"
VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=4),
    max_leaves=12)
TOP_KEYS = st.text(max_size=8).filter(lambda key: not key.startswith("_"))
BODIES = st.dictionaries(TOP_KEYS, VALUES, max_size=5)
IDS = st.one_of(st.text(min_size=1, max_size=16).filter(lambda i: not i.startswith("_")),
                st.text(min_size=1, max_size=8).map(lambda s: "_design/" + s))
HASHES = st.binary(min_size=16, max_size=16).map(bytes.hex)

# how a sender may have written a body: compact or not, escaped to ASCII or not
def DUMPS_COMPACT(body: Any) -> str:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


DUMPS = st.sampled_from([
    DUMPS_COMPACT,
    lambda body: json.dumps(body),
    lambda body: json.dumps(body, indent=1, ensure_ascii=True),
])


def _exact(value: Any) -> str:
    """A text telling apart what ``==`` confuses (1, 1.0 and True; 0.0 and -0.0)."""
    return json.dumps(value, sort_keys=True)


def _stored_texts(db: LocalDatabase) -> dict[str, str | None]:
    return {row[1]: row[4] for row in db.changes_texts()["results"]}


class _Pair:
    """A database written through texts (a SQLite file) and one written through docs
    (in memory), closed together."""

    def __enter__(self) -> tuple[LocalDatabase, LocalDatabase]:
        self._dir = tempfile.TemporaryDirectory(prefix="texts-property-")
        self.texts = LocalDatabase(Path(self._dir.name) / "texts.sqlite")
        self.docs = LocalDatabase(":memory:", name="docs")
        return self.texts, self.docs

    def __exit__(self, *exc: object) -> None:
        self.texts.close()
        self.docs.close()
        self._dir.cleanup()


@settings(SETTINGS, max_examples=60)
@given(st.dictionaries(IDS, st.tuples(HASHES, BODIES, DUMPS), min_size=1, max_size=8))
def test_texts_write_what_write_missing_writes(entries):
    rows = [[doc_id, f"1-{h}", dumps(body)] for doc_id, (h, body, dumps) in entries.items()]
    docs = [{"_id": doc_id, "_rev": f"1-{h}", **body} for doc_id, (h, body, _) in entries.items()]
    with _Pair() as (by_texts, by_docs):
        assert by_texts.write_missing_texts(rows) == (list(range(len(rows))), [])
        written, failures = by_docs.write_missing(docs)
        assert len(written) == len(docs) and failures == []
        for doc_id in entries:
            assert _exact(by_texts.get(doc_id)) == _exact(by_docs.get(doc_id))
        assert (_exact(by_texts.changes(include_docs=True, style="all_docs"))
                == _exact(by_docs.changes(include_docs=True, style="all_docs")))
        assert (_exact(by_texts.all_docs(include_docs=True))
                == _exact(by_docs.all_docs(include_docs=True)))
        # the text is stored as sent (byte for byte the same as write_missing stores when
        # sent compact, as every store sends), and it reads back (stdlib) exactly as the
        # body given
        stored = _stored_texts(by_texts)
        by_docs_stored = _stored_texts(by_docs)
        for (doc_id, (_, body, dumps)), row in zip(entries.items(), rows):
            assert stored[doc_id] == row[2]
            if row[2] == exact_json_text(body):  # sent as our stores write it
                assert stored[doc_id] == by_docs_stored[doc_id]
            assert _exact(json.loads(stored[doc_id])) == _exact(body)
        # written once: the same rows again change nothing
        seq = by_texts.info()["update_seq"]
        assert by_texts.write_missing_texts(rows) == ([], [])
        assert by_texts.info()["update_seq"] == seq


@SETTINGS
@given(st.dictionaries(IDS, st.tuples(HASHES, BODIES), min_size=1, max_size=8))
def test_base_default_writes_what_the_fast_path_writes(entries):
    rows = [[doc_id, f"1-{h}", DUMPS_COMPACT(body)] for doc_id, (h, body) in entries.items()]
    with _Pair() as (fast, default):
        assert fast.write_missing_texts(rows) == (list(range(len(rows))), [])
        assert Database.write_missing_texts(default, rows) == (list(range(len(rows))), [])
        stored, by_default = _stored_texts(fast), _stored_texts(default)
        for doc_id, (_, body) in entries.items():
            assert _exact(json.loads(stored[doc_id])) == _exact(json.loads(by_default[doc_id]))
            if stored[doc_id] == exact_json_text(body):
                assert by_default[doc_id] == stored[doc_id]
        assert _exact(fast.all_docs(include_docs=True)) == _exact(default.all_docs(include_docs=True))


def _with_nan(body: dict[str, Any], key: str, which: float) -> str:
    return json.dumps({**body, key: [which]})  # the stdlib writes NaN / Infinity


INVALID_TEXTS = st.one_of(
    # a top-level field starting with "_" (special or not)
    st.tuples(BODIES, st.text(max_size=6).map(lambda k: "_" + k), VALUES).map(
        lambda t: json.dumps({**t[0], t[1]: t[2]})),
    # JSON that is not an object
    st.one_of(SCALARS, st.lists(VALUES, max_size=3)).map(json.dumps),
    # an object cut short
    st.tuples(BODIES, st.integers(0, 10**6)).map(
        lambda t: json.dumps(t[0])[:t[1] % len(json.dumps(t[0]))]),
    # NaN and infinities
    st.tuples(BODIES, TOP_KEYS, st.sampled_from([float("nan"), float("inf"), float("-inf")])).map(
        lambda t: _with_nan(*t)),
    # a lone surrogate, escaped (the text itself is ASCII)
    st.tuples(BODIES, TOP_KEYS, st.sampled_from(["\ud800", "\udfff", "a\udc00b"])).map(
        lambda t: json.dumps({**t[0], t[1]: t[2]})),
    # not a string at all
    st.one_of(st.none(), st.integers(), BODIES, st.binary(max_size=8)),
)


@SETTINGS
@given(st.lists(st.tuples(IDS, HASHES, BODIES), max_size=4, unique_by=lambda t: t[0]),
       INVALID_TEXTS, st.integers(0, 4))
def test_invalid_texts_are_refused_before_anything_is_written(good, bad_text, where):
    rows = [[doc_id, f"1-{h}", json.dumps(body)] for doc_id, h, body in good]
    rows.insert(where % (len(rows) + 1), ["bad-doc", "1-" + "f" * 32, bad_text])
    with _Pair() as (fast, default):
        fast.put({"_id": "before"})
        default.put({"_id": "before"})
        for db, write in ((fast, fast.write_missing_texts),
                          (default, lambda r: Database.write_missing_texts(default, r))):
            before = db.info()
            with pytest.raises(BadRequest):
                write(rows)
            after = db.info()
            assert (after["update_seq"], after["doc_count"]) == (before["update_seq"], before["doc_count"])
            assert [row["id"] for row in db.changes()["results"]] == ["before"]


@SETTINGS
@given(st.tuples(BODIES, TOP_KEYS, st.sampled_from([float("nan"), float("inf")]), IDS, HASHES)
       | st.tuples(BODIES, st.text(max_size=6).map(lambda k: "_x" + k), VALUES, IDS, HASHES))
def test_write_missing_refuses_the_same_docs(case):
    body, key, value, doc_id, h = case
    doc = {"_id": doc_id, "_rev": f"1-{h}", **body, key: value}
    text = json.dumps({**body, key: value})
    with _Pair() as (by_texts, by_docs):
        with pytest.raises(BadRequest):
            by_texts.write_missing_texts([[doc_id, f"1-{h}", text]])
        with pytest.raises(BadRequest):
            by_docs.write_missing([doc])
        assert by_texts.info()["doc_count"] == by_docs.info()["doc_count"] == 0


@SETTINGS
@given(st.lists(st.tuples(IDS, BODIES), min_size=1, max_size=10, unique_by=lambda t: t[0]),
       st.integers(1, 4))
def test_changes_texts_give_back_the_bodies_written(docs, page):
    db = LocalDatabase(":memory:", name="filled")
    try:
        for start in range(0, len(docs), 3):  # some by put, some by bulk_docs
            chunk = docs[start:start + 3]
            if start % 2:
                db.bulk_docs([{"_id": doc_id, **body} for doc_id, body in chunk])
            else:
                for doc_id, body in chunk:
                    db.put({"_id": doc_id, **body})
        seen: dict[str, Any] = {}
        since: Any = 0
        for _ in range(len(docs) + 1):
            answer = db.changes_texts(since=since, limit=page)
            if not answer["results"]:
                break
            for seq, doc_id, leaves, deleted, text in answer["results"]:
                assert not deleted and leaves == [db.get(doc_id)["_rev"]]
                seen[doc_id] = json.loads(text)
            since = answer["last_seq"]
        assert list(seen) == [doc_id for doc_id, _ in docs]
        for doc_id, body in docs:
            assert _exact(seen[doc_id]) == _exact(body)
    finally:
        db.close()


@SETTINGS
@given(st.lists(BODIES, min_size=1, max_size=8), st.integers(0, 400))
def test_max_bytes_takes_the_texts_that_fit(bodies, max_bytes):
    db = LocalDatabase(":memory:", name="budget")
    try:
        for i, body in enumerate(bodies):
            db.put({"_id": f"d{i}", **body})
        for read in (db.changes_texts, lambda **kw: Database.changes_texts(db, **kw)):
            full = [row[4] for row in read()["results"]]
            given_texts = [row[4] for row in read(max_bytes=max_bytes)["results"]]
            expected, total = [], 0  # the docstring's rule: each text while the total fits
            for text in full:
                size = len(text.encode("utf-8"))
                expected.append(text if total + size <= max_bytes else None)
                total += size if total + size <= max_bytes else 0
            assert given_texts == expected
    finally:
        db.close()


def test_more_rows_than_a_store_page():
    """The embedded store reads 1000 rows a page and looks ids up 500 at a time."""
    source = LocalDatabase(":memory:", name="source")
    target = LocalDatabase(":memory:", name="target")
    try:
        source.bulk_docs([{"_id": f"k{i:05d}", "v": i, "s": "é" * (i % 7)} for i in range(2100)])
        for limit in (None, 0, 999, 1000, 1001, 1500, 2100, 5000):
            for read in (source.changes_texts, lambda **kw: Database.changes_texts(source, **kw)):
                texts = read() if limit is None else read(limit=limit)
                changes = source.changes(style="all_docs", **({} if limit is None else {"limit": limit}))
                assert [(r[0], r[1], r[2]) for r in texts["results"]] == [
                    (r["seq"], r["id"], [c["rev"] for c in r["changes"]]) for r in changes["results"]]
                assert (texts["last_seq"], texts.get("pending")) == (
                    changes["last_seq"], changes.get("pending")), limit
        budget = source.changes_texts(max_bytes=20000)["results"]
        assert sum(len(r[4].encode()) for r in budget if r[4] is not None) <= 20000
        rows = [[r[1], r[2][0], r[4]] for r in source.changes_texts()["results"]]
        assert target.write_missing_texts(rows[::2]) == (list(range(1050)), [])
        assert target.write_missing_texts(rows) == (list(range(1, 2100, 2)), [])
        assert target.all_docs(include_docs=True) == source.all_docs(include_docs=True)
    finally:
        source.close()
        target.close()


def test_get_gives_back_integers_beyond_64_bits():
    """orjson reads an integer beyond 64 bits as a float; the store's reads keep it."""
    with _Pair() as (by_texts, by_docs):
        by_texts.write_missing_texts([["n", "1-" + "a" * 32, '{"n":18446744073709551617}']])
        assert _stored_texts(by_texts)["n"] == '{"n":18446744073709551617}'
        assert by_texts.get("n")["n"] == 2**64 + 1 and isinstance(by_texts.get("n")["n"], int)


# -- the batch check against the row-by-row one ------------------------------------------
# ids, revisions and texts near every edge of the batch check's joined searches: NULs
# (its separator) inside them, "_" starting an id or a key, "1-" alone, escapes, texts
# that are JSON but no object, or no JSON at all
EDGE_IDS = st.sampled_from(
    ["", "_local/x", "_design/", "a\x00_b", "\x00", "x\x00", "\x00\x00", "é", "\ud800",
     "a\x00", 1, None])
EDGE_REVS = st.sampled_from(
    ["1-", "1-x", "2-abc", "1-a\x001-b", "\x001-x", "1-\x00", "1-a\x00", "x1-a", 1, None])
EDGE_TEXTS = st.sampled_from(
    ['{"_a":1}', '{"a":{"_b":1}}', '{"a":"\\u005f"}', '{"\\u005fa":1}', '{"a":"\\"_"}', '[1]',
     '1', '"x"', '{"a":1},{"b":2}', '{"a":1', '', ' {"a":1} ', '{"a":NaN}', '{"a":1}_', 5, None])
ROW_IDS = st.one_of(IDS, EDGE_IDS)
ROW_REVS = st.one_of(HASHES.map(lambda h: "1-" + h), EDGE_REVS)
ROW_TEXTS = st.one_of(st.tuples(BODIES, DUMPS).map(lambda t: t[1](t[0])), EDGE_TEXTS)
ROWS = st.lists(st.one_of(
    st.tuples(ROW_IDS, ROW_REVS, ROW_TEXTS).map(list),
    st.tuples(ROW_IDS, ROW_REVS, ROW_TEXTS),
    st.lists(st.just("a"), max_size=4), st.just({"id": "a"}), st.just("abc")), max_size=6)
# rows the batch check passes whole (ASCII ids, bodies with no "_" and no escape)
WORDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-:.", min_size=1, max_size=12)
PLAIN_ROWS = st.lists(st.tuples(WORDS, HASHES, st.dictionaries(
    WORDS, st.one_of(st.integers(-1000, 1000), WORDS, st.booleans(), st.none()), max_size=4)
).map(lambda t: [t[0], "1-" + t[1], DUMPS_COMPACT(t[2])]), max_size=6)


def _outcome(check: Any, rows: Any) -> tuple[str, Any]:
    try:
        return "ok", list(check(rows))
    except BadRequest as exc:
        return "refused", str(exc)


# a plain row with one of its fields (or its shape) taken from the edges above
ODD_ROWS = st.tuples(PLAIN_ROWS.filter(bool), st.integers(0, 3),
                     st.tuples(EDGE_IDS, EDGE_REVS, EDGE_TEXTS)).map(
    lambda t: [t[2][t[1]] if i == t[1] else v for i, v in enumerate(t[0][0])] if t[1] < 3
    else t[0][0][:2])


@settings(SETTINGS, max_examples=1000)
@given(st.one_of(ROWS, PLAIN_ROWS, st.tuples(PLAIN_ROWS, ODD_ROWS, st.integers(0, 6)).map(
    lambda t: t[0][:t[2]] + [t[1]] + t[0][t[2]:])))  # one odd row among plain ones
def test_a_batch_is_checked_as_its_rows_one_by_one(rows):
    from pouchsync_sync.store import texts
    assert _outcome(texts.check_text_rows, rows) == _outcome(texts._check_rows_one_by_one, rows)


def test_a_batch_check_is_not_fooled_across_rows() -> None:
    """Rows that are fine joined but not alone (or not every one) are refused as alone."""
    from pouchsync_sync.store.texts import check_text_rows
    rev = "1-" + "a" * 32
    cases = [
        # a text that is no object, completed by the next one
        ([["a", rev, '{"x":[1'], ["b", rev, '2]}']], "row 0: the text is not JSON"),
        # a revision holding the separator and "1-", so that "1-" counts come out right
        ([["a", "1-a\x001-b", "{}"], ["b", "2-c", "{}"]], "row 1: rev must be"),
        ([["a", "1-", "{}"], ["b", rev, "{}"]], "row 0: rev must be"),
        ([["a", rev, "{}"], ["", rev, "{}"]], "non-empty string"),
        ([["", rev, "{}"], ["a", rev, "{}"]], "non-empty string"),
        ([["a", rev, "{}"], ["", rev, "{}"], ["b", rev, "{}"]], "non-empty string"),
        ([["a", rev, "{}"], ["_x", rev, "{}"]], "underscore"),
        ([["a", rev, '{"_id":"x"}']], "special field"),
        ([["a", rev, "{}"], ["b", rev, "[]"]], "row 1: the text must be a JSON object"),
        ([["a", rev, "{}"], ["b", rev]], "row 1: must be [id, rev, text]"),
    ]
    for rows, words in cases:
        with pytest.raises(BadRequest, match=re.escape(words)):
            check_text_rows(rows)
    # plain rows with the separator inside an id or a key: checked as ever
    assert list(check_text_rows([["a\x00_b", rev, '{"k":"\\u005f"}'], ("b", rev, "{}")])) == [
        ("a\x00_b", rev, '{"k":"\\u005f"}'), ("b", rev, "{}")]


# -- checked ahead (Database.check_texts) ------------------------------------------------
def test_check_texts_checks_once_and_slices_stay_checked(tmp_path) -> None:
    from pouchsync_sync.errors import BadRequest
    from pouchsync_sync.store.texts import CheckedTexts, check_text_rows

    db = LocalDatabase(str(tmp_path / "c.sqlite"))
    try:
        rows = [[f"d{i}", f"1-{i:032x}", '{"v": %d}' % i] for i in range(5)]
        checked = db.check_texts(rows)
        assert checked.__class__ is CheckedTexts
        assert list(checked) == [(f"d{i}", f"1-{i:032x}", '{"v": %d}' % i) for i in range(5)]
        assert check_text_rows(checked) is checked  # not checked twice
        assert checked[1:3].__class__ is CheckedTexts and checked[0].__class__ is tuple
        assert db.write_missing_texts(checked[3:]) == ([0, 1], [])
        assert db.write_missing_texts(checked) == ([0, 1, 2], [])
        assert db.get("d4")["v"] == 4
        with pytest.raises(BadRequest):
            db.check_texts([["d9", "2-x", "{}"]])
        with pytest.raises(TypeError):
            checked[0] = ("x", "1-y", "{}")  # immutable: what was checked stays so
    finally:
        db.close()


def test_the_default_check_texts_leaves_rows_to_the_write() -> None:
    from pouchsync_sync.store.base import Database

    rows = [["a", "1-x", "{}"]]
    assert Database.check_texts(None, rows) is rows  # type: ignore[arg-type]
