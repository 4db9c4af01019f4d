"""Revision trees, pure.

Theory of operation (CouchDB "Replication and conflict model",
https://docs.couchdb.org/en/stable/replication/conflicts.html, and the
``_revisions`` field of https://docs.couchdb.org/en/stable/api/document/common.html):

* A revision id is ``"<pos>-<hash>"``: ``pos`` counts edits from the document's
  creation (1-based), ``hash`` names the edit.
* A document's history is a tree of revisions. Each node knows its parent (``None``
  for a root, including a root left by stemming) and whether the edit was a
  deletion. The leaves are the open revisions.
* Replication sends a *path*: a revision with its ancestors newest first
  (``_revisions = {"start": pos, "ids": [hash, parent hash, ...]}``). Merging a path
  adds the nodes the tree lacks; merging is commutative and idempotent, which is
  what makes replicas converge whatever order updates arrive in.
* The winning revision is picked from the leaves the same way everywhere: a
  non-deleted leaf beats a deleted one, then the higher ``pos``, then the higher
  hash string. The other non-deleted leaves are the conflicts.
* Stemming keeps at most ``revs_limit`` revisions on every leaf's path and never
  drops a leaf.

A tree is a plain mapping ``rev -> Node``; no function here mutates its input.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from .errors import BadRequest

__all__ = [
    "Node",
    "Tree",
    "DEFAULT_REVS_LIMIT",
    "DEFAULT_MAX_LEAVES",
    "parse_rev",
    "path_from_revisions",
    "merge",
    "merge_into",
    "leaf_growth",
    "update_leaves",
    "leaves",
    "winner",
    "conflicts",
    "deleted_conflicts",
    "revisions",
    "stem",
    "new_rev",
    "descendant_leaves",
    "sort_key",
]

DEFAULT_REVS_LIMIT = 1000
#: most leaves (open revisions) a store lets one document have (``max_leaves``)
DEFAULT_MAX_LEAVES = 1000


class Node(NamedTuple):
    """One revision in a tree."""

    pos: int
    parent: str | None
    deleted: bool


Tree = Mapping[str, Node]


#: the largest revision position: JSON numbers above 2**53 are not exact for orjson or
#: JavaScript peers, so a larger one could be stored here but never synced intact
MAX_REV_POS = 2**53 - 1


def parse_rev(rev: Any) -> tuple[int, str]:
    """Split ``"N-hash"`` into ``(N, hash)``; ``BadRequest`` when malformed."""
    if not isinstance(rev, str):
        raise BadRequest("Invalid rev format")
    pos_text, sep, rev_hash = rev.partition("-")
    if not sep or not rev_hash or not pos_text.isdigit() or not pos_text.isascii():
        raise BadRequest(f"Invalid rev format: {rev!r}")
    if len(pos_text) > 16 or not 1 <= (pos := int(pos_text)) <= MAX_REV_POS:
        raise BadRequest(f"Invalid rev format: {rev[:40]!r}")
    return pos, rev_hash


def path_from_revisions(rev: Any, revisions: Any = None) -> list[str]:
    """The path ``[rev, parent, grandparent, ...]`` given by ``rev`` and ``_revisions``
    (both unchecked JSON: ``BadRequest`` when malformed)."""
    pos, rev_hash = parse_rev(rev)
    if revisions is None:
        return [rev]
    if revisions.__class__ is dict and len(revisions.get("ids") or ()) == 1 \
            and revisions.get("start").__class__ is int and pos == 1 \
            and revisions["start"] == 1 and revisions["ids"][0] == rev_hash:
        return [rev]  # the common first generation, already fully checked
    if not isinstance(revisions, dict):
        raise BadRequest("_revisions must be an object with start and ids")
    start = revisions.get("start")
    ids = revisions.get("ids")
    if (not isinstance(start, int) or isinstance(start, bool) or start < 1
            or not isinstance(ids, list) or not ids):
        raise BadRequest("_revisions must have an integer start >= 1 and a non-empty ids list")
    if len(ids) > start:
        raise BadRequest("_revisions has more ids than its start allows")
    if not all(item.__class__ is str and item for item in ids):
        bad = next(item for item in ids if not isinstance(item, str) or not item)
        raise BadRequest(f"Invalid revision id in _revisions: {bad!r}")
    if start != pos or ids[0] != rev_hash:
        raise BadRequest(f"_revisions does not match _rev {rev!r}")
    return [f"{start - i}-{h}" for i, h in enumerate(ids)]


def merge(tree: Tree, path: Sequence[str],
          deleted: bool = False) -> tuple[dict[str, Node], list[str]]:
    """Merge a path (newest first) into ``tree``; return ``(new_tree, revs_added)``.

    ``deleted`` applies to the path's newest revision. Revisions already present keep
    their flags; a stemmed root regains its parent when a longer path arrives. The path
    holds consecutive generations, as ``path_from_revisions`` gives.
    """
    new: dict[str, Node] = dict(tree)
    added, _regrown = merge_into(new, path, deleted)
    return new, added


def merge_into(tree: dict[str, Node], path: Sequence[str], deleted: bool = False
               ) -> tuple[list[str], list[str]]:
    """``merge`` into a tree the caller owns, changed in place, in O(len(path)) whatever
    the size of the tree (merging n revisions one by one with ``merge`` copies the tree
    each time: O(n**2)). Returns ``(revs_added, existing_revs_whose_parent_regrew)``."""
    added: list[str] = []
    regrown: list[str] = []
    top = parse_rev(path[0])[0] if path else 0
    for index, rev in enumerate(path):
        pos = top - index  # a path is consecutive generations, newest first
        parent = path[index + 1] if index + 1 < len(path) else None
        existing = tree.get(rev)
        if existing is None:
            tree[rev] = Node(pos, parent, deleted if index == 0 else False)
            added.append(rev)
        elif existing.parent is None and parent is not None:
            tree[rev] = existing._replace(parent=parent)  # a stemmed root grows back
            regrown.append(rev)
    return added, regrown


def leaf_growth(tree: Tree, leaf_set: set[str] | frozenset[str], path: Sequence[str]) -> int:
    """How many leaves merging ``path`` adds to ``tree`` (whose leaves are ``leaf_set``):
    1 when its newest revision is new and does not extend a leaf, else 0. O(len(path))."""
    if not path or path[0] in tree:
        return 0
    for rev in path[1:]:
        if rev in tree:
            return 0 if rev in leaf_set else 1
    return 1


def update_leaves(tree: Tree, leaf_set: set[str], path: Sequence[str],
                  added: Sequence[str]) -> None:
    """Update ``leaf_set`` (changed in place) after ``merge_into(tree, path)`` added
    ``added``: O(len(path))."""
    if not path:
        return
    if added and added[0] == path[0]:
        leaf_set.add(path[0])
    for index in range(len(path) - 1):
        if tree[path[index]].parent == path[index + 1]:
            leaf_set.discard(path[index + 1])


def leaves(tree: Tree) -> list[str]:
    """The open revisions (nodes nobody descends from), winner first."""
    if len(tree) == 1:
        return list(tree)
    parents = {node.parent for node in tree.values()}
    return sorted((rev for rev in tree if rev not in parents),
                  key=lambda rev: sort_key(tree, rev), reverse=True)


def sort_key(tree: Tree, rev: str) -> tuple[bool, int, str]:
    """CouchDB's order of leaves: live before deleted, then pos, then hash."""
    node = tree[rev]
    return (not node.deleted, node.pos, rev.partition("-")[2])


def winner(tree: Tree) -> str:
    """The winning revision; ``ValueError`` on an empty tree."""
    if not tree:
        raise ValueError("empty revision tree")
    return leaves(tree)[0]


def conflicts(tree: Tree) -> list[str]:
    """Non-deleted leaves other than the winner, in leaf order."""
    all_leaves = leaves(tree)
    return [rev for rev in all_leaves[1:] if not tree[rev].deleted]


def deleted_conflicts(tree: Tree) -> list[str]:
    """Deleted leaves other than the winner."""
    all_leaves = leaves(tree)
    return [rev for rev in all_leaves[1:] if tree[rev].deleted]


def ancestry(tree: Tree, rev: str) -> list[str]:
    """``[rev, parent, ...]`` as far as the tree knows."""
    chain = [rev]
    node = tree[rev]
    while node.parent is not None and node.parent in tree:
        chain.append(node.parent)
        node = tree[node.parent]
    return chain


def revisions(tree: Tree, rev: str) -> dict[str, Any]:
    """The ``_revisions`` object of ``rev``: ``{"start": pos, "ids": [hashes newest first]}``."""
    chain = ancestry(tree, rev)
    return {"start": tree[rev].pos, "ids": [r.partition("-")[2] for r in chain]}


def descendant_leaves(tree: Tree, rev: str) -> list[str]:
    """Leaves whose ancestry contains ``rev`` (``rev`` itself when it is a leaf)."""
    return [leaf for leaf in leaves(tree) if rev in ancestry(tree, leaf)]


def stem(tree: Tree, limit: int = DEFAULT_REVS_LIMIT) -> dict[str, Node]:
    """Keep at most ``limit`` revisions on each leaf's path; never drop a leaf."""
    if limit < 1:
        raise ValueError("revs_limit must be at least 1")
    if not tree:
        return {}
    positions = [node.pos for node in tree.values()]
    if max(positions) - min(positions) < limit:
        return dict(tree)
    keep: set[str] = set()
    linked: set[str] = set()  # revs whose parent link lies inside some leaf's window
    for leaf in leaves(tree):
        window = ancestry(tree, leaf)[:limit]
        keep.update(window)
        linked.update(window[:-1])
    return {rev: (node if rev in linked else node._replace(parent=None))
            for rev, node in tree.items() if rev in keep}


def new_rev(parent: str | None, body: Mapping[str, Any], deleted: bool = False) -> str:
    """A deterministic revision id for a normal edit.

    Like CouchDB, the hash depends on the parent revision, the deletion flag and the
    body (attachment digests included), so the same edit made twice on the same parent
    yields the same revision, on any replica.
    """
    pos = parse_rev(parent)[0] + 1 if parent else 1
    try:
        material = json.dumps([parent, bool(deleted), body], sort_keys=True,
                              separators=(",", ":"), ensure_ascii=False, default=str)
    except RecursionError as exc:
        # a body nested just under the interpreter's limit passes the store's own
        # encoding a few frames up and fails here (one level deeper): the same 400
        raise BadRequest("Document is nested too deeply") from exc
    return f"{pos}-{hashlib.md5(material.encode('utf-8')).hexdigest()}"


def build(nodes: Iterable[tuple[str, str | None, bool]]) -> dict[str, Node]:
    """A tree from ``(rev, parent, deleted)`` rows (as stored)."""
    return {rev: Node(parse_rev(rev)[0], parent, bool(deleted)) for rev, parent, deleted in nodes}
