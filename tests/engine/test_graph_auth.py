"""Microsoft 365 sign-in: the real msal against the local Entra fake (app-only and device code)."""

from __future__ import annotations

import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailmig_tui.engine import model, store
from mailmig_tui.engine.sources import graph_auth
from mailmig_tui.engine.sources.graph_auth import GraphError, SignInCancelled, SignInRequired
from tests.fakes.microsoft import FakeMicrosoft, m365_source, make_app_certificate, sign_in, start_trusted

pytestmark = [pytest.mark.timeout(60), pytest.mark.filterwarnings("ignore:Attempted too soon")]


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeMicrosoft]:
    server = start_trusted(tmp_path, monkeypatch, quick_polls=True)
    yield server
    server.stop()


def task_for(source: model.Source, name: str = "m365") -> model.Task:
    return model.Task(name=name, source=source, users=[model.User("alice@contoso.example", "alice")])


def new_process() -> None:
    """Forget every in-memory MSAL application, as a new process would start."""
    graph_auth._providers.clear()


def test_app_secret_token_is_requested_once_and_reused(fake: FakeMicrosoft) -> None:
    src = m365_source(fake)
    provider = graph_auth.provider_for("m365", src)

    first, second = provider.token(), provider.token()

    assert first == second and first.startswith("at-")
    grants = [r for r in fake.requests("/token", "POST")]
    assert [r.grant_type for r in grants] == ["client_credentials"]
    assert fake.requests("openid-configuration"), "MSAL ran its real OIDC discovery against the fake"
    assert not graph_auth.cache_file("m365").exists(), "app-only tokens are not written to disk"


def test_wrong_client_secret_is_explained(fake: FakeMicrosoft) -> None:
    src = m365_source(fake)
    src.client_secret = "not-the-secret"

    with pytest.raises(GraphError) as info:
        graph_auth.provider_for("m365", src).token()

    assert info.value.kind == "auth" and not info.value.transient
    assert "the client secret is wrong" in str(info.value) and "AADSTS7000215" in str(info.value)
    assert "not-the-secret" not in str(info.value)


def test_certificate_credential_signs_a_client_assertion(fake: FakeMicrosoft, tmp_path: Path) -> None:
    pem = tmp_path / "app.pem"
    cert = make_app_certificate(pem)
    fake.register_app("cert-app", certificate=cert)
    src = m365_source(fake, client_id="cert-app", certificate_file=str(pem))

    assert graph_auth.provider_for("m365", src).token().startswith("at-")
    (grant,) = fake.requests("/token", "POST")
    assert grant.status == 200


def test_certificate_file_readable_by_others_is_refused(fake: FakeMicrosoft, tmp_path: Path) -> None:
    pem = tmp_path / "app.pem"
    fake.register_app("cert-app", certificate=make_app_certificate(pem))
    pem.chmod(0o644)
    src = m365_source(fake, client_id="cert-app", certificate_file=str(pem))

    with pytest.raises(GraphError, match=r"can be read by other users \(mode 0644\).*chmod 600"):
        graph_auth.provider_for("m365", src).token()
    assert not fake.requests("/token")


def test_certificate_in_another_tenant_app_is_rejected(fake: FakeMicrosoft, tmp_path: Path) -> None:
    registered, other = tmp_path / "registered.pem", tmp_path / "other.pem"
    fake.register_app("cert-app", certificate=make_app_certificate(registered))
    make_app_certificate(other)
    src = m365_source(fake, client_id="cert-app", certificate_file=str(other))

    with pytest.raises(GraphError, match="certificate is not registered"):
        graph_auth.provider_for("m365", src).token()


def test_device_code_sign_in_pending_then_success_with_private_cache(fake: FakeMicrosoft) -> None:
    task = task_for(m365_source(fake, auth="device"))

    assert sign_in(fake, task) == "admin@contoso.example"

    polls = [r for r in fake.requests("/token", "POST") if "device_code" in r.grant_type]
    assert [r.status for r in polls][:1] == [400] and polls[-1].status == 200, "pending, then success"
    (start,) = fake.requests("/devicecode", "POST")
    assert start.status == 200
    cache = graph_auth.cache_file(task.name)
    assert cache.parent == store.paths().secrets_dir
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.parent.stat().st_mode) == 0o700
    assert "refresh_token" not in cache.name and "RefreshToken" in cache.read_text()
    new_process()
    assert graph_auth.signed_in_account(task) == "admin@contoso.example"


def test_next_process_reuses_the_sign_in_and_refreshes_silently(fake: FakeMicrosoft) -> None:
    fake.token_lifetime = 200  # under MSAL's 5-minute margin: every new process must refresh
    task = task_for(m365_source(fake, auth="device"))
    sign_in(fake, task)
    cache = graph_auth.cache_file(task.name)
    before = cache.read_text()
    new_process()

    token = graph_auth.provider_for(task.name, task.source).token()

    assert token.startswith("at-")
    assert len(fake.requests("/devicecode")) == 1, "no new sign-in"
    refreshes = [r for r in fake.requests("/token", "POST") if r.grant_type == "refresh_token"]
    assert [r.status for r in refreshes] == [200]
    assert cache.read_text() != before, "the refreshed tokens were saved"
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600


def test_cached_token_is_used_without_any_request(fake: FakeMicrosoft) -> None:
    task = task_for(m365_source(fake, auth="device"))
    sign_in(fake, task)
    count = len(fake.log)
    new_process()

    graph_auth.provider_for(task.name, task.source).token()

    assert len(fake.log) == count + 1 and fake.log[-1].path.endswith("openid-configuration")


def test_revoked_grant_asks_to_sign_in_again_with_the_reason(fake: FakeMicrosoft) -> None:
    fake.token_lifetime = 200
    task = task_for(m365_source(fake, auth="device"))
    sign_in(fake, task)
    fake.revoke()
    new_process()

    with pytest.raises(SignInRequired) as info:
        graph_auth.provider_for(task.name, task.source).token()

    text = str(info.value)
    assert "the grant was revoked" in text and "AADSTS50173" in text
    assert f"mailmig-tui signin {task.name}" in text
    assert info.value.kind == "auth" and not info.value.transient


def test_nobody_signed_in_yet(fake: FakeMicrosoft) -> None:
    task = task_for(m365_source(fake, auth="device"))

    with pytest.raises(SignInRequired, match="nobody has signed in for this task yet"):
        graph_auth.provider_for(task.name, task.source).token()
    assert graph_auth.signed_in_account(task) is None


def test_device_sign_in_can_be_cancelled(fake: FakeMicrosoft) -> None:
    task = task_for(m365_source(fake, auth="device"))
    flow = graph_auth.start_signin(task)
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    t0 = time.monotonic()

    with pytest.raises(SignInCancelled):
        flow.wait(cancel)

    assert time.monotonic() - t0 < 2
    assert not graph_auth.cache_file(task.name).exists()


def test_declined_sign_in(fake: FakeMicrosoft) -> None:
    task = task_for(m365_source(fake, auth="device"))
    flow = graph_auth.start_signin(task)
    fake.decline(flow.user_code)

    with pytest.raises(GraphError, match="declined"):
        flow.wait(threading.Event())


def test_public_client_flows_disabled_is_explained(fake: FakeMicrosoft) -> None:
    fake.register_app("confidential-only", secret="x")
    task = task_for(m365_source(fake, auth="device", client_id="confidential-only"))
    flow = graph_auth.start_signin(task)

    with pytest.raises(GraphError, match='turn on "Allow public client flows"'):
        flow.wait(threading.Event())


def test_app_only_task_has_nothing_to_sign_in(fake: FakeMicrosoft) -> None:
    with pytest.raises(GraphError, match="app-only access"):
        graph_auth.start_signin(task_for(m365_source(fake)))


def test_token_cache_readable_by_others_is_refused(fake: FakeMicrosoft) -> None:
    task = task_for(m365_source(fake, auth="device"))
    sign_in(fake, task)
    graph_auth.cache_file(task.name).chmod(0o640)
    new_process()

    with pytest.raises(GraphError, match="token cache can be read by other users"):
        graph_auth.provider_for(task.name, task.source).token()


def test_sign_out_forgets_the_sign_in(fake: FakeMicrosoft) -> None:
    task = task_for(m365_source(fake, auth="device"))
    sign_in(fake, task)

    graph_auth.sign_out(task)

    assert not graph_auth.cache_file(task.name).exists()
    with pytest.raises(SignInRequired):
        graph_auth.provider_for(task.name, task.source).token()


def test_unknown_tenant_authority_is_a_clear_error(fake: FakeMicrosoft) -> None:
    src = m365_source(fake)
    src.tenant = "no-such-tenant"

    with pytest.raises(GraphError, match="check the tenant and the authority URL") as info:
        graph_auth.provider_for("m365", src).token()
    assert not info.value.transient


def test_explain_maps_aadsts_codes_and_keeps_entra_text_otherwise() -> None:
    known = {
        "error": "invalid_grant",
        "error_description": "AADSTS700082: The refresh token has expired\r\nTrace ID: x",
    }
    assert graph_auth.explain(known) == "the sign-in expired after 90 days without use (invalid_grant, AADSTS700082)"
    other = {"error": "invalid_request", "error_description": "AADSTS9999: Something new.\r\nTrace ID: y"}
    assert graph_auth.explain(other) == "invalid_request: AADSTS9999: Something new."
    assert graph_auth.explain({"error": "x", "error_codes": [7000222]}).startswith("the client secret has expired")


def test_authority_and_scopes_follow_the_task() -> None:
    src = model.Source(type="microsoft365", tenant="contoso.onmicrosoft.com", client_id="c")
    assert graph_auth.authority_of(src) == "https://login.microsoftonline.com/contoso.onmicrosoft.com"
    assert graph_auth.app_scopes(src) == ["https://graph.microsoft.com/.default"]
    src.graph_url = "https://graph.microsoft.us/"
    assert graph_auth.delegated_scopes(src) == [
        "https://graph.microsoft.us/Mail.Read",
        "https://graph.microsoft.us/Mail.Read.Shared",
    ]
