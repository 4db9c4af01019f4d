"""Where a pull's and a push's CPU goes, stage by stage, single-threaded, no network.

    python3 bench/diagnose.py [--docs 20000] [--batch 100] [--profile]

Times with ``time.process_time`` (CPU seconds of this process, so other processes on a
busy machine inflate it little) each step a one-shot sync does per batch, on the same
small docs as the sync benchmarks:

- pull server: ``changes_texts(since, limit, max_bytes)`` on the embedded store (the
  first-generation docs as their stored JSON text), then encoding the reply message
  (``protocol.messages.encode``);
- pull client: decoding that message and checking its shape, splitting off the text
  rows and their sizes (``texts_in_changes``, ``text_sizes``), ``check_texts`` (the
  replicator's read-ahead thread does it) and ``write_missing_texts`` into the target,
  the checkpoint ``put`` (one per batch);
- push server: decoding the ``write_missing_texts`` call of the same batch, checking its
  arguments, ``write_missing_texts`` into the server's store (rows checked there), encoding
  the reply;
- for reference, the whole ``replicate()`` local -> local in-process (``batches_limit=1``).

``--profile`` adds a cProfile (CPU time) of the client's write (``write_missing_texts``).
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
from pouchsync_sync.replication.batch import text_sizes, texts_in_changes  # noqa: E402


def stages(count: int, batch: int) -> dict[str, float]:
    """Microseconds of CPU per doc, per stage."""
    scratch = OUT / "diagnose"
    scratch.mkdir(parents=True, exist_ok=True)
    source = LocalDatabase(str(seed_file(count)))
    target_path = scratch / "target.sqlite"
    remove_db(target_path)
    target = LocalDatabase(str(target_path))
    cost: dict[str, float] = {k: 0.0 for k in (
        "pull server: changes_texts", "pull server: encode reply",
        "pull client: decode + check reply", "pull client: text rows + sizes",
        "pull client: check_texts", "pull client: write_missing_texts",
        "pull client: checkpoint put",
        "push server: decode + check call", "push server: write_missing_texts",
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
        res = timed("pull server: changes_texts", lambda: source.changes_texts(
            since=since, limit=batch, max_bytes=8 * 1024 * 1024))
        if not res["results"]:
            break
        text = timed("pull server: encode reply", lambda: wire.encode(wire.reply_ok(1, 7, res)))
        rows = timed("pull client: decode + check reply", lambda: ops.decode_result(
            "changes_texts", wire.decode(text, sender="server")["ok"]))["results"]
        texts = timed("pull client: text rows + sizes", lambda: _texts(rows))
        checked = timed("pull client: check_texts", lambda: target.check_texts(texts))
        timed("pull client: write_missing_texts", lambda: target.write_missing_texts(checked))
        checkpoint["last_seq"] = res["last_seq"]
        checkpoint["_rev"] = timed("pull client: checkpoint put", lambda: target.put(checkpoint))["rev"]
        # the same batch pushed: the call as the server receives and runs it
        call = wire.encode({"type": "call", "ch": 1, "id": 9, "op": "write_missing_texts",
                            "args": {"rows": texts}})
        kwargs = timed("push server: decode + check call", lambda: ops.validate_call(
            "write_missing_texts", wire.decode(call, sender="client")["args"]))
        answer = timed("push server: write_missing_texts",
                       lambda: pushed.write_missing_texts(kwargs["rows"]))
        timed("push server: encode reply", lambda: wire.encode(wire.reply_ok(
            1, 9, {"written": answer[0], "failures": answer[1]})))
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


def _texts(rows: list[list[Any]]) -> list[tuple[str, str, str]]:
    texts, _rest = texts_in_changes(rows)
    text_sizes(texts)
    return texts


def profile_write(count: int, batch: int, top: int = 18) -> str:
    scratch = OUT / "diagnose"
    scratch.mkdir(parents=True, exist_ok=True)
    source = LocalDatabase(str(seed_file(count)))
    rows, _rest = texts_in_changes(source.changes_texts(limit=count)["results"])
    source.close()
    path = scratch / "profile.sqlite"
    remove_db(path)
    target = LocalDatabase(str(path))
    prof = cProfile.Profile(time.process_time)
    prof.enable()
    for i in range(0, len(rows), batch):
        target.write_missing_texts(target.check_texts(rows[i:i + batch]))
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
