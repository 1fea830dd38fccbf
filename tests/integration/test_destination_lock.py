"""Two tasks that write the same destination accounts (the app's Duplicate makes exactly that) never
copy a message twice: a run waits for an account another run is writing, then finds its mail there."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from mailmig_tui.engine import runner, store
from mailmig_tui.engine.events import Event, LogLine
from mailmig_tui.engine.model import Task
from mailmig_tui.engine.sources.base import SKIP_EXISTING
from tests.integration.conftest import Pair, contents, message, when
from tests.integration.test_resume import assert_same, count, extra, seed_fast
from tests.servers import mailbox as mb
from tests.servers.relay import SlowRelay

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def relay(pair: Pair) -> Iterator[SlowRelay]:
    link = SlowRelay(("127.0.0.1", pair.dst.port), chunk=8192, delay=0.003)
    yield link
    link.close()


def seed(pair: Pair, users: tuple[str, ...]) -> None:
    body = b"".join(b"line %03d of a message body of a few kilobytes\r\n" % i for i in range(80))
    for k, user in enumerate(users):
        msgs = [mb.Msg(message(1000 * k + n, body=body), ("\\Seen",), when(2023, 1, 1 + n % 28)) for n in range(300)]
        seed_fast(pair.src, user, {"INBOX": msgs[:200], "Work": msgs[200:]})


def test_two_tasks_writing_the_same_accounts_at_once_copy_each_message_once(pair: Pair, relay: SlowRelay) -> None:
    users = ("alice", "bob")
    seed(pair, users)
    original = pair.task(users, name="acme")
    duplicate = pair.task(users, name="acme (copy)")
    settings = pair.settings(save=False)
    settings.destination.port = relay.port  # each account's copy takes a second or two: the runs overlap
    store.save_settings(settings)

    start = threading.Barrier(2, timeout=10)
    results: dict[str, runner.RunResult] = {}
    events: list[Event] = []

    def run(task: Task) -> None:
        start.wait()
        results[task.name] = runner.run_task(task, settings, sink=events.append)

    threads = [threading.Thread(target=run, args=(t,)) for t in (original, duplicate)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(100)

    assert {r.status for r in results.values()} == {"completed"}
    for user in users:
        src, dst = contents(pair.src, user), contents(pair.dst, user)
        assert not extra(src, dst), f"{user}: {count(dst) - count(src)} message(s) copied twice"
        assert_same(src, dst)
        per_task = [next(a for a in r.accounts if a.account == user) for r in results.values()]
        assert sorted(a.copied for a in per_task) == [0, count(src)], "one task copies, the other finds it there"
        assert max(a.skipped.get(SKIP_EXISTING, 0) for a in per_task) == count(src)
    waits = [e for e in events if isinstance(e, LogLine) and "is being written by" in e.text]
    assert waits, "the runs were meant to overlap"
    assert all('task "acme' in e.text and "waiting until it is done" in e.text for e in waits)


def test_a_run_waiting_for_a_busy_destination_account_names_the_holder_and_can_be_stopped(pair: Pair) -> None:
    mb.seed(pair.src, "alice", {"INBOX": [mb.Msg(message(n), (), when(2022, 2, 1 + n)) for n in range(5)]})
    task, settings = pair.task(), pair.settings()
    other = runner.FileLock(
        runner.destination_lock_path(store.paths(), "ALICE"), "scheduler", task="payroll", account="alice@old"
    )
    assert other.try_acquire()  # held by another task's run (the account's name in another case)
    events: list[Event] = []
    waiting = threading.Event()
    cancel = threading.Event()

    def sink(event: Event) -> None:
        events.append(event)
        if isinstance(event, LogLine) and "is being written by" in event.text:
            waiting.set()

    result: list[runner.RunResult] = []
    thread = threading.Thread(target=lambda: result.append(runner.run_task(task, settings, sink=sink, cancel=cancel)))
    thread.start()
    try:
        assert waiting.wait(30), "the run did not wait for the busy destination account"
        (line,) = [e for e in events if isinstance(e, LogLine) and "is being written by" in e.text]
        assert 'task "payroll", scheduler (pid' in line.text and line.severity == "warning"
        assert count(contents(pair.dst, "alice")) == 0
        cancel.set()
        thread.join(30)
    finally:
        cancel.set()
        other.release()
        thread.join(30)
    assert (result[0].status, result[0].accounts[0].status) == ("stopped", "stopped")
    assert count(contents(pair.dst, "alice")) == 0

    again = runner.run_task(task, settings)  # the other run is done: this one goes on
    assert (again.status, again.accounts[0].copied) == ("completed", 5)
