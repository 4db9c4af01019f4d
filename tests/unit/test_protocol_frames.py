"""The shared frame table (tests/fixtures/protocol_frames.json) against the Python
protocol code; tests/js/test_node_frames.py checks the same table against pouchsync.js,
so the two implementations cannot drift apart. Every JSON example of docs/protocol.md
must be in the table, so the document cannot drift either."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pouchsync_sync.errors import ProtocolError
from pouchsync_sync.protocol import messages, ops

REPO = Path(__file__).resolve().parents[2]
TABLE = json.loads((REPO / "tests" / "fixtures" / "protocol_frames.json").read_text())


def _doc_examples() -> list[dict]:
    text = (REPO / "docs" / "protocol.md").read_text()
    frames = []
    for block in re.findall(r"```json\n(.*?)```", text, re.S):
        try:
            frames.append(json.loads(block))
        except ValueError:
            frames.extend(json.loads(line) for line in block.strip().splitlines())
    return frames


def test_every_json_example_of_the_protocol_doc_is_in_the_table():
    table = [json.loads(f["text"]) for f in TABLE["frames"] if f["valid"]]
    for frame in _doc_examples():
        assert frame in table, frame


@pytest.mark.parametrize("entry", TABLE["frames"], ids=lambda e: e["name"])
def test_frame(entry):
    if entry["valid"]:
        msg = messages.decode(entry["text"], sender=entry["sender"])
        assert msg["type"] == json.loads(entry["text"])["type"]
        if "op" in entry:
            assert ops.reply_problem(entry["op"], msg["ok"], entry["args"]) is None
    else:
        with pytest.raises(ProtocolError) as info:
            messages.decode(entry["text"], sender=entry["sender"])
        assert entry["problem"] in str(info.value)


@pytest.mark.parametrize("entry", TABLE["reply_shapes"], ids=lambda e: e["name"])
def test_reply_shape(entry):
    problem = ops.reply_problem(entry["op"], entry["ok"], entry["args"])
    if entry["valid"]:
        assert problem is None
    else:
        assert problem is not None and entry["problem"] in problem
