"""The replicated write's bulk fast path agrees with the general path on every input."""

from __future__ import annotations

import json
import math
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pouchsync_sync import BadRequest, LocalDatabase
from pouchsync_sync.store.incoming import Prepared, prepare_doc, prepare_replicated
from pouchsync_sync.store.validate import exact_json_texts

_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                     st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
                     st.sampled_from(["_x", "null", '"_', "\u00e9", "\ud800"]))
_keys = st.one_of(st.text(max_size=6), st.sampled_from(["_id", "_x", "_deleted", "a"]),
                  st.integers(0, 3))
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.tuples(inner),
    st.dictionaries(_keys, inner, max_size=3)), max_leaves=8)


def _doc(extra: dict[Any, Any], i: int) -> dict[Any, Any]:
    rev = f"1-{i:04x}"
    return {"_id": f"doc{i}", "_rev": rev, "_revisions": {"start": 1, "ids": [rev[2:]]}, **extra}


def _outcome(fn: Any) -> Any:
    try:
        items = fn()
    except BadRequest as exc:
        return ("error", exc.reason)
    return [(p.doc_id, p.path, None if p.body_text is None else json.loads(p.body_text))
            for p in items]


def _general(doc: Any) -> Prepared:
    return prepare_doc(doc, require_id=True, replicated=True)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.dictionaries(_keys, _values, max_size=4), min_size=1, max_size=4))
def test_bulk_path_matches_the_general_path(extras: list[dict[Any, Any]]) -> None:
    docs = [_doc(extra, i) for i, extra in enumerate(extras)]
    fast = _outcome(lambda: prepare_replicated(docs, _general))
    slow = _outcome(lambda: [_general(doc) for doc in docs])
    if isinstance(slow, list) and isinstance(fast, list):
        assert fast == slow  # texts compared as parsed JSON (NaN never gets here: refused)
    else:
        assert fast[0] == slow[0] == "error"


def test_exact_json_texts_marks_what_orjson_would_change() -> None:
    texts = exact_json_texts([{"a": 1, "b": None}, {"x": math.nan}, {"x": [math.inf, None]},
                              {1: 2}, {"x": 2**70}, {"x": "\ud800"}, [1.5], {"x": (1, 2)}])
    assert texts[0] == '{"a":1,"b":null}'
    assert texts[1:6] == [None] * 5
    assert texts[6] == "[1.5]"
    assert texts[7] == '{"x":[1,2]}'  # a tuple: the same text as the stdlib's


def test_uuids_and_enums_are_stored_as_orjson_writes_them_on_the_replicated_path() -> None:
    """The documented leniency: only a Python caller can hand these in."""
    import enum

    class Colour(enum.Enum):
        RED = "red"

    docs = [_doc({"u": uuid.UUID(int=1), "c": Colour.RED}, 1)]
    with LocalDatabase(":memory:") as db:
        db.bulk_docs(docs, new_edits=False)
        doc = db.get("doc1")
        assert doc["u"] == str(uuid.UUID(int=1)) and doc["c"] == "red"


@pytest.mark.parametrize("bad", [
    {"_bogus": 1}, {5: "int key"}, {"x": math.nan}, {"x": math.inf}, {"x": [None, -math.inf]},
    {"_deleted": "yes"}, {"_revisions": {"start": 1, "ids": ["other"]}},
])
def test_replicated_batch_with_one_bad_doc_writes_nothing(bad: dict[Any, Any]) -> None:
    with LocalDatabase(":memory:") as db:
        docs = [_doc({"v": 1}, 1), {**_doc({"v": 2}, 2), **bad}, _doc({"v": 3}, 3)]
        with pytest.raises(BadRequest):
            db.bulk_docs(docs, new_edits=False)
        with pytest.raises(BadRequest):
            db.write_missing(docs)
        assert db.info()["doc_count"] == 0


def test_replicated_values_orjson_would_change_are_stored_as_the_stdlib_writes_them() -> None:
    with LocalDatabase(":memory:") as db:
        db.bulk_docs([_doc({"t": (1, 2), "nested": {"_under": 1, "3": [None]}, "s": "_x"}, 1)],
                     new_edits=False)
        doc = db.get("doc1")
        assert doc["t"] == [1, 2] and doc["nested"] == {"_under": 1, "3": [None]} and doc["s"] == "_x"
