"""The engine's robustness guarantees against real Dovecot (DESIGN.md §2 "Re-runs and resume", §6).

A real ``mailmig-tui run`` SIGKILLed mid-run, a changed UIDVALIDITY, the cancel token, source
connections dropped or gone for good, APPENDs refused for size, messages expunged during the
run, state bound to its source server, several accounts in a tiny byte budget. Every test
compares whole mailboxes (octets, flags, INTERNALDATE, as multisets so that exact duplicates
count) and the state database, not only the runner's counters.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest

from mailmig_tui.engine import runner, store
from mailmig_tui.engine.account import SKIP_VANISHED, Limits
from mailmig_tui.engine.events import (
    AccountFinished,
    AccountStarted,
    Event,
    FolderProgress,
    LogLine,
    MessageFailed,
)
from mailmig_tui.engine.model import Task, User, account_key
from mailmig_tui.engine.sources.base import SKIP_EXISTING
from mailmig_tui.engine.state import StateDB
from tests.integration.conftest import Pair, contents, message, when
from tests.servers import mailbox as mb
from tests.servers.dovecot import DovecotServer

pytestmark = pytest.mark.timeout(90)

CLI = Path(sys.executable).parent / "mailmig-tui"
Content = tuple[bytes, tuple[str, ...], dt.datetime]
Mailbox = Mapping[str, Sequence[Content]]
Factory = Callable[..., DovecotServer]


# --------------------------------------------------------------------------------------------
# Helpers: seeding, comparing, reading the state.


def seed_fast(server: DovecotServer, user: str, folders: Mapping[str, Sequence[mb.Msg]]) -> None:
    """Like ``mb.seed`` (flat folder names only), but with MULTIAPPEND: thousands of messages in a second."""
    client = mb.connect(server, user)
    try:
        existing = {name for _, _, name in client.list_folders()}
        for name, msgs in folders.items():
            if name not in existing and name.upper() != "INBOX":
                client.create_folder(name)
                client.subscribe_folder(name)
            for start in range(0, len(msgs), 200):
                chunk = msgs[start : start + 200]
                client.multiappend(name, [{"msg": m.raw, "flags": m.flags, "date": m.internaldate} for m in chunk])
    finally:
        client.logout()


def _show(msg: Content) -> str:
    raw, flags, when_ = msg
    subject = next((line for line in raw.split(b"\r\n") if line.startswith(b"Subject:")), b"(no subject)")
    return f"{subject.decode(errors='replace')} ({len(raw)} bytes, {flags}, {when_.isoformat()})"


def extra(src: Mailbox, dst: Mailbox) -> list[str]:
    """Messages the destination holds more often than the source (a duplicate, or foreign mail)."""
    out = []
    for folder in sorted(dst):
        for msg, n in (Counter(dst[folder]) - Counter(src.get(folder, ()))).items():
            out.append(f"{folder}: {n} extra × {_show(msg)}")
    return out


def missing(src: Mailbox, dst: Mailbox) -> list[str]:
    """Messages of the source the destination lacks (or holds fewer times)."""
    out = []
    for folder in sorted(src):
        for msg, n in (Counter(src[folder]) - Counter(dst.get(folder, ()))).items():
            out.append(f"{folder}: {n} missing × {_show(msg)}")
    return out


def assert_same(src: Mailbox, dst: Mailbox) -> None:
    """The destination holds exactly the source's messages (empty extra folders aside)."""
    problems = extra(src, dst) + missing(src, dst)
    assert not problems, "\n".join(problems[:20]) + (f"\n… {len(problems)} in all" if len(problems) > 20 else "")


def count(box: Mailbox) -> int:
    return sum(len(v) for v in box.values())


def state_file(task: Task) -> Path:
    return store.paths().state_file(task.name)


def recorded(task: Task, status: str = "copied", user: str | None = None) -> list[tuple[str, int | None]]:
    """(destination folder, destination UID) of every message the state records with ``status``
    (of one account's, with ``user``)."""
    db = sqlite3.connect(state_file(task))
    try:
        query = "SELECT dest_folder, dest_uid FROM messages WHERE status = ?"
        if user is None:
            return db.execute(query, (status,)).fetchall()
        return db.execute(query + " AND account = ?", (status, account_key(user))).fetchall()
    finally:
        db.close()


def run_statuses(task: Task) -> list[str]:
    db = sqlite3.connect(state_file(task))
    try:
        return [r[0] for r in db.execute("SELECT status FROM runs WHERE dry_run = 0 ORDER BY id")]
    finally:
        db.close()


def assert_state_matches_destination(task: Task, dst: DovecotServer, user: str = "alice") -> None:
    """Every message the state says was copied is at the destination under the recorded UID."""
    client = mb.connect(dst, user)
    try:
        there = set()
        for flags, _, folder in client.list_folders():
            if b"\\Noselect" not in flags:
                client.select_folder(folder, readonly=True)
                there |= {(folder, uid) for uid in client.search("ALL")}
    finally:
        client.logout()
    rows = recorded(task, user=user)
    assert all(uid is not None for _, uid in rows), "Dovecot has UIDPLUS: every copied message has its UID"
    assert set(rows) <= there, f"recorded but not at the destination: {sorted(set(rows) - there)[:10]}"
    assert len(rows) == len(set(rows)), "two source messages claim the same destination message"


def wait_until_logged_out(server: DovecotServer, user: str, timeout: float = 10) -> None:
    """Wait until ``user`` has no session left on ``server``: after a client is killed, the server may
    still be committing a MULTIAPPEND it had received whole."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sessions = server.doveadm("who", "-1").stdout.splitlines()[1:]
        if not any(line.split()[:1] == [user] for line in sessions):
            return
        time.sleep(0.02)
    pytest.fail(f"{user} still has sessions on the server {timeout} s after its client was killed")


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CLI), *args], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, env=os.environ
    )


def log_lines(events: list[Event], severity: str, needle: str) -> list[LogLine]:
    return [e for e in events if isinstance(e, LogLine) and e.severity == severity and needle in e.text]


def small_mailbox(n: int, *, first: int = 0, year: int = 2020) -> list[mb.Msg]:
    """``n`` messages, every 5th without Message-ID, varied flags, plus an exact duplicate of each kind."""
    flags = [("\\Seen",), (), ("\\Seen", "\\Flagged"), ("\\Answered", "$Label1")]
    msgs = [
        mb.Msg(message(first + i, message_id=i % 5 != 4), flags[i % 4], when(year, 1 + i % 12, 1 + i % 28, 12, 0, i))
        for i in range(n)
    ]
    return [*msgs, msgs[1], msgs[4]]  # exact duplicates, with and without a Message-ID: both copies kept


# --------------------------------------------------------------------------------------------
# 1. SIGKILL of a real `mailmig-tui run`, then a re-run.


def big_corpus() -> dict[str, list[mb.Msg]]:
    """About 2000 messages in four folders: some without Message-ID, exact duplicates far apart
    (so a kill can fall between the two copies), a few of 400 KB."""
    flags = [("\\Seen",), (), ("\\Seen", "\\Flagged"), ("\\Answered", "$Label1"), ("\\Seen", "\\Draft")]
    folders: dict[str, list[mb.Msg]] = {}
    n = 0
    for name, size in (("INBOX", 700), ("Work", 500), ("Lists", 500), ("Sent", 300)):
        msgs = []
        for _ in range(size):
            n += 1
            body = (b"line %d of a message body\r\n" % n) * (10 + n % 60)
            msgs.append(
                mb.Msg(
                    message(n, message_id=n % 7 != 0, body=body),
                    flags[n % len(flags)],
                    when(2012 + n % 12, 1 + n % 12, 1 + n % 28, n % 24, n % 60, n % 60),
                )
            )
        msgs += [msgs[3], msgs[6], msgs[6]]  # Message-ID once more; no Message-ID (n % 7 == 0) twice more
        folders[name] = msgs
    large = (b"L" * 78 + b"\r\n") * 5000
    for k in range(3):
        folders["Work"].insert(150 + 250 * k, mb.Msg(message(50_000 + k, body=large), ("\\Seen",), when(2021, 3, 3)))
    return folders


def wait_for_state(path: Path, threshold: int, proc: subprocess.Popen[bytes], stderr: Path, timeout: float = 40) -> int:
    """Poll the state DB until it records at least ``threshold`` messages; fail if the run ends first."""
    deadline = time.monotonic() + timeout
    n = 0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(
                f"the run ended (exit {proc.returncode}) with {n} messages recorded, before the kill point:\n"
                + stderr.read_text(errors="replace")[-2000:]
            )
        if path.exists():
            db = sqlite3.connect(path, timeout=5)
            try:
                n = db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
            except sqlite3.OperationalError:  # the schema is not there yet
                n = 0
            finally:
                db.close()
            if n >= threshold:
                return n
        time.sleep(0.005)
    pytest.fail(f"the run recorded only {n} messages in {timeout} s")


def freeze_after_an_append(proc: subprocess.Popen[bytes], task: Task, dst: DovecotServer, folders: list[str]) -> int:
    """SIGSTOP the run at moments until one lands after the destination committed a MULTIAPPEND and
    before the state recorded it (the server finishes an APPEND it has whole while the client is
    frozen); return how many messages the destination then holds. The process is left stopped."""
    client = mb.connect(dst, "alice")
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            proc.send_signal(signal.SIGSTOP)
            time.sleep(0.2)  # time for the server to commit what it has received
            at_dst = sum(client.folder_status(f, [b"MESSAGES"])[b"MESSAGES"] for f in folders)
            if at_dst > len(recorded(task)):
                return at_dst
            proc.send_signal(signal.SIGCONT)
            time.sleep(random.uniform(0.01, 0.1))
    finally:
        client.logout()
    pytest.fail("never caught the run between an APPEND and the state's commit")


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", ["early", "mid", "appended"])
def test_sigkill_mid_run_then_rerun_copies_the_rest_exactly_once(pair: Pair, tmp_path: Path, kill_at: str) -> None:
    seed_fast(pair.src, "alice", big_corpus())
    src = contents(pair.src, "alice")
    total = count(src)
    assert total > 2000
    task, settings = pair.task(), pair.settings()
    threshold = total // 2 if kill_at == "mid" else 1

    errors = tmp_path / "run.stderr"
    stderr = errors.open("wb")
    proc = subprocess.Popen(
        [str(CLI), "run", task.name], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, env=os.environ
    )
    try:
        wait_for_state(state_file(task), threshold, proc, errors)
        if kill_at == "appended":  # the crash the fingerprints are for: appended, not yet recorded
            freeze_after_an_append(proc, task, pair.dst, list(src))
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
        wait_until_logged_out(pair.dst, "alice")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stderr.close()

    after_kill = contents(pair.dst, "alice")
    at_dst = count(after_kill)
    assert not extra(src, after_kill), "a killed run must not duplicate anything"
    assert 0 < at_dst < total, f"the kill was meant to land mid-run: {at_dst} of {total} at the destination"
    assert_state_matches_destination(task, pair.dst)
    committed = len(recorded(task))  # appended and recorded; the rest at the destination is unclaimed
    assert committed < at_dst if kill_at == "appended" else committed <= at_dst

    events: list[Event] = []
    result = runner.run_task(task, settings, sink=events.append)

    (acct,) = result.accounts
    assert (result.status, acct.status) == ("completed", "complete"), acct.error
    assert_same(src, contents(pair.dst, "alice"))
    assert acct.copied == total - at_dst
    assert acct.skipped.get(SKIP_EXISTING, 0) == at_dst - committed
    assert acct.failed == 0
    assert run_statuses(task) == ["interrupted", "completed"]
    assert len(recorded(task)) + len(recorded(task, "existing")) == total
    assert_state_matches_destination(task, pair.dst)

    again = runner.run_task(task, settings)
    assert again.accounts[0].copied == 0
    assert all(r.unchanged for r in again.reports["alice"] if not r.skip_reason)


# --------------------------------------------------------------------------------------------
# 2. UIDVALIDITY changes at the source.


def test_changed_uidvalidity_copies_nothing_twice_and_new_mail_once(pair: Pair) -> None:
    folders = {"INBOX": small_mailbox(12), "Work": small_mailbox(8, first=100), "Other": small_mailbox(5, first=200)}
    mb.seed(pair.src, "alice", folders)
    task, settings = pair.task(), pair.settings()
    first = runner.run_task(task, settings)
    assert first.accounts[0].copied == count(contents(pair.src, "alice"))
    before = contents(pair.dst, "alice")

    pair.src.set_uidvalidity("alice", "INBOX")
    pair.src.set_uidvalidity("alice", "Work")
    events: list[Event] = []
    again = runner.run_task(task, settings, sink=events.append)

    acct = again.accounts[0]
    assert acct.status == "complete", acct.error
    assert (acct.copied, acct.failed) == (0, 0)
    assert acct.skipped == {SKIP_EXISTING: len(folders["INBOX"]) + len(folders["Work"])}
    assert contents(pair.dst, "alice") == before
    warned = {e.folder for e in log_lines(events, "warning", "UIDVALIDITY changed")}
    assert warned == {"INBOX", "Work"}
    log = store.paths().log_file(task.name).read_text()
    assert "WARNING\talice\tINBOX\tUIDVALIDITY changed" in log

    new = mb.Msg(message(999, message_id=False), ("\\Flagged",), when(2024, 5, 5, 5, 5, 5))
    mb.seed(pair.src, "alice", {"INBOX": [new]})
    third = runner.run_task(task, settings)
    assert (third.accounts[0].copied, third.accounts[0].failed) == (1, 0)
    assert_same(contents(pair.src, "alice"), contents(pair.dst, "alice"))
    fourth = runner.run_task(task, settings)
    assert fourth.accounts[0].copied == 0
    assert all(r.unchanged for r in fourth.reports["alice"] if not r.skip_reason)


# --------------------------------------------------------------------------------------------
# 3. The cancel token.


def test_cancel_token_stops_after_the_batch_and_a_second_run_completes(pair: Pair) -> None:
    mb.seed(pair.src, "alice", {"INBOX": small_mailbox(20), "Work": small_mailbox(20, first=100)})
    src = contents(pair.src, "alice")
    task, settings = pair.task(), pair.settings()
    cancel = threading.Event()

    def sink(event: Event) -> None:
        if isinstance(event, FolderProgress):
            cancel.set()

    limits = Limits(batch_messages=5, streams_per_account=1)  # one stream: one batch in flight when stopped
    result = runner.run_task(task, settings, cancel=cancel, sink=sink, limits=limits)

    (acct,) = result.accounts
    assert (result.status, acct.status) == ("stopped", "stopped")
    assert acct.copied == 5, "the batch being appended is finished, nothing after it"
    dst = contents(pair.dst, "alice")
    assert not extra(src, dst) and count(dst) == 5
    assert len(recorded(task)) == 5
    assert_state_matches_destination(task, pair.dst)
    db = StateDB(state_file(task))
    try:
        assert db.summaries()[account_key("alice")].status == "stopped"
        assert db.last_run()["status"] == "stopped"  # type: ignore[index]
    finally:
        db.close()

    second = runner.run_task(task, settings, limits=limits)
    assert (second.status, second.accounts[0].copied) == ("completed", count(src) - 5)
    assert second.accounts[0].skipped.get(SKIP_EXISTING, 0) == 0
    assert_same(src, contents(pair.dst, "alice"))


# --------------------------------------------------------------------------------------------
# 4. Transient failures at the source.


@pytest.mark.parametrize("fault", ["restart", "kick"])
def test_dropped_source_connection_reconnects_and_completes(
    pair: Pair, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    monkeypatch.setattr(runner, "BACKOFF_S", (0.05, 0.1, 0.2))
    mb.seed(pair.src, "alice", {"INBOX": small_mailbox(30), "Work": small_mailbox(30, first=100)})
    src = contents(pair.src, "alice")
    task, settings = pair.task(), pair.settings()
    struck = threading.Event()
    events: list[Event] = []

    def sink(event: Event) -> None:
        events.append(event)
        if isinstance(event, FolderProgress) and not struck.is_set():
            struck.set()
            if fault == "restart":
                pair.src.restart()
            else:
                pair.src.doveadm("kick", "alice")

    result = runner.run_task(task, settings, sink=sink, limits=Limits(batch_messages=4, queue_depth=1))

    (acct,) = result.accounts
    assert acct.status == "complete", acct.error
    retries = log_lines(events, "warning", "retrying")
    assert len(retries) == 1, [e.text for e in log_lines(events, "warning", "")]
    assert acct.copied == count(src) and acct.failed == 0
    assert_same(src, contents(pair.dst, "alice"))
    assert_state_matches_destination(task, pair.dst)


def test_source_down_for_good_fails_that_account_only(
    pair: Pair, dovecot_factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runner, "BACKOFF_S", (0.05, 0.1, 0.2))
    # alice's mailbox lives on a server that goes away mid-run; bob's and carol's on one that stays
    doomed = dovecot_factory(name="doomed")
    mb.seed(doomed, "alice", {"INBOX": small_mailbox(30), "Work": small_mailbox(10, first=100)})
    for i, user in enumerate(("bob", "carol")):
        mb.seed(pair.src, user, {"INBOX": small_mailbox(25, first=1000 * (i + 1))})
    alice_src = contents(doomed, "alice")
    task = pair.task(("alice", "bob", "carol"), save=False)
    task.run.concurrency = 3
    store.save_task(task, old_name=task.name)

    def sources(task: Task, user: User) -> runner.Source:
        if user.source == "alice":
            task = dataclasses.replace(task, source=dataclasses.replace(task.source, port=doomed.port))
        return runner.open_source(task, user)

    events: list[Event] = []

    def sink(event: Event) -> None:
        events.append(event)
        if isinstance(event, FolderProgress) and event.account == "alice" and doomed.running:
            doomed.stop()

    result = runner.run_task(
        task, pair.settings(), sink=sink, source_factory=sources, limits=Limits(batch_messages=4, queue_depth=1)
    )

    status = {a.account: a for a in result.accounts}
    assert {k: a.status for k, a in status.items()} == {"alice": "failed", "bob": "complete", "carol": "complete"}
    assert result.status == "partial"
    assert "connection refused" in status["alice"].error, status["alice"].error
    assert f"127.0.0.1:{doomed.port}" in status["alice"].error
    alice_retries = [e for e in log_lines(events, "warning", "retrying") if e.account == "alice"]
    assert len(alice_retries) == runner.RETRIES
    for user in ("bob", "carol"):
        assert_same(contents(pair.src, user), contents(pair.dst, user))
    alice_dst = contents(pair.dst, "alice")
    assert not extra(alice_src, alice_dst) and 0 < count(alice_dst) < count(alice_src)
    finished = {e.account: e.result.status for e in events if isinstance(e, AccountFinished) and e.result}
    assert finished == {"alice": "failed", "bob": "complete", "carol": "complete"}


# --------------------------------------------------------------------------------------------
# 5. APPENDs refused for size.


LIMIT = 50_000


@pytest.mark.parametrize("advertised", [True, False], ids=["APPENDLIMIT", "server-NO"])
def test_oversized_message_fails_alone_and_is_retried(
    dovecot_factory: Factory, mailmig_home: Path, advertised: bool
) -> None:
    src = dovecot_factory(name="src")
    dst = dovecot_factory(name="dst", autocreate=True, max_mail_size=LIMIT, advertise_appendlimit=advertised)
    pair = Pair(src, dst)
    normal = small_mailbox(8)
    big = mb.Msg(message(77, body=(b"B" * 98 + b"\r\n") * 1000), ("\\Seen",), when(2021, 1, 1))
    assert len(big.raw) > LIMIT
    work = small_mailbox(5, first=100)
    uids = mb.seed(src, "alice", {"INBOX": [*normal[:4], big, *normal[4:]], "Work": work})
    task, settings = pair.task(), pair.settings()
    events: list[Event] = []

    result = runner.run_task(task, settings, sink=events.append)  # one MULTIAPPEND batch per folder

    (acct,) = result.accounts
    assert acct.status == "complete"
    assert (acct.copied, acct.failed) == (len(normal) + len(work), 1)
    assert "1 message(s) could not be copied" in acct.error
    (failure,) = [e for e in events if isinstance(e, MessageFailed)]
    assert (failure.folder, failure.message) == ("INBOX", str(uids["INBOX"][4]))
    reason = f"over the destination's APPENDLIMIT of {LIMIT} bytes" if advertised else "[LIMIT] Mail size is larger"
    assert reason in failure.reason
    expected = contents(src, "alice")
    expected["INBOX"] = [m for m in expected["INBOX"] if m[0] != big.raw]
    assert_same(expected, contents(dst, "alice"))

    report = cli("report", task.name, "--json")
    assert report.returncode == 0, report.stderr
    (row,) = json.loads(report.stdout)["accounts"]
    assert (row["status"], row["failed"], row["copied"]) == ("complete", 1, len(normal) + len(work))
    assert "could not be copied" in row["last_error"]
    assert [(m["folder"], m["id"]) for m in row["failed_messages"]] == [("INBOX", str(uids["INBOX"][4]))]
    assert reason in row["failed_messages"][0]["reason"]

    rerun = cli("run", task.name)  # the failed message is retried, fails again, nothing is duplicated
    assert rerun.returncode == 1, rerun.stdout + rerun.stderr
    assert reason in rerun.stdout + rerun.stderr
    assert_same(expected, contents(dst, "alice"))
    db = StateDB(state_file(task))
    try:
        assert [(f, i) for f, i, _ in db.failed_messages(account_key("alice"))] == [("INBOX", str(uids["INBOX"][4]))]
        assert db.summaries()[account_key("alice")].failed == 1
    finally:
        db.close()


# --------------------------------------------------------------------------------------------
# 6. A message expunged at the source between listing and fetching.


def test_message_expunged_during_the_run_is_vanished_not_failed(pair: Pair) -> None:
    mb.seed(pair.src, "alice", {"INBOX": small_mailbox(30), "Work": small_mailbox(30, first=100)})
    task, settings = pair.task(), pair.settings()
    events: list[Event] = []
    gone: list[str] = []

    def sink(event: Event) -> None:
        events.append(event)
        if isinstance(event, FolderProgress) and not gone:
            later = "Work" if event.folder == "INBOX" else "INBOX"  # listed already, not fetched yet
            gone.append(later)
            client = mb.connect(pair.src, "alice")
            try:
                client.select_folder(later)
                client.set_flags([min(client.search("ALL"))], ["\\Deleted"])
                client.expunge()
            finally:
                client.logout()

    # one stream: the second folder is only fetched after the first (test_streams.py has several)
    limits = Limits(batch_messages=4, queue_depth=1, streams_per_account=1)
    result = runner.run_task(task, settings, sink=sink, limits=limits)

    (acct,) = result.accounts
    assert acct.status == "complete", acct.error
    assert acct.failed == 0 and acct.error == ""
    assert acct.skipped == {SKIP_VANISHED: 1}
    assert not [e for e in events if isinstance(e, MessageFailed)]
    (warning,) = log_lines(events, "warning", "vanished")
    assert warning.folder == gone[0]
    src = contents(pair.src, "alice")
    assert acct.copied == count(src)
    assert_same(src, contents(pair.dst, "alice"))
    assert recorded(task, "failed") == []
    assert runner.run_task(task, settings).accounts[0].copied == 0


# --------------------------------------------------------------------------------------------
# 7. State is bound to the source server.


def test_state_bound_to_its_source_until_forgotten(pair: Pair, dovecot_factory: Factory) -> None:
    folders = {"INBOX": small_mailbox(10), "Work": small_mailbox(5, first=100)}
    mb.seed(pair.src, "alice", folders)
    settings = pair.settings()
    first = runner.run_task(pair.task(), settings)
    assert first.accounts[0].status == "complete"
    before = contents(pair.dst, "alice")

    other = dovecot_factory(name="other")  # the same mail, plus one new message, on another server
    mb.seed(other, "alice", {**folders, "INBOX": [*folders["INBOX"], mb.Msg(message(500), (), when(2024, 1, 2))]})
    moved = Pair(other, pair.dst)
    task = moved.task()

    refused = cli("run", task.name)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    out = refused.stdout + refused.stderr
    assert "mailmig-tui forget TASK --account alice" in out and f"127.0.0.1:{other.port}" in out
    result = runner.run_task(task, settings)
    (acct,) = result.accounts
    assert (result.status, acct.status) == ("failed", "failed")
    assert "mailmig-tui forget" in acct.error and f"127.0.0.1:{pair.src.port}" in acct.error
    assert contents(pair.dst, "alice") == before

    forgot = cli("forget", task.name, "--account", "alice")
    assert forgot.returncode == 0, forgot.stderr
    result = runner.run_task(task, settings)
    (acct,) = result.accounts
    assert acct.status == "complete", acct.error
    assert acct.copied == 1
    assert acct.skipped == {SKIP_EXISTING: count(contents(pair.src, "alice"))}
    assert_same(contents(other, "alice"), contents(pair.dst, "alice"))


# --------------------------------------------------------------------------------------------
# 8. Several accounts at once in a tiny byte budget.


def test_three_accounts_at_once_stay_within_a_tiny_byte_budget(pair: Pair) -> None:
    users = ("alice", "bob", "carol")
    big = mb.Msg(message(4242, body=(b"G" * 98 + b"\r\n") * 600), ("\\Seen",), when(2022, 2, 2))
    for i, user in enumerate(users):
        base = 1000 * (i + 1)
        inbox = [
            mb.Msg(message(base + k, body=(b"%d " % k) * (200 + 300 * (k % 7))), (), when(2020, 1, 1 + k % 28))
            for k in range(25)
        ]
        if user == "alice":
            inbox.insert(10, big)
        mb.seed(pair.src, user, {"INBOX": inbox, "Work": small_mailbox(12, first=base + 500)})
    task = pair.task(users, save=False)
    task.run.concurrency = 3
    store.save_task(task, old_name=task.name)
    budget = 20_000
    events: list[Event] = []

    result = runner.run_task(
        task,
        pair.settings(),
        sink=events.append,
        budget_bytes=budget,
        limits=Limits(batch_messages=3, batch_bytes=8_000, queue_depth=1),
    )

    assert result.status == "completed"
    assert {a.account: a.status for a in result.accounts} == dict.fromkeys(users, "complete")
    for user in users:
        assert_same(contents(pair.src, user), contents(pair.dst, user))
    assert len(big.raw) > budget
    assert 0 < result.peak_budget
    assert result.peak_budget <= budget or result.peak_budget == len(big.raw), result.peak_budget
    kinds = [(type(e).__name__, e.account) for e in events if isinstance(e, AccountStarted | AccountFinished)]
    first_finish = next(i for i, (kind, _) in enumerate(kinds) if kind == "AccountFinished")
    assert {a for kind, a in kinds[:first_finish] if kind == "AccountStarted"} == set(users), "three at once"
