"""Cross-check: one ``new_edits=False`` history written through LocalDatabase and through
CouchDatabase (the real CouchDB-protocol server) gives the same winner, the same
conflicts and the same ``_revisions`` for every document."""

from __future__ import annotations

import random
from typing import Any

import pytest

from pouchsync_sync import LocalDatabase, NotFound


def _random_history(rng: random.Random, doc_id: str) -> list[dict[str, Any]]:
    """Docs (leaf + ``_revisions``) for a random revision tree of one document."""
    def new_id() -> str:
        return "%032x" % rng.getrandbits(128)

    root = [new_id()]
    branches = [root]
    for _ in range(rng.randint(0, 4)):
        base = rng.choice(branches)
        cut = rng.randint(1, len(base))
        branch = base[:cut] + [new_id() for _ in range(rng.randint(1, 4))]
        branches.append(branch)
    for branch in branches:
        if rng.random() < 0.3:
            branch.extend(new_id() for _ in range(rng.randint(1, 3)))
    docs = []
    for branch in branches:
        deleted = rng.random() < 0.25
        doc: dict[str, Any] = {"_id": doc_id, "_rev": f"{len(branch)}-{branch[-1]}",
                               "_revisions": {"start": len(branch), "ids": branch[::-1]},
                               "leaf": branch[-1][:6]}
        if deleted:
            doc["_deleted"] = True
        docs.append(doc)
    return docs


def _state(db: Any, doc_ids: list[str]) -> dict[str, Any]:
    """Everything the cross-check compares, per document."""
    out: dict[str, Any] = {}
    for doc_id in doc_ids:
        leaves = db.get(doc_id, open_revs="all", revs=True)
        per_leaf = {}
        for entry in leaves:
            doc = entry["ok"]
            per_leaf[doc["_rev"]] = (doc["_revisions"], bool(doc.get("_deleted")),
                                     doc.get("leaf"))
        try:
            winner = db.get(doc_id, conflicts=True, revs=True)
            # compared as sets: pouchdb-server lists same-depth conflicts in another order
            summary = (winner["_rev"], sorted(winner.get("_conflicts", [])),
                       winner["_revisions"])
        except NotFound as exc:
            summary = ("not_found", exc.reason)
        out[doc_id] = {"winner": summary, "leaves": per_leaf}
    changes = db.changes(style="all_docs")["results"]
    out["_changes"] = sorted((row["id"], sorted(c["rev"] for c in row["changes"]),
                              bool(row.get("deleted"))) for row in changes)
    out["_all_docs"] = [(r["id"], r["value"]["rev"]) for r in db.all_docs()["rows"]]
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_same_history_same_trees(backend_couch, seed):
    rng = random.Random(seed)
    doc_ids = [f"doc-{seed}-{n:03d}" for n in range(25)]
    docs = [d for doc_id in doc_ids for d in _random_history(rng, doc_id)]
    rng.shuffle(docs)
    replay = rng.sample(docs, k=len(docs) // 3)  # written twice: must change nothing
    batches = [docs[i:i + 17] for i in range(0, len(docs), 17)] + [replay]

    couch = backend_couch(f"cross{seed}")
    local = LocalDatabase(":memory:")
    try:
        for batch in batches:
            assert couch.bulk_docs(batch, new_edits=False) == []
            assert local.bulk_docs(batch, new_edits=False) == []
        want, got = _state(local, doc_ids), _state(couch, doc_ids)
        for doc_id in doc_ids:
            assert got[doc_id] == want[doc_id], doc_id
        assert got["_changes"] == want["_changes"]
        assert got["_all_docs"] == want["_all_docs"]
        # both know every leaf. (Only leaves: pouchdb-server calls an ancestor it has
        # no body for "missing", where CouchDB counts it as known.)
        leaves = {doc_id: list(want[doc_id]["leaves"]) for doc_id in doc_ids}
        assert couch.revs_diff(leaves) == {} == local.revs_diff(leaves)
        written: dict[str, list[str]] = {}
        for d in docs:
            written.setdefault(d["_id"], []).append(d["_rev"])
        assert local.revs_diff(written) == {}
    finally:
        local.close()
