"""One account's migration: plan the folders, find what is new, copy it pipelined, record it.

Phase 1 (plan), on the account's thread: list both sides' folders, map them (folders.py); per
folder, one STATUS decides whether anything can have changed since the last clean pass; for a
changed folder, the source lists the unknown messages under the date filters, the size filter
applies, and the destination's unclaimed messages are matched by fingerprint so that mail already
there (before the first run, or appended just before a crash) is recorded instead of copied.

Phase 2 (copy): a reader thread fetches batches (bounded by count and bytes, and by a byte budget
shared by every account of the run) from the source while this thread appends the previous batch
to the destination (MULTIAPPEND) and records it in the state database in one transaction.
The cancel token is checked between batches: stopping leaves the state consistent.
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class Limits:
    batch_messages: int = 250
    batch_bytes: int = 4 * 1024 * 1024  # measured in bench/: no faster above, more memory
    queue_depth: int = 1


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
            if limit and meta.size > limit:
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


def _batches(ctx: AccountContext, work: list[_Work]):
    lim = ctx.limits
    for w in work:
        batch: list[MessageMeta] = []
        size = 0
        for meta in w.messages:
            if batch and (len(batch) >= lim.batch_messages or size + meta.size > lim.batch_bytes):
                yield w, batch, size
                batch, size = [], 0
            batch.append(meta)
            size += meta.size
        if batch:
            yield w, batch, size


_DONE = object()


def _copy(
    ctx: AccountContext,
    source: Source,
    dest: DestinationMailbox,
    work: list[_Work],
    result: AccountResult,
    progress: _Progress,
) -> None:
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

    def reader() -> None:
        try:
            for w, batch, size in _batches(ctx, work):
                if ctx.cancel.is_set() or stop.is_set():
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
                _append_batch(ctx, dest, w, batch, fetched, result, progress)
            finally:
                ctx.budget.release(size)
            if ctx.cancel.is_set():
                raise Cancelled()
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
    dest: DestinationMailbox,
    w: _Work,
    batch: list[MessageMeta],
    fetched: list,
    result: AccountResult,
    progress: _Progress,
) -> None:
    name = w.plan.source.name
    dest_name = w.plan.dest_name
    validity = w.status.validity
    rows: list[MessageRow] = []
    to_append: list[tuple[MessageMeta, str, bytes]] = []
    raws = {f.id: f.raw for f in fetched}
    for meta in batch:
        raw = raws.get(meta.id)
        if raw is None:
            w.skipped[SKIP_VANISHED] += 1
            result.skipped[SKIP_VANISHED] += 1
            ctx.log(f"message {meta.id} vanished from the source during the run", "warning", name)
            continue
        fp = fingerprint_of(meta, raw)
        if w.avail[fp] > 0:  # content hash, or a listed size that was only an estimate (Graph, Gmail)
            w.avail[fp] -= 1
            w.skipped[SKIP_EXISTING] += 1
            result.skipped[SKIP_EXISTING] += 1
            rows.append(MessageRow(name, validity, meta.id, EXISTING, dest_name, fingerprint=fp, size=meta.size))
            continue
        to_append.append((meta, fp, raw))
    if to_append:
        outcomes = dest.append(
            dest_name, [Appendable(raw, meta.flags, meta.internaldate) for meta, _, raw in to_append]
        )
        dest_validity = dest.select(dest_name).uidvalidity
        for (meta, fp, raw), outcome in zip(to_append, outcomes, strict=True):
            if outcome.error:
                w.failures += 1
                result.failed += 1
                rows.append(
                    MessageRow(
                        name, validity, meta.id, FAILED, dest_name, fingerprint=fp, size=meta.size, reason=outcome.error
                    )
                )
                ctx.emit(
                    MessageFailed(ctx.task.name, ctx.user.source, folder=name, message=meta.id, reason=outcome.error)
                )
            else:
                w.copied += 1
                result.copied += 1
                result.bytes += len(raw)
                rows.append(
                    MessageRow(name, validity, meta.id, COPIED, dest_name, dest_validity, outcome.uid, fp, len(raw))
                )
    ctx.state.record(ctx.key, rows)
    w.done += len(batch)
    progress.done += len(batch)
    progress.done_bytes += sum(m.size for m in batch)
    ctx.emit(
        FolderProgress(
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
    )
    if w.done >= len(w.messages):
        ctx.state.save_folder(
            ctx.key, name, validity=validity, marker=w.status.marker, filters=filters_key(ctx.task),
            dest_folder=dest_name, skipped=w.skipped, clean=w.failures == 0,
        )  # fmt: skip
        ctx.log(f"folder done → {dest_name}: {w.copied} copied, {w.failures} failed", "info", name)
