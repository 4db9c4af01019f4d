"""One batch, pure: revs_diff request, bulk_get requests and answers, byte bounds."""

from __future__ import annotations

import pytest

from pouchsync_sync.replication.batch import (
    apply_filter,
    bulk_get_requests,
    collect_bulk_get,
    doc_size,
    failed_writes,
    is_first_generation,
    next_fetch_size,
    prefer_docs_in_changes,
    revs_diff_request,
    split_by_bytes,
    whole_docs_in_changes,
)


def test_revs_diff_request_keeps_every_leaf_and_skips_local() -> None:
    rows = [
        {"seq": 1, "id": "a", "changes": [{"rev": "2-x"}, {"rev": "2-y"}]},
        {"seq": 2, "id": "_local/cp", "changes": [{"rev": "0-1"}]},
        {"seq": 3, "id": "b", "changes": [{"rev": "1-z"}], "deleted": True},
        {"seq": 4, "id": "c", "changes": []},
    ]
    assert revs_diff_request(rows) == {"a": ["2-x", "2-y"], "b": ["1-z"]}


def test_bulk_get_requests_carry_atts_since() -> None:
    diff = {"a": {"missing": ["3-x", "3-y"], "possible_ancestors": ["2-w"]},
            "b": {"missing": ["1-z"]}}
    assert bulk_get_requests(diff) == [
        {"id": "a", "rev": "3-x", "atts_since": ["2-w"]},
        {"id": "a", "rev": "3-y", "atts_since": ["2-w"]},
        {"id": "b", "rev": "1-z"},
    ]


def test_collect_bulk_get_dedupes_and_collects_both_error_shapes() -> None:
    doc = {"_id": "a", "_rev": "2-x", "_revisions": {"start": 2, "ids": ["x", "w"]}}
    answer = {"results": [
        {"id": "a", "docs": [{"ok": doc}]},
        {"id": "a", "docs": [{"ok": dict(doc)}]},  # latest=True answered twice
        {"id": "b", "docs": [{"error": {"id": "b", "rev": "1-q", "error": "not_found",
                                        "reason": "missing"}}]},
        {"id": "c", "docs": [{"missing": "4-m"}]},
    ]}
    docs, errors = collect_bulk_get(answer)
    assert docs == [doc]
    assert errors == [
        {"id": "b", "rev": "1-q", "error": "not_found", "reason": "missing"},
        {"id": "c", "rev": "4-m", "error": "not_found", "reason": "missing"},
    ]


def test_failed_writes_accepts_both_answer_styles() -> None:
    assert failed_writes([]) == []
    assert failed_writes([{"ok": True, "id": "a", "rev": "1-x"}]) == []
    assert failed_writes([{"id": "a", "rev": "1-x", "error": "forbidden", "reason": "no"}]) == [
        {"id": "a", "rev": "1-x", "error": "forbidden", "reason": "no"}]


def test_apply_filter() -> None:
    rows = [{"id": "a", "doc": {"_id": "a", "t": 1}}, {"id": "b", "doc": {"_id": "b", "t": 2}},
            {"id": "c"}]
    assert [r["id"] for r in apply_filter(rows, lambda d: d["t"] == 2)] == ["b", "c"]
    assert apply_filter(rows, None) == rows


def test_split_by_bytes() -> None:
    docs = [{"i": i} for i in range(6)]
    sizes = [4, 4, 4, 20, 1, 1]
    chunks = list(split_by_bytes(docs, sizes, 8))
    assert [[d["i"] for d in c] for c in chunks] == [[0, 1], [2], [3], [4, 5]]
    assert list(split_by_bytes([], [], 8)) == []


def test_doc_size_is_json_length() -> None:
    assert doc_size({"a": "xyz"}) == len('{"a":"xyz"}')


def test_next_fetch_size_shrinks_then_grows_back() -> None:
    assert next_fetch_size(100, 100, 100 * 1000, max_bytes=10_000, cap=100) == 10
    assert next_fetch_size(10, 10, 10 * 10_000_000, max_bytes=10_000, cap=100) == 1
    assert next_fetch_size(10, 10, 10 * 10, max_bytes=10_000, cap=100) == 20
    assert next_fetch_size(80, 80, 80 * 10, max_bytes=10_000, cap=100) == 100
    assert next_fetch_size(5, 0, 0, max_bytes=10_000, cap=100) == 5


def test_first_generation_docs_come_from_changes_whole() -> None:
    rows = [
        {"id": "new", "changes": [{"rev": "1-aa"}], "doc": {"_id": "new", "_rev": "1-aa", "v": 1}},
        {"id": "edited", "changes": [{"rev": "2-bb"}],
         "doc": {"_id": "edited", "_rev": "2-bb", "v": 2}},
        {"id": "att", "changes": [{"rev": "1-cc"}],
         "doc": {"_id": "att", "_rev": "1-cc", "_attachments": {"a": {"stub": True}}}},
        {"id": "two", "changes": [{"rev": "1-dd"}, {"rev": "1-ee"}],
         "doc": {"_id": "two", "_rev": "1-ee"}},
        {"id": "nodoc", "changes": [{"rev": "1-ff"}]},
        {"id": "gone", "changes": [{"rev": "1-gg"}], "deleted": True,
         "doc": {"_id": "gone", "_rev": "1-gg", "_deleted": True}},
        {"id": "other", "changes": [{"rev": "1-hh"}], "doc": {"_id": "else", "_rev": "1-hh"}},
        {"id": "stale", "changes": [{"rev": "1-ii"}], "doc": {"_id": "stale", "_rev": "1-jj"}},
        {"id": "_local/x", "changes": [{"rev": "1-kk"}], "doc": {"_id": "_local/x", "_rev": "1-kk"}},
        {"id": "odd", "changes": {"rev": "1-ll"}, "doc": {"_id": "odd", "_rev": "1-ll"}},
    ]
    snapshot = repr(rows)
    docs, rest = whole_docs_in_changes(rows)
    assert docs == [{"_id": "new", "_rev": "1-aa", "v": 1}]
    assert docs[0] is rows[0]["doc"]  # as it came: no copy
    assert [row["id"] for row in rest] == ["edited", "att", "two", "nodoc", "gone", "other",
                                           "stale", "_local/x", "odd"]
    assert repr(rows) == snapshot  # inputs untouched


def test_is_first_generation() -> None:
    assert is_first_generation({"_id": "a", "_rev": "1-x", "v": 1})
    assert is_first_generation({"_id": "a", "_rev": "1-x", "_revisions": {}})
    assert not is_first_generation({"_id": "a", "_rev": "2-x"})
    assert not is_first_generation({"_id": "a", "_rev": "1-x", "_deleted": True})
    assert not is_first_generation({"_id": "a", "_rev": "1-x", "_attachments": {}})
    assert not is_first_generation({"_id": "a"})


def test_prefer_docs_in_changes() -> None:
    assert prefer_docs_in_changes(80, 100, 100 * 300, 100, 100, 8 << 20)
    assert not prefer_docs_in_changes(40, 100, 100 * 300, 100, 100, 8 << 20)  # mostly edits
    assert not prefer_docs_in_changes(0, 100, 0, 0, 100, 8 << 20)  # target had everything
    assert not prefer_docs_in_changes(100, 100, 100 * 1_000_000, 100, 100, 8 << 20)  # too big
    assert not prefer_docs_in_changes(0, 0, 0, 0, 100, 8 << 20)


def test_prefer_docs_in_changes_stops_when_the_target_had_the_whole_docs() -> None:
    assert prefer_docs_in_changes(100, 100, 100 * 300, 100, 100, 8 << 20, lacked=1.0)
    assert prefer_docs_in_changes(100, 100, 100 * 300, 100, 100, 8 << 20, lacked=0.5)
    assert not prefer_docs_in_changes(100, 100, 100 * 300, 100, 100, 8 << 20, lacked=0.4)
    assert not prefer_docs_in_changes(100, 100, 100 * 300, 100, 100, 8 << 20, lacked=0.0)


def test_doc_sizes_measure_once_when_everything_fits() -> None:
    from pouchsync_sync.replication.batch import doc_sizes
    small = [{"_id": f"d{i}", "v": "x" * 10} for i in range(10)]
    sizes = doc_sizes(small, 1 << 20)
    assert len(set(sizes)) == 1
    assert abs(sum(sizes) - sum(doc_size(d) for d in small)) < len(small)
    mixed = small + [{"_id": "big", "v": "x" * 5000}]
    exact = doc_sizes(mixed, 2000)  # too big together: each measured, so the split is right
    assert exact == [doc_size(d) for d in mixed]
    assert [len(c) for c in split_by_bytes(mixed, exact, 2000)] == [10, 1]
    assert doc_sizes([], 100) == []


# -- text rows ------------------------------------------------------------------------------
def test_texts_in_changes_splits_text_rows_from_rows_to_diff() -> None:
    from pouchsync_sync.replication.batch import texts_in_changes

    rows = [[1, "a", ["1-x"], False, '{"v":1}'],
            [2, "b", ["2-y"], False, None],
            [3, "c", ["1-p", "1-q"], False, None],
            [4, "d", ["2-z"], True, None],
            [5, "_local/e", ["1-e"], False, "{}"]]
    texts, rest = texts_in_changes(rows)
    assert texts == [("a", "1-x", '{"v":1}')]
    assert rest == [{"seq": 2, "id": "b", "changes": [{"rev": "2-y"}]},
                    {"seq": 3, "id": "c", "changes": [{"rev": "1-p"}, {"rev": "1-q"}]},
                    {"seq": 4, "id": "d", "changes": [{"rev": "2-z"}], "deleted": True},
                    {"seq": 5, "id": "_local/e", "changes": [{"rev": "1-e"}]}]


@pytest.mark.parametrize("sizes, limit, expected", [
    ([2] * 7, 100, [7]),
    ([2] * 7, 5, [2, 2, 2, 1]),
    ([2] * 7, 1, [1] * 7),  # a row bigger than the limit goes alone
    ([9, 1, 1, 9], 10, [2, 2]),
    ([], 10, []),
])
def test_slices_by_bytes_cuts_where_split_by_bytes_does(sizes, limit, expected) -> None:
    from pouchsync_sync.replication.batch import slices_by_bytes, split_by_bytes

    rows = tuple(range(len(sizes)))
    parts = list(slices_by_bytes(rows, sizes, limit))
    assert [len(p) for p in parts] == expected
    assert [list(p) for p in parts] == list(split_by_bytes(list(rows), sizes, limit))
    assert all(p.__class__ is tuple for p in parts)  # slices keep the rows' type


def test_written_docs_are_built_only_when_read() -> None:
    from pouchsync_sync.replication.batch import WrittenDocs

    whole = {"_id": "w", "_rev": "1-w", "v": 0}
    docs = WrittenDocs([whole, ("t", "1-t", '{"v":1,"o":{"_x":2}}')])
    assert len(docs) == 2 and docs._docs is None
    assert list(docs) == [whole, {"_id": "t", "_rev": "1-t", "v": 1, "o": {"_x": 2}}]
    assert docs[0] is whole and docs[-1]["v"] == 1
