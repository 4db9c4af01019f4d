"""Generate Replication ID: stable, and different exactly when the result would differ."""

from __future__ import annotations

import subprocess
import sys

from pouchsync_sync.replication.ids import filter_identity, generate_replication_id


def keep_a(doc: dict) -> bool:
    return doc.get("type") == "a"


def keep_b(doc: dict) -> bool:
    return doc.get("type") == "b"


def test_stable_and_hex() -> None:
    one = generate_replication_id("src", "tgt", doc_ids=["b", "a"], selector={"x": 1, "y": {"$gt": 2}})
    two = generate_replication_id("src", "tgt", doc_ids=["a", "b", "a"], selector={"y": {"$gt": 2}, "x": 1})
    assert one == two
    assert len(one) == 32 and int(one, 16) >= 0


def test_stable_across_processes() -> None:
    code = ("from pouchsync_sync.replication.ids import generate_replication_id as g;"
            "print(g('src', 'tgt', doc_ids=['a'], selector={'k': [1, 2]}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=None).stdout.strip()
    assert out == generate_replication_id("src", "tgt", doc_ids=["a"], selector={"k": [1, 2]})


def test_each_input_changes_the_id() -> None:
    base = generate_replication_id("src", "tgt")
    variants = {
        generate_replication_id("tgt", "src"),
        generate_replication_id("src2", "tgt"),
        generate_replication_id("src", "tgt2"),
        generate_replication_id("src", "tgt", doc_ids=[]),
        generate_replication_id("src", "tgt", doc_ids=["a"]),
        generate_replication_id("src", "tgt", selector={}),
        generate_replication_id("src", "tgt", selector={"a": 1}),
        generate_replication_id("src", "tgt", filter_fn=keep_a),
        generate_replication_id("src", "tgt", filter_fn=keep_b),
    }
    assert base not in variants
    assert len(variants) == 9


def test_filter_identity_names_and_hashes_source() -> None:
    ident = filter_identity(keep_a)
    assert ident is not None
    assert ident.startswith(f"{__name__}.keep_a:")
    assert filter_identity(keep_a) == ident
    assert filter_identity(None) is None
    f1 = lambda doc: doc.get("x") == 1  # noqa: E731
    f2 = lambda doc: doc.get("x") == 2  # noqa: E731
    assert filter_identity(f1) != filter_identity(f2)


def test_filter_identity_without_source_still_works() -> None:
    namespace: dict = {}
    exec("def dyn(doc):\n    return True\n", namespace)  # no source file to read
    ident = filter_identity(namespace["dyn"])
    assert ident is not None and "dyn" in ident
    assert filter_identity(len) == "builtins.len"
