"""Reply shapes (``protocol.ops.reply_problem`` / ``decode_result``), pure.

Real answers of an in-memory ``LocalDatabase`` pass; wrong shapes are named.
"""

from __future__ import annotations

from typing import Any

import pytest

from pouchsync_sync import LocalDatabase
from pouchsync_sync.errors import ProtocolError
from pouchsync_sync.protocol import ops


@pytest.fixture
def db():
    with LocalDatabase(":memory:", name="shapes") as d:
        yield d


def test_real_answers_pass(db) -> None:
    rev = db.put({"_id": "a", "x": 1})["rev"]
    db.put({"_id": "_local/cp", "seq": 1})
    db.put({"_id": "b", "_deleted": True})
    answers: list[tuple[str, Any, dict[str, Any]]] = [
        ("info", db.info(), {}),
        ("get", db.get("a", revs=True, conflicts=True), {}),
        ("get", db.get("_local/cp"), {}),
        ("get", db.get("a", open_revs=[rev, "9-x"]), {"open_revs": [rev, "9-x"]}),
        ("get", db.get("a", open_revs="all"), {"open_revs": "all"}),
        ("put", db.put({"_id": "c"}), {}),
        ("post", db.post({"y": 2}), {}),
        ("delete", db.delete("a", rev), {}),
        ("bulk_docs", db.bulk_docs([{"_id": "d"}, {"_id": "c"}]), {}),
        ("bulk_docs", db.bulk_docs([], new_edits=False), {}),
        ("all_docs", db.all_docs(include_docs=True, keys=["c", "zz"]), {}),
        ("changes", db.changes(since=0, style="all_docs", include_docs=True), {}),
        ("changes", db.changes(since="now"), {}),
        ("revs_diff", db.revs_diff({"c": ["1-x", "2-y"], "zz": ["1-a"]}), {}),
        ("bulk_get", db.bulk_get([{"id": "c"}, {"id": "zz", "rev": "1-a"}], revs=True), {}),
        ("write_missing", {"written": [0, 2], "failures": [{"id": "x", "rev": "1-a",
                                                            "error": "forbidden", "reason": ""}]},
         {"docs": [{}, {}, {}]}),
        ("write_missing", {"written": [], "failures": []}, {"docs": []}),
    ]
    for op, answer, args in answers:
        assert ops.reply_problem(op, answer, args) is None, (op, answer)
        assert ops.decode_result(op, answer, args) is answer


@pytest.mark.parametrize("op,ok,args,words", [
    ("info", [], {}, "list, not an object"),
    ("get", 5, {}, "int, not a document"),
    ("get", {"_rev": "1-a"}, {}, "no string '_id'"),
    ("get", {"_id": "a"}, {"open_revs": "all"}, "not a list"),
    ("get", [{"ok": 5}], {"open_revs": "all"}, "neither"),
    ("put", {"ok": True}, {}, "no string 'id' and 'rev'"),
    ("bulk_docs", {"ok": True}, {}, "not a list"),
    ("bulk_docs", [None], {}, "holds a NoneType"),
    ("all_docs", {"rows": {}}, {}, "'rows' is dict"),
    ("changes", {"results": 5}, {}, "'results' is int"),
    ("changes", {"results": ["a"]}, {}, "not a change row"),
    ("changes", {"results": [{"id": "a"}]}, {}, "list 'changes'"),
    ("changes", {"results": [{"id": "a", "changes": [[]]}]}, {}, "holds a list"),
    ("changes", {"results": [], "pending": 1.5}, {}, "'pending' is float"),
    ("revs_diff", {"a": None}, {}, "NoneType, not an object"),
    ("revs_diff", {"a": {"missing": [1]}}, {}, "'missing' holds a int"),
    ("bulk_get", {"results": [{"id": "a", "docs": {}}]}, {}, "'docs' is dict"),
    ("write_missing", [], {"docs": []}, "list, not an object"),
    ("write_missing", {"written": [0]}, {"docs": [{}]}, "'failures'"),
    ("write_missing", {"written": [1], "failures": []}, {"docs": [{}]}, "indexes"),
    ("write_missing", {"written": [-1], "failures": []}, {"docs": [{}]}, "indexes"),
    ("write_missing", {"written": ["0"], "failures": []}, {"docs": [{}]}, "indexes"),
    ("write_missing", {"written": [True], "failures": []}, {"docs": [{}]}, "indexes"),
    ("write_missing", {"written": [0, 1.0], "failures": []}, {"docs": [{}, {}]}, "indexes"),
    ("write_missing", {"written": [0, None], "failures": []}, {"docs": [{}, {}]}, "indexes"),
    ("write_missing_texts", {"written": [0, 2], "failures": []}, {"rows": [[], []]}, "indexes"),
    ("write_missing", {"written": [0], "failures": [5]}, {"docs": [{}]}, "holds a int"),
])
def test_wrong_shapes_are_named(op: str, ok: Any, args: dict[str, Any], words: str) -> None:
    assert words in (ops.reply_problem(op, ok, args) or "")
    with pytest.raises(ProtocolError, match=f"reply to {op} is malformed"):
        ops.decode_result(op, ok, args)


def test_unknown_ops_are_not_checked() -> None:
    assert ops.reply_problem("frobnicate", 5) is None
