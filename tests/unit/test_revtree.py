"""Revision trees: the rules, and Hypothesis properties of merge, winner and stemming."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pouchsync_sync import BadRequest, revtree


def test_parse_rev():
    assert revtree.parse_rev("3-abc") == (3, "abc")
    for bad in ["", "abc", "0-abc", "-abc", "3-", "x-abc", None, 3, "٣-abc"]:
        with pytest.raises(BadRequest):
            revtree.parse_rev(bad)


def test_path_from_revisions():
    assert revtree.path_from_revisions("3-c", {"start": 3, "ids": ["c", "b", "a"]}) == ["3-c", "2-b", "1-a"]
    assert revtree.path_from_revisions("3-c") == ["3-c"]
    for bad in [{"start": 2, "ids": ["c", "b"]}, {"start": 3, "ids": ["x", "b"]}, {"start": 3, "ids": []},
                {"start": "3", "ids": ["c"]}, {"start": 1, "ids": ["c", "b"]}, [1, 2], {"start": 3, "ids": [1]}]:
        with pytest.raises(BadRequest):
            revtree.path_from_revisions("3-c", bad)


def test_merge_does_not_mutate_and_reports_added():
    tree: dict = {}
    new, added = revtree.merge(tree, ["2-b", "1-a"])
    assert tree == {}
    assert added == ["2-b", "1-a"]
    again, added_again = revtree.merge(new, ["3-c", "2-b", "1-a"], deleted=True)
    assert added_again == ["3-c"]
    assert again["3-c"].deleted and not new.get("3-c")


def test_winner_rules():
    tree, _ = revtree.merge({}, ["2-a", "1-r"])
    tree, _ = revtree.merge(tree, ["2-b", "1-r"])
    assert revtree.winner(tree) == "2-b"
    assert revtree.conflicts(tree) == ["2-a"]
    tree, _ = revtree.merge(tree, ["3-z", "2-b", "1-r"], deleted=True)
    assert revtree.winner(tree) == "2-a"
    assert revtree.conflicts(tree) == []
    assert revtree.deleted_conflicts(tree) == ["3-z"]
    tree, _ = revtree.merge(tree, ["3-y", "2-a", "1-r"], deleted=True)
    assert revtree.winner(tree) == "3-z"  # all deleted: the higher one wins
    with pytest.raises(ValueError):
        revtree.winner({})


def test_revisions_and_descendants():
    tree, _ = revtree.merge({}, ["3-c", "2-b", "1-a"])
    tree, _ = revtree.merge(tree, ["2-x", "1-a"])
    assert revtree.revisions(tree, "3-c") == {"start": 3, "ids": ["c", "b", "a"]}
    assert sorted(revtree.descendant_leaves(tree, "1-a")) == ["2-x", "3-c"]
    assert revtree.descendant_leaves(tree, "2-b") == ["3-c"]


def test_stem_keeps_leaves_and_limit():
    path = [f"{n}-h{n}" for n in range(10, 0, -1)]
    tree, _ = revtree.merge({}, path)
    tree, _ = revtree.merge(tree, ["3-side", "2-h2", "1-h1"])
    stemmed = revtree.stem(tree, 3)
    assert set(revtree.leaves(stemmed)) == {"10-h10", "3-side"}
    assert revtree.revisions(stemmed, "10-h10")["ids"] == ["h10", "h9", "h8"]
    assert stemmed["8-h8"].parent is None
    # a stemmed root grows back when a longer path arrives
    regrown, added = revtree.merge(stemmed, path[:4])
    assert added == ["7-h7"] and regrown["8-h8"].parent == "7-h7"


def test_new_rev_is_deterministic():
    a = revtree.new_rev("1-x", {"v": 1})
    assert a == revtree.new_rev("1-x", {"v": 1})
    assert a.startswith("2-")
    assert a != revtree.new_rev("1-x", {"v": 2})
    assert a != revtree.new_rev("1-x", {"v": 1}, deleted=True)
    assert revtree.new_rev(None, {}).startswith("1-")


# -- properties -----------------------------------------------------------------------

hashes = st.sampled_from(list("abcdefgh"))


@st.composite
def histories(draw):
    """A random set of paths (each a list of revs newest first) sharing roots."""
    paths = []
    for _ in range(draw(st.integers(1, 6))):
        length = draw(st.integers(1, 6))
        ids = [draw(hashes) for _ in range(length)]
        path = [f"{length - i}-{''.join(ids[:length - i])}" for i in range(length)]
        paths.append((path, draw(st.booleans())))
    return paths


def _build(paths):
    tree: dict = {}
    for path, deleted in paths:
        tree, _ = revtree.merge(tree, path, deleted)
    return tree


@settings(max_examples=200, deadline=None)
@given(histories(), st.randoms(use_true_random=False))
def test_winner_and_conflicts_independent_of_merge_order(paths, rnd: random.Random):
    shuffled = list(paths)
    rnd.shuffle(shuffled)
    one, two = _build(paths), _build(shuffled)
    assert set(revtree.leaves(one)) == set(revtree.leaves(two))
    if all(not deleted for _, deleted in paths) or len({p[0] for p, _ in paths}) == len(paths):
        # the deletion flag of a rev given twice with different flags depends on who came first
        assert revtree.winner(one) == revtree.winner(two)
        assert revtree.conflicts(one) == revtree.conflicts(two)


@settings(max_examples=200, deadline=None)
@given(histories())
def test_merging_a_known_path_changes_nothing(paths):
    tree = _build(paths)
    for path, deleted in paths:
        again, added = revtree.merge(tree, path, deleted)
        assert added == [] and again == tree


@settings(max_examples=200, deadline=None)
@given(histories(), st.integers(1, 4))
def test_stemming_keeps_every_leaf(paths, limit):
    tree = _build(paths)
    stemmed = revtree.stem(tree, limit)
    assert set(revtree.leaves(stemmed)) == set(revtree.leaves(tree))
    windows = set()
    for leaf in revtree.leaves(tree):
        window = revtree.ancestry(tree, leaf)[:limit]
        windows.update(window)
        # each leaf keeps (at least) its last `limit` revisions, linked
        assert revtree.ancestry(stemmed, leaf)[:limit] == window
    assert set(stemmed) == windows  # nothing older than `limit` from every leaf survives
    assert revtree.winner(stemmed) == revtree.winner(tree)


def test_first_generation_revisions_checked_too():
    assert revtree.path_from_revisions("1-a", {"start": 1, "ids": ["a"]}) == ["1-a"]
    for bad in [{"start": 5, "ids": ["a"]}, {"start": True, "ids": ["a"]}, {"start": 1, "ids": ["b"]}]:
        with pytest.raises(BadRequest):
            revtree.path_from_revisions("1-a", bad)


@given(histories(), st.integers(1, 4))
def test_merge_into_and_leaf_bookkeeping_agree_with_merge(paths, limit):
    """merge_into (in place, O(path)) builds the tree merge builds, and the leaf set
    kept by leaf_growth/update_leaves is exactly leaves() after every path, also on a
    stemmed tree whose roots grow back."""
    slow: dict = {}
    fast: dict = {}
    leaf_set: set = set()
    for i, (path, deleted) in enumerate(paths):
        if i == len(paths) // 2:  # stem half way: roots lose their parents
            slow = revtree.stem(slow, limit)
            fast = dict(slow)
            leaf_set = set(revtree.leaves(fast))
        slow, added_slow = revtree.merge(slow, path, deleted)
        growth = revtree.leaf_growth(fast, leaf_set, path)
        before = len(leaf_set)
        added, _regrown = revtree.merge_into(fast, path, deleted)
        revtree.update_leaves(fast, leaf_set, path, added)
        assert fast == slow and added == added_slow
        assert leaf_set == set(revtree.leaves(fast))
        assert len(leaf_set) <= before + growth

