"""The scheduler: due tasks start, windows end cleanly, SIGTERM leaves every task resumable."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time

from mailmig_tui.engine import runner, store
from mailmig_tui.engine.schedule import local_zone
from mailmig_tui.engine.scheduler import Scheduler
from mailmig_tui.engine.state import StateDB
from tests.integration.conftest import Pair, contents, message, when
from tests.servers import mailbox as mb

ALL_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def _seed_many(pair: Pair, count: int, user: str = "alice") -> None:
    body = b"".join(b"line %05d of a longer message body to make the copy take a moment\r\n" % i for i in range(300))
    msgs = [mb.Msg(message(i, body=body), ("\\Seen",), when(2021, 1, 1 + i % 28, 0, 0, 0)) for i in range(count)]
    mb.seed(pair.src, user, {"INBOX": msgs[: count // 2], "Archive/2021": msgs[count // 2 :]})


def _copied(task: str) -> int:
    path = store.paths().state_file(task)
    if not path.exists():
        return 0
    db = StateDB.open_readonly(path)
    try:
        return sum(s.copied for s in db.summaries().values())
    except Exception:  # the schema may not exist yet
        return 0
    finally:
        db.close()


def _scheduled(pair: Pair, start: str, end: str = "", accounts: tuple[str, ...] = ("alice",)):
    task = pair.task(accounts, save=False)
    task.schedule.enabled, task.schedule.days, task.schedule.start, task.schedule.end = True, ALL_DAYS, start, end
    store.save_task(task, old_name=task.name)
    return task, pair.settings()


class FakeClock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def test_window_end_stops_the_run_and_the_next_slot_resumes_it(pair: Pair) -> None:
    total = 1500  # more than the batches of both folders' streams in flight when the window closes
    _seed_many(pair, total)
    tz = local_zone()
    task, _ = _scheduled(pair, "22:00", "23:00")
    clock = FakeClock(dt.datetime(2026, 11, 27, 22, 0, 30, tzinfo=tz))
    lines: list = []
    sched = Scheduler(lines.append, clock=clock)

    assert sched.tick() == ["acme"]
    deadline = time.monotonic() + 30
    while _copied("acme") == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    clock.now = dt.datetime(2026, 11, 27, 23, 0, 0, tzinfo=tz)  # the window closes mid-run
    sched.reap()
    entry = sched.running["acme"]
    entry.thread.join(60)
    assert entry.result is not None and entry.result.status == "stopped"
    partial = sum(len(v) for v in contents(pair.dst, "alice").values())
    assert 0 < partial < total
    assert sched.tick() == []  # nothing due until the next slot

    clock.now = dt.datetime(2026, 11, 28, 22, 0, 5, tzinfo=tz)
    assert sched.tick() == ["acme"]
    sched.running["acme"].thread.join(60)
    sched.reap()
    assert contents(pair.dst, "alice")["INBOX"] == contents(pair.src, "alice")["INBOX"]
    assert contents(pair.dst, "alice")["Archive/2021"] == contents(pair.src, "alice")["Archive/2021"]
    assert any("window ended" in getattr(e, "text", "") for e in lines)


def test_scheduler_process_runs_a_due_task_and_stops_cleanly_on_sigterm(pair: Pair) -> None:
    _seed_many(pair, 1500)
    now = dt.datetime.now(local_zone())
    start = (now - dt.timedelta(minutes=1)).strftime("%H:%M")
    task, settings = _scheduled(pair, start)
    env = dict(os.environ)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailmig_tui", "scheduler", "--tick", "0.5"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while _copied(task.name) == 0 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        assert _copied(task.name) > 0, "the scheduler did not start the due task"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    assert "starting acme" in out and "scheduler stopped" in out
    holder = runner.lock_holder(runner.lock_path(store.paths(), task.name))
    assert holder is None
    copied_before = sum(len(v) for v in contents(pair.dst, "alice").values())

    result = runner.run_task(task, settings)  # resumes: copies the rest, nothing twice

    assert result.accounts[0].status == "complete"
    assert result.accounts[0].copied == 1500 - copied_before
    src, dst = contents(pair.src, "alice"), contents(pair.dst, "alice")
    assert dst["INBOX"] == src["INBOX"] and dst["Archive/2021"] == src["Archive/2021"]


def test_scheduler_once_runs_what_is_due_and_exits(pair: Pair) -> None:
    mb.seed(pair.src, "alice", {"INBOX": [mb.Msg(message(1), (), when(2021, 1, 1, 0, 0, 0))]})
    now = dt.datetime.now(local_zone())
    _scheduled(pair, (now - dt.timedelta(minutes=2)).strftime("%H:%M"))
    store.save_task(store.copy_task(store.load_task("acme"), "not-due"))
    off = store.load_task("not-due")
    off.schedule.enabled = False
    store.save_task(off, old_name="not-due")

    done = subprocess.run(
        [sys.executable, "-m", "mailmig_tui", "scheduler", "--once"], capture_output=True, text=True, timeout=120
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "starting acme" in done.stdout and "not-due" not in done.stdout
    assert len(contents(pair.dst, "alice")["INBOX"]) == 1
    again = subprocess.run(
        [sys.executable, "-m", "mailmig_tui", "scheduler", "--once"], capture_output=True, text=True, timeout=120
    )
    assert "starting acme" not in again.stdout  # that slot has had its run
