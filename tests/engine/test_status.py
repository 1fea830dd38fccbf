"""A task's status from the run lock, the state database and the user list (engine.status)."""

from __future__ import annotations

import datetime as dt
import os

import pytest

from mailmig_tui.engine import runner, schedule, store
from mailmig_tui.engine.events import AccountResult
from mailmig_tui.engine.model import RunOptions, Schedule, Task, User
from mailmig_tui.engine.state import StateDB
from mailmig_tui.engine.status import StatusReader, task_status


def make_task(n: int = 3, per_period: int = 10) -> Task:
    task = Task(
        name="acme",
        users=[User(f"u{i}", f"u{i}", password="x") for i in range(n)],
        run=RunOptions(accounts_per_period=per_period),
    )
    store.save_task(task)
    return task


def finish(db: StateDB, run_id: int, account: str, status: str) -> None:
    db.bind_account(account, "imap://src", account)
    db.set_account_status(account, "running")
    db.set_account_status(account, status)
    db.record_account_run(run_id, AccountResult(account, account, status=status), 0.0)


def test_a_task_never_run_is_idle(mailmig_home):
    st = task_status(make_task())
    assert (st.state, st.accounts_done, st.accounts_total, st.running) == ("idle", 0, 3, False)
    assert st.last_run is None and st.next_run is None
    assert not store.paths().state_file("acme").exists(), "reading the status creates nothing"


def test_after_a_run_the_state_database_decides(mailmig_home):
    task = make_task()
    db = StateDB(store.paths().state_file("acme"))
    run_id = db.start_run(False)
    finish(db, run_id, "u0", "complete")
    finish(db, run_id, "u1", "failed")
    db.finish_run(run_id, "partial")
    reader = StatusReader()
    st = reader.status(task)
    assert (st.state, st.accounts_done, st.accounts_total, st.last_status) == ("failed", 1, 3, "partial")
    assert st.last_run is not None
    for db_status, shown in (("completed", "completed"), ("stopped", "stopped"), ("interrupted", "stopped")):
        db.finish_run(run_id, db_status)
        assert reader.status(task).state == shown
    db.close()


def test_a_run_that_died_without_finishing_is_stopped(mailmig_home):
    task = make_task()
    db = StateDB(store.paths().state_file("acme"))
    db.start_run(False)  # never finished, and nobody holds the lock
    db.close()
    assert task_status(task).state == "stopped"


def test_a_run_of_another_process(mailmig_home):
    task = make_task(n=5, per_period=3)
    p = store.paths()
    with runner.TaskLock(runner.lock_path(p, "acme"), "cli"):
        st = task_status(task)
        assert st.state == "starting"  # locked, run not registered yet
        assert st.holder is not None and st.holder["by"] == "cli" and st.holder["pid"] == os.getpid()
        db = StateDB(p.state_file("acme"))
        run_id = db.start_run(False)
        st = task_status(task)
        assert (st.state, st.run_done, st.run_total) == ("running", 0, 3)  # accounts per period
        finish(db, run_id, "u0", "complete")
        db.bind_account("u1", "imap://src", "u1")
        db.set_account_status("u1", "running")
        st = task_status(task)
        assert (st.state, st.run_done, st.run_total, st.accounts_done) == ("running", 1, 3, 1)
        db.close()
    assert task_status(task).state == "stopped"  # the lock went away without finish_run


def test_the_database_is_read_again_only_when_it_changed(mailmig_home, monkeypatch):
    task = make_task()
    db = StateDB(store.paths().state_file("acme"))
    run_id = db.start_run(False)
    reads: list[list[str]] = []
    original = StateDB.completed_count
    monkeypatch.setattr(
        StateDB, "completed_count", lambda self, keys: (reads.append(list(keys)), original(self, keys))[1]
    )
    monkeypatch.setattr(StateDB, "summaries", lambda self: pytest.fail("a status needs no message figures"))
    monkeypatch.setattr(StateDB, "progress", lambda self: pytest.fail("a task not running needs only the count"))
    reader = StatusReader()
    reader.status(task)
    reader.status(task)
    assert reads == [["u0", "u1", "u2"]]
    finish(db, run_id, "u0", "complete")
    assert reader.status(task).accounts_done == 1
    assert len(reads) == 2
    db.close()


def test_the_count_follows_an_edited_user_list_the_database_unchanged(mailmig_home):
    """The accounts done are those of the list as it is now: one removed is no longer counted, one added
    (in any case or with blanks around it) is counted from what the state knows of it."""
    task = make_task(n=2)
    db = StateDB(store.paths().state_file("acme"))
    run_id = db.start_run(False)
    for account in ("u0", "u1", "u7"):
        finish(db, run_id, account, "complete")
    db.close()
    reader = StatusReader()
    assert reader.status(task).accounts_done == 2
    task.users = [task.users[0], User(" U7 ", "u7", password="x")]
    assert (reader.status(task).accounts_done, reader.status(task).accounts_total) == (2, 2)
    task.users = task.users[:1]
    assert reader.status(task).accounts_done == 1
    task.users = []
    assert (reader.status(task).accounts_done, reader.status(task).accounts_total) == (0, 0)


def test_a_read_under_way_is_shared_not_made_twice(mailmig_home, monkeypatch):
    """A second caller (the editor's user list while the task list reads a running task's state) waits for
    the read under way and takes its result."""
    import threading

    make_task()
    db = StateDB(store.paths().state_file("acme"))
    db.bind_account("u0", "imap://src", "u0")
    db.close()
    inside, release, reads = threading.Event(), threading.Event(), []
    original = StateDB.progress

    def slow(self: StateDB):
        reads.append(1)
        inside.set()
        assert release.wait(30), "the test never released the read"
        return original(self)

    monkeypatch.setattr(StateDB, "progress", slow)
    reader = StatusReader()
    results: list[object] = []
    first = threading.Thread(target=lambda: results.append(reader.progress("acme")[0]))
    first.start()
    assert inside.wait(30)
    second = threading.Thread(target=lambda: results.append(reader.progress("acme")[0]))
    second.start()
    second.join(0.2)
    assert second.is_alive(), "the second caller waits for the read under way"
    release.set()
    first.join(30)
    second.join(30)
    assert len(reads) == 1 and len(results) == 2 and results[0] is results[1]
    assert list(results[0]) == ["u0"]


def test_next_run_comes_from_the_schedule(mailmig_home):
    task = make_task()
    task.schedule = Schedule(enabled=True, days=["mon"], start="22:00")
    now = dt.datetime(2026, 1, 7, 12, 0, tzinfo=dt.UTC)  # a Wednesday
    st = task_status(task, now=now)
    assert st.next_run == schedule.next_run(task.schedule, now)
    assert st.next_run is not None and st.next_run.weekday() == 0
    task.schedule.enabled = False
    assert task_status(task, now=now).next_run is None


def test_files_signature_changes_when_the_user_list_csv_is_edited(mailmig_home):
    from mailmig_tui.engine.status import files_signature

    make_task()
    path = store.paths().task_users_file("acme")
    before = files_signature(["acme"])
    path.write_text(path.read_text() + "u9,u9\n")
    os.utime(path, ns=(path.stat().st_mtime_ns + 10**9, path.stat().st_mtime_ns + 10**9))
    assert files_signature(["acme"])[1] != before[1]
