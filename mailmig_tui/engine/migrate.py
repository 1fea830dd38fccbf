"""One account's migration: plan the folders, find what is new, copy it pipelined, record it.

Phase 1 (plan), on the account's thread: list both sides' folders, map them (folders.py); per
folder, one STATUS decides whether anything can have changed since the last clean pass; for a
changed folder, the source lists the unknown messages under the date filters, the size filter
applies, and the destination's unclaimed messages are matched by fingerprint so that mail already
there (before the first run, or appended just before a crash) is recorded instead of copied.

Phase 2 (copy) is copy_streams.py: batches fetched while the previous one is appended (MULTIAPPEND)
and recorded, biggest folders first, in more than one stream while the run has concurrency to
spare. The cancel token is checked between batches: stopping leaves the state consistent. What
the phases share (context, limits, budget, work) is account.py.
"""

from __future__ import annotations

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
    Source,
    fingerprint_of,
)
from mailmig_tui.engine.state import EXISTING, FolderRow, MessageRow


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
        progress = Progress(sum(len(w.messages) for w in work), sum(m.size for w in work for m in w.messages))
        copy_work(ctx, source, dest, work, result, progress)
    finally:
        source.close()
        if dest is not None:
            dest.close()


def _plan(
    ctx: AccountContext, source: Source, dest: DestinationMailbox, result: AccountResult, reports: list[FolderReport]
) -> list[Work]:
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
    work: list[Work] = []
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
        try:
            status = statuses[name]
            if isinstance(status, FolderRefused):
                raise status
            folder_work = _plan_folder(ctx, source, dest, plan, status, rows[name], report, result)
        except FolderRefused as exc:
            report.error = str(exc)
            folder_failed(ctx, result, name, exc)
            continue
        result.folders += 1
        if folder_work is not None:
            work.append(folder_work)
    return work


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


def _plan_folder(
    ctx: AccountContext,
    source: Source,
    dest: DestinationMailbox,
    plan: FolderPlan,
    status: FolderStatus,
    row: FolderRow | None,
    report: FolderReport,
    result: AccountResult,
) -> Work | None:
    """One folder's plan: what to copy (None: nothing), recording what needs no copy; FolderRefused
    when a server refuses this folder."""
    f = ctx.task.filters
    fkey = filters_key(ctx.task)
    name = plan.source.name
    if not ctx.dry_run:
        dest.ensure_folder(plan.dest_name)
    if (
        row is not None
        and row.clean
        and (row.validity, row.marker, row.filters, row.dest_folder)
        == (status.validity, status.marker, fkey, plan.dest_name)
    ):
        report.unchanged = True
        return None
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
        remaining = []
        for meta in candidates:
            fp = fingerprint_of(meta)
            if fp and avail[fp] > 0:
                avail[fp] -= 1
                existing_rows.append(
                    MessageRow(name, status.validity, meta.id, EXISTING, plan.dest_name, fingerprint=fp, size=meta.size)
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


def _unclaimed(ctx: AccountContext, dest: DestinationMailbox, name: str) -> Counter[str]:
    folder = dest.select(name)
    claimed_uids, claimed_unknown = ctx.state.claimed(ctx.key, name, folder.uidvalidity)
    counts = dest.unclaimed(name, claimed_uids)
    counts.subtract(claimed_unknown)
    return +counts
