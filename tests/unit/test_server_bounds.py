"""The pure parts of issue 16's bounds: the log rate limit, the reply budget's choice of
socket to evict, the revision-tree leaf limit's arithmetic, the regex budget."""

from __future__ import annotations

import pytest

from pouchsync_sync import BadRequest
from pouchsync_sync.selector import compile_selector
from pouchsync_sync.server.budget import ReplyBudget
from pouchsync_sync.server.handler import RateLimit
from pouchsync_sync.server.options import ServerOptions


def test_rate_limit_allows_a_burst_per_window_and_counts_the_rest() -> None:
    now = [0.0]
    limit = RateLimit(burst=3, window=10.0, clock=lambda: now[0])
    assert [limit.allow() for _ in range(5)] == [(True, 0)] * 3 + [(False, 0)] * 2
    now[0] = 9.9
    assert limit.allow() == (False, 0)
    now[0] = 10.0  # a new window: the next line says how many were left out
    assert limit.allow() == (True, 3)
    assert limit.allow() == (True, 0)


class Holder:
    def __init__(self, name: str) -> None:
        self.name = name
        self.evicted: list[str] = []

    def evict(self, reason: str) -> None:
        self.evicted.append(reason)


def test_reply_budget_evicts_the_biggest_holder_once() -> None:
    budget = ReplyBudget(100)
    slow, fast, other = Holder("slow"), Holder("fast"), Holder("other")
    budget.hold(slow, 60)
    budget.hold(fast, 30)
    assert not slow.evicted and budget.total == 90
    budget.hold(fast, 20)  # 110 > 100: the one holding the most goes, not the caller
    assert len(slow.evicted) == 1 and "reply_memory 100" in slow.evicted[0]
    assert not fast.evicted and budget.evictions == 1
    budget.hold(other, 10)  # slow's 60 are on their way out: 60 live bytes, no eviction
    assert not other.evicted and not fast.evicted and budget.evictions == 1
    budget.release(slow, 60)
    budget.release(fast, 50)
    budget.release(other, 10)
    assert budget.total == 0 and budget.held(slow) == 0
    budget.hold(slow, 101)  # released entirely: slow may be evicted again
    assert len(slow.evicted) == 2


def test_new_options_are_checked() -> None:
    opts = ServerOptions()
    assert (opts.max_hello_size, opts.max_rows, opts.reply_memory, opts.max_reply_size,
            opts.max_local_doc_size, opts.max_local_docs) == (8192, 10000, 256 * 1024 * 1024,
                                                              None, 65536, 100)
    for bad in ({"max_hello_size": 0}, {"max_rows": -1}, {"reply_memory": 1.5},
                {"max_reply_size": 0}, {"max_local_docs": True}):
        with pytest.raises(ValueError):
            ServerOptions(**bad)


def test_a_regex_over_its_budget_is_a_400_naming_the_pattern() -> None:
    match = compile_selector({"t": {"$regex": "^(a|a)*$"}})
    assert match({"t": "aaaa"}) and not match({"t": 5})
    with pytest.raises(BadRequest, match=r"\$regex.*took over 0.1 s"):
        match({"t": "a" * 40 + "b"})
    with pytest.raises(BadRequest, match="at most 1000 characters"):
        compile_selector({"t": {"$regex": "a" * 1001}})
    with pytest.raises(BadRequest, match="bad regular expression"):
        compile_selector({"t": {"$regex": "("}})


def test_bounded_pages_reads_and_refuses_long_lists() -> None:
    from pouchsync_sync.server.dispatch import bounded

    assert bounded("changes", {}, 10) == {"limit": 10}
    assert bounded("changes", {"limit": 3}, 10) == {"limit": 3}
    assert bounded("changes_texts", {"limit": 30}, 10) == {"limit": 10}
    assert bounded("all_docs", {"include_docs": True}, 10) == {"include_docs": True, "limit": 10}
    assert bounded("all_docs", {"keys": ["a"] * 10}, 10) == {"keys": ["a"] * 10}  # as asked
    assert bounded("get", {"doc_id": "a"}, 10) == {"doc_id": "a"}
    args = {"docs": [{"id": "a"}] * 10}
    assert bounded("bulk_get", args, 10) is args
    for op, listed in (("all_docs", {"keys": ["a"] * 11}), ("bulk_get", {"docs": [{"id": "a"}] * 11})):
        with pytest.raises(BadRequest, match=r"asks for 11 .*at most 10 per call \(max_rows\)"):
            bounded(op, listed, 10)
