"""The test bed itself: the IMAP servers and the mailbox helpers do what the other tests assume."""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError

from tests.servers.dovecot import DovecotServer
from tests.servers.mailbox import Msg, connect, contents, list_folders, seed, snapshot
from tests.servers.pymap_server import PymapServer

DovecotFactory = Callable[..., DovecotServer]
PymapFactory = Callable[..., PymapServer]

RAW_PLAIN = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: plain\r\n\r\nHello\r\n"
RAW_ODD = (
    b"From: =?utf-8?q?J=C3=BCrgen?= <j@example.org>\r\nSubject: binary-ish\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    b"Gr\xc3\xbc\xc3\x9fe \r\n  trailing spaces  \r\n\tand a tab\r\nno final newline"
)
MESSAGES = [
    Msg(RAW_PLAIN, ("\\Seen", "$Forwarded", "custom-kw"), datetime(1985, 3, 4, 5, 6, 7, tzinfo=UTC)),
    Msg(RAW_ODD, (b"\\Flagged", b"\\Answered", b"\\Draft"), datetime(2001, 7, 8, 9, 10, 11, tzinfo=UTC)),
    Msg(RAW_PLAIN.replace(b"plain", b"zoned"), (), datetime(2021, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=5)))),
]
AFTER_2038 = Msg(RAW_PLAIN.replace(b"plain", b"future"), ("$Junk",), datetime(2040, 2, 29, 23, 59, 59, tzinfo=UTC))
FOLDERS = ["INBOX", "Entwürfe", "日本語", "A&B", "Projects/2024/Q1"]


def test_user_logs_in_with_own_password(dovecot: DovecotServer) -> None:
    client = connect(dovecot, "alice")
    assert client.select_folder("INBOX")[b"EXISTS"] == 0
    client.logout()


def test_master_user_logs_in_as_user(dovecot: DovecotServer) -> None:
    seed(dovecot, "bob", {"INBOX": [Msg(RAW_PLAIN)]})
    client = connect(dovecot, "bob", master=True)
    assert client.select_folder("INBOX", readonly=True)[b"EXISTS"] == 1
    client.logout()
    raw = IMAPClient(dovecot.host, port=dovecot.port, ssl=False, timeout=5)
    raw.login("bob*mailmig-admin", "masterpass")
    raw.logout()


@pytest.mark.parametrize(
    ("user", "password"), [("alice", "bob-pw"), ("nobody", "x"), ("alice*mailmig-admin", "alice-pw")]
)
def test_wrong_credentials_are_refused(dovecot: DovecotServer, user: str, password: str) -> None:
    client = IMAPClient(dovecot.host, port=dovecot.port, ssl=False, timeout=5)
    with pytest.raises(LoginError, match="AUTHENTICATIONFAILED"):
        client.login(user, password)
    client.shutdown()


def test_user_added_after_start_can_log_in(dovecot: DovecotServer) -> None:
    with pytest.raises(LoginError):
        connect(dovecot, "dave", password="dave-pw")
    dovecot.add_user("dave", "dave-pw")
    connect(dovecot, "dave").logout()
    dovecot.add_user("dave", "dave-PW")  # same length, same second: needs the mtime bump
    connect(dovecot, "dave", password="dave-PW").logout()
    with pytest.raises(LoginError):
        connect(dovecot, "dave", password="dave-pw")


def test_imaps_certificate_is_verified_by_pinned_file(dovecot_factory: DovecotFactory) -> None:
    server = dovecot_factory(ssl=True)
    assert server.imaps_port is not None and server.cert_path is not None
    client = connect(server, "alice", ssl=True)
    der = client._imap.sock.getpeercert(binary_form=True)
    client.logout()
    digest = hashlib.sha256(der).hexdigest().upper()
    assert server.cert_fingerprint == "sha256:" + ":".join(digest[i : i + 2] for i in range(0, 64, 2))

    strict = ssl.create_default_context()  # system CAs only: the self-signed cert must fail
    with pytest.raises(ssl.SSLCertVerificationError):
        IMAPClient("localhost", port=server.imaps_port, ssl=True, ssl_context=strict, timeout=5)
    pinned = ssl.create_default_context(cafile=str(server.cert_path))
    with socket.create_connection((server.host, server.imaps_port), timeout=5) as sock:
        with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
            pinned.wrap_socket(sock, server_hostname="mail.example.org")


def test_starttls_on_plain_port_when_ssl_enabled(dovecot_factory: DovecotFactory, dovecot: DovecotServer) -> None:
    server = dovecot_factory(ssl=True)
    plain = IMAPClient(server.host, port=server.port, ssl=False, timeout=5)
    assert b"STARTTLS" in plain.capabilities()
    plain.shutdown()
    client = connect(server, "carol", starttls=True)
    assert client._imap.sock.version() is not None
    client.logout()
    no_tls = IMAPClient(dovecot.host, port=dovecot.port, ssl=False, timeout=5)
    assert b"STARTTLS" not in no_tls.capabilities()
    no_tls.shutdown()


def test_seed_and_snapshot_round_trip_is_exact(dovecot: DovecotServer) -> None:
    uids = seed(dovecot, "alice", {name: MESSAGES for name in FOLDERS})
    snap = snapshot(dovecot, "alice")

    assert sorted(snap) == sorted([*FOLDERS, "Projects", "Projects/2024"])
    assert snap["Projects"] == [] and snap["Projects/2024"] == []
    for name in FOLDERS:
        stored = snap[name]
        assert [m.uid for m in stored] == uids[name]
        assert [m.raw for m in stored] == [m.raw for m in MESSAGES]
        assert [m.flags for m in stored] == [
            ("$Forwarded", "\\Seen", "custom-kw"),
            ("\\Answered", "\\Draft", "\\Flagged"),
            (),
        ]
        assert [m.internaldate for m in stored] == [m.internaldate for m in MESSAGES]
        assert all(m.internaldate.tzinfo is not None for m in stored)
    # reading changed nothing: no \Seen added, the same again
    assert snapshot(dovecot, "alice") == snap


def test_dovecot_replaces_future_internaldate_with_now(dovecot: DovecotServer) -> None:
    """Dovecot 2.3 APPEND turns an INTERNALDATE more than a few hours ahead into "now"
    (and its index wraps pre-1970 dates); a 2040 date cannot be stored, pymap keeps it."""
    before = datetime.now(UTC).replace(microsecond=0)
    seed(dovecot, "alice", {"INBOX": [AFTER_2038]})
    (stored,) = snapshot(dovecot, "alice")["INBOX"]
    assert before <= stored.internaldate <= datetime.now(UTC) + timedelta(seconds=1)
    assert stored.raw == AFTER_2038.raw and stored.flags == ("$Junk",)


def test_snapshot_does_not_change_recent_or_seen(dovecot: DovecotServer) -> None:
    seed(dovecot, "alice", {"INBOX": [Msg(RAW_PLAIN)]})
    snapshot(dovecot, "alice")
    client = connect(dovecot, "alice")
    status = client.select_folder("INBOX")
    assert status[b"RECENT"] == 1
    assert client.search("UNSEEN") == [1]
    client.logout()


def test_non_ascii_folder_names_are_modified_utf7_on_the_wire(dovecot: DovecotServer) -> None:
    seed(dovecot, "alice", {name: [] for name in FOLDERS})
    client = connect(dovecot, "alice")
    client.folder_encode = False
    wire = {name for _, _, name in client.list_folders()}
    client.logout()
    assert {b"Entw&APw-rfe", b"&ZeVnLIqe-", b"A&-B"} <= {n if isinstance(n, bytes) else n.encode() for n in wire}
    folders = {f.name: f for f in list_folders(dovecot, "alice")}
    assert set(FOLDERS) <= set(folders)
    assert all(folders[name].subscribed for name in FOLDERS if name != "INBOX")


def test_dot_separator_instance(dovecot_factory: DovecotFactory) -> None:
    server = dovecot_factory(separator=".")
    seed(server, "alice", {"Work/Reports": [Msg(RAW_PLAIN)], "Entwürfe": []})
    client = connect(server, "alice")
    assert client.namespace().personal[0][1] == "."
    names = {name for _, _, name in client.list_folders()}
    client.logout()
    assert {"Work", "Work.Reports", "Entwürfe"} <= names
    snap = snapshot(server, "alice")
    assert [m.raw for m in snap["Work/Reports"]] == [RAW_PLAIN]
    with pytest.raises(ValueError, match="separator"):
        seed(server, "alice", {"v1.2": []})


def test_special_use_folders_and_renamed_ones(dovecot_factory: DovecotFactory, dovecot: DovecotServer) -> None:
    seed(dovecot, "alice", {name: [] for name in ("Drafts", "Sent", "Trash", "Junk", "Archive", "Other")})
    uses = {f.name: f.special_use for f in list_folders(dovecot, "alice")}
    assert uses == {
        "INBOX": None,
        "Drafts": "\\Drafts",
        "Sent": "\\Sent",
        "Trash": "\\Trash",
        "Junk": "\\Junk",
        "Archive": "\\Archive",
        "Other": None,
    }
    exchange_like = dovecot_factory(
        special_use={"\\Sent": "Sent Items", "\\Trash": "Deleted Items", "\\Junk": "Junk E-mail"}, autocreate=True
    )
    folders = {f.name: f for f in list_folders(exchange_like, "alice")}
    assert folders["Sent Items"].special_use == "\\Sent"
    assert folders["Deleted Items"].special_use == "\\Trash"
    assert folders["Junk E-mail"].special_use == "\\Junk"
    assert folders["Drafts"].special_use == "\\Drafts"
    assert "Sent" not in folders
    assert all(f.subscribed for name, f in folders.items() if name != "INBOX")


def test_size_limit_rejects_append_with_reason(dovecot_factory: DovecotFactory) -> None:
    server = dovecot_factory(max_mail_size=10_000)
    client = connect(server, "alice")
    assert b"APPENDLIMIT=10000" in client.capabilities()
    client.append("INBOX", RAW_PLAIN)
    big = RAW_PLAIN + b"x" * 10_000 + b"\r\n"
    with pytest.raises(IMAPClientError, match=r"\[LIMIT\] Mail size is larger than the maximum size"):
        client.append("INBOX", big)
    assert client.select_folder("INBOX")[b"EXISTS"] == 1
    client.logout()

    silent = dovecot_factory(max_mail_size=10_000, advertise_appendlimit=False)
    client = connect(silent, "alice")
    assert not [c for c in client.capabilities() if c.startswith(b"APPENDLIMIT")]
    with pytest.raises(IMAPClientError, match=r"\[LIMIT\]"):
        client.append("INBOX", big)
    client.logout()


def test_set_uidvalidity_changes_it_for_clients(dovecot: DovecotServer) -> None:
    seed(dovecot, "alice", {"Archive/2020": [Msg(RAW_PLAIN), Msg(RAW_ODD)]})
    selected = connect(dovecot, "alice")
    before = selected.select_folder("Archive/2020")[b"UIDVALIDITY"]
    assert dovecot.uidvalidity("alice", "Archive/2020") == before

    after = dovecot.set_uidvalidity("alice", "Archive/2020")
    assert after == before + 1
    with pytest.raises(IMAPClientAbortError):  # "* BYE IMAP session state is inconsistent"
        selected.noop()
    selected.shutdown()
    client = connect(dovecot, "alice")
    status = client.select_folder("Archive/2020", readonly=True)
    client.logout()
    assert status[b"UIDVALIDITY"] == after
    assert status[b"EXISTS"] == 2
    assert dovecot.set_uidvalidity("alice", "Archive/2020", 12345) == 12345
    assert "Archive/2020" in dovecot.doveadm("mailbox", "list", "-u", "alice").stdout.split()


def test_max_userip_connections(dovecot: DovecotServer) -> None:
    clients = [connect(dovecot, "alice") for _ in range(15)]  # Dovecot's default limit is 10
    for client in clients:
        client.logout()


def test_stop_leaves_no_process(dovecot_factory: DovecotFactory) -> None:
    server = dovecot_factory(ssl=True)
    client = connect(server, "alice")  # a connected client keeps its imap process alive
    client.select_folder("INBOX")
    assert _pids(server.instance_name)
    server.stop()
    assert _pids(server.instance_name) == []
    assert not server.running
    server.stop()  # idempotent


def test_restart_keeps_port_and_mail(dovecot: DovecotServer) -> None:
    seed(dovecot, "alice", {"INBOX": [Msg(RAW_PLAIN)]})
    port = dovecot.port
    dovecot.restart()
    assert dovecot.port == port
    assert contents(snapshot(dovecot, "alice")) == {"INBOX": [(RAW_PLAIN, (), Msg(RAW_PLAIN).internaldate)]}


def test_dovecot_starts_quickly(dovecot: DovecotServer) -> None:
    assert dovecot.startup_seconds is not None and dovecot.startup_seconds < 2.0


def test_pymap_login_and_refusal(pymap_server: PymapServer) -> None:
    connect(pymap_server, "alice").logout()
    connect(pymap_server, "bob", master=True).logout()
    with pytest.raises(LoginError):
        connect(pymap_server, "alice", password="wrong")


def test_pymap_seed_and_snapshot_round_trip(pymap_server: PymapServer) -> None:
    messages = [*MESSAGES, AFTER_2038]
    uids = seed(pymap_server, "carol", {name: messages for name in FOLDERS})
    snap = snapshot(pymap_server, "carol")
    assert sorted(snap) == sorted([*FOLDERS, "Projects", "Projects/2024"])
    for name in FOLDERS:
        assert [m.uid for m in snap[name]] == uids[name]
        assert [m.content for m in snap[name]] == [
            (m.raw, tuple(sorted(f if isinstance(f, str) else f.decode() for f in m.flags)), m.internaldate)
            for m in messages
        ]
        assert snap[name][2].internaldate.utcoffset() == timedelta(hours=5)  # pymap keeps the zone
    assert snapshot(pymap_server, "carol") == snap
    assert snapshot(pymap_server, "alice") == {"INBOX": []}


def test_pymap_and_dovecot_hold_the_same_after_seeding_both(pymap_server: PymapServer, dovecot: DovecotServer) -> None:
    folders = {"INBOX": MESSAGES, "Entwürfe/Alt": MESSAGES[:1]}
    seed(pymap_server, "alice", folders)
    seed(dovecot, "alice", folders)
    assert contents(snapshot(pymap_server, "alice")) == contents(snapshot(dovecot, "alice"))


def test_pymap_stop(pymap_factory: PymapFactory) -> None:
    server = pymap_factory(users={"zed": "zed-pw"})
    client = connect(server, "zed")
    pid = server.pid
    server.stop()
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises((OSError, IMAPClientError)):
        client.noop()


def _pids(instance_name: str) -> list[int]:
    result = subprocess.run(["pgrep", "-f", f"{instance_name}/"], capture_output=True, text=True, timeout=10)
    return [int(pid) for pid in result.stdout.split()]
