"""Credentials: in the URL, as ``auth=``, as a cookie session renewed on expiry; and never
shown in a log line, a repr or an error message.

Creating a server admin changes the server's auth for good, so this module starts its
own pouchdb-servers instead of the session's one. With ``COUCHDB_URL`` set it uses that
server and the admin credentials in that URL instead (the expiry test needs its own).
"""

from __future__ import annotations

import base64
import logging
import os
import threading
from typing import Iterator

import pytest
import requests

from pouchsync_sync import CouchDB, Unauthorized
from pouchsync_sync.store.couch_names import split_credentials
from tests.couchserver import couch_db_name, launch

USER = "admin"
PASSWORD = "Pa55-w0rd-never-shown"
SESSION_SECONDS = 3
EXTERNAL = os.environ.get("COUCHDB_URL")
if EXTERNAL:
    _base, _creds = split_credentials(EXTERNAL)
    if _creds is not None:
        USER, PASSWORD = _creds.user, _creds.password


def _admin_server(**config: object) -> Iterator[str]:
    if EXTERNAL:
        base, creds = split_credentials(EXTERNAL)
        if creds is None or config:
            pytest.skip("needs admin credentials in COUCHDB_URL / a server of its own")
        yield base
        return
    server = launch(config=config)
    try:
        resp = requests.put(f"{server.url}/_config/admins/{USER}", data=f'"{PASSWORD}"',
                            timeout=10)
        assert resp.status_code == 200
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def admin_url() -> Iterator[str]:
    """URL (no credentials) of a fresh server whose only admin is USER/PASSWORD."""
    yield from _admin_server()


@pytest.fixture(scope="module")
def expiring_admin_url() -> Iterator[str]:
    """The same, with sessions that expire after SESSION_SECONDS. A server of its own:
    once a session expired, pouchdb-server leaves some requests unanswered."""
    yield from _admin_server(couch_httpd_auth={"timeout": SESSION_SECONDS})


def _with_creds(url: str, user: str = USER, password: str = PASSWORD) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{user}:{password}@{rest}"


def _admin_roundtrip(couch: CouchDB) -> None:
    """Create and delete a database: only a server admin may."""
    name = couch_db_name("auth")
    db = couch.create_database(name)
    db.put({"_id": "doc"})
    assert db.get("doc")["_id"] == "doc"
    couch.delete_database(name)


def test_basic_auth_from_the_url(admin_url):
    with CouchDB(_with_creds(admin_url)) as couch:
        _admin_roundtrip(couch)
        assert couch.url == admin_url


def test_auth_tuple_wins_over_url_credentials(admin_url):
    with CouchDB(_with_creds(admin_url, password="wrong"), auth=(USER, PASSWORD)) as couch:
        _admin_roundtrip(couch)


def test_wrong_password_is_unauthorized(admin_url):
    with CouchDB(admin_url, auth=(USER, "wrong")) as couch:
        with pytest.raises(Unauthorized) as info:
            couch.create_database(couch_db_name("denied"))
    assert info.value.status == 401 and info.value.retryable is False


def test_cookie_session_login_and_renewal(expiring_admin_url, caplog):
    caplog.set_level(logging.INFO, logger="pouchsync_sync")
    with CouchDB(expiring_admin_url, auth=(USER, PASSWORD), cookie_auth=True) as couch:
        _admin_roundtrip(couch)
        assert couch.http._session.auth is None  # no basic auth: the cookie does it
        assert couch.http.request("GET", "/_session")["userCtx"]["name"] == USER
        assert not [r for r in caplog.records if "logging in again" in r.getMessage()]
        # let the session run out: the server's cookies carry whole seconds
        threading.Event().wait(SESSION_SECONDS + 1.2)
        # Server config needs an admin: each thread's first try gets 401. (On pouchdb-server
        # an anonymous PUT /db is never answered and, once a session expired, DELETE /db
        # stays 401 even with a fresh cookie: neither is the request to expire on.)
        errors: list[BaseException] = []
        answers: list[object] = []
        gate = threading.Barrier(6)

        def admin_read() -> None:
            try:
                gate.wait(10)
                answers.append(couch.http.request("GET", f"/_config/admins/{USER}"))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=admin_read, name="test-renew") for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not errors, errors[:2]
        assert len(answers) == 6 and all(isinstance(a, str) for a in answers)
        name = couch_db_name("renewed")
        couch.create_database(name).put({"_id": "after-renewal"})
        assert couch.database(name).get("after-renewal")["_id"] == "after-renewal"
        assert couch.http._login_epoch == 2  # the first login and one renewal for 6 threads
    renewals = [r for r in caplog.records if "logging in again" in r.getMessage()]
    assert 1 <= len(renewals) <= 6


def test_cookie_session_with_a_wrong_password(admin_url):
    with CouchDB(admin_url, auth=(USER, "wrong"), cookie_auth=True) as couch:
        with pytest.raises(Unauthorized):
            couch.all_dbs()


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def test_password_never_in_logs_reprs_or_errors(admin_url, caplog):
    caplog.set_level(logging.DEBUG)  # every logger, urllib3 included
    shown: list[str] = []
    basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    for couch in (CouchDB(_with_creds(admin_url)), CouchDB(admin_url, auth=(USER, PASSWORD)),
                  CouchDB(_with_creds(admin_url), cookie_auth=True)):
        with couch:
            name = couch_db_name("secret")
            db = couch.database(name, create=True)
            db.put({"_id": "a"})
            shown += [repr(couch), str(couch), repr(db), str(db), db.identity(), couch.url,
                      repr(couch.http), repr(couch.http._creds)]
            for failing in (lambda: db.get("missing"), lambda: db.put({"_id": "a"}),
                            lambda: couch.database(couch_db_name("nope")).info()):
                try:
                    failing()
                except Exception as exc:  # noqa: BLE001 - inspected below
                    shown += [f"{e!s} {e!r} {e.args!r}" for e in _chain(exc)]
            couch.delete_database(name)
    # an unreachable server with credentials: the transport error's message and chain
    with socket_closed_port() as port:
        with CouchDB(f"http://{USER}:{PASSWORD}@127.0.0.1:{port}", timeout=2) as couch:
            try:
                couch.info()
            except Exception as exc:  # noqa: BLE001 - inspected below
                shown += [f"{e!s} {e!r} {e.args!r}" for e in _chain(exc)]
    # wrong password: the 401's message
    with CouchDB(admin_url, auth=(USER, PASSWORD + "x")) as couch:
        with pytest.raises(Unauthorized) as info:
            couch.create_database(couch_db_name("x"))
        shown += [f"{e!s} {e!r}" for e in _chain(info.value)]
    text = "\n".join(shown) + "\n" + caplog.text
    assert len(caplog.records) > 10  # the DEBUG wire log was on
    assert PASSWORD not in text and basic not in text


class socket_closed_port:
    """A port on 127.0.0.1 where nothing listens."""

    def __enter__(self) -> int:
        import socket
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return probe.getsockname()[1]

    def __exit__(self, *exc: object) -> None:
        pass
