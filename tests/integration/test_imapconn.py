"""engine/imapconn.py against a real Dovecot: TLS modes, pinning, every error kind, every login way."""

from __future__ import annotations

import base64
import ipaddress
import logging
import pickle
import re
import socket
import ssl
import threading
import time
import traceback
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest
from imapclient import IMAPClient

from mailmig_tui.engine import imapconn, model
from mailmig_tui.engine.imapconn import Credentials, Endpoint, ImapError
from tests.conftest import DovecotFactory
from tests.servers import mailbox
from tests.servers.dovecot import DovecotServer, free_port

HOST = "127.0.0.1"
TIMEOUT = 10.0
FINGERPRINT_RE = re.compile(r"^sha256:(?:[0-9A-F]{2}:){31}[0-9A-F]{2}$")
OTHER_FINGERPRINT = "sha256:" + ":".join(["AB"] * 32)


def _mark(server: DovecotServer) -> DovecotServer:
    """Give every user a folder "whoami-<user>" so a session can tell whose mailbox it opened."""
    for user in server.users:
        client = mailbox.connect(server, user, master=True)  # the master login is ASCII whatever the user's
        try:
            client.create_folder(f"whoami-{user}")
        finally:
            client.logout()
    return server


@pytest.fixture
def plain(dovecot_factory: DovecotFactory) -> DovecotServer:
    return _mark(dovecot_factory())


@pytest.fixture
def tls(dovecot_factory: DovecotFactory) -> DovecotServer:
    """IMAPS on ``imaps_port`` and STARTTLS on ``port``, self-signed certificate."""
    return _mark(dovecot_factory(ssl=True))


def whose(client: IMAPClient) -> str:
    names = [name for _, _, name in client.list_folders() if name.startswith("whoami-")]
    assert len(names) == 1, names
    return names[0].removeprefix("whoami-")


def nodelay(client: IMAPClient) -> bool:
    return client.socket().getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


@pytest.fixture
def clients() -> Iterator[list[IMAPClient]]:
    """Connections a test opened; all closed at teardown."""
    opened: list[IMAPClient] = []
    yield opened
    for client in opened:
        try:
            client.logout()
        except Exception:
            client.shutdown()


def raises(kind: str, call: object, *args: object, **kwargs: object) -> ImapError:
    assert callable(call)
    with pytest.raises(ImapError) as info:
        call(*args, **kwargs)
    assert info.value.kind == kind, info.value
    return info.value


def assert_no_secret(secret: str, *texts: str) -> None:
    for text in texts:
        assert secret not in text


def full_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)) + repr(exc) + str(exc)


# --------------------------------------------------------------------------------------------
# Connections: plain, implicit TLS, STARTTLS, pinning


def test_plain_connection_logs_in_with_timeout_and_nodelay(plain: DovecotServer, clients: list[IMAPClient]) -> None:
    client = imapconn.connect(Endpoint(HOST, plain.port, "none", timeout=7.5))
    clients.append(client)
    assert not isinstance(client.socket(), ssl.SSLSocket)
    assert nodelay(client)
    assert client.socket().gettimeout() == 7.5
    imapconn.login(client, "alice", "alice-pw")
    assert whose(client) == "alice"
    caps = imapconn.capabilities(client)
    assert "IMAP4REV1" in caps and all(c == c.upper() and isinstance(c, str) for c in caps)


def test_ssl_with_pinned_fingerprint(tls: DovecotServer, clients: list[IMAPClient]) -> None:
    assert tls.imaps_port and tls.cert_fingerprint
    # 127.0.0.1 and a pin: the pin replaces chain and host-name checks.
    client = imapconn.connect(Endpoint(HOST, tls.imaps_port, "ssl", tls.cert_fingerprint, timeout=TIMEOUT))
    clients.append(client)
    assert isinstance(client.socket(), ssl.SSLSocket)
    assert nodelay(client)
    assert client.socket().gettimeout() == TIMEOUT
    imapconn.login(client, "bob", "bob-pw")
    assert whose(client) == "bob"


def test_pin_is_accepted_in_lower_case(tls: DovecotServer, clients: list[IMAPClient]) -> None:
    assert tls.imaps_port and tls.cert_fingerprint
    pin = "sha256:" + tls.cert_fingerprint.removeprefix("sha256:").lower()
    clients.append(imapconn.connect(Endpoint(HOST, tls.imaps_port, "ssl", pin, timeout=TIMEOUT)))


@pytest.mark.parametrize("host", [HOST, "localhost"])
def test_ssl_self_signed_without_pin_shows_the_fingerprint(tls: DovecotServer, host: str) -> None:
    assert tls.imaps_port
    err = raises("certificate", imapconn.connect, Endpoint(host, tls.imaps_port, "ssl", timeout=TIMEOUT))
    assert err.fingerprint == tls.cert_fingerprint
    assert str(err).startswith(f"{host}:{tls.imaps_port}: certificate not trusted (self-signed certificate)")
    assert f'tls_fingerprint = "{tls.cert_fingerprint}"' in str(err)
    assert not err.transient


def test_ssl_wrong_pin_names_both_fingerprints(tls: DovecotServer) -> None:
    assert tls.imaps_port
    err = raises("certificate", imapconn.connect, Endpoint(HOST, tls.imaps_port, "ssl", OTHER_FINGERPRINT))
    assert err.fingerprint == tls.cert_fingerprint
    assert OTHER_FINGERPRINT in str(err) and str(tls.cert_fingerprint) in str(err)
    assert str(err).startswith(f"{HOST}:{tls.imaps_port}: ")


def test_starttls_with_pin(tls: DovecotServer, clients: list[IMAPClient]) -> None:
    client = imapconn.connect(Endpoint(HOST, tls.port, "starttls", str(tls.cert_fingerprint), timeout=TIMEOUT))
    clients.append(client)
    assert isinstance(client.socket(), ssl.SSLSocket)
    assert nodelay(client)
    assert client.socket().gettimeout() == TIMEOUT
    assert "STARTTLS" not in imapconn.capabilities(client)  # the post-TLS capabilities
    imapconn.login(client, "carol", "carol-pw")
    assert whose(client) == "carol"


def test_starttls_self_signed_and_wrong_pin(tls: DovecotServer) -> None:
    err = raises("certificate", imapconn.connect, Endpoint("localhost", tls.port, "starttls", timeout=TIMEOUT))
    assert err.fingerprint == tls.cert_fingerprint
    assert f'tls_fingerprint = "{tls.cert_fingerprint}"' in str(err)
    err = raises("certificate", imapconn.connect, Endpoint(HOST, tls.port, "starttls", OTHER_FINGERPRINT))
    assert err.fingerprint == tls.cert_fingerprint


def test_starttls_not_offered_is_a_capability_error(plain: DovecotServer) -> None:
    err = raises("capability", imapconn.connect, Endpoint(HOST, plain.port, "starttls", timeout=TIMEOUT))
    assert str(err).startswith(f"{HOST}:{plain.port}: the server does not offer STARTTLS")
    assert not err.transient


def test_ssl_on_a_plain_port_is_a_tls_error(plain: DovecotServer) -> None:
    err = raises("tls", imapconn.connect, Endpoint(HOST, plain.port, "ssl", OTHER_FINGERPRINT, timeout=TIMEOUT))
    assert 'security = "starttls"' in str(err)


def test_peer_fingerprint(tls: DovecotServer) -> None:
    assert tls.imaps_port
    for port, security in ((tls.imaps_port, "ssl"), (tls.port, "starttls")):
        fingerprint = imapconn.peer_fingerprint(HOST, port, security, TIMEOUT)
        assert fingerprint == tls.cert_fingerprint
        assert FINGERPRINT_RE.match(fingerprint)
    with pytest.raises(ValueError):
        imapconn.peer_fingerprint(HOST, tls.port, "none", TIMEOUT)


def test_peer_fingerprint_of_a_server_without_tls(plain: DovecotServer) -> None:
    raises("capability", imapconn.peer_fingerprint, HOST, plain.port, "starttls", TIMEOUT)
    raises("tls", imapconn.peer_fingerprint, HOST, plain.port, "ssl", TIMEOUT)


# --------------------------------------------------------------------------------------------
# Network failures


def test_connection_refused() -> None:
    port = free_port()
    err = raises("refused", imapconn.connect, Endpoint(HOST, port, "none", timeout=TIMEOUT))
    assert str(err) == f"{HOST}:{port}: connection refused: is the IMAP server running and is the port right?"
    assert err.transient


def _resolution_stays_local() -> bool:
    """True when a host lookup cannot send a packet beyond 127.0.0.1 (hosts file, loopback DNS)."""
    try:
        lines = Path("/etc/nsswitch.conf").read_text().splitlines()
        resolv = Path("/etc/resolv.conf").read_text().splitlines() if Path("/etc/resolv.conf").exists() else []
    except OSError:
        return False
    hosts = next((line.split(":", 1)[1] for line in lines if line.split(":", 1)[0].strip() == "hosts"), "files dns")
    nameservers = [line.split()[1] for line in resolv if line.startswith("nameserver") and len(line.split()) > 1]
    for source in (word for word in hosts.split() if not word.startswith("[")):
        if source in ("files", "myhostname"):
            continue
        if source == "dns":
            try:
                if all(ipaddress.ip_address(ns).is_loopback for ns in nameservers):
                    continue
            except ValueError:
                pass
        return False
    return True


def test_dns_failure_for_a_reserved_invalid_name() -> None:
    if not _resolution_stays_local():
        pytest.skip("resolving a .invalid name here would send a DNS query beyond 127.0.0.1")
    err = raises("dns", imapconn.connect, Endpoint("no-such-host.invalid", 993, "ssl", timeout=TIMEOUT))
    assert str(err).startswith('no-such-host.invalid:993: cannot resolve the host name "no-such-host.invalid"')
    assert not err.transient


def test_a_malformed_host_name_is_a_dns_error_without_any_lookup() -> None:
    host = "a" * 64 + ".invalid"  # a label over 63 octets: rejected before any query is made
    err = raises("dns", imapconn.connect, Endpoint(host, 993, "ssl", timeout=TIMEOUT))
    assert str(err).startswith(f'{host}:993: "{host}" is not a valid host name')


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts connections (kernel backlog) and never says a word."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind((HOST, 0))
        listener.listen(8)
        yield listener.getsockname()[1]


@pytest.mark.parametrize("security", ["none", "ssl", "starttls"])
def test_timeout(silent_port: int, security: str) -> None:
    began = time.monotonic()
    err = raises("timeout", imapconn.connect, Endpoint(HOST, silent_port, security, timeout=0.5))
    assert time.monotonic() - began < 5
    assert str(err).startswith(f"{HOST}:{silent_port}: no answer within 0.5 s")
    assert err.transient


# --------------------------------------------------------------------------------------------
# Logins


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def test_wrong_password_names_the_account_and_never_the_password(
    plain: DovecotServer, debug_logs: pytest.LogCaptureFixture
) -> None:
    secret = "Wr0ng-S3cret-Passw0rd"
    client = imapconn.connect(Endpoint(HOST, plain.port, "none", timeout=TIMEOUT))
    try:
        err = raises("auth", imapconn.login, client, "alice", secret, who="alice@acme.example")
    finally:
        client.shutdown()
    text = str(err)
    assert text.startswith(f"{HOST}:{plain.port}: login refused for alice@acme.example (as alice): ")
    assert "wrong password or account disabled ([AUTHENTICATIONFAILED] Authentication failed.)" in text
    assert not err.transient
    assert_no_secret(secret, full_text(err), debug_logs.text)


def test_login_failure_messages_carry_no_password_whatever_the_way(
    plain: DovecotServer, debug_logs: pytest.LogCaptureFixture
) -> None:
    secret = "Sekr1t-master-pw"
    user = model.User(source="alice", destination="alice", password=secret, destination_password=secret)
    failures = []
    for auth in model.DEST_AUTH_MODES:
        dest = model.Destination(host=HOST, port=plain.port, security="none", auth=auth, password=secret)
        failures.append(raises("auth", imapconn.open_destination, dest, user, timeout=TIMEOUT))
    for delegate in (
        model.Delegate(enabled=False),
        model.Delegate(enabled=True, login="mailmig-admin", method="authzid", password=secret),
        model.Delegate(enabled=True, login="mailmig-admin", method="template", password=secret),
    ):
        source = model.Source(host=HOST, port=plain.port, security="none", delegate=delegate)
        failures.append(raises("auth", imapconn.open_source, source, user, timeout=TIMEOUT))
    encoded = [base64.b64encode(f"{a}\0{b}\0{secret}".encode()).decode() for a in ("", "alice") for b in ("alice",)]
    for err in failures:
        assert "login refused for alice" in str(err)
        assert_no_secret(secret, full_text(err))
    assert_no_secret(secret, debug_logs.text, *encoded)
    for value in encoded:
        assert value not in debug_logs.text
    assert "login refused for alice (as alice*mailmig-admin)" in str(failures[0])
    assert "login refused for alice (as mailmig-admin acting for alice)" in str(failures[1])


def test_passwords_with_quotes_spaces_and_non_ascii(dovecot_factory: DovecotFactory, clients: list[IMAPClient]) -> None:
    users = {"quoted": 'a "quoted\\ pass word', "umlaut": "pässwörd-日本"}
    server = _mark(dovecot_factory(users=users))
    for user, password in users.items():
        client = imapconn.connect(Endpoint(HOST, server.port, "none", timeout=TIMEOUT))
        clients.append(client)
        imapconn.login(client, user, password)  # LOGIN; AUTHENTICATE PLAIN (UTF-8) for non-ASCII
        assert whose(client) == user


class _ScriptedServer:
    """A one-connection IMAP greeter with the given capabilities, for what Dovecot cannot be made to do."""

    def __init__(self, capabilities: str) -> None:
        self.capabilities = capabilities
        self.received: list[bytes] = []
        self.listener = socket.create_server((HOST, 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn, conn.makefile("rb") as lines:
            conn.sendall(f"* OK [CAPABILITY {self.capabilities}] scripted\r\n".encode())
            for line in lines:
                self.received.append(line)
                tag, _, command = line.decode().strip().partition(" ")
                if command.upper() == "CAPABILITY":
                    conn.sendall(f"* CAPABILITY {self.capabilities}\r\n{tag} OK done\r\n".encode())
                elif command.upper() == "LOGOUT":
                    conn.sendall(f"* BYE bye\r\n{tag} OK done\r\n".encode())
                    return
                else:
                    conn.sendall(f"{tag} BAD unexpected\r\n".encode())

    def close(self) -> None:
        self.listener.close()
        self.thread.join(timeout=5)


@pytest.mark.parametrize(
    ("capabilities", "authzid", "password", "expected"),
    [
        ("IMAP4rev1 AUTH=LOGIN", "alice", "pw", "acting for another user needs AUTHENTICATE PLAIN"),
        ("IMAP4rev1 LOGINDISABLED", None, "pw", "the server refuses LOGIN on this connection (LOGINDISABLED)"),
        ("IMAP4rev1", None, "pässwörd", "non-ASCII characters, which LOGIN cannot carry"),
    ],
)
def test_missing_login_capability(capabilities: str, authzid: str | None, password: str, expected: str) -> None:
    server = _ScriptedServer(capabilities)
    try:
        client = imapconn.connect(Endpoint(HOST, server.port, "none", timeout=TIMEOUT))
        err = raises("capability", imapconn.login, client, "admin", password, authzid=authzid)
        client.logout()
    finally:
        server.close()
    assert expected in str(err)
    assert str(err).startswith(f"{HOST}:{server.port}: cannot log in to ")
    assert not any(b"LOGIN" in line.upper() or b"AUTHENTICATE" in line.upper() for line in server.received)


# --------------------------------------------------------------------------------------------
# Destination and source logins through the model


def destination(server: DovecotServer, auth: str, **changes: object) -> model.Destination:
    dest = model.Destination(
        host=HOST, port=server.port, security="none", auth=auth, login="mailmig-admin", password="masterpass"
    )
    for name, value in changes.items():
        setattr(dest, name, value)
    return dest


@pytest.mark.parametrize("auth", ["master", "authzid", "per-user"])
def test_destination_logins(plain: DovecotServer, clients: list[IMAPClient], auth: str) -> None:
    user = model.User(source="alice@old.example", destination="alice", destination_password="alice-pw")
    client = imapconn.open_destination(destination(plain, auth), user, timeout=TIMEOUT)
    clients.append(client)
    assert whose(client) == "alice"
    client.select_folder("INBOX")  # "destination account enabled": login works, INBOX selectable
    assert nodelay(client)


def test_destination_master_login_over_tls_with_pin(tls: DovecotServer, clients: list[IMAPClient]) -> None:
    dest = destination(tls, "master", port=tls.imaps_port, security="ssl", tls_fingerprint=tls.cert_fingerprint)
    client = imapconn.open_destination(dest, model.User(source="x", destination="bob"), timeout=TIMEOUT)
    clients.append(client)
    assert whose(client) == "bob"


def test_destination_wrong_master_password(plain: DovecotServer) -> None:
    user = model.User(source="alice@old.example", destination="alice")
    err = raises(
        "auth", imapconn.open_destination, destination(plain, "master", password="nope"), user, timeout=TIMEOUT
    )
    assert "login refused for alice (as alice*mailmig-admin): wrong password or account disabled" in str(err)


def test_authzid_of_an_ordinary_user_is_refused(plain: DovecotServer) -> None:
    """Only the master user may act for others: bob's own password does not open alice's mailbox."""
    client = imapconn.connect(Endpoint(HOST, plain.port, "none", timeout=TIMEOUT))
    try:
        err = raises("auth", imapconn.login, client, "bob", "bob-pw", authzid="alice")
    finally:
        client.shutdown()
    assert "login refused for alice (as bob acting for alice): wrong password, or bob may not act for" in str(err)


def source(server: DovecotServer, delegate: model.Delegate | None = None) -> model.Source:
    return model.Source(
        type="imap", host=HOST, port=server.port, security="none", delegate=delegate or model.Delegate()
    )


def test_source_own_password(plain: DovecotServer, clients: list[IMAPClient]) -> None:
    client = imapconn.open_source(source(plain), model.User("carol", "c", password="carol-pw"), timeout=TIMEOUT)
    clients.append(client)
    assert whose(client) == "carol"


@pytest.mark.parametrize(
    ("method", "template", "account"),
    [
        ("authzid", "", "bob"),
        ("template", "{user}*{delegate}", "bob"),
        ("template", "{user_local}*{delegate}", "bob@acme.example"),
    ],
)
def test_source_delegate(
    plain: DovecotServer, clients: list[IMAPClient], method: str, template: str, account: str
) -> None:
    delegate = model.Delegate(enabled=True, login="mailmig-admin", method=method, template=template)
    delegate.password = "masterpass"
    client = imapconn.open_source(source(plain, delegate), model.User(account, "bob"), timeout=TIMEOUT)
    clients.append(client)
    assert whose(client) == "bob"


# --------------------------------------------------------------------------------------------
# Credentials (pure)


def test_source_credentials() -> None:
    user = model.User(source=" alice@acme.example ", destination="alice", password="user-pw")
    src = model.Source(host="mail.acme.example")
    assert imapconn.source_credentials(src, user) == Credentials("alice@acme.example", "user-pw")
    src.delegate = model.Delegate(enabled=True, login="admin@acme.example", method="authzid", password="dpw")
    assert imapconn.source_credentials(src, user) == Credentials("admin@acme.example", "dpw", "alice@acme.example")
    src.delegate.method = "template"
    for template, expected in {
        "{user}*{delegate}": "alice@acme.example*admin@acme.example",
        "{domain}\\admin\\{user_local}": "acme.example\\admin\\alice",
        "{{{user_local}}}": "{alice}",
    }.items():
        src.delegate.template = template
        assert imapconn.source_credentials(src, user) == Credentials(expected, "dpw")
    assert imapconn.render_login_template("{user_local}/{domain}", "alice", "d") == "alice/"
    for bad in ("{usr}*{delegate}", "{user.upper}", "{user!r}", "{user", "{0}", "{}"):
        src.delegate.template = bad
        with pytest.raises(model.ValidationError, match="source.delegate.template"):
            imapconn.source_credentials(src, user)


def test_destination_credentials() -> None:
    user = model.User(source="a@x.example", destination="alice", destination_password="own")
    dest = model.Destination(login="mailmig-admin", master_separator="%", password="mp")
    assert imapconn.destination_credentials(dest, user) == Credentials("alice%mailmig-admin", "mp")
    dest.auth = "authzid"
    assert imapconn.destination_credentials(dest, user) == Credentials("mailmig-admin", "mp", "alice")
    dest.auth = "per-user"
    assert imapconn.destination_credentials(dest, user) == Credentials("alice", "own")
    dest.auth = "bogus"
    with pytest.raises(model.ValidationError, match="destination.auth"):
        imapconn.destination_credentials(dest, user)


def test_credentials_and_errors_hide_passwords() -> None:
    creds = Credentials("alice*admin", "hunter2-secret", None)
    assert "hunter2-secret" not in repr(creds) + str(creds) + f"{creds}" + repr([creds])
    assert "password='***'" in repr(creds)
    err = ImapError("timeout", "h:1: no answer")
    assert err.transient and repr(err) == "ImapError(kind='timeout', message='h:1: no answer')"
    copy = pickle.loads(pickle.dumps(ImapError("certificate", "h:1: untrusted", fingerprint=OTHER_FINGERPRINT)))
    assert (copy.kind, str(copy), copy.fingerprint) == ("certificate", "h:1: untrusted", OTHER_FINGERPRINT)
    kinds: tuple[imapconn.ErrorKind, ...] = typing.get_args(imapconn.ErrorKind)
    assert {k for k in kinds if ImapError(k, "").transient} == {"refused", "timeout", "connection"}


def test_endpoint_validation() -> None:
    with pytest.raises(ValueError):
        Endpoint(HOST, 1, "tls")
    with pytest.raises(ValueError):
        Endpoint(HOST, 1, "ssl", "sha1:AB")
    with pytest.raises(ValueError):
        Endpoint(HOST, 1, "ssl", timeout=0)
    assert Endpoint("::1", 993).where == "[::1]:993"
