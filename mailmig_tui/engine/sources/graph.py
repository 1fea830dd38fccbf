"""Microsoft 365 source: one mailbox read through Microsoft Graph v1.0, never changed.

Folders: the well-known folders (inbox, sentitems, drafts, deleteditems, junkemail, archive) are
resolved by their locale-independent aliases, then every folder is listed recursively from the
root with ``includeHiddenFolders=true``; search folders (``mailSearchFolder`` and everything under
the ``searchfolders`` alias) are views and are left out. A folder's name is its display-name path
joined with ``/`` (a ``/`` inside a display name becomes ``_``); the inbox is always ``INBOX``
whatever its language, and the other well-known folders carry the RFC 6154 attribute (\\Sent,
\\Drafts, \\Trash, \\Junk, \\Archive), so the folder plan maps them to the destination's folders of
the same kind and the Trash/Junk filters apply to them.

Identity and change marker (:class:`FolderStatus`): ``validity`` is a short hash of the folder's
Graph id (a deleted and recreated folder is another folder); ``marker`` is the folder's
``totalItemCount`` (from the listing) with the id and ``receivedDateTime`` of its newest message
(one request). New mail, moved-in mail and deletions change it; a deletion that exactly offsets
an old message moved in at the same time is only noticed at the folder's next change. This costs
one request per unchanged folder and needs no state of its own (a delta link would, and would still
need the request).

Messages: listed page by page (``@odata.nextLink`` followed verbatim) with
``Prefer: IdType="ImmutableId"`` so that ids survive moves inside the mailbox; the date filters
are a server-side ``$filter`` on receivedDateTime (from local midnight of the first kept day to
local midnight after the last kept day, the admin's time zone), and what they leave out is counted
with ``$count``. isRead → \\Seen, flagStatus "flagged" → \\Flagged, isDraft → \\Draft,
receivedDateTime → INTERNALDATE; the size is the MAPI message size (extended property 0x0E08), an
estimate a little larger than the MIME, used for the size filter and the memory budget only (the
engine fingerprints what it fetched by its real length). The MIME comes from ``/messages/{id}/$value``.

Throttling (Graph allows 4 concurrent requests per app and mailbox): at most 4 requests in flight
per mailbox; 429 and 5xx are retried after ``Retry-After`` (or an exponential backoff with jitter
when there is none), with every thread of the mailbox holding off meanwhile; waits end at once
when the run is cancelled. A permanent refusal (403, no mailbox) fails that account alone.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import requests

from mailmig_tui.engine.account import Cancelled
from mailmig_tui.engine.folders import RemoteFolder
from mailmig_tui.engine.model import Filters, Task, User
from mailmig_tui.engine.model import Source as SourceSettings
from mailmig_tui.engine.sources import graph_auth
from mailmig_tui.engine.sources.base import (
    SKIP_TOO_NEW,
    SKIP_TOO_OLD,
    Fetched,
    FolderStatus,
    Listing,
    MessageMeta,
    date_window,
    retry_after_seconds,
)
from mailmig_tui.engine.sources.graph_auth import GraphError, TokenProvider

log = logging.getLogger(__name__)

WELL_KNOWN = {
    "inbox": None,
    "sentitems": "\\Sent",
    "drafts": "\\Drafts",
    "deleteditems": "\\Trash",
    "junkemail": "\\Junk",
    "archive": "\\Archive",
}
"""Well-known folder aliases → the special-use attribute given to them (the inbox becomes INBOX)."""
SEARCH_FOLDERS = "searchfolders"
MAX_IN_FLIGHT = 4
PAGE_SIZE = 250
FOLDER_PAGE_SIZE = 100
MAX_ATTEMPTS = 8
MAX_WAIT_S = 300.0
"""A Retry-After longer than this fails the attempt as temporary (the runner retries the account later)."""
BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 60.0
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
TIMEOUT = (15.0, 120.0)
SIZE_PROPERTY = "Integer 0x0E08"
MESSAGE_FIELDS = "id,receivedDateTime,createdDateTime,isRead,isDraft,flag,internetMessageId"
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

LogFn = Callable[..., None]


def pause(cancel: threading.Event | None, seconds: float) -> bool:
    """Wait ``seconds``; True (at once) when ``cancel`` is set. Tests replace it (and :func:`clock`)."""
    return graph_auth.pause(cancel, seconds)


def clock() -> float:
    return time.monotonic()


def backoff(attempt: int) -> float:
    """Exponential backoff with jitter for the ``attempt``-th retry (0-based): half fixed, half random."""
    ceiling = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt)
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def retry_after(response: requests.Response) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), if any."""
    return retry_after_seconds(response.headers.get("Retry-After"))


def _error_of(response: requests.Response) -> tuple[str, str]:
    try:
        body = response.json()
    except ValueError:
        return "", response.text[:200].strip()
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("code") or ""), str(error.get("message") or "").strip()
    return "", str(body)[:200]


class GraphClient:
    """Requests to Microsoft Graph for one mailbox: auth, ImmutableId, ≤4 in flight, retries."""

    def __init__(
        self,
        graph_url: str,
        account: str,
        tokens: TokenProvider,
        *,
        session: requests.Session | None = None,
        cancel: threading.Event | None = None,
        log_fn: LogFn | None = None,
        delegated: bool = False,
    ) -> None:
        self.base = graph_url.rstrip("/") + "/v1.0"
        self.account = account
        self.user_path = f"/users/{quote(account, safe='@.')}"
        self.tokens = tokens
        self.session = session or tokens.session
        self.cancel = cancel
        self.log_fn = log_fn
        self.delegated = delegated
        self._slots = threading.BoundedSemaphore(MAX_IN_FLIGHT)
        self._hold = threading.Lock()
        self._resume_at = 0.0

    def url(self, path: str) -> str:
        return path if path.startswith(("https://", "http://")) else self.base + self.user_path + path

    def _note(self, text: str, severity: str = "warning") -> None:
        log.debug("%s: %s", self.account, text)  # debug: Python's last-resort handler must not write on the TUI
        if self.log_fn is not None:
            self.log_fn(text, severity)

    def _wait(self, seconds: float) -> None:
        if pause(self.cancel, seconds):
            raise Cancelled()

    def _hold_off(self) -> None:
        """Wait while the mailbox is throttled (another thread was told to retry later)."""
        waited_for = 0.0
        while True:
            with self._hold:
                target = self._resume_at
            delay = target - clock()
            if target <= waited_for or delay <= 0:
                return
            self._wait(delay)
            waited_for = target  # waited: go on unless another thread was told to wait longer meanwhile

    def _throttle(self, seconds: float) -> None:
        with self._hold:
            self._resume_at = max(self._resume_at, clock() + seconds)

    def request(self, path: str, params: Mapping[str, Any] | None = None, *, missing_ok: bool = False):
        """GET ``path`` (a path under the user, or an absolute nextLink used verbatim).

        Returns the response (None for a 404 when ``missing_ok``); raises :class:`GraphError`.
        """
        url = self.url(path)
        refreshed = False
        attempt = 0
        while True:
            if self.cancel is not None and self.cancel.is_set():
                raise Cancelled()
            self._hold_off()
            headers = {
                "Authorization": f"Bearer {self.tokens.token()}",
                "Prefer": 'IdType="ImmutableId"',
                "Accept": "application/json",
            }
            try:
                with self._slots:
                    response = self.session.get(url, params=params, headers=headers, timeout=TIMEOUT)
            except requests.RequestException as exc:
                if attempt + 1 >= MAX_ATTEMPTS:
                    raise GraphError("connection", f"Microsoft Graph cannot be reached: {exc}") from None
                delay = backoff(attempt)
                attempt += 1
                self._note(f"Microsoft Graph cannot be reached ({type(exc).__name__}); retrying in {delay:.1f} s")
                self._wait(delay)
                continue
            status = response.status_code
            if status < 300:
                return response
            if status == 404 and missing_ok:
                return None
            if status == 401 and not refreshed:
                refreshed = True
                self.tokens.token(force_refresh=True)
                continue
            if status in RETRY_STATUSES:
                code, message = _error_of(response)
                told = retry_after(response)
                delay = told if told is not None else backoff(attempt)
                what = f"{status}{' ' + code if code else ''}"
                if attempt + 1 >= MAX_ATTEMPTS or delay > MAX_WAIT_S:
                    raise GraphError(
                        "connection",
                        f"Microsoft Graph keeps answering {what} for {self.account} ({message or 'no details'}); "
                        "the account is retried later",
                    )
                attempt += 1
                source = "Retry-After" if told is not None else "backoff"
                self._note(f"Microsoft Graph answered {what}: waiting {delay:.1f} s ({source}) before retrying")
                self._throttle(delay)
                continue
            raise self._refusal(response)

    def _refusal(self, response: requests.Response) -> GraphError:
        status = response.status_code
        code, message = _error_of(response)
        detail = f"{status} {code}: {message}" if code else f"{status}: {message}"
        if status == 401:
            return GraphError("auth", f"Microsoft Graph refused the access token ({detail})")
        if status == 403:
            if self.delegated:
                fix = "the signed-in admin needs FullAccess to it and the Mail.Read.Shared permission"
            else:
                fix = (
                    "grant the app the Mail.Read application permission with admin consent, and check any "
                    "Exchange application access policy or RBAC scope"
                )
            return GraphError("auth", f"the mailbox of {self.account} may not be read ({detail}); {fix}")
        if status == 404 and code in ("ErrorInvalidUser", "MailboxNotEnabledForRESTAPI", "ResourceNotFound"):
            return GraphError("auth", f"{self.account} has no Exchange Online mailbox ({detail})")
        return GraphError("protocol", f"Microsoft Graph refused a request for {self.account} ({detail})")

    def get_json(self, path: str, params: Mapping[str, Any] | None = None, *, missing_ok: bool = False) -> Any:
        response = self.request(path, params, missing_ok=missing_ok)
        if response is None:
            return None
        try:
            return response.json()
        except ValueError:
            raise GraphError("protocol", f"Microsoft Graph sent something that is not JSON for {path}") from None

    def pages(self, path: str, params: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        """Every item of a collection, following ``@odata.nextLink`` exactly as given."""
        page = self.get_json(path, params)
        while True:
            yield from page.get("value", [])
            link = page.get("@odata.nextLink")
            if not link:
                return
            page = self.get_json(link)

    def count(self, path: str, query_filter: str) -> int:
        """How many items of a collection match ``$filter`` (``$count``, else by listing their ids)."""
        page = self.get_json(path, {"$filter": query_filter, "$count": "true", "$top": 1, "$select": "id"})
        if isinstance(page.get("@odata.count"), int):
            return int(page["@odata.count"])
        return sum(1 for _ in self.pages(path, {"$filter": query_filter, "$top": 1000, "$select": "id"}))


def parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC).replace(microsecond=0)


def size_of(item: Mapping[str, Any]) -> int:
    """PR_MESSAGE_SIZE from ``singleValueExtendedProperties`` (id echoed as "Integer 0xe08" or so)."""
    for prop in item.get("singleValueExtendedProperties") or ():
        kind, _, tag = str(prop.get("id", "")).partition(" ")
        try:
            if kind.lower() == "integer" and int(tag, 16) == 0x0E08:
                return max(0, int(prop.get("value")))
        except (TypeError, ValueError):
            continue
    return 0


def meta_of(item: Mapping[str, Any]) -> MessageMeta:
    flags = []
    if item.get("isRead"):
        flags.append("\\Seen")
    if (item.get("flag") or {}).get("flagStatus") == "flagged":
        flags.append("\\Flagged")
    if item.get("isDraft"):
        flags.append("\\Draft")
    when = parse_time(item.get("receivedDateTime")) or parse_time(item.get("createdDateTime")) or EPOCH
    message_id = item.get("internetMessageId")
    return MessageMeta(
        id=str(item["id"]),
        size=size_of(item),
        internaldate=when,
        flags=tuple(flags),
        message_id=str(message_id).strip() if message_id else None,
    )


def local_midnight(day: dt.date, tz: dt.tzinfo | None = None) -> dt.datetime:
    """The instant a day starts in ``tz`` (the local time zone when None)."""
    start = dt.datetime.combine(day, dt.time())
    return start.replace(tzinfo=tz) if tz is not None else start.astimezone()


def odata_time(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def date_filters(filters: Filters, tz: dt.tzinfo | None = None) -> tuple[str | None, str | None]:
    """The ``$filter`` clauses of the first kept instant and of the first skipped instant after the window."""
    since, until = date_window(filters)
    lo = f"receivedDateTime ge {odata_time(local_midnight(since, tz))}" if since else None
    hi = f"receivedDateTime lt {odata_time(local_midnight(until, tz))}" if until else None
    return lo, hi


def _flip(clause: str) -> str:
    return clause.replace(" ge ", " lt ", 1) if " ge " in clause else clause.replace(" lt ", " ge ", 1)


class GraphSource:
    """One Microsoft 365 mailbox as a :class:`~mailmig_tui.engine.sources.base.Source` (read-only)."""

    prefix = ""

    def __init__(
        self,
        task_name: str,
        source: SourceSettings,
        user: User,
        *,
        tokens: TokenProvider | None = None,
        session: requests.Session | None = None,
        cancel: threading.Event | None = None,
        log_fn: LogFn | None = None,
        tz: dt.tzinfo | None = None,
    ) -> None:
        self.account = user.source.strip()
        self.tokens = tokens or graph_auth.provider_for(task_name, source)
        self.client = GraphClient(
            source.graph_url,
            self.account,
            self.tokens,
            session=session,
            cancel=cancel,
            log_fn=log_fn,
            delegated=source.auth == "device",
        )
        self.tz = tz
        self._ids: dict[str, str] = {}
        self._counts: dict[str, int] = {}
        self._pool: ThreadPoolExecutor | None = None

    def bind(self, *, cancel: threading.Event, log: LogFn) -> None:
        """Let waits end when the run is cancelled, and report retries in the account's log."""
        self.client.cancel = cancel
        self.client.log_fn = log

    # -- folders ----------------------------------------------------------------------------------

    def list_folders(self) -> list[RemoteFolder]:
        roles: dict[str, str] = {}
        for alias in (*WELL_KNOWN, SEARCH_FOLDERS):
            found = self.client.get_json(f"/mailFolders/{alias}", {"$select": "id"}, missing_ok=True)
            if found and found.get("id"):
                roles[str(found["id"])] = alias
        out: list[RemoteFolder] = []
        self._ids.clear()
        self._counts.clear()
        self._walk("/mailFolders", (), roles, out)
        return out

    def _walk(self, path: str, parent: tuple[str, ...], roles: Mapping[str, str], out: list[RemoteFolder]) -> None:
        params = {"includeHiddenFolders": "true", "$top": FOLDER_PAGE_SIZE}
        children = []
        for item in self.client.pages(path, params):
            fid = str(item.get("id", ""))
            role = roles.get(fid)
            if role == SEARCH_FOLDERS or str(item.get("@odata.type", "")).endswith("mailSearchFolder"):
                continue
            part = "INBOX" if role == "inbox" else (str(item.get("displayName") or "") or "_").replace("/", "_")
            names = (*parent, part)
            name = "/".join(names)
            special = WELL_KNOWN.get(role) if role else None
            out.append(RemoteFolder(name, "/", frozenset({special}) if special else frozenset()))
            self._ids[name] = fid
            self._counts[name] = int(item.get("totalItemCount") or 0)
            if int(item.get("childFolderCount") or 0) > 0:
                children.append((fid, names))
        for fid, names in children:
            self._walk(f"/mailFolders/{quote(fid, safe='')}/childFolders", names, roles, out)

    def _folder_path(self, folder: RemoteFolder) -> str:
        if folder.name not in self._ids:
            self.list_folders()
        try:
            return f"/mailFolders/{quote(self._ids[folder.name], safe='')}"
        except KeyError:
            raise GraphError("connection", f'the folder "{folder.name}" disappeared during the run') from None

    def status(self, folder: RemoteFolder) -> FolderStatus:
        path = self._folder_path(folder)
        page = self.client.get_json(
            path + "/messages", {"$top": 1, "$orderby": "receivedDateTime desc", "$select": "id,receivedDateTime"}
        )
        newest = (page.get("value") or [{}])[0]
        count = self._counts.get(folder.name, 0)
        newest_id = hashlib.sha256(str(newest.get("id", "")).encode()).hexdigest()[:12]
        validity = hashlib.sha256(self._ids[folder.name].encode()).hexdigest()[:16]
        return FolderStatus(validity, f"{count}/{newest.get('receivedDateTime', '')}/{newest_id}", count)

    # -- messages ---------------------------------------------------------------------------------

    def list_messages(self, folder: RemoteFolder, status: FolderStatus, known: set[str], filters: Filters) -> Listing:
        path = self._folder_path(folder) + "/messages"
        lo, hi = date_filters(filters, self.tz)
        params: dict[str, Any] = {
            "$select": MESSAGE_FIELDS,
            "$expand": f"singleValueExtendedProperties($filter=id eq '{SIZE_PROPERTY}')",
            "$top": PAGE_SIZE,
        }
        window = " and ".join(c for c in (lo, hi) if c)
        if window:
            params["$filter"] = window
        metas = [meta_of(item) for item in self.client.pages(path, params) if str(item.get("id")) not in known]
        metas.sort(key=lambda m: m.internaldate)
        skipped: Counter[str] = Counter()
        if lo:
            skipped[SKIP_TOO_OLD] = self.client.count(path, _flip(lo))
        if hi:
            skipped[SKIP_TOO_NEW] = self.client.count(path, _flip(hi))
        return Listing(metas, +skipped)

    def _mime(self, message_id: str) -> Fetched:
        response = self.client.request(f"/messages/{quote(message_id, safe='')}/$value", missing_ok=True)
        return Fetched(message_id, None if response is None else response.content)

    def fetch(self, folder: RemoteFolder, ids: list[str]) -> list[Fetched]:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(MAX_IN_FLIGHT, thread_name_prefix=f"graph-{self.account}")
        return list(self._pool.map(self._mime, ids))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def open_graph_source(task: Task, user: User) -> GraphSource:
    return GraphSource(task.name, task.source, user)


def check_mailbox(task: Task, user: User) -> tuple[bool, str]:
    """Verify: can the app (or the signed-in admin) read this mailbox? One Graph call on the inbox."""
    try:
        source = GraphSource(task.name, task.source, user)
        inbox = source.client.get_json("/mailFolders/inbox", {"$select": "id,totalItemCount"})
    except GraphError as exc:
        return False, str(exc)
    total = int(inbox.get("totalItemCount") or 0)
    return True, f"Microsoft Graph OK, the inbox holds {total} message(s)"
