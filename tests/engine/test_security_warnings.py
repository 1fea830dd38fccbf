"""security = "none" towards a host that is not this machine warns (engine/model.py); loopback does not."""

from __future__ import annotations

import pytest

from mailmig_tui.engine.model import (
    Destination,
    Settings,
    Smtp,
    Source,
    Task,
    is_loopback,
    security_warning,
    settings_warnings,
    task_warnings,
    validate_settings,
    validate_task,
)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("localhost", True),
        ("LocalHost.", True),
        ("128.0.0.1", False),
        ("0.0.0.0", False),
        ("192.168.1.10", False),
        ("localhost.example.com", False),
        ("mail.acme.example", False),
        ("", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_security_none_towards_another_host_warns_and_stays_valid() -> None:
    task = Task("acme", source=Source(host="mail.acme.example", port=143, security="none"))
    (warning,) = task_warnings(task)
    assert warning.field == "source.security"
    assert warning.message == (
        'security is "none": passwords and mail to mail.acme.example cross the network unencrypted; '
        'use "ssl" or "starttls" ("none" is for 127.0.0.1 only)'
    )
    assert not [p for p in validate_task(task) if p.field == "source.security"], "a warning, not a problem"
    assert security_warning("source.security", "mail.acme.example", "none") == warning


@pytest.mark.parametrize(
    "source",
    [
        Source(host="127.0.0.1", security="none"),
        Source(host="localhost", security="none"),
        Source(host="mail.acme.example", security="ssl"),
        Source(host="mail.acme.example", security="starttls"),
        Source(type="google", host="mail.acme.example", security="none"),  # not used by Google
    ],
)
def test_no_warning(source: Source) -> None:
    assert task_warnings(Task("acme", source=source)) == []


def test_settings_warn_for_the_destination_and_a_configured_smtp_relay() -> None:
    settings = Settings(
        Destination(host="10.0.0.5", security="none"),
        Smtp(host="smtp.acme.example", security="none", sender="mailmig@acme.example"),
    )
    assert [
        (w.field, "10.0.0.5" in w.message or "smtp.acme.example" in w.message) for w in settings_warnings(settings)
    ] == [
        ("destination.security", True),
        ("smtp.security", True),
    ]
    assert validate_settings(settings) == []
    assert settings_warnings(Settings(Destination(host="127.0.0.1", security="none"), Smtp(security="none"))) == []
