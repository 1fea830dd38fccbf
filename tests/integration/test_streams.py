"""Several copy streams for one account (the run's spare concurrency), against real Dovecot.

One account with concurrency 4 copies its folders over up to four connection pairs at once;
each folder still goes whole through one stream (same order at the destination). A stream that
cannot open is done without; one that fails mid-copy stops the others and the account is
retried, copying nothing twice; a folder whose UIDVALIDITY changed since planning is planned again.
"""

from __future__ import annotations

import itertools
import socket
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from mailmig_tui.engine import imapconn, runner
from mailmig_tui.engine.account import Limits, SpareStreams
from mailmig_tui.engine.destination import Appendable, AppendOutcome, DestinationMailbox
from mailmig_tui.engine.events import Event, FolderProgress
from mailmig_tui.engine.model import Settings, Task, User
from mailmig_tui.engine.sources.base import FolderStatus, RemoteFolder, Source
from tests.integration.conftest import Pair, contents
from tests.integration.test_resume import (
    assert_state_matches_destination,
    count,
    log_lines,
    recorded,
    seed_fast,
    small_mailbox,
)

T = TypeVar("T")
FOLDERS = ("INBOX", "Sent", "Archive", "Work", "Lists", "Old")
LIMITS = Limits(batch_messages=5, queue_depth=1)


def seed(pair: Pair, user: str = "alice") -> None:
    seed_fast(pair.src, user, {name: small_mailbox(20 + 5 * i, first=1000 * i) for i, name in enumerate(FOLDERS)})


def assert_copied_exactly(pair: Pair, task: Task, user: str = "alice") -> None:
    """Every source folder whole at the destination, in the source's order, and the state agrees."""
    src = contents(pair.src, user)
    assert {k: v for k, v in contents(pair.dst, user).items() if k in src} == src
    assert_state_matches_destination(task, pair.dst, user)


class CountingDestinations:
    """The real destination factory, counting the connections opened (and at once)."""

    def __init__(self) -> None:
        self.opened = 0
        self.live = 0
        self.most_at_once = 0
        self._lock = threading.Lock()

    def __call__(self, settings: Settings, user: User) -> DestinationMailbox:
        dest = runner.open_destination(settings, user)
        with self._lock:
            self.opened += 1
            self.live += 1
            self.most_at_once = max(self.most_at_once, self.live)
        close = dest.close

        def closing() -> None:
            with self._lock:
                self.live -= 1
            close()

        dest.close = closing  # type: ignore[method-assign]
        return dest


def test_one_account_copies_its_folders_over_several_streams_exactly(pair: Pair) -> None:
    seed(pair)
    task, settings = pair.task(save=False), pair.settings()
    task.run.concurrency = 4
    dests = CountingDestinations()
    events: list[Event] = []

    result = runner.run_task(task, settings, sink=events.append, destination_factory=dests, limits=LIMITS)

    (acct,) = result.accounts
    assert acct.status == "complete", acct.error
    src, dst = contents(pair.src, "alice"), contents(pair.dst, "alice")
    assert {k: v for k, v in dst.items() if k in src} == src  # every folder whole, in the source's order
    assert acct.copied == count(src) and acct.failed == 0
    assert 2 <= dests.opened <= 4, "a lone account uses the spare concurrency, up to 4 streams"
    assert dests.most_at_once >= 2
    progress = [e for e in events if isinstance(e, FolderProgress)]
    assert progress[-1].account_done == progress[-1].account_total == count(src)
    assert [p.account_done for p in progress] == sorted(p.account_done for p in progress)
    assert {p.folder for p in progress} == set(FOLDERS)
    assert_state_matches_destination(task, pair.dst)
    assert len(recorded(task)) == count(src)
    assert runner.run_task(task, settings, limits=LIMITS).accounts[0].copied == 0


def test_concurrency_one_keeps_one_stream_per_account(pair: Pair) -> None:
    seed(pair)
    seed(pair, "bob")
    task, settings = pair.task(("alice", "bob"), save=False), pair.settings()
    task.run.concurrency = 1
    dests = CountingDestinations()

    result = runner.run_task(task, settings, destination_factory=dests, limits=LIMITS)

    assert [a.status for a in result.accounts] == ["complete", "complete"]
    assert dests.opened == 2 and dests.most_at_once == 1
    for user in ("alice", "bob"):
        assert_copied_exactly(pair, task, user)


def test_a_stream_that_cannot_connect_is_done_without(pair: Pair) -> None:
    seed(pair)
    task, settings = pair.task(save=False), pair.settings()
    calls = 0

    def one_connection_only(settings: Settings, user: User) -> DestinationMailbox:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise imapconn.ImapError("connection", "Maximum number of connections from user+IP exceeded")
        return runner.open_destination(settings, user)

    events: list[Event] = []
    result = runner.run_task(task, settings, sink=events.append, destination_factory=one_connection_only, limits=LIMITS)

    (acct,) = result.accounts
    assert acct.status == "complete", acct.error
    assert calls >= 2
    (note,) = log_lines(events, "info", "could not open one more connection")[:1]
    assert "Maximum number of connections" in note.text
    assert_copied_exactly(pair, task)


def on_second(factory: Callable[[Any, User], T], change: Callable[[T], None]) -> Callable[[Any, User], T]:
    """``factory``, with ``change`` applied to the second connection it makes (the first extra stream's)."""
    made = itertools.count(1)

    def make(config: Any, user: User) -> T:
        thing = factory(config, user)
        if next(made) == 2:
            change(thing)
        return thing

    return make


@pytest.fixture
def retried(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> tuple[Task, Settings]:
    """alice's seeded mailbox, and retries after 0.05 s instead of seconds."""
    monkeypatch.setattr(runner, "BACKOFF_S", (0.05, 0.1, 0.2))
    seed(pair)
    return pair.task(save=False), pair.settings()


def test_a_stream_lost_mid_copy_stops_the_others_and_the_retry_copies_nothing_twice(
    pair: Pair, retried: tuple[Task, Settings]
) -> None:
    task, settings = retried
    broken = threading.Event()

    def drop_after_its_first_batch(dest: DestinationMailbox) -> None:
        append = dest.append

        def append_then_drop(name: str, items: list[Appendable]) -> list[AppendOutcome]:
            outcomes = append(name, items)
            if not broken.is_set():
                broken.set()
                dest._client._imap.sock.shutdown(socket.SHUT_RDWR)  # the server sees the connection go
            return outcomes

        dest.append = append_then_drop  # type: ignore[method-assign]

    events: list[Event] = []
    counting = CountingDestinations()
    dests = on_second(counting, drop_after_its_first_batch)
    opened_before_the_retry = 0

    def sink(event: Event) -> None:
        nonlocal opened_before_the_retry
        events.append(event)
        if log_lines([event], "warning", "retrying"):
            opened_before_the_retry = counting.opened

    result = runner.run_task(task, settings, sink=sink, destination_factory=dests, limits=LIMITS)

    (acct,) = result.accounts
    assert broken.is_set()
    assert acct.status == "complete", acct.error
    assert len(log_lines(events, "warning", "retrying")) == 1
    assert log_lines(events, "info", "an extra connection to this account failed")
    assert counting.opened == opened_before_the_retry + 1, "the retry copies over one connection"
    assert_copied_exactly(pair, task)  # nothing twice, in order
    assert runner.run_task(task, settings, limits=LIMITS).accounts[0].copied == 0


def test_a_folder_whose_uidvalidity_changed_since_planning_is_planned_again(
    pair: Pair, retried: tuple[Task, Settings]
) -> None:
    task, settings = retried
    changed = threading.Event()

    def sees_its_first_folder_recreated(source: Source) -> None:
        status = source.status

        def recreated(folder: RemoteFolder) -> FolderStatus:
            now = status(folder)
            if changed.is_set():
                return now
            changed.set()
            return FolderStatus(now.validity + "9", now.marker, now.messages)

        source.status = recreated  # type: ignore[method-assign]

    events: list[Event] = []
    sources = on_second(runner.open_source, sees_its_first_folder_recreated)
    result = runner.run_task(task, settings, sink=events.append, source_factory=sources, limits=LIMITS)

    (acct,) = result.accounts
    assert changed.is_set()
    assert acct.status == "complete", acct.error
    (warning,) = log_lines(events, "warning", "UIDVALIDITY changed during the run")
    assert "planning again" in warning.text and "retrying" in warning.text
    assert_copied_exactly(pair, task)


def test_spare_streams_are_lent_only_once_no_account_waits() -> None:
    spare = SpareStreams(concurrency=3, accounts=4)
    for _ in range(3):
        spare.account_started()
    assert not spare.take(), "every slot is used by an account"
    spare.release()  # an account finished, but the 4th has not started yet
    assert not spare.take(), "a waiting account has the first claim on a freed slot"
    spare.account_started()
    assert not spare.take()
    spare.release()  # now nobody waits: the slot is lent
    assert spare.take()
    assert not spare.take()
    spare.release()
    spare.release()
    assert spare.take() and spare.take() and not spare.take()
