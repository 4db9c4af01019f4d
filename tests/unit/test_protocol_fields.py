"""The field checkers shared by messages and call arguments (``protocol.fields``), pure."""

from __future__ import annotations

import pytest

from pouchsync_sync.errors import BadRequest
from pouchsync_sync.protocol import fields, ops
from pouchsync_sync.protocol import messages as m


def test_every_checker_says_its_shape_in_words() -> None:
    checkers = {getattr(fields, name) for name in fields.__all__ if name.startswith("is_")}
    assert checkers == set(fields.DESCRIBE)
    for spec in ops.OPS.values():
        for check, _required in spec.values():
            assert check in fields.DESCRIBE


@pytest.mark.parametrize(("check", "good", "bad"), [
    (fields.is_str, ["", "x"], [1, None, b"x", ["x"]]),
    (fields.is_bool, [True, False], [0, 1, "true", None]),
    (fields.is_str_list, [[], ["a", "b"]], ["a", ["a", 1], {"a": "b"}, None]),
    (fields.is_style, ["main_only", "all_docs"], ["main", "", None, ["all_docs"]]),
    (fields.is_pos_int, [1, fields.MAX_ID], [0, -1, fields.MAX_ID + 1, True, 1.0, "1"]),
    (fields.is_nonneg_int, [0, 5], [-1, True, 1.5, "0"]),
    (fields.is_versions, [[1], [1, 2]], [[], [1, "2"], 1, None]),
    (fields.is_db_name, ["a", "x" * fields.MAX_DB_NAME], ["", "x" * (fields.MAX_DB_NAME + 1), 1]),
    (fields.is_agent, ["", "x" * fields.MAX_AGENT], ["x" * (fields.MAX_AGENT + 1), 2]),
    (fields.is_text_rows, [[], [["id", "1-a", "{}"]]], [[["id", "1-a"]], [("i", "r", "t")], "x"]),
])
def test_checkers_accept_and_refuse(check, good, bad) -> None:
    for value in good:
        assert check(value) is True, value
    for value in bad:
        assert check(value) is False, value


def test_a_message_and_a_call_word_the_same_shape_alike() -> None:
    """One checker, one description: a bad ``doc_ids`` reads the same in a subscribe
    message (``BadMessage``) and in a changes call (``BadRequest``)."""
    with pytest.raises(m.BadMessage) as message_error:
        m.validate({"type": "subscribe", "ch": 1, "sub": 1, "doc_ids": ["a", 1]},
                   sender="client")
    with pytest.raises(BadRequest) as call_error:
        ops.validate_call("changes", {"doc_ids": ["a", 1]})
    assert "must be a list of strings" in str(message_error.value)
    assert "must be a list of strings" in str(call_error.value)
