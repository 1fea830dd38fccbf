"""The copy phase of one account: copy streams, each a reader thread that fetches batches (bounded
by count and bytes, and by the run's byte budget) while its other thread appends the previous
batch (MULTIAPPEND) and records it in the state database in one transaction.

Folders go biggest first, each whole through one stream. The account's own thread runs the first
stream; while the run has concurrency to spare (SpareStreams), more streams with their own source,
destination and state connections take the next folders. A failing stream stops the others and
the attempt ends with its error (the runner retries the account, then over one connection). A
folder a server refuses (FolderRefused) fails alone: its batches still to come are dropped, the
stream goes on with the next folder.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from mailmig_tui.engine.account import (
    SKIP_VANISHED,
    AccountContext,
    Cancelled,
    FolderChanged,
    Limits,
    Progress,
    Work,
    filters_key,
    folder_failed,
)
from mailmig_tui.engine.destination import Appendable, DestinationMailbox
from mailmig_tui.engine.events import AccountResult, FolderProgress, MessageFailed
from mailmig_tui.engine.sources.base import (
    SKIP_EXISTING,
    SKIP_TOO_BIG,
    FolderRefused,
    MessageMeta,
    Source,
    fingerprint_of,
)
from mailmig_tui.engine.state import COPIED, EXISTING, FAILED, SKIPPED, MessageRow, StateDB


def _folder_batches(lim: Limits, w: Work):
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

    def __init__(self, work: list[Work]) -> None:
        sized = [(sum(m.size for m in w.messages), w) for w in work]
        self._todo = sorted(sized, key=lambda pair: pair[0])  # popped from the end: biggest first
        self._lock = threading.Lock()

    def take(self) -> Work | None:
        with self._lock:
            return self._todo.pop()[1] if self._todo else None

    def worth_another_stream(self, lim: Limits) -> bool:
        """More than a batch is left that no stream has started: a new connection pays for itself."""
        with self._lock:
            messages = sum(len(w.messages) for _, w in self._todo)
            size = sum(n for n, _ in self._todo)
        return messages >= lim.batch_messages or size >= lim.batch_bytes


@dataclass
class _Shared:
    """What the streams of one account's copy phase share (under ``lock``)."""

    result: AccountResult
    progress: Progress
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)  # a stream failed: the others stop
    errors: list[BaseException] = field(default_factory=list)
    streams: list[threading.Thread] = field(default_factory=list)

    def fail(self, exc: BaseException) -> None:
        with self.lock:
            self.errors.append(exc)
        self.stop.set()

    def folder_failed(self, ctx: AccountContext, w: Work, exc: FolderRefused) -> None:
        """A server refused this folder: it fails alone, its batches still to come are dropped."""
        with self.lock:
            if folder_failed(ctx, self.result, w.plan.source.name, exc):
                self.result.folders -= 1

    def failed(self, w: Work) -> bool:
        with self.lock:
            return w.plan.source.name in self.result.folder_errors


_DONE = object()


def copy_work(
    ctx: AccountContext,
    source: Source,
    dest: DestinationMailbox,
    work: list[Work],
    result: AccountResult,
    progress: Progress,
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
                try:
                    now = source.status(w.plan.source).validity
                except FolderRefused as exc:
                    shared.folder_failed(ctx, w, exc)
                    continue
                if now != w.status.validity:
                    raise FolderChanged(
                        f"{w.plan.source.name}: the folder's UIDVALIDITY changed during the run "
                        f"({w.status.validity} → {now}); planning again"
                    )
            for batch, size in _folder_batches(ctx.limits, w):
                if shared.failed(w):
                    break
                yield w, batch, size

    def reader() -> None:
        try:
            for w, batch, size in batches():
                if ctx.cancel.is_set() or stop.is_set() or shared.stop.is_set():
                    break
                ctx.budget.acquire(size, ctx.cancel)
                try:
                    fetched = source.fetch(w.plan.source, [m.id for m in batch])
                except FolderRefused as exc:
                    ctx.budget.release(size)
                    shared.folder_failed(ctx, w, exc)
                    continue
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
                if not shared.failed(w):
                    _append_batch(ctx, state, dest, w, batch, fetched, shared)
            except FolderRefused as exc:  # raised before anything of the batch is appended
                shared.folder_failed(ctx, w, exc)
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
    w: Work,
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
    recorded_skips: Counter[str] = Counter()  # in the state as rows, so not in the folder's own counts
    got = {f.id: f for f in fetched}
    limit = ctx.task.filters.max_size_kb * 1024
    fkey = filters_key(ctx.task)
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
            recorded_skips[SKIP_TOO_BIG] += 1  # recorded: not downloaded again while the filters hold
            rows.append(
                MessageRow(
                    name, validity, meta.id, SKIPPED, dest_name, fingerprint=fkey, size=meta.size, reason=SKIP_TOO_BIG
                )
            )
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
    inflight: int | None = None
    sample: tuple[int, float] | None = None
    if to_append:
        size = sum(len(raw) for _, _, raw in to_append)
        inflight = state.begin_inflight(ctx.key, name, validity, dest_name, (m.id for m, _, _ in to_append), size)
        t0 = time.monotonic()
        try:
            outcomes = dest.append(
                dest_name, [Appendable(raw, meta.flags, meta.internaldate) for meta, _, raw in to_append]
            )
        except FolderRefused:  # refused before anything of the batch was sent: nothing is on its way
            state.clear_inflight([inflight])
            raise
        sample = (size, time.monotonic() - t0)
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
    state.record(ctx.key, rows, inflight=inflight, sample=sample)
    for meta, reason in failed:
        ctx.emit(MessageFailed(ctx.task.name, ctx.user.source, folder=name, message=meta.id, reason=reason))
    copied = len(to_append) - len(failed)
    w.skipped.update(skipped)
    w.failures += len(failed)
    w.copied += copied
    w.done += len(batch)
    result, progress = shared.result, shared.progress
    with shared.lock:
        result.skipped.update(skipped + recorded_skips)
        result.failed += len(failed)
        result.copied += copied
        result.bytes += copied_bytes
        progress.done += len(batch)
        progress.done_bytes += sum(m.size for m in batch) + learnt
        progress.total_bytes += learnt  # the account's total converges on the exact one as messages come
        if w.done >= len(w.messages):
            progress.folders_done += 1
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
            folders_done=progress.folders_done,
            folders_total=progress.folders_total,
        )  # fmt: skip
        ctx.emit(event)  # under the lock: the account's counts never go backwards between streams
    if w.done >= len(w.messages):
        state.save_folder(
            ctx.key, name, validity=validity, marker=w.status.marker, filters=fkey,
            dest_folder=dest_name, skipped=w.skipped, clean=w.failures == 0,
        )  # fmt: skip
        ctx.log(f"folder done → {dest_name}: {w.copied} copied, {w.failures} failed", "info", name)
