"""One account's migration: plan the folders, find what is new, copy it pipelined, record it.

Phase 1 (plan), on the account's thread: list both sides' folders, map them (folders.py); per
folder, one STATUS decides whether anything can have changed since the last clean pass; for a
changed folder, the source lists the unknown messages under the date filters, the size filter
applies, and the destination's unclaimed messages are matched by fingerprint so that mail already
there (before the first run, or appended just before a crash) is recorded instead of copied.

A folder with a batch whose APPEND outcome was never recorded (the run was killed, or its
connection dropped, with the batch on its way) may still receive that batch: the bytes of a dead
connection sit in kernel buffers, a relay or a slow link, and the server stores the batch when
they arrive. Such folders are held back: the other folders are copied first, then the held-back
destination folders must show no change for twice the time such a batch takes on this link,
and only then are they matched and copied (in the source's order, like any other folder).

Phase 2 (copy) is copy_streams.py: batches fetched while the previous one is appended (MULTIAPPEND)
and recorded, biggest folders first, in more than one stream while the run has concurrency to
spare. The cancel token is checked between batches: stopping leaves the state consistent. What
the phases share (context, limits, budget, work) is account.py.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from mailmig_tui.engine.account import AccountContext, Cancelled, Progress, Work, filters_key, folder_failed
from mailmig_tui.engine.copy_streams import copy_work
from mailmig_tui.engine.destination import DestinationMailbox
from mailmig_tui.engine.events import AccountResult
from mailmig_tui.engine.folders import FolderPlan, MailboxFilter, RemoteFolder, plan_folders
from mailmig_tui.engine.sources.base import (
    SKIP_EXISTING,
    SKIP_TOO_BIG,
    FolderRefused,
    FolderStatus,
    MessageMeta,
    Source,
    fingerprint_of,
)
from mailmig_tui.engine.state import EXISTING, FolderRow, Inflight, MessageRow

# How long a destination folder must show no change before held-back messages are matched: twice
# what the batches in flight take at the slowest APPEND speed this account has seen, within bounds.
SETTLE_MIN_S = 3.0
SETTLE_MAX_S = 120.0
ASSUMED_SPEED = 1_000_000  # bytes/s (a slow WAN) for an account whose APPENDs were never timed


@dataclass
class FolderReport:
    """The plan for one source folder (what a dry run prints, what the summary can show)."""

    source: str
    dest: str
    skip_reason: str | None = None
    notes: list[str] = field(default_factory=list)
    error: str = ""  # why the folder failed (a server refused it); the account's other folders went on
    unchanged: bool = False
    to_copy: int = 0
    to_copy_bytes: int = 0
    to_copy_at_most: bool = False  # to_copy_bytes adds up upper bounds (sizes learnt only when fetched)
    skipped: Counter[str] = field(default_factory=Counter)


@dataclass
class _Folder:
    """A source folder the plan keeps: its mapping, its STATUS now, its saved state, its report."""

    plan: FolderPlan
    status: FolderStatus
    row: FolderRow | None
    report: FolderReport


def migrate_account(ctx: AccountContext, result: AccountResult, reports: list[FolderReport]) -> None:
    """Migrate one account, filling ``result`` and ``reports`` as it goes (they survive an exception)."""
    source = ctx.open_source(ctx.task, ctx.user)
    dest: DestinationMailbox | None = None
    try:
        dest = ctx.open_destination(ctx.settings, ctx.user)
        dest.readonly = ctx.dry_run
        inflight = [] if ctx.dry_run else ctx.state.inflight(ctx.key)
        late = {r.folder for r in inflight}
        folders = _plan(ctx, source, dest, result, reports)
        held = [f for f in folders if f.plan.source.name in late]
        work = [w for f in folders if f.plan.source.name not in late and (w := _work_of(ctx, source, dest, f, result))]
        if ctx.dry_run:
            return
        progress = Progress(sum(len(w.messages) for w in work), sum(m.size for w in work for m in w.messages))
        progress.folders_total = result.folders + len(held)  # unchanged, listed, and those settled below
        progress.folders_done = result.folders - len(work)
        if work:
            copy_work(ctx, source, dest, work, result, progress)
        if held:
            _settle(ctx, dest, held, inflight)
            work = [w for f in held if (w := _work_of(ctx, source, dest, f, result))]
            progress.total += sum(len(w.messages) for w in work)
            progress.folders_done += len(held) - len(work)
            progress.total_bytes += sum(m.size for w in work for m in w.messages)
            if work:
                copy_work(ctx, source, dest, work, result, progress)
        if inflight:  # every message of those batches is now recorded, or no longer to be copied
            ctx.state.clear_inflight(r.id for r in inflight)
    finally:
        source.close()
        if dest is not None:
            dest.close()


def _plan(
    ctx: AccountContext, source: Source, dest: DestinationMailbox, result: AccountResult, reports: list[FolderReport]
) -> list[_Folder]:
    """Map the folders, one STATUS each; the folders that may hold something new, in plan order."""
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
    listed = [p.source for p in plans if not p.skip_reason]
    statuses = dict(zip((folder.name for folder in listed), _statuses(source, listed), strict=True))
    rows = {name: ctx.state.folder(ctx.key, name) for name in statuses}
    ahead = getattr(source, "prefetch_listings", None)
    if ahead is not None:  # folders never listed before: their listings asked for together
        first = [(folder, statuses[folder.name]) for folder in listed if rows[folder.name] is None]
        ahead([(folder, st) for folder, st in first if isinstance(st, FolderStatus)])
    fkey = filters_key(ctx.task)
    folders: list[_Folder] = []
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
        status, row = statuses[name], rows[name]
        try:
            if isinstance(status, FolderRefused):
                raise status
            if not ctx.dry_run:
                dest.ensure_folder(plan.dest_name)
        except FolderRefused as exc:
            report.error = str(exc)
            folder_failed(ctx, result, name, exc)
            continue
        if (
            row is not None
            and row.clean
            and (row.validity, row.marker, row.filters, row.dest_folder)
            == (status.validity, status.marker, fkey, plan.dest_name)
        ):
            result.folders += 1
            report.unchanged = True
            continue
        folders.append(_Folder(plan, status, row, report))
    return folders


def _work_of(
    ctx: AccountContext, source: Source, dest: DestinationMailbox, folder: _Folder, result: AccountResult
) -> Work | None:
    """:func:`_folder_work`, or the folder failed alone when a server refuses it (the others go on)."""
    try:
        work = _folder_work(ctx, source, dest, folder, result)
    except FolderRefused as exc:
        folder.report.error = str(exc)
        folder_failed(ctx, result, folder.plan.source.name, exc)
        return None
    result.folders += 1
    return work


def _folder_work(
    ctx: AccountContext, source: Source, dest: DestinationMailbox, folder: _Folder, result: AccountResult
) -> Work | None:
    """List what the state does not know of a folder, apply the filters, record what the destination
    already holds; the work left to copy (None: nothing, or a dry run)."""
    f = ctx.task.filters
    fkey = filters_key(ctx.task)
    plan, status, row, report = folder.plan, folder.status, folder.row, folder.report
    name = plan.source.name
    if not ctx.dry_run:  # what other filters skipped (an earlier pass, maybe unfinished) is judged again
        ctx.state.forget_skipped(ctx.key, name, fkey)
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
    if avail:  # nothing unclaimed at the destination (a first copy): no fingerprint to compare
        candidates, existing_rows = _match(plan, status, candidates, avail)
    skipped[SKIP_EXISTING] += len(existing_rows)
    report.skipped = +skipped
    report.to_copy = len(candidates)
    report.to_copy_bytes = sum(m.size for m in candidates)
    report.to_copy_at_most = listing.sizes_are_bounds
    result.skipped.update(+skipped)
    for reason, n in sorted((+skipped).items()):
        ctx.log(f"{n} message(s) skipped: {reason}", "info", name)
    if ctx.dry_run:
        return None
    if existing_rows:
        ctx.state.record(ctx.key, existing_rows)
    if not candidates:
        ctx.state.save_folder(
            ctx.key, name, validity=status.validity, marker=status.marker, filters=fkey,
            dest_folder=plan.dest_name, skipped=+skipped, clean=True,
        )  # fmt: skip
        return None
    return Work(plan, status, candidates, +avail, +skipped)


def _match(
    plan: FolderPlan, status: FolderStatus, candidates: list[MessageMeta], avail: Counter[str]
) -> tuple[list[MessageMeta], list[MessageRow]]:
    """Split ``candidates`` into those to copy and rows for those already at the destination
    (by metadata fingerprint, consuming ``avail``)."""
    remaining: list[MessageMeta] = []
    rows: list[MessageRow] = []
    for meta in candidates:
        fp = fingerprint_of(meta)
        if fp and avail[fp] > 0:
            avail[fp] -= 1
            rows.append(
                MessageRow(
                    plan.source.name, status.validity, meta.id, EXISTING, plan.dest_name, fingerprint=fp, size=meta.size
                )
            )
        else:
            remaining.append(meta)
    return remaining, rows


def _settle(ctx: AccountContext, dest: DestinationMailbox, held: list[_Folder], inflight: list[Inflight]) -> None:
    """Wait until the destination folders of ``held`` show no change (messages, next UID) for long
    enough that a batch still on the link has arrived: twice what the batches in flight take at
    the slowest APPEND speed this account has seen."""
    sources = {f.plan.source.name for f in held}
    batches = [r for r in inflight if r.folder in sources]
    names = sorted({f.plan.dest_name for f in held})
    speed = ctx.state.append_speed(ctx.key) or ASSUMED_SPEED
    quiet = min(SETTLE_MAX_S, max(SETTLE_MIN_S, 2 * sum(r.bytes for r in batches) / speed))
    note = (
        f"{sum(len(r.src_ids) for r in batches)} message(s) were on their way here when an earlier run or "
        f"connection ended: this folder is copied last, once it has shown no change for {quiet:.0f} s"
    )
    for f in held:
        f.report.notes.append(note)
        ctx.log(note, "info", f.plan.source.name)
    deadline = time.monotonic() + 4 * quiet
    seen: tuple[tuple[int, int], ...] | None = None
    since = time.monotonic()
    while True:
        now = tuple(dest.counts(n) for n in names)
        t = time.monotonic()
        if now != seen:
            seen, since = now, t
        elif t - since >= quiet:
            return
        if t >= deadline:
            ctx.log(f"{', '.join(names)} kept changing for {4 * quiet:.0f} s (new mail?); matching now", "warning")
            return
        if ctx.cancel.wait(min(0.5, quiet / 6)):
            raise Cancelled()


def _statuses(source: Source, folders: list[RemoteFolder]) -> list[FolderStatus | FolderRefused]:
    """Each folder's status, or why the source refused it; in one round trip where the source can (IMAP)."""
    together = getattr(source, "statuses", None)
    if together is not None:
        return together(folders)
    out: list[FolderStatus | FolderRefused] = []
    for folder in folders:
        try:
            out.append(source.status(folder))
        except FolderRefused as exc:
            out.append(exc)
    return out


def _unclaimed(ctx: AccountContext, dest: DestinationMailbox, name: str) -> Counter[str]:
    folder = dest.select(name)
    claimed_uids, claimed_unknown = ctx.state.claimed(ctx.key, name, folder.uidvalidity)
    counts = dest.unclaimed(name, claimed_uids)
    counts.subtract(claimed_unknown)
    return +counts
