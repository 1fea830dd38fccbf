"""Testing the settings' servers for real (engine.probe): Dovecot plain and self-signed, an aiosmtpd relay."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Sink

from mailmig_tui.engine.model import Destination, Smtp
from mailmig_tui.engine.probe import probe_destination, probe_smtp
from tests.integration.conftest import MASTER_PASSWORD
from tests.servers.dovecot import free_port


def test_destination_plain_with_an_account(dovecot):
    dest = Destination(port=dovecot.port, security="none", password=MASTER_PASSWORD)
    result = probe_destination(dest, "alice", timeout=10)
    assert result.ok, result.lines
    assert result.lines[0].startswith(f"127.0.0.1:{dovecot.port}: connected with no encryption; the server speaks IMAP")
    assert result.lines[1] == "alice: enabled, INBOX holds 0 message(s)"
    nobody = probe_destination(dest, "nobody", timeout=10)
    assert not nobody.ok and "nobody" in nobody.lines[1]


def test_destination_self_signed_gives_its_fingerprint_and_pinning_works(dovecot_factory):
    server = dovecot_factory(ssl=True)
    dest = Destination(port=server.imaps_port, security="ssl")
    refused = probe_destination(dest, timeout=10)
    assert not refused.ok
    assert refused.certificate_fingerprint == server.cert_fingerprint
    assert "certificate not trusted" in refused.lines[0]
    dest.tls_fingerprint = server.cert_fingerprint
    pinned = probe_destination(dest, timeout=10)
    assert pinned.ok and "(pinned certificate)" in pinned.lines[0]
    starttls = probe_destination(Destination(port=server.port, security="starttls"), timeout=10)
    assert starttls.certificate_fingerprint == server.cert_fingerprint


def test_destination_refused():
    result = probe_destination(Destination(port=free_port(), security="none"), timeout=5)
    assert not result.ok and "connection refused" in result.lines[0]
    assert result.certificate_fingerprint == ""


@pytest.fixture
def relay() -> Iterator[Controller]:
    controller = Controller(Sink(), hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller
    controller.stop()


def test_smtp(relay: Controller):
    ok = probe_smtp(Smtp(host="127.0.0.1", port=relay.port, security="none"), timeout=5)
    assert ok.ok and ok.lines[0].startswith(f"127.0.0.1:{relay.port}: connected")
    no_tls = probe_smtp(Smtp(host="127.0.0.1", port=relay.port, security="starttls"), timeout=5)
    assert not no_tls.ok and "does not offer STARTTLS" in no_tls.lines[-1]
    no_auth = probe_smtp(
        Smtp(host="127.0.0.1", port=relay.port, security="none", login="u", password="Hunter2-x"), timeout=5
    )
    assert not no_auth.ok and "offers no login" in no_auth.lines[-1]
    assert not probe_smtp(Smtp(host=""), timeout=5).ok
    refused = probe_smtp(Smtp(host="127.0.0.1", port=free_port(), security="none"), timeout=5)
    assert not refused.ok and "connection refused" in refused.lines[0]
