"""A sync client in its own process, for tests that SIGKILL it.

    python3 -m tests.fault.client_proc pull  --url ws://... --file local.sqlite
    python3 -m tests.fault.client_proc write --file local.sqlite

``pull``: one-shot pull of database ``fault`` into the SQLite file (batch size 50),
printing ``PULLED <n>`` after every batch written. ``write``: writes documents (with
an attachment each) to the file forever, printing ``WROTE <id>`` once each write has
returned. Either way the parent kills it at a moment of its choosing.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
import threading


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["pull", "write"])
    parser.add_argument("--url")
    parser.add_argument("--file", required=True)
    args = parser.parse_args()

    from pouchsync_sync import Client, LocalDatabase, signals

    db = LocalDatabase(args.file, name="fault")
    print("READY", flush=True)
    if args.mode == "write":
        i = 0
        while True:
            i += 1
            doc_id = f"w-{os.getpid()}-{i:06d}"
            payload = base64.b64encode(os.urandom(2048)).decode()
            result = db.bulk_docs([{"_id": doc_id, "i": i, "pad": "p" * 4096,
                           "_attachments": {"a.bin": {"content_type": "application/octet-stream",
                                                      "data": payload}}}])
            assert result[0].get("ok"), result
            print(f"WROTE {doc_id}", flush=True)

    client = Client(initial_delay=0.05, max_delay=0.2, jitter=0.0)
    done = threading.Event()

    def on_change(sender: object, **kw: object) -> None:
        counts = kw.get("counts") or {}
        print(f"PULLED {counts.get('docs_pulled', 0)}", flush=True)  # type: ignore[union-attr]

    sync = client.connect(args.url).sync(db, credentials={"token": "fault-token"},
                                         direction="pull", batch_size=50)
    signals.sync_change.connect(on_change, sender=sync, weak=False)
    result = sync.wait(120)
    print(f"DONE {result.state.value} {result.docs_pulled}", flush=True)
    done.set()
    client.close()
    db.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
