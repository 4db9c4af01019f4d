"""Where a pull's and a push's CPU goes, stage by stage, single-threaded, no network.

    python3 bench/diagnose.py [--docs 20000] [--batch 100] [--profile]

Times with ``time.process_time`` (CPU seconds of this process, so other processes on a
busy machine inflate it little) each step a one-shot sync does per batch, on the same
small docs as the sync benchmarks:

- pull server: ``changes(since, limit, include_docs, style=all_docs)`` on the embedded
  store, then encoding the reply message (``protocol.messages.encode``);
- pull client: decoding that message and checking its shape, picking the whole
  first-generation docs (``whole_docs_in_changes``) and their sizes,
  ``write_missing`` into the target, the checkpoint ``put`` (one per batch);
- push server: decoding the ``write_missing`` call of the same batch, checking its
  arguments, ``write_missing`` into the server's store, encoding the reply;
- for reference, the whole ``replicate()`` local -> local in-process (``batches_limit=1``).

``--profile`` adds a cProfile (CPU time) of the client's write (``write_missing``).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import OUT, print_machine, remove_db, seed_file  # noqa: E402

from pouchsync_sync import LocalDatabase, replicate  # noqa: E402
from pouchsync_sync.protocol import messages as wire  # noqa: E402
from pouchsync_sync.protocol import ops  # noqa: E402
from pouchsync_sync.replication.batch import doc_size, whole_docs_in_changes  # noqa: E402


def stages(count: int, batch: int) -> dict[str, float]:
    """Microseconds of CPU per doc, per stage."""
    scratch = OUT / "diagnose"
    scratch.mkdir(parents=True, exist_ok=True)
    source = LocalDatabase(str(seed_file(count)))
    target_path = scratch / "target.sqlite"
    remove_db(target_path)
    target = LocalDatabase(str(target_path))
    cost: dict[str, float] = {k: 0.0 for k in (
        "pull server: changes(include_docs)", "pull server: encode reply",
        "pull client: decode + check reply", "pull client: whole docs + sizes",
        "pull client: write_missing", "pull client: checkpoint put",
        "push server: decode + check call", "push server: write_missing",
        "push server: encode reply")}

    def timed(key: str, fn: Callable[[], Any]) -> Any:
        t0 = time.process_time()
        out = fn()
        cost[key] += time.process_time() - t0
        return out

    since: Any = 0
    checkpoint: dict[str, Any] = {"_id": "_local/diagnose"}
    pushed = LocalDatabase(":memory:")  # the push's server store
    while True:
        res = timed("pull server: changes(include_docs)", lambda: source.changes(
            since=since, limit=batch, include_docs=True, style="all_docs"))
        if not res["results"]:
            break
        text = timed("pull server: encode reply", lambda: wire.encode(wire.reply_ok(1, 7, res)))
        rows = timed("pull client: decode + check reply", lambda: ops.decode_result(
            "changes", wire.decode(text, sender="server")["ok"]))["results"]
        docs = timed("pull client: whole docs + sizes", lambda: _whole(rows))
        timed("pull client: write_missing", lambda: target.write_missing(docs))
        checkpoint["last_seq"] = res["last_seq"]
        checkpoint["_rev"] = timed("pull client: checkpoint put", lambda: target.put(checkpoint))["rev"]
        # the same batch pushed: the call as the server receives and runs it
        call = wire.encode({"type": "call", "ch": 1, "id": 9, "op": "write_missing",
                            "args": {"docs": docs}})
        kwargs = timed("push server: decode + check call", lambda: ops.validate_call(
            "write_missing", wire.decode(call, sender="client")["args"]))
        answer = timed("push server: write_missing", lambda: ops.write_missing_answer(
            kwargs["docs"], *pushed.write_missing(kwargs["docs"])))
        timed("push server: encode reply", lambda: wire.encode(wire.reply_ok(1, 9, answer)))
        since = res["last_seq"]
    pushed.close()
    target.close()
    remove_db(target_path)
    per_doc = {k: v / count * 1e6 for k, v in cost.items()}

    # the whole replication in-process, for reference
    target = LocalDatabase(str(target_path))
    t0 = time.process_time()
    result = replicate(source, target, batch_size=batch, batches_limit=1)
    per_doc["reference: replicate() local->local in-process, all of it"] = (
        (time.process_time() - t0) / max(result.docs_written, 1) * 1e6)
    target.close()
    remove_db(target_path)
    source.close()
    return per_doc


def _whole(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    docs, _rest = whole_docs_in_changes(rows)
    for doc in docs:
        doc_size(doc)
    return docs


def profile_write(count: int, batch: int, top: int = 18) -> str:
    scratch = OUT / "diagnose"
    scratch.mkdir(parents=True, exist_ok=True)
    source = LocalDatabase(str(seed_file(count)))
    res = source.changes(limit=count, include_docs=True, style="all_docs")
    docs = []
    for r in res["results"]:
        doc = dict(r["doc"])
        pos, _, rev_hash = doc["_rev"].partition("-")
        doc["_revisions"] = {"start": int(pos), "ids": [rev_hash]}
        docs.append(doc)
    source.close()
    path = scratch / "profile.sqlite"
    remove_db(path)
    target = LocalDatabase(str(path))
    prof = cProfile.Profile(time.process_time)
    prof.enable()
    for i in range(0, len(docs), batch):
        target.write_missing(docs[i:i + batch])
    prof.disable()
    target.close()
    remove_db(path)
    import io
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    return buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    print_machine()
    per_doc = stages(args.docs, args.batch)
    for key, us in per_doc.items():
        print(f"  {us:7.1f} us/doc  {key}")
    if args.profile:
        print(profile_write(args.docs, args.batch))
    OUT.mkdir(exist_ok=True)
    (OUT / "diagnose.json").write_text(json.dumps(per_doc, indent=1))


if __name__ == "__main__":
    main()
