"""``mailmig-tui run / verify / report`` as real processes against real Dovecot (DESIGN.md §7).

Each command runs as ``python -m mailmig_tui`` with ``MAILMIG_HOME`` pointing at the test's
own directory; tests look at the exit code, stdout/stderr, the files under MAILMIG_HOME and
what the IMAP servers hold.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mailmig_tui.engine import model, runner, store
from mailmig_tui.engine.sources.base import SKIP_TOO_OLD
from tests.integration.conftest import MASTER_PASSWORD, Pair, contents, message, when
from tests.servers import mailbox as mb
from tests.servers.dovecot import DovecotServer, free_port

DovecotFactory = Callable[..., DovecotServer]
TASK = "acme"


def cli(home: Path, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MAILMIG_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "mailmig_tui", *args],
        capture_output=True, text=True, env=env, timeout=timeout, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def tree(root: Path) -> dict[str, tuple[bytes, int] | None]:
    """Every path under ``root``: files with their bytes and mtime, directories as None."""
    out: dict[str, tuple[bytes, int] | None] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        out[rel] = (path.read_bytes(), path.stat().st_mtime_ns) if path.is_file() else None
    return out


def save_task(pair: Pair, users: tuple[str, ...] = ("alice", "bob"), *, name: str = TASK, **changes: Any) -> model.Task:
    task = pair.task(users, name=name, save=False)
    for key, value in changes.items():
        obj = task
        *parents, leaf = key.split("__")
        for part in parents:
            obj = getattr(obj, part)
        setattr(obj, leaf, value)
    store.save_task(task, old_name=name if store.task_exists(name) else None)
    pair.settings()
    return task


def seed_inboxes(pair: Pair, users: tuple[str, ...] = ("alice", "bob"), n: int = 2) -> None:
    for k, user in enumerate(users):
        msgs = [mb.Msg(message(100 * k + i), ("\\Seen",), when(2021, 1 + i, 1 + k)) for i in range(n)]
        mb.seed(pair.src, user, {"INBOX": msgs})


def summary_lines(stdout: str) -> dict[str, str]:
    """The per-account summary lines at the end of ``run`` ("alice → alice: complete; …")."""
    return {m.group(1): m.group(0) for m in re.finditer(r"^(\S+) → \S+: .*$", stdout, re.MULTILINE)}


def plan_lines(text: str) -> list[str]:
    """The folder lines of a dry run's plan ("INBOX → INBOX: copy 2 …"), sorted (LIST order is the server's)."""
    return sorted(line.strip() for line in text.splitlines() if line.startswith("  ") and " → " in line)


def json_out(proc: subprocess.CompletedProcess[str]) -> Any:
    try:
        return json.loads(proc.stdout)
    except ValueError:
        pytest.fail(f"stdout is not JSON:\n{proc.stdout}\n--- stderr:\n{proc.stderr}")


def state_rows(home: Path, sql: str) -> list[tuple]:
    db = sqlite3.connect(f"file:{home / 'data' / 'state' / (TASK + '.sqlite')}?mode=ro", uri=True, timeout=5)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


# --------------------------------------------------------------------------------------------
# run: summary, --json, --account.


def test_run_prints_a_summary_per_account_and_exits_0(pair: Pair, mailmig_home: Path) -> None:
    seed_inboxes(pair)
    save_task(pair)

    proc = cli(mailmig_home, "run", TASK)

    assert proc.returncode == 0, proc.stderr
    lines = summary_lines(proc.stdout)
    assert set(lines) == {"alice", "bob"}
    for user in ("alice", "bob"):
        size = sum(len(raw) for raw, _, _ in contents(pair.src, user)["INBOX"])
        assert re.fullmatch(
            rf"{user} → {user}: complete; 1 folder\(s\), 2 copied, skipped: none, 0 failed, {size} B, \d+\.\d s",
            lines[user],
        ), lines[user]
        assert contents(pair.dst, user)["INBOX"] == contents(pair.src, user)["INBOX"]
    assert "INFO    alice: account started" in proc.stdout
    log = store.paths().log_file(TASK).read_text()
    assert "account complete: 1 folder(s), 2 copied" in log and "alice-pw" not in log

    again = cli(mailmig_home, "run", TASK, "--json")

    assert again.returncode == 0, again.stderr
    out = json_out(again)
    assert [(r["account"], r["status"], r["copied"], r["failed"], r["error"]) for r in out] == [
        ("alice", "complete", 0, 0, ""),
        ("bob", "complete", 0, 0, ""),
    ]
    assert set(out[0]) == {
        "account", "destination", "status", "folders", "copied", "skipped", "skipped_folders", "failed_folders", "failed", "bytes",
        "duration", "error",
    }  # fmt: skip


def test_run_account_option_runs_only_that_account(pair: Pair, mailmig_home: Path) -> None:
    seed_inboxes(pair, ("alice", "bob", "carol"))
    save_task(pair, ("alice", "bob", "carol"))

    proc = cli(mailmig_home, "run", TASK, "--account", "bob", "--account", "CAROL", "--json")

    assert proc.returncode == 0, proc.stderr
    assert [(r["account"], r["status"], r["copied"]) for r in json_out(proc)] == [
        ("bob", "complete", 2),
        ("carol", "complete", 2),
    ]
    assert not any(contents(pair.dst, "alice").values())
    assert contents(pair.dst, "bob")["INBOX"] == contents(pair.src, "bob")["INBOX"]
    report = json_out(cli(mailmig_home, "report", TASK, "--json"))
    assert [(a["account"], a["status"], a["copied"]) for a in report["accounts"]] == [
        ("alice", "not started", 0),
        ("bob", "complete", 2),
        ("carol", "complete", 2),
    ]


def test_run_unknown_account_exits_2_and_writes_nothing(pair: Pair, mailmig_home: Path) -> None:
    save_task(pair)
    before = tree(mailmig_home)

    proc = cli(mailmig_home, "run", TASK, "--account", "mallory")

    assert proc.returncode == 2
    assert f'mailmig-tui: mallory is not in the user list of task "{TASK}"' in proc.stderr
    assert tree(mailmig_home) == before


# --------------------------------------------------------------------------------------------
# --dry-run.


@pytest.mark.parametrize("name", [TASK, "Q3 #2? 100%"])
def test_dry_run_prints_the_plan_and_writes_nothing(pair: Pair, mailmig_home: Path, name: str) -> None:
    mb.seed(
        pair.src,
        "alice",
        {
            "INBOX": [
                mb.Msg(message(1), (), when(2014, 12, 31, 12)),  # before skip_before
                mb.Msg(message(2), (), when(2015, 1, 1, 12)),
                mb.Msg(message(3), (), when(2016, 1, 1, 12)),
            ],
            "Work": [mb.Msg(message(4), (), when(2020, 1, 1))],
            "Trash": [mb.Msg(message(5), (), when(2020, 1, 1))],
        },
    )
    save_task(pair, ("alice",), name=name, filters__skip_before=dt.date(2015, 1, 1), filters__skip_trash=True)
    src_before, dst_before, home_before = contents(pair.src, "alice"), contents(pair.dst, "alice"), tree(mailmig_home)
    size = len(message(2)) + len(message(3))

    proc = cli(mailmig_home, "run", name, "--dry-run")

    assert proc.returncode == 0, proc.stderr
    assert "Plan for alice (nothing was written):" in proc.stdout
    assert plan_lines(proc.stdout) == [
        f"INBOX → INBOX: copy 2 ({size} B), skip: 1 {SKIP_TOO_OLD}",
        "Trash → Trash: skipped: Trash skipped by filter",
        f"Work → Work: copy 1 ({len(message(4))} B), skip: none",
    ]
    assert re.search(
        r"^alice → alice: planned; 2 folder\(s\), 3 would copy, skipped: 1 received before", proc.stdout, re.M
    )
    assert "complete" not in proc.stdout + proc.stderr, "a dry run copies nothing: it says what it would copy"
    assert tree(mailmig_home) == home_before, "a dry run writes no state, no log, no lock"
    report = cli(mailmig_home, "report", name)
    assert report.returncode == 0, report.stderr
    assert report.stdout.splitlines()[:2] == [
        f"Task {name}: last run never",
        "  alice → alice: not started; 0 folder(s), 0 copied, skipped: none, 0 failed, 0 B, last run 0.0 s",
    ]
    reported = json_out(cli(mailmig_home, "report", name, "--json"))
    assert (reported["last_run"], reported["accounts"][0]["status"]) == (None, "not started")
    assert contents(pair.dst, "alice") == dst_before
    assert contents(pair.src, "alice") == src_before

    assert cli(mailmig_home, "run", name).returncode == 0
    state = mailmig_home / "data" / "state"
    assert {p.name for p in state.iterdir()} == {f"{name}.lock", f"{name}.sqlite", "destinations"}
    assert [p.name for p in (state / "destinations").iterdir()] == ["alice.lock"]  # the account's lock
    mb.seed(pair.src, "alice", {"INBOX": [mb.Msg(message(6), (), when(2021, 1, 1))]})
    home_before, dst_before = tree(mailmig_home), contents(pair.dst, "alice")

    again = cli(mailmig_home, "run", name, "--dry-run")

    assert again.returncode == 0, again.stderr
    assert plan_lines(again.stdout) == [
        f"INBOX → INBOX: copy 1 ({len(message(6))} B), skip: 1 {SKIP_TOO_OLD}",
        "Trash → Trash: skipped: Trash skipped by filter",
        "Work → Work: unchanged since the last run",
    ]
    as_json = cli(mailmig_home, "run", name, "--dry-run", "--json")

    assert as_json.returncode == 0, as_json.stderr
    planned = json_out(as_json)
    assert [(r["account"], r["status"], r["copied"], r["would_copy"]) for r in planned] == [("alice", "planned", 0, 1)]
    assert planned[0]["would_copy_bytes"] == len(message(6))
    assert planned[0]["skipped_folders"] == {"trash": 1}
    assert "complete" not in as_json.stdout + as_json.stderr
    assert plan_lines(as_json.stderr) == plan_lines(again.stdout)
    assert tree(mailmig_home) == home_before, "a dry run after a real run leaves the state and log untouched"
    assert contents(pair.dst, "alice") == dst_before


# --------------------------------------------------------------------------------------------
# report, and exit 1 when an account fails.


def test_report_after_a_run_with_failures(dovecot_factory: DovecotFactory, mailmig_home: Path) -> None:
    src = dovecot_factory(name="src")
    dst = dovecot_factory(name="dst", autocreate=True, max_mail_size=50_000)
    pair = Pair(src, dst)
    big = message(9, body=b"b" * 60_000 + b"\r\n")
    mb.seed(
        src,
        "alice",
        {
            "INBOX": [
                mb.Msg(message(1), ("\\Seen",), when(2014, 6, 1)),
                mb.Msg(message(2), ("\\Seen",), when(2020, 6, 1)),
                mb.Msg(big, (), when(2020, 6, 2)),
            ],
            "Work": [mb.Msg(message(3), (), when(2020, 6, 3))],
        },
    )
    task = save_task(pair, ("alice", "bob"), filters__skip_before=dt.date(2015, 1, 1))
    task.users[1].password = "not-bobs-password"
    store.save_task(task, old_name=TASK)

    proc = cli(mailmig_home, "run", TASK, "--json")

    assert proc.returncode == 1, proc.stderr
    run = {r["account"]: r for r in json_out(proc)}
    assert run["alice"] | {"duration": 0} == {
        "account": "alice",
        "destination": "alice",
        "status": "complete",
        "folders": 2,
        "copied": 2,
        "skipped": {"too_old": 1},
        "skipped_folders": {},
        "failed_folders": {},
        "failed": 1,
        "bytes": len(message(2)) + len(message(3)),
        "duration": 0,
        "error": "1 message(s) could not be copied (they are retried next run)",
    }
    assert run["bob"]["status"] == "failed" and "login refused for bob" in run["bob"]["error"]
    assert "not-bobs-password" not in proc.stdout + proc.stderr

    report = cli(mailmig_home, "report", TASK, "--json")

    assert report.returncode == 0, report.stderr
    data = json_out(report)
    assert data["task"] == TASK and data["last_run"]["status"] == "partial"
    iso = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d")
    started, finished = data["last_run"]["started"], data["last_run"]["finished"]
    assert iso.fullmatch(started) and iso.fullmatch(finished), data["last_run"]
    assert dt.datetime.fromisoformat(started) <= dt.datetime.fromisoformat(finished)
    alice, bob = data["accounts"]
    for account in (alice, bob):
        assert iso.fullmatch(account.pop("last_started")) and iso.fullmatch(account.pop("last_finished")), account
    assert alice == {
        "account": "alice",
        "destination": "alice",
        "status": "complete",
        "folders": 2,
        "copied": 2,
        "skipped": {"too_old": 1},
        "failed": 1,
        "bytes": len(message(2)) + len(message(3)),
        "duration": run["alice"]["duration"],
        "last_error": "1 message(s) could not be copied (they are retried next run)",
        "failed_messages": [
            {
                "folder": "INBOX",
                "id": "3",
                "code": "too_large",
                "reason": f"{len(big)} bytes is over the destination's APPENDLIMIT of 50000 bytes",
            }
        ],
    }
    assert run["alice"]["duration"] > 0
    assert (bob["status"], bob["copied"], bob["failed"], bob["bytes"]) == ("failed", 0, 0, 0)
    assert bob["last_error"] == run["bob"]["error"]

    text = cli(mailmig_home, "report", TASK)

    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert re.fullmatch(rf"Task {TASK}: last run \d{{4}}-\d\d-\d\d \d\d:\d\d \(partial\)", lines[0])
    assert re.fullmatch(
        r"  alice → alice: complete; 2 folder\(s\), 2 copied, skipped: 1 received before the date filter, "
        r"1 failed, \d+ B, last run \d+\.\d s",
        lines[1],
    )
    assert lines[2] == "      last error: 1 message(s) could not be copied (they are retried next run)"
    assert lines[3].startswith("      failed: [INBOX] message 3: ")
    assert lines[4].startswith("  bob → bob: failed; 0 folder(s), 0 copied, skipped: none, 0 failed, 0 B")
    assert lines[5].startswith("      last error: ") and "login refused for bob" in lines[5]


def test_a_folder_the_destination_refuses_fails_alone_on_every_run(
    dovecot_factory: DovecotFactory, mailmig_home: Path
) -> None:
    """A Maildir++ source holds "cur" and "Bad\\x01Name"; the destination (fs layout) refuses to CREATE
    "cur" (a reserved name) and any name with a control character. "Bad\\x01Name" is copied as
    "Bad_Name" (the dry run says so); "cur" fails alone: the account is partial, names it and why,
    exit 1, and so again on the next run, while the other folders are copied once."""
    src = dovecot_factory(name="src", separator=".")
    dst = dovecot_factory(name="dst", autocreate=True)
    pair = Pair(src, dst)
    mb.seed(
        src,
        "alice",
        {
            "INBOX": [mb.Msg(message(1), ("\\Seen",), when(2020, 1, 1))],
            "cur": [mb.Msg(message(2), (), when(2020, 2, 1))],
            "Work": [mb.Msg(message(3), (), when(2020, 3, 1)), mb.Msg(message(4), ("\\Flagged",), when(2020, 4, 1))],
        },
    )
    src.create_folder_on_disk("alice", "Bad&AAE-Name")
    mb.append(src, "alice", "Bad&AAE-Name", [mb.Msg(message(5), (), when(2020, 5, 1))])
    assert b'(\\HasNoChildren) "." Bad&AAE-Name' in mb.raw_list(src, "alice")
    save_task(pair, ("alice",))

    plan = cli(mailmig_home, "run", TASK, "--dry-run")

    assert plan.returncode == 0, plan.stderr
    lines = plan_lines(plan.stdout)
    assert any("→ Bad_Name: copy 1 (" in line for line in lines), lines
    assert any(line.startswith("cur → cur: copy 1") for line in lines), lines
    assert 'contains control characters, which the destination may refuse: written as "Bad_Name"' in plan.stdout

    copied = {"INBOX": "INBOX", "Work": "Work", "Bad\x01Name": "Bad_Name"}
    for attempt in (1, 2):
        proc = cli(mailmig_home, "run", TASK, "--json")

        assert proc.returncode == 1, proc.stderr
        (alice,) = json_out(proc)
        assert (alice["status"], alice["copied"], alice["folders"]) == ("partial", 4 if attempt == 1 else 0, 3)
        assert list(alice["failed_folders"]) == ["cur"]
        reason = alice["failed_folders"]["cur"]
        assert reason.startswith('the destination refused to create "cur" (') and "reserved name" in reason
        assert alice["error"] == f'1 folder(s) could not be copied (tried again next run): "cur": {reason}'
        want = mb.contents(mb.snapshot(src, "alice", copied))
        got = mb.contents(mb.snapshot(dst, "alice", copied.values()))
        assert got == {copied[name]: msgs for name, msgs in want.items()}
        assert not any(line.endswith(b" cur") for line in mb.raw_list(dst, "alice"))

    report = cli(mailmig_home, "report", TASK)

    assert report.returncode == 0, report.stderr
    lines = report.stdout.splitlines()
    assert lines[0].endswith("(partial)")
    assert lines[1].startswith("  alice → alice: partial; ")
    assert lines[2] == f"      last error: {alice['error']}"
    data = json_out(cli(mailmig_home, "report", TASK, "--json"))
    assert (data["last_run"]["status"], data["accounts"][0]["status"]) == ("partial", "partial")


def test_wrong_master_password_fails_every_account_with_exit_1(pair: Pair, mailmig_home: Path) -> None:
    """A bad master password is only seen at each account's login (a destination account may also
    simply not exist), so the run starts and every account fails: exit 1, not 3."""
    seed_inboxes(pair)
    save_task(pair)
    settings = store.load_settings()
    settings.destination.password = "not-the-master-password"
    store.save_settings(settings)

    proc = cli(mailmig_home, "run", TASK)

    assert proc.returncode == 1
    lines = summary_lines(proc.stdout)
    for user in ("alice", "bob"):
        assert lines[user].startswith(f"{user} → {user}: failed; 0 folder(s), 0 copied")
        assert f"login refused for {user} (as {user}*mailmig-admin): wrong password or account disabled" in proc.stdout
    assert "not-the-master-password" not in proc.stdout + proc.stderr
    assert "not-the-master-password" not in store.paths().log_file(TASK).read_text()
    assert contents(pair.dst, "alice")["INBOX"] == []


# --------------------------------------------------------------------------------------------
# Exit codes 2 and 3.


def test_invalid_task_exits_2_with_the_problem_on_stderr(pair: Pair, mailmig_home: Path) -> None:
    save_task(pair, source__host="")
    before = tree(mailmig_home)

    proc = cli(mailmig_home, "run", TASK)

    assert proc.returncode == 2
    assert f"mailmig-tui: task {TASK} cannot run:" in proc.stderr
    assert "  - source.host: the server address is missing (a host name or an IP address)" in proc.stderr
    assert proc.stdout == ""
    assert tree(mailmig_home) == before


def test_broken_task_file_exits_2(pair: Pair, mailmig_home: Path) -> None:
    save_task(pair)
    path = store.paths().task_file(TASK)
    path.write_text(path.read_text().replace("port = ", "prot = ", 1))

    proc = cli(mailmig_home, "run", TASK)

    assert proc.returncode == 2
    assert str(path) in proc.stderr and 'unknown key; did you mean "port"?' in proc.stderr


def test_unreachable_destination_exits_3(pair: Pair, mailmig_home: Path) -> None:
    seed_inboxes(pair)
    save_task(pair)
    settings = store.load_settings()
    settings.destination.port = free_port()
    store.save_settings(settings)

    proc = cli(mailmig_home, "run", TASK)

    assert proc.returncode == 3
    assert (
        f"mailmig-tui: the destination server cannot be reached: 127.0.0.1:{settings.destination.port}: "
        "connection refused" in proc.stderr
    )
    assert summary_lines(proc.stdout) == {}


def test_locked_task_exits_3(pair: Pair, mailmig_home: Path) -> None:
    seed_inboxes(pair)
    save_task(pair)

    with runner.TaskLock(runner.lock_path(store.paths(), TASK), "the test"):
        proc = cli(mailmig_home, "run", TASK)
        assert runner.lock_holder(runner.lock_path(store.paths(), TASK))["pid"] == os.getpid()

    assert proc.returncode == 3
    assert f"mailmig-tui: the task is already running: the test (pid {os.getpid()} on " in proc.stderr
    assert contents(pair.dst, "alice")["INBOX"] == []
    assert cli(mailmig_home, "run", TASK).returncode == 0


# --------------------------------------------------------------------------------------------
# Interrupting a run.


def _seed_bulk(server: DovecotServer, user: str, n: int) -> None:
    client = mb.connect(server, user)
    try:
        client.create_folder("Bulk")
        for start in range(0, n, 500):
            batch = [
                {"msg": message(i, body=b"%d " % i + b"x" * 2000 + b"\r\n"), "flags": ("\\Seen",) if i % 3 else (),
                 "date": when(2020, 1, 1 + i % 28)}
                for i in range(start, min(n, start + 500))
            ]  # fmt: skip
            client.multiappend("Bulk", batch)
    finally:
        client.logout()


def _wait_for_a_copied_batch(proc: subprocess.Popen[str], home: Path, before: str) -> None:
    """Until the run's state records a copied message (at most 60 s), the run still going."""
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, f"the run ended before {before}: {proc.communicate()}"
        assert time.monotonic() < deadline, "no batch was recorded within 60 s"
        time.sleep(0.02)
        try:
            if state_rows(home, "SELECT COUNT(*) FROM messages WHERE status = 'copied'")[0][0]:
                return
        except sqlite3.OperationalError:
            continue  # the state database or its tables do not exist yet


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_the_run_with_130_and_a_rerun_completes(pair: Pair, mailmig_home: Path, sig: int) -> None:
    total = 3000
    _seed_bulk(pair.src, "alice", total)
    save_task(pair, ("alice",))
    env = {**os.environ, "MAILMIG_HOME": str(mailmig_home)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailmig_tui", "run", TASK],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=env,
    )  # fmt: skip
    try:
        _wait_for_a_copied_batch(proc, mailmig_home, "it could be interrupted")
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    assert proc.returncode == 130, err
    assert "stopping after the current batch" in err
    assert re.search(r"^alice → alice: stopped; ", out, re.M), out
    stopped_at = len(contents(pair.dst, "alice").get("Bulk", []))
    assert 0 < stopped_at < total
    assert state_rows(mailmig_home, "SELECT COUNT(*) FROM messages WHERE status = 'copied'")[0][0] == stopped_at
    assert state_rows(mailmig_home, "SELECT status FROM runs") == [("stopped",)]

    again = cli(mailmig_home, "run", TASK, "--json")

    assert again.returncode == 0, again.stderr
    (result,) = json_out(again)
    assert (result["status"], result["copied"], result["failed"]) == ("complete", total - stopped_at, 0)
    assert contents(pair.dst, "alice")["Bulk"] == contents(pair.src, "alice")["Bulk"]


@pytest.mark.slow
def test_a_run_whose_output_reader_goes_away_stops_cleanly_with_141(pair: Pair, mailmig_home: Path) -> None:
    """``mailmig-tui run T | head -1``: no traceback; the run stops after its batch, a rerun completes."""
    total = 3000
    _seed_bulk(pair.src, "alice", total)
    save_task(pair, ("alice",))
    env = {**os.environ, "MAILMIG_HOME": str(mailmig_home)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailmig_tui", "run", TASK],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=env,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    try:
        assert proc.stdout.readline().startswith("INFO    run started")
        _wait_for_a_copied_batch(proc, mailmig_home, "its reader went away")  # the account is being copied
        proc.stdout.close()
        proc.wait(timeout=60)
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    assert proc.returncode == 141, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert "the output's reader went away: stopping after the current batch" in err
    assert state_rows(mailmig_home, "SELECT status FROM runs")[0][0] in ("stopped", "completed")
    again = cli(mailmig_home, "run", TASK, "--json")
    assert again.returncode == 0, again.stderr
    assert contents(pair.dst, "alice")["Bulk"] == contents(pair.src, "alice")["Bulk"], "nothing lost, nothing twice"


# --------------------------------------------------------------------------------------------
# Accounts per period.


def test_accounts_per_period_cover_the_list_in_order_then_pass_over_all(pair: Pair, mailmig_home: Path) -> None:
    users = ("u1", "u2", "u3", "u4", "u5")
    for user in users:
        pair.src.users[user] = f"{user}-pw"
        pair.dst.users[user] = f"{user}-pw"
    pair.src.add_user("u5", "u5-pw")
    pair.dst.add_user("u5", "u5-pw")
    for user in users:
        mb.seed(pair.src, user, {"INBOX": [mb.Msg(message(int(user[1:])), (), when(2020, 1, 1))]})
    save_task(pair, users, run__accounts_per_period=2, run__concurrency=1)

    def run_accounts() -> list[tuple[str, int]]:
        proc = cli(mailmig_home, "run", TASK, "--json")
        assert proc.returncode == 0, proc.stderr
        return [(r["account"], r["copied"]) for r in json_out(proc)]

    assert run_accounts() == [("u1", 1), ("u2", 1)]
    assert run_accounts() == [("u3", 1), ("u4", 1)]
    assert run_accounts() == [("u5", 1), ("u1", 0)]  # room left: a completed account gets an incremental pass
    for user in users:
        assert contents(pair.dst, user)["INBOX"] == contents(pair.src, user)["INBOX"]
    mb.seed(pair.src, "u4", {"INBOX": [mb.Msg(message(44), (), when(2020, 2, 2))]})

    assert run_accounts() == [("u1", 0), ("u2", 0), ("u3", 0), ("u4", 1), ("u5", 0)]
    assert contents(pair.dst, "u4")["INBOX"] == contents(pair.src, "u4")["INBOX"]


# --------------------------------------------------------------------------------------------
# verify.


def test_verify_command(dovecot_factory: DovecotFactory, mailmig_home: Path) -> None:
    src = dovecot_factory(name="src", users={"alice": "alice-pw", "bob": "bob-pw", "dave": "dave-pw"})
    dst = dovecot_factory(name="dst")
    pair = Pair(src, dst)
    task = save_task(pair, ("alice", "bob", "dave"))
    task.users[1].password = "not-bobs-password"
    store.save_task(task, old_name=TASK)

    proc = cli(mailmig_home, "verify", TASK, "--json")

    assert proc.returncode == 1, proc.stderr
    data = {v["account"]: v for v in json_out(proc)}
    assert [(a, v["ok"], v["source_ok"], v["destination_ok"]) for a, v in data.items()] == [
        ("alice", True, True, True),
        ("bob", False, False, True),
        ("dave", False, True, False),
    ]
    assert data["alice"]["source"] == "login OK, INBOX holds 0 message(s)"
    assert data["alice"]["destination_detail"] == "enabled, INBOX holds 0 message(s)"
    assert "login refused for bob: wrong password or account disabled" in data["bob"]["source"]
    assert "login refused for dave (as dave*mailmig-admin)" in data["dave"]["destination_detail"]

    text = cli(mailmig_home, "verify", TASK)

    assert text.returncode == 1
    lines = text.stdout.splitlines()
    assert lines[0] == (
        "OK   alice → alice: OK: source login OK, INBOX holds 0 message(s); destination enabled, INBOX holds 0 message(s)"
    )
    assert lines[1].startswith("FAIL bob → bob: source: ") and "destination" not in lines[1]
    assert lines[2].startswith("FAIL dave → dave: destination: ")
    assert "not-bobs-password" not in text.stdout + text.stderr

    ok = cli(mailmig_home, "verify", TASK, "--account", "alice")

    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("OK   alice → alice: ")


def test_verify_command_with_unreachable_source(dovecot: DovecotServer, mailmig_home: Path) -> None:
    port = free_port()
    store.save_task(
        model.Task(
            TASK, model.Source(host="127.0.0.1", port=port, security="none"), users=[model.User("a", "alice", "pw")]
        )
    )
    store.save_settings(
        model.Settings(
            model.Destination(host="127.0.0.1", port=dovecot.port, security="none", password=MASTER_PASSWORD)
        )
    )

    proc = cli(mailmig_home, "verify", TASK, "--json")

    assert proc.returncode == 1
    (verdict,) = json_out(proc)
    assert (verdict["ok"], verdict["source_ok"], verdict["destination_ok"]) == (False, False, True)
    assert (
        verdict["source"] == f"127.0.0.1:{port}: connection refused: is the IMAP server running and is the port right?"
    )


def test_run_under_nohup_outlives_a_hangup(pair: Pair) -> None:
    """SIGHUP ignored by the parent (nohup) stays ignored: hangups during the run do not stop it."""
    mb.seed(pair.src, "alice", {"INBOX": [mb.Msg(message(i), (), when(2021, 1, 1, 0, 0, 0)) for i in range(300)]})
    pair.task(), pair.settings()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailmig_tui", "run", "acme"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN),
    )
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        proc.send_signal(signal.SIGHUP)  # the whole run long, as a dropped session would
        time.sleep(0.05)
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0, out
    assert len(contents(pair.dst, "alice")["INBOX"]) == 300
