"""The client's masked text frames: the same bytes websocket-client would send."""

from __future__ import annotations

import os

import pytest
import websocket
from hypothesis import given, settings
from hypothesis import strategies as st

from pouchsync_sync.client.frames import mask
from pouchsync_sync.client.wsclient import text_frame
from pouchsync_sync.protocol import messages


@settings(max_examples=300, deadline=None)
@given(key=st.binary(min_size=4, max_size=4), data=st.binary(max_size=2000))
def test_mask_is_websocket_clients_xor(key: bytes, data: bytes) -> None:
    assert mask(key, data) == websocket.ABNF.mask(key, data)
    assert mask(key, mask(key, data)) == data  # its own inverse


def test_mask_needs_a_four_byte_key() -> None:
    with pytest.raises(ValueError):
        mask(b"abc", b"data")


@pytest.mark.parametrize("size", [0, 5, 125, 126, 65535, 65536, 300_001])
def test_a_text_frame_formats_as_websocket_client_formats_it(size: int) -> None:
    payload = os.urandom(size // 2).hex().encode("ascii")[:size]
    key = os.urandom(4)
    ours = text_frame(payload)
    theirs = websocket.ABNF.create_frame(payload.decode("ascii"), websocket.ABNF.OPCODE_TEXT)
    ours.get_mask_key = theirs.get_mask_key = lambda n: key
    assert ours.format() == theirs.format()


def test_encode_bytes_is_the_utf8_of_encode() -> None:
    msg = {"type": "call", "ch": 1, "id": 2, "op": "put", "args": {"doc": {"_id": "é", "v": [1.5, None]}}}
    assert messages.encode_bytes(msg) == messages.encode(msg).encode("utf-8")
