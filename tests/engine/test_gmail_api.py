"""The Gmail API layer (real google-api-python-client and google-auth) against the local fake:
batches, paging, retries, Retry-After, permanent errors, token requests, stopping during a backoff."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailmig_tui.engine.account import Cancelled
from mailmig_tui.engine.sources import gmail_api
from mailmig_tui.engine.sources.gmail import decode_raw
from mailmig_tui.engine.sources.gmail_api import GmailApi, GmailError
from mailmig_tui.engine.sources.gmail_auth import SCOPE, ServiceAccountKey, load_key
from tests.fakes.google import TOKEN_AUDIENCE, FakeGoogle, FakeKey, google_error, make_key
from tests.integration.conftest import message

pytestmark = pytest.mark.timeout(60)
ALICE = "alice@acme.example"


@pytest.fixture(scope="module")
def fake_key() -> FakeKey:
    return make_key()


@pytest.fixture
def google(fake_key: FakeKey) -> Iterator[FakeGoogle]:
    with FakeGoogle(fake_key) as fake:
        yield fake


@pytest.fixture
def key(google: FakeGoogle, fake_key: FakeKey, tmp_path: Path) -> ServiceAccountKey:
    return load_key(fake_key.write(tmp_path / "key.json", google.token_uri))


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Backoff and quota waits, recorded instead of slept."""
    recorded: list[float] = []

    def pause(cancel: threading.Event, seconds: float) -> bool:
        recorded.append(round(seconds, 3))
        return cancel.is_set()

    monkeypatch.setattr(gmail_api, "pause", pause)
    return recorded


def api_for(
    google: FakeGoogle,
    key: ServiceAccountKey,
    user: str = ALICE,
    *,
    lines: list[str] | None = None,
    cancel: threading.Event | None = None,
) -> GmailApi:
    def log(text: str, severity: str) -> None:
        if lines is not None:
            lines.append(f"{severity}: {text}")

    return GmailApi(key, user, endpoint=google.root, units_per_minute=10**9, cancel=cancel, log=log)


def seed(google: FakeGoogle, n: int, user: str = ALICE) -> list[str]:
    box = google.mailbox(user)
    return [box.add(message(i)) for i in range(n)]


def test_gets_go_out_in_batches_of_at_most_50_to_the_endpoints_batch_uri(
    google: FakeGoogle, key: ServiceAccountKey
) -> None:
    ids = seed(google, 120)
    api = api_for(google, key)

    got = api.get_many(ids)

    assert [decode_raw(got[mid]["raw"]) for mid in ids] == [message(i) for i in range(120)]  # type: ignore[index]
    batches = google.requests("^/batch")
    assert [b.parts for b in batches] == [50, 50, 20] and all(b.status == 200 for b in batches)
    parts = [r for r in google.log if r.in_batch]
    assert sorted(r.path.rsplit("/", 1)[1] for r in parts) == sorted(ids)
    assert all(r.query["format"] == ["raw"] and r.account == ALICE for r in parts)
    assert all(r.in_batch for r in google.requests(r"^/gmail/v1/users/me/messages/"))  # no get went alone


def test_the_fake_refuses_more_than_50_parts_as_gmail_does(
    google: FakeGoogle, key: ServiceAccountKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = seed(google, 60)
    monkeypatch.setattr(gmail_api, "BATCH_MAX", 60)

    with pytest.raises(GmailError, match="Inner request count exceeds the limit"):
        api_for(google, key).get_many(ids)


def test_failed_parts_are_requeued_and_retry_after_is_honoured(
    google: FakeGoogle, key: ServiceAccountKey, waits: list[float]
) -> None:
    ids = seed(google, 60)
    google.fault(f"/messages/{ids[3]}", 429, headers={"Retry-After": "7"})
    google.fault(f"/messages/({ids[10]}|{ids[55]})", 403, reason="userRateLimitExceeded", count=2)
    lines: list[str] = []

    got = api_for(google, key, lines=lines).get_many(ids)

    assert all(got[mid] is not None for mid in ids)
    assert 7.0 in waits
    asked = [r.path.rsplit("/", 1)[1] for r in google.log if r.in_batch]
    assert asked.count(ids[3]) == 2 and asked.count(ids[10]) == 2 and asked.count(ids[55]) == 2
    assert asked.count(ids[0]) == 1
    assert any(line.startswith("warning: ") and "retrying in 7.0 s (as Retry-After asks" in line for line in lines)
    assert any("403 userRateLimitExceeded" in line for line in lines)


def test_server_errors_are_retried_with_growing_jittered_backoff(
    google: FakeGoogle, key: ServiceAccountKey, waits: list[float]
) -> None:
    seed(google, 1)
    google.fault("/labels", 503, count=3)
    google.fault("^/batch", 500, count=1)
    api = api_for(google, key)

    assert {lbl["id"] for lbl in api.labels()} >= {"INBOX", "SENT"}
    assert len(waits) == 3
    for attempt, delay in enumerate(waits):
        ceiling = gmail_api.BACKOFF_BASE_S * 2**attempt
        assert ceiling / 2 <= delay <= ceiling
    assert len(google.requests("/labels")) == 4

    ids = api.list_ids()
    assert api.get_many(ids)[ids[0]] is not None
    assert [b.status for b in google.requests("^/batch")] == [500, 200]


@pytest.mark.parametrize(
    ("status", "reason", "message", "expected", "kind"),
    [
        (
            403,
            "insufficientPermissions",
            "Insufficient Permission",
            "refused labels.list for alice@acme.example",
            "auth",
        ),
        (400, "failedPrecondition", "Mail service not enabled", "Gmail is not enabled for alice@acme.example", "auth"),
        (
            403,
            "accessNotConfigured",
            "Gmail API has not been used",
            "gmail.googleapis.com?project=acme-project",
            "auth",
        ),
        (403, "dailyLimitExceeded", "Daily Limit Exceeded", "daily Gmail API quota", "protocol"),
        (400, "invalidArgument", "Invalid label", "Invalid label (HTTP 400)", "protocol"),
    ],
)
def test_permanent_errors_fail_at_once_with_the_reason(
    google: FakeGoogle,
    key: ServiceAccountKey,
    waits: list[float],
    status: int,
    reason: str,
    message: str,
    expected: str,
    kind: str,
) -> None:
    seed(google, 1)
    google.fault("/labels", status, body=google_error(status, message, reason))

    with pytest.raises(GmailError) as err:
        api_for(google, key).labels()

    assert expected in str(err.value) and err.value.kind == kind and not err.value.transient
    assert len(google.requests("/labels")) == 1 and waits == []


def test_giving_up_after_the_last_attempt_is_a_transient_failure(
    google: FakeGoogle, key: ServiceAccountKey, waits: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(google, 1)
    monkeypatch.setattr(gmail_api, "MAX_ATTEMPTS", 3)
    google.fault("/labels", 503, count=10)

    with pytest.raises(GmailError, match="still failing after 3 attempts") as err:
        api_for(google, key).labels()

    assert err.value.transient and len(google.requests("/labels")) == 3


def test_a_vanished_message_is_none(google: FakeGoogle, key: ServiceAccountKey) -> None:
    (mid,) = seed(google, 1)

    got = api_for(google, key).get_many(["00000000deadbeef", mid])

    assert got["00000000deadbeef"] is None and got[mid] is not None


def test_lists_are_paged_and_spam_trash_only_when_asked(
    google: FakeGoogle, key: ServiceAccountKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = google.mailbox(ALICE)
    ids = [box.add(message(i)) for i in range(45)]
    trash = box.add(message(99), ["TRASH"])
    monkeypatch.setattr(gmail_api, "LIST_PAGE", 20)
    api = api_for(google, key)

    assert sorted(api.list_ids()) == sorted(ids)
    assert api.list_ids(["TRASH"], include_spam_trash=True) == [trash]
    pages = google.requests(r"/messages\?")
    assert [("pageToken" in p.query, p.query["maxResults"]) for p in pages[:3]] == [
        (False, ["20"]), (True, ["20"]), (True, ["20"]),
    ]  # fmt: skip
    assert [p.query["includeSpamTrash"] for p in pages] == [["false"]] * 3 + [["true"]]


def test_the_token_request_is_a_signed_jwt_for_the_readonly_scope_as_the_user(
    google: FakeGoogle, key: ServiceAccountKey, fake_key: FakeKey
) -> None:
    seed(google, 1)
    api_for(google, key).profile()

    (token,) = google.requests("^/token")
    assert token.status == 200
    assert token.claims["sub"] == ALICE and token.claims["scope"] == SCOPE
    assert token.claims["iss"] == fake_key.client_email and token.claims["aud"] == TOKEN_AUDIENCE


def test_missing_delegation_and_unknown_users_are_explained_without_retrying(
    google: FakeGoogle, key: ServiceAccountKey, fake_key: FakeKey, waits: list[float]
) -> None:
    seed(google, 1, "bob@acme.example")
    google.deny("bob@acme.example")

    with pytest.raises(GmailError) as denied:
        api_for(google, key, "bob@acme.example").profile()
    with pytest.raises(GmailError) as unknown:
        api_for(google, key, "nobody@acme.example").profile()

    assert denied.value.kind == "auth" and "domain-wide delegation is not granted" in str(denied.value)
    assert fake_key.client_id in str(denied.value) and SCOPE in str(denied.value)
    assert unknown.value.kind == "auth" and "nobody@acme.example is not an active account" in str(unknown.value)
    assert [r.status for r in google.requests("^/token")] == [401, 400] and waits == []


def test_a_stop_interrupts_a_long_backoff(google: FakeGoogle, key: ServiceAccountKey) -> None:
    ids = seed(google, 3)
    google.fault("/messages/", 429, headers={"Retry-After": "600"}, count=100)
    cancel = threading.Event()
    api = api_for(google, key, cancel=cancel)
    threading.Timer(0.3, cancel.set).start()

    started = time.monotonic()
    with pytest.raises(Cancelled):
        api.get_many(ids)

    assert time.monotonic() - started < 5
