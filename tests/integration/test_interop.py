"""The engine against servers that differ from the usual Dovecot pair (DESIGN.md §2, issue 3).

A second IMAP implementation (pymap) as the source; "." against "/" separators and a
Courier-style ``INBOX.`` namespace on either side; special-use folders called differently on
each side; every destination login mode; the source delegate account; TLS with a pinned,
a CA-verified and an untrusted certificate; and ``verify``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest

from mailmig_tui.engine import model, runner, store, verify
from mailmig_tui.engine.events import Event, LogLine
from tests.integration.conftest import MASTER_PASSWORD, contents, message, when
from tests.servers import mailbox as mb
from tests.servers.dovecot import DovecotServer, free_port
from tests.servers.pymap_server import PymapServer

DovecotFactory = Callable[..., DovecotServer]
PymapFactory = Callable[..., PymapServer]

SPECIAL_NAMES = {"\\Sent": "Sent Items", "\\Trash": "Deleted Items", "\\Junk": "Junk E-Mail", "\\Drafts": "Entwürfe"}


class CourierDovecot(DovecotServer):
    """Dovecot with the Courier/Cyrus-style personal namespace: separator "." and prefix ``INBOX.``.

    The shared fixture has no prefix option (its namespace prefix is always ""), so this adds
    ``prefix = INBOX.`` to the generated config: every folder then lives under ``INBOX.``
    (``INBOX.Sent``, ``INBOX.Projects.2019``) and NAMESPACE answers ``(("INBOX." "."))``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["separator"] = "."
        super().__init__(*args, **kwargs)

    def _config_text(self) -> str:
        text = super()._config_text()
        assert "  inbox = yes\n" in text
        return text.replace("  inbox = yes\n", "  inbox = yes\n  prefix = INBOX.\n", 1)


@pytest.fixture
def courier_factory(request: pytest.FixtureRequest, servers_dir: Any) -> Any:
    from tests.conftest import _server_factory

    yield from _server_factory(request, servers_dir, CourierDovecot)


def source_of(server: Any, *, security: str = "none", port: int | None = None, host: str = "127.0.0.1", **kw: Any):
    return model.Source(type="imap", host=host, port=port or server.port, security=security, **kw)


def make_task(
    server: Any, users: tuple[str, ...] = ("alice",), *, passwords: bool = True, name: str = "interop", **source: Any
) -> model.Task:
    task = model.Task(
        name=name,
        source=source_of(server, **source),
        users=[model.User(u, u, password=server.users.get(u, "") if passwords else "") for u in users],
    )
    store.save_task(task, old_name=name if store.task_exists(name) else None)
    return task


def make_settings(dst: DovecotServer, **dest: Any) -> model.Settings:
    fields: dict[str, Any] = {"host": "127.0.0.1", "port": dst.port, "security": "none", "password": MASTER_PASSWORD}
    settings = model.Settings(model.Destination(**(fields | dest)))
    store.save_settings(settings)
    return settings


def run(task: model.Task, settings: model.Settings) -> tuple[runner.RunResult, list[Event]]:
    events: list[Event] = []
    return runner.run_task(task, settings, sink=events.append), events


def only_account(result: runner.RunResult) -> Any:
    (acct,) = result.accounts
    return acct


def notes_of(result: runner.RunResult, account: str = "alice") -> dict[str, list[str]]:
    return {r.source: r.notes for r in result.reports[account] if r.notes}


# --------------------------------------------------------------------------------------------
# A second IMAP implementation as the source.


def test_pymap_source_migrates_exactly_into_dovecot(
    pymap_factory: PymapFactory, dovecot_factory: DovecotFactory
) -> None:
    """pymap announces no NAMESPACE and no SPECIAL-USE: special folders are recognised by name."""
    src = pymap_factory()
    dst = dovecot_factory(name="dst", autocreate=True)
    cest = dt.timezone(dt.timedelta(hours=2))
    mb.seed(
        src,
        "alice",
        {
            "INBOX": [
                mb.Msg(message(1), ("\\Seen",), dt.datetime(1999, 12, 31, 23, 59, 59, tzinfo=cest)),
                mb.Msg(message(2), ("\\Seen", "\\Answered", "$Forwarded"), when(2010, 6, 1, 12, 0, 0)),
                mb.Msg(message(3), ("\\Flagged", "ProjectX"), when(2024, 2, 29, 8, 0, 0)),
                mb.Msg(message(4, message_id=False), (), when(2015, 1, 1, 0, 0, 0)),
                mb.Msg(message(5, message_id=False, body=b"z" * 70_000 + b"\r\n"), ("\\Draft",), when(2016, 1, 1)),
            ],
            "Sent": [mb.Msg(message(10), ("\\Seen",), when(2019, 5, 5, 5, 5, 5))],
            "Entwürfe": [mb.Msg(message(11, message_id=False), ("\\Draft",), when(2023, 1, 2, 3, 4, 5))],
            "Projects/2019": [mb.Msg(message(20 + i), ("\\Seen",), when(2019, 1, 1 + i)) for i in range(3)],
            "日本語": [mb.Msg(message(30), ("$Label1",), when(2017, 7, 7, 7, 7, 7))],
        },
    )
    before = contents(src, "alice")
    task, settings = make_task(src), make_settings(dst)

    result, _ = run(task, settings)

    acct = only_account(result)
    assert (result.status, acct.status, acct.error) == ("completed", "complete", "")
    assert contents(src, "alice") == before, "the source must not change, not even \\Seen"
    assert contents(dst, "alice") == {
        "INBOX": before["INBOX"],
        "Sent": before["Sent"],
        "Drafts": before["Entwürfe"],  # guessed \Drafts by its (German) name
        "Projects": [],
        "Projects/2019": before["Projects/2019"],
        "日本語": before["日本語"],
        "Trash": [],
        "Junk": [],
        "Archive": [],
    }
    assert acct.copied == 11
    assert acct.bytes == sum(len(raw) for msgs in before.values() for raw, _, _ in msgs)
    notes = notes_of(result)
    assert notes["Sent"] == ["treated as \\Sent by its name (the source announces no special-use folders)"]
    assert notes["Entwürfe"] == ["treated as \\Drafts by its name (the source announces no special-use folders)"]

    again, _ = run(task, settings)

    acct = only_account(again)
    assert (acct.status, acct.copied, acct.failed, sum(acct.skipped.values())) == ("complete", 0, 0, 0)
    assert all(r.unchanged for r in again.reports["alice"] if not r.skip_reason)
    assert contents(dst, "alice")["INBOX"] == before["INBOX"]


# --------------------------------------------------------------------------------------------
# Separators and path prefixes.


@pytest.mark.parametrize("path_prefix", ["", "INBOX.", "INBOX"])
def test_courier_style_source_onto_slash_destination(
    courier_factory: DovecotFactory, dovecot_factory: DovecotFactory, path_prefix: str
) -> None:
    """Source: "." separator, everything under ``INBOX.``; the prefix is stripped, from NAMESPACE
    ("" = auto) or as written in the task (with or without its trailing separator)."""
    src = courier_factory(name="courier")
    dst = dovecot_factory(name="dst", autocreate=True)
    mb.seed(
        src,
        "alice",
        {
            "INBOX": [mb.Msg(message(1), ("\\Seen",), when(2020, 1, 1))],
            "INBOX/Sent": [mb.Msg(message(2), ("\\Seen",), when(2020, 1, 2))],
            "INBOX/Projects": [mb.Msg(message(3), (), when(2020, 1, 3))],
            "INBOX/Projects/2019": [mb.Msg(message(4), ("\\Flagged",), when(2020, 1, 4))],
            "INBOX/Entwürfe": [mb.Msg(message(5), (), when(2020, 1, 5))],
        },
    )
    src_folders = {f.name: f.special_use for f in mb.list_folders(src, "alice")}
    assert src_folders["INBOX/Sent"] == "\\Sent" and "Sent" not in src_folders
    before = contents(src, "alice")
    task = make_task(src, path_prefix=path_prefix)

    result, _ = run(task, make_settings(dst))

    assert only_account(result).status == "complete", only_account(result).error
    assert contents(dst, "alice") == {
        "INBOX": before["INBOX"],
        "Sent": before["INBOX/Sent"],
        "Projects": before["INBOX/Projects"],
        "Projects/2019": before["INBOX/Projects/2019"],
        "Entwürfe": before["INBOX/Entwürfe"],
        "Drafts": [],
        "Trash": [],
        "Junk": [],
        "Archive": [],
    }
    assert {r.source: r.dest for r in result.reports["alice"]} == {
        "INBOX": "INBOX",
        "INBOX.Sent": "Sent",
        "INBOX.Projects": "Projects",
        "INBOX.Projects.2019": "Projects/2019",
        "INBOX.Entwürfe": "Entwürfe",
    }


@pytest.mark.parametrize(
    ("path_prefix", "projects"), [("", "INBOX/Projects/2019"), ("INBOX", "Projects/2019")], ids=["auto", "explicit"]
)
def test_cyrus_style_folders_without_namespace_prefix(
    dovecot_factory: DovecotFactory, path_prefix: str, projects: str
) -> None:
    """A "." server whose NAMESPACE prefix is "" but whose folders sit under INBOX: only an explicit
    path prefix strips ``INBOX.``; auto keeps them as INBOX's children."""
    src = dovecot_factory(name="src", separator=".")
    dst = dovecot_factory(name="dst", autocreate=True)
    mb.seed(src, "alice", {"INBOX/Projects/2019": [mb.Msg(message(1), ("\\Seen",), when(2021, 3, 3))]})
    with mb._session(src, "alice") as client:
        assert client.namespace().personal == (("", "."),)
    before = contents(src, "alice")
    task = make_task(src, path_prefix=path_prefix)

    result, _ = run(task, make_settings(dst))

    assert only_account(result).status == "complete", only_account(result).error
    after = contents(dst, "alice")
    assert after[projects] == before["INBOX/Projects/2019"]
    other = {"Projects/2019", "INBOX/Projects/2019"} - {projects}
    assert not other & set(after)
    assert only_account(result).copied == 1


@pytest.mark.parametrize("courier", [False, True], ids=["dot", "courier-prefix"])
def test_slash_source_onto_dot_destination(
    dovecot_factory: DovecotFactory, courier_factory: DovecotFactory, courier: bool
) -> None:
    """A name part holding the destination's separator is written with "_" and the plan says so;
    onto a Courier-style destination everything lands under ``INBOX.``."""
    src = dovecot_factory(name="src")
    dst = (courier_factory if courier else dovecot_factory)(name="dst", separator=".", autocreate=True)
    mb.seed(
        src,
        "alice",
        {
            "INBOX": [mb.Msg(message(1), (), when(2022, 2, 2))],
            "Sent": [mb.Msg(message(2), ("\\Seen",), when(2022, 2, 3))],
            "a.b": [mb.Msg(message(3), (), when(2022, 2, 4))],
            "Projects/v1.2": [mb.Msg(message(4), (), when(2022, 2, 5))],
        },
    )
    before = contents(src, "alice")
    task = make_task(src)

    empty = contents(dst, "alice")
    plan = runner.run_task(task, make_settings(dst), dry_run=True)
    assert contents(dst, "alice") == empty
    result, events = run(task, make_settings(dst))

    assert only_account(result).status == "complete", only_account(result).error
    p = "INBOX/" if courier else ""
    expected = {
        "INBOX": before["INBOX"],
        f"{p}Sent": before["Sent"],
        f"{p}a_b": before["a.b"],
        f"{p}Projects": [],
        f"{p}Projects/v1_2": before["Projects/v1.2"],
    } | {f"{p}{name}": [] for name in ["Drafts", "Trash", "Junk", "Archive"]}
    assert contents(dst, "alice") == expected
    wire = {r.source: r.dest for r in result.reports["alice"]}
    assert wire["a.b"] == f"{'INBOX.' if courier else ''}a_b"
    assert wire["Projects/v1.2"] == f"{'INBOX.' if courier else ''}Projects.v1_2"
    for r in (plan, result):
        assert notes_of(r) == {
            "a.b": ['name part "a.b" contains the destination separator ".": written as "a_b"'],
            "Projects/v1.2": ['name part "v1.2" contains the destination separator ".": written as "v1_2"'],
        }
    logged = [e.text for e in events if isinstance(e, LogLine) and e.folder == "a.b"]
    assert 'name part "a.b" contains the destination separator ".": written as "a_b"' in logged


# --------------------------------------------------------------------------------------------
# Special-use folders called differently on each side.


@pytest.mark.parametrize("renamed_side", ["source", "destination"])
def test_special_use_folders_map_whatever_their_names(dovecot_factory: DovecotFactory, renamed_side: str) -> None:
    src_names = SPECIAL_NAMES if renamed_side == "source" else {}
    dst_names = SPECIAL_NAMES if renamed_side == "destination" else {}
    src = dovecot_factory(name="src", special_use=src_names, autocreate=True)
    dst = dovecot_factory(name="dst", special_use=dst_names, autocreate=True)
    name = {kind: src_names.get(kind, kind[1:]) for kind in SPECIAL_NAMES}
    target = {kind: dst_names.get(kind, kind[1:]) for kind in SPECIAL_NAMES}
    sent_child, sent_child_target = name["\\Sent"] + "/2019", target["\\Sent"] + "/2019"
    mb.seed(
        src,
        "alice",
        {
            name["\\Sent"]: [mb.Msg(message(1), ("\\Seen",), when(2020, 5, 1))],
            sent_child: [mb.Msg(message(2), ("\\Seen",), when(2019, 5, 1))],
            name["\\Trash"]: [mb.Msg(message(3), ("\\Seen", "\\Deleted"), when(2020, 5, 2))],
            name["\\Junk"]: [mb.Msg(message(4), ("$Junk",), when(2020, 5, 3))],
            name["\\Drafts"]: [mb.Msg(message(5, message_id=False), ("\\Draft",), when(2020, 5, 4))],
        },
    )
    kinds = {f.name: f.special_use for f in mb.list_folders(src, "alice") if f.special_use}
    assert {kinds[name[k]] for k in SPECIAL_NAMES} == set(SPECIAL_NAMES)
    before = contents(src, "alice")

    result, _ = run(make_task(src), make_settings(dst))

    assert only_account(result).status == "complete", only_account(result).error
    assert contents(dst, "alice") == {
        "INBOX": [],
        target["\\Sent"]: before[name["\\Sent"]],
        sent_child_target: before[sent_child],
        target["\\Trash"]: before[name["\\Trash"]],
        target["\\Junk"]: before[name["\\Junk"]],
        target["\\Drafts"]: before[name["\\Drafts"]],
        "Archive": [],
    }
    dst_kinds = {f.name: f.special_use for f in mb.list_folders(dst, "alice")}
    assert {dst_kinds[target[k]] for k in SPECIAL_NAMES} == set(SPECIAL_NAMES)


# --------------------------------------------------------------------------------------------
# Destination logins.


def _seed_two(src: DovecotServer) -> None:
    for i, user in enumerate(("alice", "bob")):
        mb.seed(src, user, {"INBOX": [mb.Msg(message(i), ("\\Seen",), when(2020, 1, 1 + i))]})


@pytest.mark.parametrize("auth", ["master", "authzid", "per-user"])
def test_destination_login_modes(dovecot_factory: DovecotFactory, auth: str) -> None:
    src = dovecot_factory(name="src")
    dst = dovecot_factory(name="dst", users={"alice": "alice-dst", "bob": "bob-dst"})
    _seed_two(src)
    task = make_task(src, ("alice", "bob"))
    if auth == "per-user":
        for user in task.users:
            user.destination_password = dst.users[user.destination]
        store.save_task(task, old_name=task.name)
    settings = make_settings(dst, auth=auth)
    assert store.load_task(task.name).users[1].destination_password == ("bob-dst" if auth == "per-user" else "")
    assert model.validate_task(task, settings=settings) == []

    result, _ = run(task, settings)

    assert {a.account: (a.status, a.copied, a.error) for a in result.accounts} == {
        "alice": ("complete", 1, ""),
        "bob": ("complete", 1, ""),
    }
    for user in ("alice", "bob"):
        assert contents(dst, user)["INBOX"] == contents(src, user)["INBOX"]


@pytest.mark.parametrize(
    ("auth", "shown"),
    [
        ("master", "login refused for {u} (as {u}*mailmig-admin): wrong password or account disabled"),
        ("authzid", "login refused for {u} (as mailmig-admin acting for {u}): wrong password, or mailmig-admin"),
        ("per-user", "login refused for {u}: wrong password or account disabled"),
    ],
)
def test_wrong_destination_password_fails_every_account(dovecot_factory: DovecotFactory, auth: str, shown: str) -> None:
    src = dovecot_factory(name="src")
    dst = dovecot_factory(name="dst")
    _seed_two(src)
    task = make_task(src, ("alice", "bob"))
    for user in task.users:
        user.destination_password = "not-the-password"
    store.save_task(task, old_name=task.name)
    settings = make_settings(dst, auth=auth, password="not-the-master-password")

    result, _ = run(task, settings)

    assert result.status == "failed"
    for acct in result.accounts:
        assert acct.status == "failed"
        assert shown.format(u=acct.account) in acct.error
        assert "not-the-" not in acct.error
        assert contents(dst, acct.account) == {"INBOX": []}
    log = store.paths().log_file(task.name).read_text()
    assert "not-the-" not in log and "login refused for bob" in log


# --------------------------------------------------------------------------------------------
# The source delegate account (Dovecot's master user plays Exchange's full-access delegate).


@pytest.mark.parametrize(
    ("method", "template"), [("authzid", ""), ("template", "{user}*{delegate}")], ids=["authzid", "template"]
)
def test_source_delegate_reads_users_without_their_passwords(
    dovecot_factory: DovecotFactory, method: str, template: str
) -> None:
    src = dovecot_factory(name="src")
    dst = dovecot_factory(name="dst")
    _seed_two(src)
    before = {u: contents(src, u) for u in ("alice", "bob")}
    delegate = model.Delegate(enabled=True, login=src.master_user, method=method, password=src.master_password)
    if template:
        delegate.template = template
    task = make_task(src, ("alice", "bob"), passwords=False, delegate=delegate)
    assert [u.password for u in store.load_task(task.name).users] == ["", ""]
    settings = make_settings(dst)
    assert model.validate_task(task, settings=settings) == []

    result, _ = run(task, settings)

    assert {a.account: (a.status, a.copied) for a in result.accounts} == {
        "alice": ("complete", 1),
        "bob": ("complete", 1),
    }
    for user in ("alice", "bob"):
        assert contents(dst, user) == before[user]
        assert contents(src, user) == before[user]


def test_source_delegate_with_wrong_password_fails_clearly(dovecot_factory: DovecotFactory) -> None:
    src = dovecot_factory(name="src")
    dst = dovecot_factory(name="dst")
    delegate = model.Delegate(enabled=True, login=src.master_user, method="authzid", password="wrong-delegate-pw")
    task = make_task(src, ("alice",), passwords=False, delegate=delegate)

    result, _ = run(task, make_settings(dst))

    acct = only_account(result)
    assert acct.status == "failed"
    assert "login refused for alice (as mailmig-admin acting for alice): wrong password, or mailmig-admin" in acct.error
    assert "wrong-delegate-pw" not in acct.error


# --------------------------------------------------------------------------------------------
# TLS to the source.


@pytest.fixture
def tls_pair(dovecot_factory: DovecotFactory) -> tuple[DovecotServer, DovecotServer]:
    src = dovecot_factory(name="tls", ssl=True)
    dst = dovecot_factory(name="dst")
    mb.seed(src, "alice", {"INBOX": [mb.Msg(message(1), ("\\Seen",), when(2020, 1, 1))], "Work": []})
    return src, dst


@pytest.mark.parametrize("security", ["ssl", "starttls"])
def test_tls_source_with_pinned_certificate(
    tls_pair: tuple[DovecotServer, DovecotServer], security: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, dst = tls_pair
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    assert src.cert_fingerprint and src.imaps_port
    port = src.imaps_port if security == "ssl" else src.port
    task = make_task(src, security=security, port=port, tls_fingerprint=src.cert_fingerprint)

    result, _ = run(task, make_settings(dst))

    assert (only_account(result).status, only_account(result).copied) == ("complete", 1), only_account(result).error
    assert contents(dst, "alice")["INBOX"] == contents(src, "alice")["INBOX"]


def test_tls_source_verified_by_ca_and_host_name(
    tls_pair: tuple[DovecotServer, DovecotServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a pin the certificate must chain to a trusted CA and name the host we dial."""
    src, dst = tls_pair
    monkeypatch.setenv("SSL_CERT_FILE", str(src.cert_path))
    task = make_task(src, security="ssl", port=src.imaps_port, host=src.tls_hostname)

    result, _ = run(task, make_settings(dst))

    assert (only_account(result).status, only_account(result).copied) == ("complete", 1), only_account(result).error


@pytest.mark.parametrize("pin", ["", "other"], ids=["unpinned", "wrong-pin"])
def test_untrusted_source_certificate_fails_showing_its_fingerprint(
    tls_pair: tuple[DovecotServer, DovecotServer], monkeypatch: pytest.MonkeyPatch, pin: str
) -> None:
    src, dst = tls_pair
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    wrong = "sha256:" + ":".join(["AB"] * 32)
    task = make_task(src, security="ssl", port=src.imaps_port, tls_fingerprint=wrong if pin else "")

    result, _ = run(task, make_settings(dst))

    acct = only_account(result)
    assert (acct.status, acct.copied) == ("failed", 0)
    assert f'tls_fingerprint = "{src.cert_fingerprint}"' in acct.error
    if pin:
        assert "does not match the pinned one" in acct.error and wrong in acct.error
    else:
        assert f"127.0.0.1:{src.imaps_port}: certificate not trusted (self-signed certificate)" in acct.error
    assert contents(dst, "alice") == {"INBOX": []}


# --------------------------------------------------------------------------------------------
# Verify.


def test_verify_users_reports_each_case(dovecot_factory: DovecotFactory) -> None:
    src = dovecot_factory(name="src", users={"alice": "alice-pw", "bob": "bob-pw", "dave": "dave-pw"})
    dst = dovecot_factory(name="dst")  # alice, bob, carol: no dave
    mb.seed(src, "alice", {"INBOX": [mb.Msg(message(1)), mb.Msg(message(2))]})
    task = make_task(src, ("alice", "bob", "dave"))
    task.users[1].password = "not-bobs-password"
    settings = make_settings(dst)
    seen: list[str] = []

    verdicts = verify.verify_users(task, settings, on_result=lambda v: seen.append(v.account))

    assert sorted(seen) == ["alice", "bob", "dave"]
    by = {v.account: v for v in verdicts}
    assert [v.account for v in verdicts] == ["alice", "bob", "dave"]
    alice, bob, dave = by["alice"], by["bob"], by["dave"]
    assert (alice.ok, alice.source_detail, alice.dest_detail) == (
        True,
        "login OK, INBOX holds 2 message(s)",
        "enabled, INBOX holds 0 message(s)",
    )
    assert (bob.ok, bob.source_ok, bob.dest_ok) == (False, False, True)
    assert f"127.0.0.1:{src.port}: login refused for bob: wrong password or account disabled" in bob.source_detail
    assert "not-bobs-password" not in bob.text()
    assert (dave.ok, dave.source_ok, dave.dest_ok) == (False, True, False)
    assert dave.dest_detail == (
        f"127.0.0.1:{dst.port}: login refused for dave (as dave*mailmig-admin): the login was accepted but may not "
        "open this account ([AUTHORIZATIONFAILED] Authorization failed)"
    )
    assert dave.text().startswith("destination: ")
    assert contents(dst, "alice") == {"INBOX": []}, "verify never writes"


def test_verify_unreachable_source(dovecot_factory: DovecotFactory) -> None:
    dst = dovecot_factory(name="dst")
    port = free_port()
    task = model.Task(
        "gone",
        source=model.Source(host="127.0.0.1", port=port, security="none"),
        users=[model.User("alice", "alice", password="alice-pw"), model.User("bob", "bob", password="bob-pw")],
    )

    verdicts = verify.verify_users(task, make_settings(dst))

    for v in verdicts:
        assert (v.ok, v.source_ok, v.dest_ok) == (False, False, True)
        assert v.source_detail == (
            f"127.0.0.1:{port}: connection refused: is the IMAP server running and is the port right?"
        )
