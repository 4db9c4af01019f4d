"""Blinker signals, one per event of the original library.

Sender is the ``Client`` (``client_*``) or the ``Sync`` (``sync_*``); subscribe to one
sender with ``signals.sync_change.connect(fn, sender=my_sync)``. Receivers run on the
library's threads (the client's connection thread, a sync's thread). A receiver that
raises is logged and ignored: it never kills a connection or a sync (see ``emit``).

=====================  ======================================================
signal                 keyword arguments
=====================  ======================================================
``client_connect``     ``url`` (without credentials), ``version``
``client_disconnect``  ``error`` (the exception, or ``None`` on close)
``client_reconnect``   ``attempt`` (1-based), ``delay`` (seconds before it)
``sync_change``        ``direction`` ("push"/"pull"), ``docs``, ``counts``
``sync_paused``        ``direction``, ``error`` (``direction=None`` and the error:
                       the sync went offline and will retry)
``sync_active``        ``direction``
``sync_denied``        ``error`` (a ``Denied``)
``sync_complete``      ``result`` (a ``SyncResult``)
``sync_error``         ``error``
=====================  ======================================================
"""

from __future__ import annotations

import logging
from typing import Any

from blinker import Namespace, Signal

log = logging.getLogger(__name__)

_signals = Namespace()

client_connect: Signal = _signals.signal("client-connect")
client_disconnect: Signal = _signals.signal("client-disconnect")
client_reconnect: Signal = _signals.signal("client-reconnect")
sync_change: Signal = _signals.signal("sync-change")
sync_paused: Signal = _signals.signal("sync-paused")
sync_active: Signal = _signals.signal("sync-active")
sync_denied: Signal = _signals.signal("sync-denied")
sync_complete: Signal = _signals.signal("sync-complete")
sync_error: Signal = _signals.signal("sync-error")

__all__ = [
    "client_connect", "client_disconnect", "client_reconnect",
    "sync_change", "sync_paused", "sync_active", "sync_denied", "sync_complete",
    "sync_error", "emit",
]


def emit(signal: Signal, sender: Any, **kwargs: Any) -> None:
    """Send ``signal`` to each receiver in turn; log (never raise) a receiver's error.

    Skipped at once when nobody listens (it runs per batch). Call it without holding
    any lock.
    """
    if not signal.receivers:
        return
    for receiver in signal.receivers_for(sender):
        try:
            receiver(sender, **kwargs)
        except Exception:  # noqa: BLE001 - a user's receiver must not kill a sync
            log.exception("receiver %r of signal %r raised; ignored", receiver,
                          getattr(signal, "name", signal))
