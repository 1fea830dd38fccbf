"""The Gmail API calls the Google source makes: paced by the per-user quota, retried, batched.

* Quota: every call is charged its published cost in units (messages.get/list 5, labels.list and
  getProfile 1; a batch of n gets costs 5n) against a per-user token bucket refilled at the task's
  units per minute, so a run stays under Google's per-user limit instead of bouncing off it.
* Retries: 429, 403 with reason ``rateLimitExceeded``/``userRateLimitExceeded``, 5xx and network
  errors are retried with truncated exponential backoff and jitter (``Retry-After`` wins when sent),
  up to :data:`MAX_ATTEMPTS`; each retry is logged. Any other error is permanent and fails the
  account with a sentence saying what to do.
* Batches: ``messages.get`` goes out in batch requests of at most :data:`BATCH_MAX` parts, posted to
  ``<api_endpoint>batch`` (googleapiclient's own batch URI ignores the endpoint). Parts that fail
  with a retryable status are sent again in a later batch; a 404 part means the message is gone.
* Every wait goes through :func:`pause` on the run's cancel token: stopping interrupts a backoff.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from mailmig_tui.engine.account import Cancelled
from mailmig_tui.engine.imapconn import ErrorKind, ImapError
from mailmig_tui.engine.sources.base import retry_after_seconds
from mailmig_tui.engine.sources.gmail_auth import ServiceAccountKey, credentials, explain_refresh_error

UNITS_GET = 5
UNITS_LIST = 5
UNITS_LABELS = 1
UNITS_PROFILE = 1
BATCH_MAX = 50
LIST_PAGE = 500
MAX_ATTEMPTS = 8
BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 64.0
RETRY_AFTER_MAX_S = 900.0
TIMEOUT_S = 120.0
RATE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})

LogFn = Callable[[str, str], None]


def pause(cancel: threading.Event, seconds: float) -> bool:
    """Wait ``seconds`` unless the run is stopped first; True when stopped. The one place that sleeps."""
    return cancel.wait(max(0.0, seconds))


class GmailError(ImapError):
    """A Gmail API or token failure; ``kind`` "auth"/"protocol" is permanent, "connection" transient."""


class QuotaLimiter:
    """A token bucket in quota units: one second of burst, then ``units_per_minute / 60`` per second.

    A charge larger than what is left is allowed to run into debt; the next caller waits it off,
    so the average rate holds whatever the batch sizes.
    """

    def __init__(self, units_per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = max(1, units_per_minute) / 60.0
        self.capacity = self.rate
        self._tokens = self.capacity
        self._clock = clock
        self._stamp = clock()
        self._lock = threading.Lock()

    def take(self, units: int, wait: Callable[[float], None]) -> None:
        while True:
            with self._lock:
                now = self._clock()
                self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
                self._stamp = now
                if self._tokens >= 0:
                    self._tokens -= units
                    return
                short = -self._tokens / self.rate
            wait(short)


@dataclass
class Failure:
    """A failed call classified: retryable or not, with the words for the log or the account's error."""

    transient: bool
    text: str
    kind: ErrorKind = "connection"
    retry_after: float | None = None


@dataclass
class _BatchOutcome:
    results: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    retry: list[str] = field(default_factory=list)
    failure: Failure | None = None


def _retry_after(headers: Any) -> float | None:
    wait = retry_after_seconds(headers.get("retry-after") if headers is not None else None)
    return None if wait is None else min(RETRY_AFTER_MAX_S, wait)


def _error_body(content: bytes) -> tuple[list[str], str]:
    """(reasons, message) from a Google JSON error body (``errors[].reason`` and ``details[].reason``)."""
    try:
        data = json.loads(content.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return [], content.decode("utf-8", "replace").strip()[:200]
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return [], str(error or "")[:200]
    reasons = [str(e.get("reason")) for e in error.get("errors", []) if isinstance(e, dict) and e.get("reason")]
    reasons += [str(d.get("reason")) for d in error.get("details", []) if isinstance(d, dict) and d.get("reason")]
    if error.get("status"):
        reasons.append(str(error["status"]))
    return reasons, str(error.get("message", "")).strip()


class GmailApi:
    """One user's Gmail API session (token, HTTP connection, quota bucket)."""

    def __init__(
        self,
        key: ServiceAccountKey,
        user: str,
        *,
        endpoint: str,
        units_per_minute: int,
        cancel: threading.Event | None = None,
        log: LogFn | None = None,
        timeout: float = TIMEOUT_S,
    ) -> None:
        import google_auth_httplib2
        import httplib2
        from googleapiclient.discovery import build

        self.key = key
        self.user = user
        self.cancel = cancel or threading.Event()
        self.log: LogFn = log or (lambda text, severity: None)
        self.limiter = QuotaLimiter(units_per_minute)
        root = endpoint if endpoint.endswith("/") else endpoint + "/"
        self.batch_uri = root + "batch"
        self._http = google_auth_httplib2.AuthorizedHttp(credentials(key, user), http=httplib2.Http(timeout=timeout))
        service = build(
            "gmail", "v1", http=self._http, static_discovery=True, cache_discovery=False,
            client_options={"api_endpoint": root},
        )  # fmt: skip
        self._users = service.users()
        self._messages = self._users.messages()

    # ----------------------------------------------------------------------------------------
    # Calls.

    def profile(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("users.getProfile", UNITS_PROFILE, self._users.getProfile(userId="me"))
        return result

    def labels(self) -> list[dict[str, Any]]:
        result = self._call("labels.list", UNITS_LABELS, self._users.labels().list(userId="me"))
        return list(result.get("labels", []))

    def list_ids(self, label_ids: Iterable[str] = (), q: str = "", include_spam_trash: bool = False) -> list[str]:
        """Every message id matching, all pages (:data:`LIST_PAGE` per page), newest first, no repeats."""
        ids: dict[str, None] = {}
        params: dict[str, Any] = {"userId": "me", "maxResults": LIST_PAGE, "includeSpamTrash": include_spam_trash}
        if label_ids:
            params["labelIds"] = list(label_ids)
        if q:
            params["q"] = q
        while True:
            self._check_cancel()
            page = self._call("messages.list", UNITS_LIST, self._messages.list(**params))
            ids.update((m["id"], None) for m in page.get("messages", []))
            token = page.get("nextPageToken")
            if not token:
                return list(ids)
            params["pageToken"] = token

    def get_many(self, ids: Iterable[str], fmt: str = "raw") -> dict[str, dict[str, Any] | None]:
        """``messages.get`` for each id in batches; None for a message that no longer exists."""
        out: dict[str, dict[str, Any] | None] = {}
        queue = deque(dict.fromkeys(ids))
        attempt = 0
        while queue:
            self._check_cancel()
            chunk = [queue.popleft() for _ in range(min(BATCH_MAX, len(queue)))]
            outcome = self._batch(chunk, fmt)
            out.update(outcome.results)
            if outcome.retry:
                assert outcome.failure is not None
                attempt += 1
                self._backoff(
                    f"messages.get for {len(outcome.retry)} of {len(chunk)} batched", outcome.failure, attempt
                )
                queue.extendleft(reversed(outcome.retry))
            else:
                attempt = 0
        return out

    def close(self) -> None:
        self._http.close()

    # ----------------------------------------------------------------------------------------
    # Retrying.

    def _check_cancel(self) -> None:
        if self.cancel.is_set():
            raise Cancelled()

    def _wait(self, seconds: float) -> None:
        if pause(self.cancel, seconds):
            raise Cancelled()

    def _call(self, what: str, units: int, request: Any) -> Any:
        attempt = 0
        while True:
            self.limiter.take(units, self._wait)
            try:
                return request.execute()
            except Exception as exc:  # noqa: BLE001 - classified: retried, or raised as GmailError
                failure = self._failure(exc, what)
            if not failure.transient:
                raise GmailError(failure.kind, failure.text)
            attempt += 1
            self._backoff(what, failure, attempt)

    def _backoff(self, what: str, failure: Failure, attempt: int) -> None:
        if attempt >= MAX_ATTEMPTS:
            raise GmailError("connection", f"Gmail API: {what} still failing after {attempt} attempts: {failure.text}")
        if failure.retry_after is not None:
            delay, why = failure.retry_after, "as Retry-After asks"
        else:
            ceiling = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** (attempt - 1))
            delay, why = ceiling * (0.5 + random.random() / 2), "backoff"
        self.log(
            f"Gmail API {what}: {failure.text}; retrying in {delay:.1f} s ({why}, attempt {attempt + 1} of {MAX_ATTEMPTS})",
            "warning",
        )
        self._wait(delay)

    def _batch(self, chunk: list[str], fmt: str) -> _BatchOutcome:
        from googleapiclient.http import BatchHttpRequest

        outcome = _BatchOutcome()
        permanent: list[Failure] = []
        transient: list[Failure] = []

        def done(request_id: str, response: Any, exc: Exception | None) -> None:
            if exc is None:
                outcome.results[request_id] = response
                return
            if getattr(getattr(exc, "resp", None), "status", 0) == 404:
                outcome.results[request_id] = None
                return
            failure = self._failure(exc, "messages.get")
            if failure.transient:
                outcome.retry.append(request_id)
                transient.append(failure)
            else:
                permanent.append(failure)

        self.limiter.take(UNITS_GET * len(chunk), self._wait)
        batch = BatchHttpRequest(callback=done, batch_uri=self.batch_uri)
        for mid in chunk:
            batch.add(self._messages.get(userId="me", id=mid, format=fmt), request_id=mid)
        try:
            batch.execute(http=self._http)
        except Exception as exc:  # noqa: BLE001 - the whole batch failed: classified like a single call
            failure = self._failure(exc, "batch")
            if not failure.transient:
                raise GmailError(failure.kind, failure.text) from None
            return _BatchOutcome(retry=chunk, failure=failure)
        if permanent:
            raise GmailError(permanent[0].kind, permanent[0].text)
        if transient:
            texts = Counter(f.text for f in transient)
            waits = [f.retry_after for f in transient if f.retry_after is not None]
            outcome.failure = Failure(
                True,
                ", ".join(text if n == 1 else f"{text} ×{n}" for text, n in sorted(texts.items())),
                retry_after=max(waits) if waits else None,
            )
        return outcome

    # ----------------------------------------------------------------------------------------
    # Classifying failures.

    def _failure(self, exc: Exception, what: str) -> Failure:
        import httplib2
        from google.auth.exceptions import RefreshError, TransportError
        from googleapiclient.errors import BatchError, HttpError

        if isinstance(exc, HttpError):
            return self._http_failure(exc.resp.status, exc.content, exc.resp, what)
        if isinstance(exc, RefreshError):
            transient, text = explain_refresh_error(exc, self.key, self.user)
            return Failure(transient, text, "connection" if transient else "auth")
        if isinstance(exc, OSError | httplib2.HttpLib2Error | http.client.HTTPException | TransportError | BatchError):
            return Failure(True, f"network error ({type(exc).__name__}: {exc})")
        raise exc

    def _http_failure(self, status: int, content: bytes, headers: Any, what: str) -> Failure:
        reasons, message = _error_body(content)
        label = f"{status} {' '.join(reasons[:1]) or message[:60]}".strip()
        if status == 429 or status == 408 or status >= 500 or (status == 403 and RATE_REASONS.intersection(reasons)):
            return Failure(True, f"HTTP {label}", retry_after=_retry_after(headers))
        user, project = self.user, self.key.info.get("project_id", "")
        found = set(reasons)
        if "failedPrecondition" in found or "mail service not enabled" in message.casefold():
            return Failure(
                False,
                f"Gmail is not enabled for {user} (no Gmail licence, or Gmail is off for the user's organisational unit)",
                "auth",
            )
        if found & {"accessNotConfigured", "SERVICE_DISABLED"}:
            return Failure(
                False,
                f"the Gmail API is not enabled in the Google Cloud project {project}: enable it at "
                f"https://console.cloud.google.com/apis/library/gmail.googleapis.com?project={project}",
                "auth",
            )
        if "dailyLimitExceeded" in found:
            return Failure(
                False,
                f"the Google Cloud project {project} has used up its daily Gmail API quota; run again tomorrow",
                "protocol",
            )
        if status in (401, 403):
            return Failure(False, f"Gmail API refused {what} for {user}: {message or label} (HTTP {status})", "auth")
        return Failure(False, f"Gmail API {what} failed for {user}: {message or label} (HTTP {status})", "protocol")
