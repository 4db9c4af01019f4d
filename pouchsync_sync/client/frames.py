"""The client's outgoing text frames, masked fast.

RFC 6455 §5.3: every frame a client sends is masked, XOR with a random 4-byte key.
websocket-client does it with one big-integer XOR over the payload (about 12 ns a byte
here, a fifth of a push's client CPU). ``mask`` does the same XOR with four
``bytes.translate`` passes over every fourth byte (each pass one 256-byte table), about
ten times faster, and ``text_frame`` builds a websocket-client frame that uses it: the
library still picks the key (``os.urandom``) and writes the header.
"""

from __future__ import annotations

import websocket

__all__ = ["mask", "text_frame"]

#: _XOR[k] maps each byte b to b ^ k
_XOR = [bytes(b ^ k for b in range(256)) for k in range(256)]


def mask(key: bytes, data: bytes) -> bytes:
    """``data`` XOR the 4-byte ``key`` repeated (masking and unmasking are the same)."""
    if len(key) != 4:
        raise ValueError("a masking key is 4 bytes")
    buf = bytearray(data)
    for i in range(4):
        buf[i::4] = buf[i::4].translate(_XOR[key[i]])
    return bytes(buf)


class _TextFrame(websocket.ABNF):
    """A final, masked text frame whose payload is masked by ``mask``."""

    def _get_masked(self, mask_key: str | bytes) -> bytes:
        if isinstance(mask_key, str):
            mask_key = mask_key.encode("latin-1")
        data = self.data.encode("utf-8") if isinstance(self.data, str) else self.data
        return mask_key + mask(mask_key, data)


def text_frame(payload: bytes) -> websocket.ABNF:
    """A text frame of the UTF-8 ``payload`` for ``WebSocket.send_frame``."""
    return _TextFrame(fin=1, opcode=websocket.ABNF.OPCODE_TEXT, mask_value=1, data=payload)
