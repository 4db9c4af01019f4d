"""A server that breaks protocol v1 on purpose, for the JS client's bad-input tests.

Built on tests/fault/hostile.py's ``HostileServer`` (real werkzeug + simple-websocket,
threads named ``pouchsync-test-hostile...``, joined by ``close()``); ``mode`` says what
it does wrong: ``version`` (refuses the client's versions, then closes 1002),
``malformed`` / ``binary`` / ``oversized`` / ``bad-granted`` (a bad frame in answer to
the first ``open``), ``no-welcome`` (never answers the hello).
"""

from __future__ import annotations

import json
from typing import Any

import simple_websocket

from tests.fault.hostile import WELCOME, HostileServer

OVERSIZED = 200_000  # characters of the oversized frame; clients set maxReceiveSize below it


class BadServer(HostileServer):
    def __init__(self, db: Any, mode: str) -> None:
        self.mode = mode
        super().__init__(db, {})

    def _serve(self, ws: Any) -> None:
        hello = json.loads(ws.receive(timeout=10))
        assert hello["type"] == "hello", hello
        if self.mode == "version":
            ws.send(json.dumps({"type": "error", "status": 400, "error": "unsupported_version",
                                "reason": f"server speaks versions [7], client offered {hello['versions']}",
                                "fatal": True}))
            ws.close(reason=1002)
            return
        if self.mode == "no-welcome":
            while ws.receive(timeout=30) is not None:  # until the client gives up and closes
                pass
            return
        ws.send(json.dumps(WELCOME))
        msg = json.loads(ws.receive(timeout=10))
        assert msg["type"] == "open", msg
        if self.mode == "malformed":
            ws.send('{"type": "granted", "ch": ')
        elif self.mode == "binary":
            ws.send(b"\x00\x01binary")
        elif self.mode == "oversized":
            ws.send(json.dumps({"type": "granted", "ch": msg["ch"], "db": msg["db"],
                                "uuid": "u" * OVERSIZED}))
        elif self.mode == "bad-granted":
            ws.send(json.dumps({"type": "granted", "ch": msg["ch"], "db": msg["db"]}))
        else:
            raise AssertionError(f"unknown mode {self.mode!r}")
        try:
            while ws.receive(timeout=30) is not None:
                pass
        except simple_websocket.ConnectionClosed:
            pass
