"""The Google source's key handling and pure helpers: key errors, the secrets copy, auth errors, encodings."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from google.auth.exceptions import RefreshError

from mailmig_tui.engine import model, store
from mailmig_tui.engine.sources import gmail_auth
from mailmig_tui.engine.sources.gmail import (
    decode_raw,
    imap_size,
    keyword_of,
    local_midnight_epoch,
    message_id_in,
    open_gmail,
)
from mailmig_tui.engine.sources.gmail_api import GmailError, QuotaLimiter, _retry_after
from mailmig_tui.engine.sources.gmail_auth import SCOPE, KeyFileError
from tests.fakes.google import FakeKey, make_key


@pytest.fixture(scope="module")
def fake_key() -> FakeKey:
    return make_key()


@pytest.fixture
def key_file(tmp_path: Path, fake_key: FakeKey) -> Path:
    return fake_key.write(tmp_path / "acme-key.json", "http://127.0.0.1:9/token")


# --- loading and validating ---------------------------------------------------------------------


def test_a_valid_key_gives_client_id_scope_and_the_admin_console_link(key_file: Path, fake_key: FakeKey) -> None:
    key = gmail_auth.describe_key(key_file)

    assert (key.client_id, key.client_email, key.project_id) == (
        fake_key.client_id,
        fake_key.client_email,
        fake_key.project_id,
    )
    assert key.scope == SCOPE == "https://www.googleapis.com/auth/gmail.readonly"
    url = urlsplit(key.admin_console_url)
    assert (url.netloc, url.path) == ("admin.google.com", "/ac/owl/domainwidedelegation")
    assert parse_qs(url.query) == {"clientIdToAdd": [fake_key.client_id], "clientScopeToAdd": [SCOPE]}
    assert "PRIVATE KEY" not in repr(key) and "PRIVATE KEY" not in key.delegation_hint()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "does not exist"),
        (b"\xff\xfe not json", "is not a JSON file"),
        (b"{not json", "is not a JSON file"),
        (b"[1, 2]", "not a service-account key (it has no type)"),
        (b'{"type": "authorized_user", "client_id": "x"}', 'not a service-account key (its type is "authorized_user")'),
        (b'{"installed": {"client_id": "x"}}', "not a service-account key (it is an OAuth client secret)"),
    ],
)
def test_unusable_files_are_refused_with_the_reason(tmp_path: Path, content: bytes | None, expected: str) -> None:
    path = tmp_path / "key.json"
    if content is not None:
        path.write_bytes(content)

    with pytest.raises(KeyFileError) as err:
        gmail_auth.load_key(path)

    assert expected in str(err.value) and str(path) in str(err.value)
    if content is not None:
        assert "Add key" in str(err.value)  # says how to get a right one


def test_missing_fields_are_named(tmp_path: Path, fake_key: FakeKey) -> None:
    info = fake_key.info("http://127.0.0.1:9/token")
    del info["client_email"], info["token_uri"]
    info["client_id"] = ""
    path = tmp_path / "key.json"
    path.write_text(json.dumps(info))

    with pytest.raises(KeyFileError, match="lacks client_email, client_id, token_uri: the key file is incomplete"):
        gmail_auth.load_key(path)


def test_a_directory_or_no_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="is a directory"):
        gmail_auth.load_key(tmp_path)
    with pytest.raises(KeyFileError, match="no service-account key file is set"):
        gmail_auth.load_key("")


def test_a_broken_private_key_is_reported_when_credentials_are_made(tmp_path: Path, fake_key: FakeKey) -> None:
    info = fake_key.info("http://127.0.0.1:9/token")
    info["private_key"] = "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n"
    path = tmp_path / "key.json"
    path.write_text(json.dumps(info))
    key = gmail_auth.load_key(path)

    with pytest.raises(KeyFileError, match="the private key cannot be used"):
        gmail_auth.credentials(key, "alice@acme.example")
    task = model.Task(
        "acme", model.Source(type="google", key_file=str(path)), users=[model.User("a@acme.example", "a")]
    )
    with pytest.raises(GmailError, match="the private key cannot be used") as err:
        open_gmail(task, task.users[0])  # the account fails with the reason
    assert err.value.kind == "auth"


# --- the secrets copy ---------------------------------------------------------------------------


def test_the_key_is_copied_into_the_secrets_area_with_mode_0600(key_file: Path) -> None:
    key_file.chmod(0o644)  # as downloaded

    key = gmail_auth.task_key("acme", str(key_file))

    copy = store.paths().secrets_dir / "acme.google-key.json"
    assert key.path == copy
    assert copy.read_bytes() == key_file.read_bytes()
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert stat.S_IMODE(copy.parent.stat().st_mode) == 0o700


def test_the_copy_is_used_once_the_download_is_deleted_and_refreshed_when_it_changes(
    tmp_path: Path, key_file: Path
) -> None:
    gmail_auth.task_key("acme", str(key_file))
    key_file.unlink()
    assert gmail_auth.task_key("acme", str(key_file)).path == gmail_auth.secret_key_path("acme")

    other = make_key(client_id="999")
    other.write(key_file, "http://127.0.0.1:9/token")
    assert gmail_auth.task_key("acme", str(key_file)).client_id == "999"
    assert json.loads(gmail_auth.secret_key_path("acme").read_text())["client_id"] == "999"


def test_no_file_and_no_copy_is_an_error_naming_the_path(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="does not exist"):
        gmail_auth.task_key("acme", str(tmp_path / "gone.json"))


def test_a_bad_configured_file_is_not_hidden_by_an_old_copy(tmp_path: Path, key_file: Path) -> None:
    gmail_auth.task_key("acme", str(key_file))
    key_file.write_text("{}")

    with pytest.raises(KeyFileError, match="not a service-account key"):
        gmail_auth.task_key("acme", str(key_file))


def test_a_copy_readable_by_others_is_refused(key_file: Path) -> None:
    gmail_auth.task_key("acme", str(key_file))
    key_file.unlink()
    os.chmod(gmail_auth.secret_key_path("acme"), 0o640)

    with pytest.raises(KeyFileError, match="chmod 600"):
        gmail_auth.task_key("acme", str(key_file))


# --- token errors in words an admin can act on --------------------------------------------------


def refresh_error(error: str, description: str, retryable: bool = False) -> RefreshError:
    return RefreshError(
        f"{error}: {description}", {"error": error, "error_description": description}, retryable=retryable
    )


def test_token_errors_are_explained(key_file: Path, fake_key: FakeKey) -> None:
    key = gmail_auth.load_key(key_file)
    explain = gmail_auth.explain_refresh_error

    transient, text = explain(refresh_error("unauthorized_client", "Client is unauthorized"), key, "bob@acme.example")
    assert not transient
    assert "bob@acme.example" in text and "domain-wide delegation is not granted" in text
    assert fake_key.client_id in text and SCOPE in text and key.admin_console_url in text

    transient, text = explain(refresh_error("invalid_grant", "Invalid email or User ID"), key, "carol@acme.example")
    assert not transient and "not an active account" in text and "suspended" in text

    _, text = explain(refresh_error("invalid_grant", "Invalid JWT Signature."), key, "a@acme.example")
    assert "deleted or disabled" in text and fake_key.private_key_id in text

    _, text = explain(refresh_error("invalid_grant", "Invalid JWT: Token must be a short-lived token"), key, "a@x.y")
    assert "clock" in text

    transient, _ = explain(refresh_error("internal_failure", "try later", retryable=True), key, "a@x.y")
    assert transient


def test_gmail_error_is_an_account_failure_the_runner_understands() -> None:
    assert not GmailError("auth", "x").transient
    assert GmailError("connection", "x").transient


# --- pure helpers -------------------------------------------------------------------------------


def test_raw_is_decoded_with_or_without_padding() -> None:
    data = b"From: a\r\n\r\n\xff\xfe binary?\r\n"
    padded = base64.urlsafe_b64encode(data).decode()
    assert padded.endswith("=")
    assert decode_raw(padded) == data == decode_raw(padded.rstrip("="))
    with pytest.raises(GmailError, match="not valid base64url"):
        decode_raw("a")


def test_size_is_what_imap_would_report_and_the_message_id_comes_from_the_header() -> None:
    assert imap_size(b"a\r\nb\nc\n") == len(b"a\r\nb\r\nc\r\n")
    assert message_id_in(b"Subject: x\r\nMessage-ID: <a@b>\r\n\r\nMessage-ID: <body@b>\r\n") == "<a@b>"
    assert message_id_in(b"Subject: x\n\nMessage-ID: <body@b>\n") is None


@pytest.mark.parametrize(
    ("label", "keyword"),
    [
        ("Work", "Work"),
        ("Work/Projects", "Work/Projects"),
        ("Ärger (alt)", "&AMQ-rger__alt_"),
        ('a b%c*d"e\\f]g{h', "a_b_c_d_e_f_g_h"),
        ("   ", "_"),
    ],
)
def test_labels_become_imap_atom_keywords(label: str, keyword: str) -> None:
    assert keyword_of(label) == keyword


@pytest.fixture
def new_york(timezone_named: Callable[[str], None]) -> None:
    timezone_named("America/New_York")


def test_date_bounds_are_local_midnight(new_york: None) -> None:
    assert local_midnight_epoch(dt.date(2015, 1, 1)) == int(dt.datetime(2015, 1, 1, 5, tzinfo=dt.UTC).timestamp())
    assert local_midnight_epoch(dt.date(2016, 7, 1)) == int(dt.datetime(2016, 7, 1, 4, tzinfo=dt.UTC).timestamp())


def test_retry_after_takes_seconds_or_a_date() -> None:
    assert _retry_after({"retry-after": "7"}) == 7.0
    assert _retry_after({"retry-after": "100000"}) == 900.0
    soon = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 <= (_retry_after({"retry-after": soon}) or 0) <= 31
    assert _retry_after({}) is None and _retry_after({"retry-after": "soon"}) is None


def test_the_quota_bucket_paces_units_per_minute() -> None:
    now = [0.0]
    waits: list[float] = []

    def wait(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    limiter = QuotaLimiter(6000, clock=lambda: now[0])  # 100 units/s, 1 s of burst
    for _ in range(10):
        limiter.take(250, wait)  # ten batches of 50 gets

    assert waits[0] == pytest.approx(1.5)  # the first batch ran on the burst, the second into debt
    assert now[0] == pytest.approx((10 * 250 - 100 - 250) / 100)  # the average rate holds
