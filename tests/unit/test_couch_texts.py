"""The CouchDB backend's ``changes_texts`` rows (``couch_changes.texts_of_changes``) are
exactly what the shared default (``texts.texts_answer``) makes of the same ``changes``
answer, on random rows: docs parsed from JSON (big integers, surrogates, special
fields, several leaves, deletions) and a few Python values JSON never gives."""

from __future__ import annotations

import json
import math
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pouchsync_sync import jsoncodec
from pouchsync_sync.errors import BadRequest
from pouchsync_sync.store.couch_changes import texts_of_changes
from pouchsync_sync.store.texts import texts_answer

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

INTS = st.one_of(st.integers(-1000, 1000), st.integers(-(2**65), 2**65))
SCALARS = st.one_of(st.none(), st.booleans(), INTS,
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=6))
VALUES = st.recursive(
    SCALARS,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=4), kids,
                                                              max_size=3),
    max_leaves=8)
KEYS = st.one_of(st.text(max_size=6), st.sampled_from(
    ["_attachments", "_conflicts", "_deleted", "_revisions", "_x", "a_b", "_"]))
REVS = st.one_of(st.sampled_from(["1-abc", "2-def", "1-", "x", "1-a1b2"]), st.none(),
                 st.integers(0, 3))


@st.composite
def rows(draw: Any) -> dict[str, Any]:
    leaves = draw(st.lists(REVS, min_size=0, max_size=3))
    row: dict[str, Any] = {"seq": draw(st.integers(1, 10**6)), "id": draw(st.text(max_size=5)),
                           "changes": [{"rev": rev} for rev in leaves]}
    if draw(st.booleans()):
        row["deleted"] = draw(st.sampled_from([True, False, 1, 0]))
    kind = draw(st.sampled_from(["doc", "doc", "doc", "none", "missing", "list"]))
    if kind == "doc":
        body = draw(st.dictionaries(KEYS, VALUES, max_size=4))
        doc = {"_id": row["id"], **body}
        if draw(st.integers(0, 4)):
            doc["_rev"] = leaves[0] if leaves and draw(st.booleans()) else draw(REVS)
        row["doc"] = doc
    elif kind == "none":
        row["doc"] = None
    elif kind == "list":
        row["doc"] = [1, 2]
    return row


def through_json(answer: dict[str, Any]) -> dict[str, Any] | None:
    """The answer as CouchHTTP hands it over: written as JSON and read by jsoncodec
    (big integers exact); None when it cannot be JSON (a lone surrogate)."""
    try:
        text = json.dumps(answer, ensure_ascii=False)
        text.encode("utf-8")
    except (UnicodeEncodeError, ValueError):
        return None
    return jsoncodec.loads(text.encode("utf-8"))


@SETTINGS
@given(st.lists(rows(), max_size=6), st.one_of(st.none(), st.integers(0, 400)),
       st.booleans())
def test_same_rows_as_the_default(found: list[dict[str, Any]], max_bytes: int | None,
                                  pending: bool) -> None:
    answer: dict[str, Any] = {"results": found, "last_seq": 7}
    if pending:
        answer["pending"] = 3
    parsed = through_json(answer)
    for case in ([answer] if parsed is None else [answer, parsed]):
        expected = texts_answer(case, max_bytes)
        got = texts_of_changes(case, max_bytes)
        assert json.dumps(got, sort_keys=True) == json.dumps(expected, sort_keys=True)
        assert [type(r[4]) for r in got["results"]] == [type(r[4]) for r in expected["results"]]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, uuid.UUID(int=5),
                                   2**70, "\ud800", {1: 2}, [math.nan]])
def test_values_json_never_gives_are_decided_as_the_default_does(value: Any) -> None:
    answer = {"results": [{"seq": 1, "id": "a", "changes": [{"rev": "1-x"}],
                           "doc": {"_id": "a", "_rev": "1-x", "v": value}}], "last_seq": 1}
    try:
        expected = texts_answer(answer, None)
    except BadRequest:
        with pytest.raises(BadRequest):
            texts_of_changes(answer, None)
        return
    got = texts_of_changes(answer, None)
    assert got["results"][0][4] == expected["results"][0][4]


def test_a_plain_first_generation_doc_is_its_body_text() -> None:
    answer = {"results": [
        {"seq": 1, "id": "a", "changes": [{"rev": "1-x"}],
         "doc": {"_id": "a", "_rev": "1-x", "n": 1, "nested": {"_k": None}}},
        {"seq": 2, "id": "b", "changes": [{"rev": "1-y"}],
         "doc": {"_id": "b", "_rev": "1-y", "_attachments": {}}},
        {"seq": 3, "id": "c", "changes": [{"rev": "2-z"}], "doc": {"_id": "c", "_rev": "2-z"}},
        {"seq": 4, "id": "d", "changes": [{"rev": "1-w"}], "deleted": True,
         "doc": {"_id": "d", "_rev": "1-w", "_deleted": True}},
    ], "last_seq": 4, "pending": 0}
    text = '{"n":1,"nested":{"_k":null}}'
    got = texts_of_changes(answer, None)
    assert got == {"results": [[1, "a", ["1-x"], False, text],
                               [2, "b", ["1-y"], False, None],
                               [3, "c", ["2-z"], False, None],
                               [4, "d", ["1-w"], True, None]],
                   "last_seq": 4, "pending": 0}
    assert texts_of_changes(answer, len(text))["results"][0][4] == text
    assert texts_of_changes(answer, len(text) - 1)["results"][0][4] is None  # beyond max_bytes
