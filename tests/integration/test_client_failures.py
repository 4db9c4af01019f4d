"""What a client says when a URL does not lead to a sync server it can use (issue 17):
real sockets on 127.0.0.1 against real HTTP and WebSocket servers that are not ours
(fakes at the seam: the network), each failure its own ``TransportError`` subclass,
retried only when a retry can help.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Callable, Iterator

import pytest
import simple_websocket
from werkzeug.serving import make_server

import pouchsync_sync as ps
from pouchsync_sync import signals
from pouchsync_sync.cli import EXIT_UNREACHABLE, EXIT_WRONG_SERVER, describe

WAIT = 30.0
SECRET_BODY = "<!doctype html><title>a page with private-marker-7q</title>"


class Site:
    """A WSGI app served on 127.0.0.1 in a thread this fixture owns."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.http = make_server("127.0.0.1", 0, app, threaded=True)
        self.thread = threading.Thread(target=self.http.serve_forever,
                                       kwargs={"poll_interval": 0.1}, name="test-site",
                                       daemon=True)
        self.thread.start()
        self.url = f"ws://127.0.0.1:{self.http.server_port}/"

    def stop(self) -> None:
        self.http.shutdown()
        self.http.server_close()
        self.thread.join(WAIT)


@pytest.fixture
def site() -> Iterator[Callable[[Callable[..., Any]], Site]]:
    started: list[Site] = []

    def start(app: Callable[..., Any]) -> Site:
        started.append(Site(app))
        return started[-1]

    yield start
    for s in started:
        s.stop()


def http_answer(status: str) -> Callable[..., Any]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        body = SECRET_BODY.encode()
        start_response(status, [("Content-Type", "text/html"), ("Content-Length", str(len(body)))])
        return [body]
    return app


def websocket_answer(reply: Callable[[dict[str, Any]], Any]) -> Callable[..., Any]:
    """A WebSocket server that reads one message and sends ``reply(message)``."""
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        ws = simple_websocket.Server(environ)
        try:
            hello = json.loads(ws.receive(timeout=WAIT))
            ws.send(json.dumps(reply(hello)))
            ws.receive(timeout=2.0)  # the client's close, or a bounded wait
        except simple_websocket.ConnectionClosed:
            return []  # the client hung up first: nothing to close
        try:
            ws.close()
        except simple_websocket.ConnectionClosed:
            pass  # closed by the client meanwhile
        return []
    return app


def attempts_until_failure(url: str, max_attempts: int = 3) -> tuple[ps.PouchSyncError, int]:
    """The error a client gives up with on ``url``, and how many reconnects it scheduled."""
    client = ps.create_client(max_attempts=max_attempts, initial_delay=0.01, max_delay=0.05)
    retries: list[Any] = []

    def on_reconnect(sender: Any, **_: Any) -> None:
        retries.append(sender)

    signals.client_reconnect.connect(on_reconnect, sender=client)
    try:
        client.connect(url)
        with pytest.raises(ps.TransportError) as failed:
            client.wait_connected(WAIT)
        sync = client.sync(ps.LocalDatabase(":memory:", name="x"))
        with pytest.raises(type(failed.value)):  # a sync ends with the same error
            sync.wait(WAIT)
    finally:
        signals.client_reconnect.disconnect(on_reconnect, sender=client)
        client.close()
    return failed.value, len(retries)


def test_connection_refused_is_unreachable_and_retried() -> None:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens
    error, retries = attempts_until_failure(f"ws://127.0.0.1:{port}/")
    assert type(error) is ps.Unreachable and error.retryable
    assert retries == 2
    assert str(error) == (f"gave up connecting after 3 attempts: ws://127.0.0.1:{port}/ "
                          f"refused the connection (is the server running?)")
    assert describe(error)[1] == EXIT_UNREACHABLE


def test_a_single_attempt_is_singular() -> None:
    error, retries = attempts_until_failure("ws://127.0.0.1:1/", max_attempts=1)
    assert retries == 0 and "after 1 attempt:" in str(error)


@pytest.mark.parametrize("status", ["404 NOT FOUND", "400 BAD REQUEST", "200 OK"])
def test_an_http_answer_is_not_a_sync_server_and_not_retried(site: Any, status: str) -> None:
    s = site(http_answer(status))
    error, retries = attempts_until_failure(s.url)
    assert type(error) is ps.NotASyncServer and not error.retryable
    code = int(status.split()[0])
    assert error.status == code and retries == 0
    text = str(error)
    assert text.startswith(f"not a sync server at {s.url}: it answered HTTP {code} ")
    assert "check the URL's path" in text and "/sync" in text
    assert "private-marker" not in text and "<" not in text  # never the body
    assert describe(error) == (f"wrong URL: {text}", EXIT_WRONG_SERVER)


def test_a_503_from_a_proxy_is_retried(site: Any) -> None:
    s = site(http_answer("503 SERVICE UNAVAILABLE"))
    error, retries = attempts_until_failure(s.url)
    assert type(error) is ps.NotASyncServer and error.retryable and error.status == 503
    assert retries == 2 and "gave up connecting after 3 attempts" in str(error)
    assert "failing or restarting" in str(error)


def test_no_common_protocol_version(site: Any) -> None:
    def refuse(hello: dict[str, Any]) -> dict[str, Any]:
        assert hello["type"] == "hello" and hello["versions"] == [1]
        return {"type": "error", "status": 400, "error": "unsupported_version",
                "reason": "server speaks versions [2], client offered [1]", "fatal": True}

    s = site(websocket_answer(refuse))
    error, retries = attempts_until_failure(s.url)
    assert type(error) is ps.UnsupportedProtocol and not error.retryable and retries == 0
    assert str(error) == (f"{s.url} speaks none of our protocol versions [1]: server speaks "
                          f"versions [2], client offered [1]; upgrade the older side")
    assert describe(error) == (f"protocol version: {error}", EXIT_WRONG_SERVER)


def test_a_welcome_in_a_version_we_do_not_speak(site: Any) -> None:
    s = site(websocket_answer(lambda hello: {"type": "welcome", "version": 7, "limits": {}}))
    error, retries = attempts_until_failure(s.url)
    assert type(error) is ps.UnsupportedProtocol and retries == 0
    assert "chose protocol version 7, not one of ours [1]" in str(error)


def test_another_websocket_server_is_not_a_sync_server(site: Any) -> None:
    s = site(websocket_answer(lambda hello: hello))  # an echo server
    error, retries = attempts_until_failure(s.url)
    assert type(error) is ps.NotASyncServer and error.status is None and retries == 0
    assert "a WebSocket server that answered hello with a message not in the protocol" \
        in str(error)


def test_wss_to_a_plain_port_is_a_tls_error(site: Any) -> None:
    s = site(http_answer("200 OK"))
    wss = s.url.replace("ws://", "wss://")
    error, retries = attempts_until_failure(wss)
    assert type(error) is ps.TLSError and not error.retryable and retries == 0
    assert str(error).endswith("is it wss:// to a plain ws:// port?")


def test_a_name_that_does_not_resolve_is_unreachable() -> None:
    error, _ = attempts_until_failure("ws://no-such-host.invalid/", max_attempts=1)
    assert type(error) is ps.Unreachable
    assert "cannot resolve the host of ws://no-such-host.invalid/" in str(error)


def test_the_tree() -> None:
    for cls in (ps.Unreachable, ps.NotASyncServer, ps.TLSError, ps.UnsupportedProtocol,
                ps.Timeout):
        assert issubclass(cls, ps.TransportError)
    import pouchsync_sync.errors as errors
    for name in ("Unreachable", "NotASyncServer", "TLSError", "UnsupportedProtocol",
                 "ListenError"):
        assert name in (errors.__doc__ or "")  # the diagram stays complete


def test_a_url_that_worked_is_retried_through_a_404_window(site: Any) -> None:
    """A proxy between two deploys may answer 404 for a while: a live sync on a URL that
    led to a sync server once keeps retrying, and resumes on the next server."""
    shared = ps.LocalDatabase(":memory:", name="todos")
    servers = [ps.create_server(lambda credentials, name: shared, follow_timeout=0.1)]
    window = threading.Event()  # set: the site answers 404 instead of the sync server

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if window.is_set():
            return http_answer("404 NOT FOUND")(environ, start_response)
        return servers[-1](environ, start_response)

    s = site(app)
    db = ps.LocalDatabase(":memory:", name="todos")
    client = ps.create_client(initial_delay=0.01, max_delay=0.05, jitter=0.0)
    retried = threading.Event()
    attempts: list[Any] = []

    def on_reconnect(sender: Any, attempt: int, **_: Any) -> None:
        attempts.append(attempt)
        if attempt >= 5:
            retried.set()

    signals.client_reconnect.connect(on_reconnect, sender=client)
    try:
        client.connect(s.url)
        live = client.sync(db, live=True)
        live.wait_in_sync(WAIT)
        window.set()
        servers[-1].stop()  # every socket closed: the client reconnects into the 404s
        assert retried.wait(WAIT), attempts
        assert isinstance(client.last_error, ps.NotASyncServer)
        assert client.last_error.status == 404
        servers.append(ps.create_server(lambda credentials, name: shared, follow_timeout=0.1))
        window.clear()
        shared.put({"_id": "after-the-deploy"})
        live.wait_in_sync(WAIT)  # reconnected to the next server, and caught up
        assert db.get("after-the-deploy")["_id"] == "after-the-deploy"
        assert not live.state.final
        live.cancel()
        assert live.join(WAIT)
    finally:
        signals.client_reconnect.disconnect(on_reconnect, sender=client)
        client.close()
        for server in servers:
            server.stop()
