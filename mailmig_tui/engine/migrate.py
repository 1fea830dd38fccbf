"""One account's migration: plan the folders, find what is new, copy it pipelined, record it.

Phase 1 (plan), on the account's thread: list both sides' folders, map them (folders.py); per
folder, one STATUS decides whether anything can have changed since the last clean pass; for a
changed folder, the source lists the unknown messages under the date filters, the size filter
applies, and the destination's unclaimed messages are matched by fingerprint so that mail already
there (before the first run, or appended just before a crash) is recorded instead of copied.

Phase 2 (copy): a reader thread fetches batches (bounded by count and bytes, and by a byte budget
shared by every account of the run) from the source while this thread appends the previous batch
to the destination (MULTIAPPEND) and records it in the state database in one transaction.
Folders go biggest first; when the run has concurrency to spare (fewer accounts left than it
allows), more streams with their own connections take the next folders (SpareStreams).
The cancel token is checked between batches: stopping leaves the state consistent.
"""

from __future__ import annotations

import dataclasses
import json
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from mailmig_tui.engine.destination import Appendable, DestinationMailbox
from mailmig_tui.engine.events import AccountResult, FolderProgress, LogLine, MessageFailed, Sink
from mailmig_tui.engine.folders import FolderPlan, MailboxFilter, plan_folders
from mailmig_tui.engine.model import Settings, Task, User, account_key
from mailmig_tui.engine.sources.base import (
    SKIP_EXISTING,
    SKIP_TOO_BIG,
    FolderStatus,
    MessageMeta,
    Source,
    fingerprint_of,
)
from mailmig_tui.engine.state import COPIED, EXISTING, FAILED, MessageRow, StateDB

SKIP_VANISHED = "vanished from the source during the run"


class Cancelled(Exception):
    """The run was asked to stop; everything done so far is recorded."""


class FolderChanged(Exception):
    """A folder's UIDVALIDITY changed between planning and copying: the account is planned again."""


class ByteBudget:
    """Bytes of message data in flight across all accounts of a run; bounds memory whatever the sizes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._used = 0
        self._cond = threading.Condition()
        self.peak = 0

    def acquire(self, n: int, cancel: threading.Event) -> None:
        """Wait until ``n`` bytes fit (a single message larger than the budget goes alone)."""
        with self._cond:
            while self._used and self._used + n > self.limit:
                if cancel.is_set():
                    raise Cancelled()
                self._cond.wait(0.2)
            self._used += n
            self.peak = max(self.peak, self._used)

    def release(self, n: int) -> None:
        with self._cond:
            self._used -= n
            self._cond.notify_all()


class SpareStreams:
    """The run's concurrency that accounts leave unused, lent to accounts as extra copy streams.

    Every account holds one of the run's ``concurrency`` slots while it runs. Once every account
    of the run has started, a slot freed by a finished account (or never needed: fewer accounts
    than the concurrency) lets a running account copy one more of its folders at once, over its
    own connections: the last, largest accounts no longer finish alone on one connection. Slots
    are only lent when no account waits, so an extra stream never delays an account's start.
    """

    def __init__(self, concurrency: int, accounts: int) -> None:
        self._free = max(1, concurrency)
        self._waiting = accounts
        self._lock = threading.Lock()

    def account_started(self) -> None:
        with self._lock:
            self._waiting -= 1
            self._free -= 1

    def take(self) -> bool:
        """One slot for an extra stream, if one is free and no account waits for it."""
        with self._lock:
            if self._waiting > 0 or self._free <= 0:
                return False
            self._free -= 1
            return True

    def release(self) -> None:
        """An account or an extra stream is done with its slot."""
        with self._lock:
            self._free += 1


@dataclass(frozen=True)
class Limits:
    batch_messages: int = 250
    batch_bytes: int = 4 * 1024 * 1024  # measured in bench/: no faster above, more memory
    queue_depth: int = 1
    # Copy streams of one account at most (a source and a destination connection each), when the
    # run has spare concurrency: well under common per-user limits (Dovecot 10 per user and IP,
    # Gmail 15, Exchange Online 20); a source type must also offer it (Source.max_streams).
    streams_per_account: int = 4


@dataclass
class FolderReport:
    """The plan for one source folder (what a dry run prints, what the summary can show)."""

    source: str
    dest: str
    skip_reason: str | None = None
    notes: list[str] = field(default_factory=list)
    unchanged: bool = False
    to_copy: int = 0
    to_copy_bytes: int = 0
    to_copy_at_most: bool = False  # to_copy_bytes adds up upper bounds (sizes learnt only when fetched)
    skipped: Counter[str] = field(default_factory=Counter)


@dataclass
class AccountContext:
    task: Task
    settings: Settings
    user: User
    state: StateDB
    emit: Sink
    cancel: threading.Event
    budget: ByteBudget
    open_source: Callable[[Task, User], Source]
    open_destination: Callable[[Settings, User], DestinationMailbox]
    dry_run: bool = False
    limits: Limits = field(default_factory=Limits)
    spare: SpareStreams | None = None  # the run's unused concurrency; None: one stream per account
    open_state: Callable[[], StateDB] | None = None  # a state connection for an extra stream's thread

    @property
    def key(self) -> str:
        return account_key(self.user.source)

    def log(self, text: str, severity: str = "info", folder: str = "") -> None:
        self.emit(LogLine(self.task.name, self.user.source, severity=severity, text=text, folder=folder))


@dataclass
class _Progress:
    """The account's copy phase: what there is to do, what is done, how fast."""

    total: int
    total_bytes: int
    started: float = field(default_factory=time.monotonic)
    done: int = 0
    done_bytes: int = 0

    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.done_bytes / elapsed if elapsed > 0 else 0.0

    def eta(self) -> float | None:
        rate = self.rate()
        return (self.total_bytes - self.done_bytes) / rate if rate > 0 else None


@dataclass
class _Work:
    plan: FolderPlan
    status: FolderStatus
    messages: list[MessageMeta]
    avail: Counter[str]  # unclaimed destination fingerprints, consumed as matches are found
    skipped: Counter[str]
    failures: int = 0
    copied: int = 0
    done: int = 0


def filters_key(task: Task) -> str:
    f = task.filters
    return json.dumps([str(f.skip_before), str(f.skip_after), f.max_size_kb])


def migrate_account(ctx: AccountContext, result: AccountResult, reports: list[FolderReport]) -> None:
    """Migrate one account, filling ``result`` and ``reports`` as it goes (they survive an exception)."""
    source = ctx.open_source(ctx.task, ctx.user)
    dest: DestinationMailbox | None = None
    try:
        dest = ctx.open_destination(ctx.settings, ctx.user)
        dest.readonly = ctx.dry_run
        work = _plan(ctx, source, dest, result, reports)
        if ctx.dry_run or not work:
            return
        progress = _Progress(sum(len(w.messages) for w in work), sum(m.size for w in work for m in w.messages))
        _copy(ctx, source, dest, work, result, progress)
    finally:
        source.close()
        if dest is not None:
            dest.close()


def _plan(
    ctx: AccountContext, source: Source, dest: DestinationMailbox, result: AccountResult, reports: list[FolderReport]
) -> list[_Work]:
    f = ctx.task.filters
    mb = f.mailboxes
    plans = plan_folders(
        source.list_folders(),
        source_prefix=source.prefix,
        dest_folders=dest.list_folders(),
        dest_delimiter=dest.delimiter,
        dest_prefix=dest.prefix,
        skip_trash=f.skip_trash,
        skip_junk=f.skip_junk,
        mailbox_filter=MailboxFilter(mb.policy, mb.keywords, mb.exceptions) if mb.enabled else None,
    )
    fkey = filters_key(ctx.task)
    work: list[_Work] = []
    for plan in plans:
        if ctx.cancel.is_set():
            raise Cancelled()
        name = plan.source.name
        report = FolderReport(name, plan.dest_name, plan.skip_reason, list(plan.notes))
        reports.append(report)
        for note in plan.notes:
            ctx.log(note, "info", name)
        if plan.skip_reason:
            result.skipped_folders[plan.skip_reason] += 1
            ctx.log(f"folder skipped: {plan.skip_reason}", "info", name)
            continue
        result.folders += 1
        if not ctx.dry_run:
            dest.ensure_folder(plan.dest_name)
        status = source.status(plan.source)
        row = ctx.state.folder(ctx.key, name)
        if (
            row is not None
            and row.clean
            and (row.validity, row.marker, row.filters, row.dest_folder)
            == (status.validity, status.marker, fkey, plan.dest_name)
        ):
            report.unchanged = True
            continue
        stale = 0 if ctx.dry_run else ctx.state.release_stale(ctx.key, name, status.validity)
        if stale or (row is not None and row.validity != status.validity):
            ctx.log(
                f"UIDVALIDITY changed ({row.validity if row else '?'} → {status.validity}): "
                "matching messages by fingerprint",
                "warning",
                name,
            )
        known = ctx.state.known_ids(ctx.key, name, status.validity)
        listing = source.list_messages(plan.source, status, known, f)
        skipped = Counter(listing.skipped)
        candidates = []
        limit = f.max_size_kb * 1024
        for meta in listing.messages:
            if limit and meta.size > limit and not listing.sizes_are_bounds:
                skipped[SKIP_TOO_BIG] += 1
            else:
                candidates.append(meta)
        avail: Counter[str] = Counter()
        existing_rows: list[MessageRow] = []
        if candidates and plan.dest_name in {d.name for d in dest.list_folders()} | {"INBOX"}:
            avail = _unclaimed(ctx, dest, plan.dest_name)
            remaining = []
            for meta in candidates:
                fp = fingerprint_of(meta)
                if fp and avail[fp] > 0:
                    avail[fp] -= 1
                    existing_rows.append(
                        MessageRow(
                            name, status.validity, meta.id, EXISTING, plan.dest_name, fingerprint=fp, size=meta.size
                        )
                    )
                else:
                    remaining.append(meta)
            candidates = remaining
        skipped[SKIP_EXISTING] += len(existing_rows)
        report.skipped = +skipped
        report.to_copy = len(candidates)
        report.to_copy_bytes = sum(m.size for m in candidates)
        report.to_copy_at_most = listing.sizes_are_bounds
        result.skipped.update(+skipped)
        for reason, n in sorted((+skipped).items()):
            ctx.log(f"{n} message(s) skipped: {reason}", "info", name)
        if ctx.dry_run:
            continue
        if existing_rows:
            ctx.state.record(ctx.key, existing_rows)
        if not candidates:
            ctx.state.save_folder(
                ctx.key, name, validity=status.validity, marker=status.marker, filters=fkey,
                dest_folder=plan.dest_name, skipped=+skipped, clean=True,
            )  # fmt: skip
            continue
        work.append(_Work(plan, status, candidates, +avail, +skipped))
    return work


def _unclaimed(ctx: AccountContext, dest: DestinationMailbox, name: str) -> Counter[str]:
    folder = dest.select(name)
    claimed_uids, claimed_unknown = ctx.state.claimed(ctx.key, name, folder.uidvalidity)
    counts = dest.unclaimed(name, claimed_uids)
    counts.subtract(claimed_unknown)
    return +counts


def _folder_batches(lim: Limits, w: _Work):
    batch: list[MessageMeta] = []
    size = 0
    for meta in w.messages:
        if batch and (len(batch) >= lim.batch_messages or size + meta.size > lim.batch_bytes):
            yield batch, size
            batch, size = [], 0
        batch.append(meta)
        size += meta.size
    if batch:
        yield batch, size


class _Folders:
    """The copy phase's folders, biggest first, each taken whole by one of the account's streams
    (a folder's messages keep their order at the destination, and no two connections append to one
    folder at once)."""

    def __init__(self, work: list[_Work]) -> None:
        self._todo = sorted(work, key=lambda w: sum(m.size for m in w.messages))  # popped from the end
        self._lock = threading.Lock()

    def take(self) -> _Work | None:
        with self._lock:
            return self._todo.pop() if self._todo else None

    def worth_another_stream(self, lim: Limits) -> bool:
        """More than a batch is left that no stream has started: a new connection pays for itself."""
        with self._lock:
            left = [m for w in self._todo for m in w.messages]
        return len(left) >= lim.batch_messages or sum(m.size for m in left) >= lim.batch_bytes


@dataclass
class _Shared:
    """What the streams of one account's copy phase share (under ``lock``)."""

    result: AccountResult
    progress: _Progress
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)  # a stream failed: the others stop
    errors: list[BaseException] = field(default_factory=list)
    streams: list[threading.Thread] = field(default_factory=list)

    def fail(self, exc: BaseException) -> None:
        with self.lock:
            self.errors.append(exc)
        self.stop.set()


_DONE = object()


def _copy(
    ctx: AccountContext,
    source: Source,
    dest: DestinationMailbox,
    work: list[_Work],
    result: AccountResult,
    progress: _Progress,
) -> None:
    """Copy ``work`` in one stream on this thread, plus more streams (own connections, own thread)
    while the run has spare concurrency and enough is left (see :class:`SpareStreams`)."""
    folders = _Folders(work)
    shared = _Shared(result, progress)
    most = min(ctx.limits.streams_per_account, getattr(source, "max_streams", 1))

    def more() -> None:  # called by a stream's reader each time it takes a folder
        if ctx.spare is None or shared.stop.is_set() or not folders.worth_another_stream(ctx.limits):
            return
        with shared.lock:
            if len(shared.streams) + 1 >= most or not ctx.spare.take():
                return
            thread = threading.Thread(
                target=_extra_stream, args=(ctx, folders, shared, more), name=f"stream-{ctx.user.source}", daemon=True
            )
            thread.start()
            shared.streams.append(thread)  # started first: the account's thread joins what it finds here

    try:
        _stream(ctx, source, dest, ctx.state, folders, shared, more, check_validity=False)
    except BaseException:
        shared.stop.set()
        raise
    finally:
        joined = 0
        while joined < len(shared.streams):  # a stream may start another until it has taken its last folder
            shared.streams[joined].join()
            joined += 1
    if shared.errors:
        failure = shared.errors[0]
        if not isinstance(failure, Cancelled | FolderChanged):
            # A source or destination may refuse or throttle several connections to one account:
            # the account's next attempt (the runner retries it) copies over one connection.
            ctx.limits = dataclasses.replace(ctx.limits, streams_per_account=1)
            ctx.log(f"an extra connection to this account failed ({failure}); from now on it uses one")
        raise failure
    if ctx.cancel.is_set():
        raise Cancelled()


def _extra_stream(ctx: AccountContext, folders: _Folders, shared: _Shared, more: Callable[[], None]) -> None:
    assert ctx.spare is not None and ctx.open_state is not None
    source: Source | None = None
    dest: DestinationMailbox | None = None
    state: StateDB | None = None
    try:
        try:
            source = ctx.open_source(ctx.task, ctx.user)
            dest = ctx.open_destination(ctx.settings, ctx.user)
            state = ctx.open_state()
        except Exception as exc:  # noqa: BLE001 - an extra stream is optional: the account goes on without it
            ctx.log(f"could not open one more connection for this account ({exc}); going on without it", "info")
            return
        _stream(ctx, source, dest, state, folders, shared, more, check_validity=True)
    except BaseException as exc:  # noqa: BLE001 - handed to the account's thread, which re-raises it
        shared.fail(exc)
    finally:
        for closing in (source, dest, state):
            if closing is not None:
                closing.close()
        ctx.spare.release()


def _stream(
    ctx: AccountContext,
    source: Source,
    dest: DestinationMailbox,
    state: StateDB,
    folders: _Folders,
    shared: _Shared,
    more: Callable[[], None],
    *,
    check_validity: bool,
) -> None:
    """One copy stream: a reader thread fetches batches of the folders it takes from ``folders``
    while this thread appends the previous batch and records it."""
    q: queue.Queue = queue.Queue(maxsize=ctx.limits.queue_depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def batches():
        while not (stop.is_set() or shared.stop.is_set()):
            w = folders.take()
            if w is None:
                return
            more()
            if check_validity:  # another connection planned this folder: its UIDs must still mean the same
                now = source.status(w.plan.source).validity
                if now != w.status.validity:
                    raise FolderChanged(
                        f"{w.plan.source.name}: the folder's UIDVALIDITY changed during the run "
                        f"({w.status.validity} → {now}); planning again"
                    )
            for batch, size in _folder_batches(ctx.limits, w):
                yield w, batch, size

    def reader() -> None:
        try:
            for w, batch, size in batches():
                if ctx.cancel.is_set() or stop.is_set() or shared.stop.is_set():
                    break
                ctx.budget.acquire(size, ctx.cancel)
                try:
                    fetched = source.fetch(w.plan.source, [m.id for m in batch])
                except BaseException:
                    ctx.budget.release(size)
                    raise
                if not put((w, batch, fetched, size)):
                    ctx.budget.release(size)
                    return
            put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the appending thread, which re-raises it
            put(exc)

    thread = threading.Thread(target=reader, name=f"fetch-{ctx.user.source}", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                break
            if isinstance(item, BaseException):
                raise item
            w, batch, fetched, size = item
            try:
                _append_batch(ctx, state, dest, w, batch, fetched, shared)
            finally:
                ctx.budget.release(size)
            if ctx.cancel.is_set():
                raise Cancelled()
            if shared.stop.is_set():
                break
    finally:
        stop.set()
        while True:  # release what the reader had queued, then let it finish
            try:
                item = q.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, tuple):
                ctx.budget.release(item[3])
        thread.join(timeout=30)


def _append_batch(
    ctx: AccountContext,
    state: StateDB,
    dest: DestinationMailbox,
    w: _Work,
    batch: list[MessageMeta],
    fetched: list,
    shared: _Shared,
) -> None:
    name = w.plan.source.name
    dest_name = w.plan.dest_name
    validity = w.status.validity
    rows: list[MessageRow] = []
    to_append: list[tuple[MessageMeta, str, bytes]] = []
    skipped: Counter[str] = Counter()
    got = {f.id: f for f in fetched}
    limit = ctx.task.filters.max_size_kb * 1024
    learnt = 0  # exact size minus listed size, of messages listed before their size was known
    for listed in batch:
        f = got.get(listed.id)
        raw = f.raw if f is not None else None
        if f is None or raw is None:
            skipped[SKIP_VANISHED] += 1
            ctx.log(f"message {listed.id} vanished from the source during the run", "warning", name)
            continue
        meta = f.meta or listed
        learnt += meta.size - listed.size
        if f.skip:
            skipped[f.skip] += 1
            continue
        if f.meta is not None and limit and meta.size > limit:  # listed before its size was known
            skipped[SKIP_TOO_BIG] += 1
            continue
        fp = fingerprint_of(meta, raw)
        if w.avail[fp] > 0:  # content hash, or a listed size that was only an estimate (Graph, Gmail)
            w.avail[fp] -= 1
            skipped[SKIP_EXISTING] += 1
            rows.append(MessageRow(name, validity, meta.id, EXISTING, dest_name, fingerprint=fp, size=meta.size))
            continue
        to_append.append((meta, fp, raw))
    failed: list[tuple[MessageMeta, str]] = []
    copied_bytes = 0
    if to_append:
        outcomes = dest.append(
            dest_name, [Appendable(raw, meta.flags, meta.internaldate) for meta, _, raw in to_append]
        )
        dest_validity = dest.select(dest_name).uidvalidity
        for (meta, fp, raw), outcome in zip(to_append, outcomes, strict=True):
            if outcome.error:
                failed.append((meta, outcome.error))
                rows.append(
                    MessageRow(
                        name, validity, meta.id, FAILED, dest_name, fingerprint=fp, size=meta.size, reason=outcome.error
                    )
                )
            else:
                copied_bytes += len(raw)
                rows.append(
                    MessageRow(name, validity, meta.id, COPIED, dest_name, dest_validity, outcome.uid, fp, len(raw))
                )
    state.record(ctx.key, rows)
    for meta, reason in failed:
        ctx.emit(MessageFailed(ctx.task.name, ctx.user.source, folder=name, message=meta.id, reason=reason))
    copied = len(to_append) - len(failed)
    w.skipped.update(skipped)
    w.failures += len(failed)
    w.copied += copied
    w.done += len(batch)
    result, progress = shared.result, shared.progress
    with shared.lock:
        result.skipped.update(skipped)
        result.failed += len(failed)
        result.copied += copied
        result.bytes += copied_bytes
        progress.done += len(batch)
        progress.done_bytes += sum(m.size for m in batch) + learnt
        progress.total_bytes += learnt  # the account's total converges on the exact one as messages come
        event = FolderProgress(
            ctx.task.name,
            ctx.user.source,
            folder=name,
            dest_folder=dest_name,
            done=w.done,
            total=len(w.messages),
            account_done=progress.done,
            account_total=progress.total,
            bytes_done=progress.done_bytes,
            bytes_total=progress.total_bytes,
            bytes_per_s=progress.rate(),
            eta_s=progress.eta(),
        )  # fmt: skip
        ctx.emit(event)  # under the lock: the account's counts never go backwards between streams
    if w.done >= len(w.messages):
        state.save_folder(
            ctx.key, name, validity=validity, marker=w.status.marker, filters=filters_key(ctx.task),
            dest_folder=dest_name, skipped=w.skipped, clean=w.failures == 0,
        )  # fmt: skip
        ctx.log(f"folder done → {dest_name}: {w.copied} copied, {w.failures} failed", "info", name)
