"""Every validation rule of engine/model.py, and from_dict/to_dict."""

from __future__ import annotations

import dataclasses
import datetime as dt
import typing

import pytest

from mailmig_tui.engine.model import (
    Delegate,
    Destination,
    Filters,
    MailboxFilter,
    Notifications,
    Problem,
    RunOptions,
    Schedule,
    Settings,
    Smtp,
    Source,
    Task,
    User,
    ValidationError,
    from_dict,
    to_dict,
    validate_settings,
    validate_task,
    validate_task_name,
    validate_user,
)


def imap_task(**changes) -> Task:
    task = Task(
        name="acme",
        source=Source(type="imap", host="mail.acme.example", port=993),
        users=[User("alice@acme.example", "alice", password="pw-a"), User("bob@acme.example", "bob", password="pw-b")],
    )
    return dataclasses.replace(task, **changes)


def google_source(**changes) -> Source:
    return dataclasses.replace(Source(type="google", key_file="/etc/mailmig/key.json"), **changes)


def m365_source(**changes) -> Source:
    base = Source(type="microsoft365", tenant="acme.example", client_id="1234-abcd", client_secret="s3cret")
    return dataclasses.replace(base, **changes)


def by_field(problems: list[Problem]) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in problems:
        out[p.field] = (out[p.field] + " | " + p.message) if p.field in out else p.message
    return out


def test_valid_tasks_of_each_type_have_no_problem():
    assert validate_task(imap_task()) == []
    assert validate_task(Task(name="g", source=google_source(), users=[User("a@acme.example", "a")])) == []
    assert validate_task(Task(name="m", source=m365_source(), users=[User("a@acme.example", "a")])) == []


# --------------------------------------------------------------------------------------------
# Task name.


@pytest.mark.parametrize("char", ["/", "\\", ":", '"'])
@pytest.mark.parametrize("where", ["start", "middle", "end"])
def test_task_name_forbidden_character(char, where):
    name = {"start": f"{char}acme", "middle": f"ac{char}me", "end": f"acme{char}"}[where]
    problems = validate_task_name(name)
    assert [p.field for p in problems] == ["name"]
    assert f"may not contain {char};" in problems[0].message


def test_task_name_lists_every_forbidden_character_once():
    (problem,) = validate_task_name('a/b\\c:d"e/f')
    assert 'may not contain " / : \\;' in problem.message


@pytest.mark.parametrize("name", [".", ".."])
def test_task_name_dot_and_dotdot(name):
    (problem,) = validate_task_name(name)
    assert problem.field == "name"
    assert f'"{name}" cannot name a task' in problem.message


@pytest.mark.parametrize("name", ["...", ".acme", "acme.old", "a..b", "Ünïcødé task", "x"])
def test_task_name_other_dots_and_characters_are_fine(name):
    assert validate_task_name(name) == []


@pytest.mark.parametrize("name", ["", " ", "\t"])
def test_task_name_empty(name):
    assert validate_task_name(name) == [Problem("name", "the task needs a name")]


def test_task_name_length_64_ok_65_refused():
    assert validate_task_name("n" * 64) == []
    (problem,) = validate_task_name("n" * 65)
    assert problem.field == "name"
    assert "at most 64 characters (this one has 65)" in problem.message


def test_task_name_surrounding_blank_and_control_characters():
    assert "start or end with a blank" in validate_task_name(" acme")[0].message
    assert "control characters" in validate_task_name("ac\x00me")[0].message
    assert "control characters" in validate_task_name("ac\nme")[0].message


def test_task_name_duplicate_is_case_insensitive():
    (problem,) = validate_task_name("acme", existing=["Other", "ACME"])
    assert problem.field == "name"
    assert 'a task named "acme" already exists' in problem.message
    assert validate_task_name("acme", existing=["acme-2", "other"]) == []


def test_validate_task_passes_existing_names_on():
    assert by_field(validate_task(imap_task(), existing_names=["Acme"]))["name"].startswith('a task named "acme"')


# --------------------------------------------------------------------------------------------
# Source.


@pytest.mark.parametrize(
    ("port", "ok"),
    [(0, False), (1, True), (993, True), (65535, True), (65536, False), (-1, False), ("x", False), (True, False)],
)
def test_source_port(port, ok):
    problems = by_field(validate_task(imap_task(source=Source(host="mail.acme.example", port=port))))
    if ok:
        assert "source.port" not in problems
    else:
        assert problems["source.port"] == f"a port is a number from 1 to 65535, not {port!r}"


@pytest.mark.parametrize("security", ["ssl", "starttls", "none"])
def test_source_security_choices_accepted(security):
    assert validate_task(imap_task(source=Source(host="mail.acme.example", security=security))) == []


def test_source_security_other_value_refused():
    problems = by_field(validate_task(imap_task(source=Source(host="mail.acme.example", security="tls"))))
    assert problems == {"source.security": "'tls' is not one of 'ssl', 'starttls', 'none'"}


def test_source_type_other_value_refused():
    problems = by_field(validate_task(imap_task(source=Source(type="pop3", host="x"))))
    assert problems["source.type"] == "'pop3' is not one of 'imap', 'google', 'microsoft365'"


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("mail.acme.example", True),
        ("127.0.0.1", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("", False),
        ("mail acme", False),
        ("mail.acme.example:993", False),
        ("-bad", False),
    ],
)
def test_source_host(host, ok):
    problems = by_field(validate_task(imap_task(source=Source(host=host))))
    assert ("source.host" not in problems) == ok


def test_tls_fingerprint_format():
    good = "sha256:" + ":".join(["AB"] * 32)
    assert validate_task(imap_task(source=Source(host="h", tls_fingerprint=good))) == []
    for bad in ["AB:CD", "sha256:" + ":".join(["AB"] * 31), "sha1:" + ":".join(["AB"] * 32)]:
        problems = by_field(validate_task(imap_task(source=Source(host="h", tls_fingerprint=bad))))
        assert "sha256:" in problems["source.tls_fingerprint"]


def test_delegate_without_login():
    src = Source(host="h", delegate=Delegate(enabled=True, login=""))
    assert by_field(validate_task(imap_task(source=src))) == {
        "source.delegate.login": "the delegate account's login is missing"
    }


def test_delegate_disabled_needs_no_login():
    src = Source(host="h", delegate=Delegate(enabled=False, login="", method="bogus", template=""))
    assert validate_task(imap_task(source=src)) == []


def test_delegate_template_without_user_placeholder():
    src = Source(host="h", delegate=Delegate(enabled=True, login="admin", method="template", template="{delegate}"))
    problems = by_field(validate_task(imap_task(source=src)))
    assert list(problems) == ["source.delegate.template"]
    assert '"{user}"' in problems["source.delegate.template"]


def test_delegate_template_with_user_placeholder_and_authzid_method():
    ok_template = Delegate(enabled=True, login="admin", method="template", template="acme\\{delegate}\\{user}")
    assert validate_task(imap_task(source=Source(host="h", delegate=ok_template))) == []
    # the template only matters with method "template"
    authzid = Delegate(enabled=True, login="admin", method="authzid", template="")
    assert validate_task(imap_task(source=Source(host="h", delegate=authzid))) == []


def test_delegate_method_choice():
    src = Source(host="h", delegate=Delegate(enabled=True, login="admin", method="sudo"))
    assert by_field(validate_task(imap_task(source=src)))["source.delegate.method"].startswith("'sudo' is not one of")


def test_google_without_key_file():
    task = Task(name="g", source=google_source(key_file=""), users=[User("a@acme.example", "a")])
    problems = by_field(validate_task(task))
    assert list(problems) == ["source.key_file"]
    assert "service-account key file" in problems["source.key_file"]


def test_google_other_fields():
    task = Task(
        name="g",
        source=google_source(label_strategy="all", quota_units_per_minute=0, api_endpoint="gmail.googleapis.com"),
    )
    problems = by_field(validate_task(task))
    assert set(problems) == {"source.label_strategy", "source.quota_units_per_minute", "source.api_endpoint"}
    assert problems["source.label_strategy"] == "'all' is not one of 'copy', 'primary'"


def test_google_ignores_imap_fields():
    task = Task(name="g", source=google_source(host="", port=0, security="bogus"))
    assert validate_task(task) == []


def test_m365_without_tenant_and_client():
    task = Task(name="m", source=m365_source(tenant="", client_id=""))
    problems = by_field(validate_task(task))
    assert set(problems) == {"source.tenant", "source.client_id"}
    assert "tenant" in problems["source.tenant"]
    assert "client" in problems["source.client_id"]


def test_m365_app_only_needs_a_secret_or_certificate():
    problems = by_field(validate_task(Task(name="m", source=m365_source(client_secret=""))))
    assert set(problems) == {"source.client_secret"}
    assert not validate_task(Task(name="m", source=m365_source(client_secret="", certificate_file="/k.pem")))
    assert not validate_task(Task(name="m", source=m365_source(client_secret="", auth="device")))


def test_m365_auth_choice_and_urls():
    task = Task(name="m", source=m365_source(auth="password", authority="login.example", graph_url="ftp://x"))
    problems = by_field(validate_task(task))
    assert set(problems) == {"source.auth", "source.authority", "source.graph_url"}
    assert problems["source.auth"] == "'password' is not one of 'app', 'device'"
    assert validate_task(Task(name="m", source=m365_source(auth="device"))) == []


# --------------------------------------------------------------------------------------------
# Run options and schedule.


@pytest.mark.parametrize(("value", "ok"), [(-1, False), (0, True), (1, True), (10_000, True)])
def test_accounts_per_period(value, ok):
    problems = by_field(validate_task(imap_task(run=RunOptions(accounts_per_period=value))))
    assert ("run.accounts_per_period" not in problems) == ok


@pytest.mark.parametrize(("value", "ok"), [(0, False), (1, True), (64, True), (65, False)])
def test_concurrency(value, ok):
    problems = by_field(validate_task(imap_task(run=RunOptions(concurrency=value))))
    assert ("run.concurrency" not in problems) == ok


def test_schedule_rules():
    sched = Schedule(enabled=True, days=["mon", "Funday"], start="25:00", repeat_hours=24, end="6pm")
    problems = by_field(validate_task(imap_task(schedule=sched)))
    assert set(problems) == {"schedule.days[1]", "schedule.start", "schedule.end", "schedule.repeat_hours"}
    assert problems["schedule.days[1]"].startswith("'Funday' is not a day")
    assert "HH:MM" in problems["schedule.start"]


def test_schedule_enabled_without_days():
    problems = by_field(validate_task(imap_task(schedule=Schedule(enabled=True, days=[]))))
    assert problems == {"schedule.days": "a schedule needs at least one day"}
    assert validate_task(imap_task(schedule=Schedule(enabled=False, days=[]))) == []


def test_schedule_valid():
    sched = Schedule(enabled=True, days=["sat", "sun"], start="0:05", repeat_hours=23, end="23:59")
    assert validate_task(imap_task(schedule=sched)) == []


# --------------------------------------------------------------------------------------------
# Filters.


def test_skip_after_before_skip_before():
    filters = Filters(skip_before=dt.date(2020, 6, 2), skip_after=dt.date(2020, 6, 1))
    problems = by_field(validate_task(imap_task(filters=filters)))
    assert list(problems) == ["filters.skip_after"]
    assert "2020-06-01" in problems["filters.skip_after"] and "2020-06-02" in problems["filters.skip_after"]


def test_skip_dates_equal_or_one_of_them_is_fine():
    day = dt.date(2020, 6, 1)
    assert validate_task(imap_task(filters=Filters(skip_before=day, skip_after=day))) == []
    assert validate_task(imap_task(filters=Filters(skip_after=day))) == []
    assert validate_task(imap_task(filters=Filters(skip_before=day))) == []


def test_max_size():
    assert "filters.max_size_kb" in by_field(validate_task(imap_task(filters=Filters(max_size_kb=-1))))
    assert validate_task(imap_task(filters=Filters(max_size_kb=0))) == []


def test_keyword_regex_that_does_not_compile_names_the_keyword():
    mb = MailboxFilter(enabled=True, keywords=["Old", "/^Projects/20(0|1[0-9]$/"], exceptions=["/[z-a]/"])
    problems = by_field(validate_task(imap_task(filters=Filters(mailboxes=mb))))
    assert set(problems) == {"filters.mailboxes.keywords[1]", "filters.mailboxes.exceptions[0]"}
    assert "/^Projects/20(0|1[0-9]$/" in problems["filters.mailboxes.keywords[1]"]
    assert "/[z-a]/" in problems["filters.mailboxes.exceptions[0]"]


def test_keyword_valid_regex_and_plain_names():
    mb = MailboxFilter(
        enabled=True, policy="migrate", keywords=["Old", "/^Projects/20(0|1)[0-9]$/"], exceptions=["Old/Keep"]
    )
    assert validate_task(imap_task(filters=Filters(mailboxes=mb))) == []


def test_mailbox_filter_policy_and_empty_keywords():
    mb = MailboxFilter(enabled=True, policy="only", keywords=[])
    problems = by_field(validate_task(imap_task(filters=Filters(mailboxes=mb))))
    assert problems["filters.mailboxes.policy"] == "'only' is not one of 'skip', 'migrate'"
    assert problems["filters.mailboxes.keywords"] == "the mailbox filter is on but has no keyword"


def test_empty_keyword_refused():
    mb = MailboxFilter(enabled=True, keywords=["Old", "  "])
    assert "filters.mailboxes.keywords[1]" in by_field(validate_task(imap_task(filters=Filters(mailboxes=mb))))


# --------------------------------------------------------------------------------------------
# Notifications.


def test_recipients_must_be_addresses():
    n = Notifications(
        on_success=True,
        success_to=["it@acme.example", "it"],
        on_failure=True,
        failure_to=["ops@acme.example", "a b@acme.example", "ops@"],
    )
    problems = by_field(validate_task(imap_task(notifications=n)))
    assert set(problems) == {
        "notifications.success_to[1]",
        "notifications.failure_to[1]",
        "notifications.failure_to[2]",
    }
    assert problems["notifications.success_to[1]"] == "'it' is not an e-mail address (user@domain)"


def test_notifications_on_without_recipients():
    n = Notifications(on_success=True, on_failure=True)
    problems = by_field(validate_task(imap_task(notifications=n)))
    assert set(problems) == {"notifications.success_to", "notifications.failure_to"}


def test_notifications_need_smtp_relay():
    n = Notifications(on_failure=True, failure_to=["it@acme.example"])
    no_relay = Settings(smtp=Smtp(host=""))
    problems = by_field(validate_task(imap_task(notifications=n), settings=no_relay))
    assert list(problems) == ["notifications"]
    assert "SMTP relay" in problems["notifications"]
    relay = Settings(smtp=Smtp(host="smtp.acme.example", sender="mailmig@acme.example"))
    assert validate_task(imap_task(notifications=n), settings=relay) == []
    # without notifications the relay is not needed
    assert validate_task(imap_task(), settings=no_relay) == []


def test_notifications_recipients_off_are_still_checked_but_not_required():
    n = Notifications(on_success=False, success_to=[])
    assert validate_task(imap_task(notifications=n), settings=Settings()) == []


# --------------------------------------------------------------------------------------------
# Users.


def test_duplicate_users_case_insensitive():
    users = [
        User("alice@acme.example", "alice", password="1"),
        User("bob@acme.example", "bob", password="2"),
        User(" ALICE@acme.example", "alice2", password="3"),
    ]
    problems = by_field(validate_task(imap_task(users=users)))
    assert list(problems) == ["users[2].source"]
    assert "listed twice (also in row 1 of the user list)" in problems["users[2].source"]


def test_user_account_rules():
    users = [
        User("", "a", password="1"),
        User("b:c", "b", password="1"),
        User("c", "c:d", password="1"),
        User("d e", "d", password="1"),
        User("e", "", password="1"),
    ]
    problems = by_field(validate_task(imap_task(users=users)))
    assert problems == {
        "users[0].source": "the source account is missing",
        "users[1].source": "an account may not contain \":\" ('b:c')",
        "users[2].destination": "an account may not contain \":\" ('c:d')",
        "users[3].source": "an account may not contain blanks ('d e')",
        "users[4].destination": "the destination account is missing",
    }


def test_imap_user_needs_password_unless_delegate():
    users = [User("alice", "alice", password="")]
    problems = by_field(validate_task(imap_task(users=users)))
    assert list(problems) == ["users[0].password"]
    delegate = Source(host="h", delegate=Delegate(enabled=True, login="admin"))
    assert validate_task(imap_task(source=delegate, users=users)) == []


@pytest.mark.parametrize(("source", "label"), [(google_source(), "Google Workspace"), (m365_source(), "Microsoft 365")])
def test_cloud_sources_need_full_addresses_and_no_password(source, label):
    assert validate_user(User("alice@acme.example", "alice"), source) == []
    for account in ["alice", "alice@", "@acme.example"]:
        (problem,) = validate_user(User(account, "alice"), source)
        assert problem.field == "user.source"
        assert problem.message == f"{label} accounts are full addresses (user@domain), not {account!r}"


def test_per_user_destination_auth_needs_destination_passwords():
    users = [
        User("alice@acme.example", "alice", password="1", destination_password="d1"),
        User("bob@acme.example", "bob", password="2"),
    ]
    per_user = Settings(destination=Destination(auth="per-user"))
    problems = by_field(validate_task(imap_task(users=users), settings=per_user))
    assert list(problems) == ["users[1].destination_password"]
    assert "4th CSV column" in problems["users[1].destination_password"]
    for auth in ("master", "authzid"):
        assert validate_task(imap_task(users=users), settings=Settings(destination=Destination(auth=auth))) == []


def test_every_problem_is_reported_at_once():
    task = Task(
        name="a/b",
        source=Source(host="", port=0),
        users=[User("x", "x"), User("X", "y", password="p")],
    )
    fields = {p.field for p in validate_task(task)}
    assert fields == {"name", "source.host", "source.port", "users[0].password", "users[1].source"}


# --------------------------------------------------------------------------------------------
# Settings.


def test_default_settings_are_valid():
    assert validate_settings(Settings()) == []


def test_settings_destination_rules():
    d = Destination(host="", port=70000, security="tls", auth="root", tls_fingerprint="AB")
    problems = by_field(validate_settings(Settings(destination=d)))
    assert set(problems) == {
        "destination.host",
        "destination.port",
        "destination.security",
        "destination.auth",
        "destination.tls_fingerprint",
    }
    assert problems["destination.port"] == "a port is a number from 1 to 65535, not 70000"


@pytest.mark.parametrize("auth", ["master", "authzid"])
def test_settings_master_and_authzid_need_login(auth):
    problems = by_field(validate_settings(Settings(destination=Destination(auth=auth, login=""))))
    assert list(problems) == ["destination.login"]


def test_settings_per_user_needs_no_login():
    assert validate_settings(Settings(destination=Destination(auth="per-user", login=""))) == []


def test_settings_master_separator_is_one_character():
    for sep in ("", "**"):
        problems = by_field(validate_settings(Settings(destination=Destination(master_separator=sep))))
        assert list(problems) == ["destination.master_separator"]
    assert validate_settings(Settings(destination=Destination(auth="authzid", master_separator=""))) == []


def test_settings_smtp_checked_only_when_set():
    assert validate_settings(Settings(smtp=Smtp(host="", port=0, security="x", sender=""))) == []
    smtp = Smtp(host="smtp acme", port=0, security="x", sender="mailmig")
    problems = by_field(validate_settings(Settings(smtp=smtp)))
    assert set(problems) == {"smtp.host", "smtp.port", "smtp.security", "smtp.sender"}
    good = Smtp(host="smtp.acme.example", port=587, security="starttls", sender="mailmig@acme.example")
    assert validate_settings(Settings(smtp=good)) == []


# --------------------------------------------------------------------------------------------
# from_dict / to_dict.


def problems_of(cls, data) -> dict[str, str]:
    with pytest.raises(ValidationError) as info:
        from_dict(cls, data)
    return by_field(info.value.problems)


def test_from_dict_minimal_task_takes_defaults():
    task = from_dict(Task, {"name": "acme"})
    assert task == Task(name="acme")


def test_from_dict_type_errors_with_field_paths():
    problems = problems_of(
        Task,
        {
            "name": "acme",
            "source": {"port": "993", "delegate": {"enabled": "yes"}},
            "run": {"concurrency": 2.5},
            "schedule": {"days": "mon", "repeat_hours": True},
            "notifications": {"failure_to": ["it@acme.example", 7]},
            "users": [{"source": "a", "destination": "a"}, {"source": 5, "destination": "b"}],
        },
    )
    assert problems == {
        "source.port": "expected a whole number, not '993'",
        "source.delegate.enabled": "expected true or false, not 'yes'",
        "run.concurrency": "expected a whole number, not 2.5",
        "schedule.days": "this is a list in square brackets, not 'mon'",
        "schedule.repeat_hours": "expected a whole number, not True",
        "notifications.failure_to[1]": "expected a string, not 7",
        "users[1].source": "expected a string, not 5",
    }


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"run": {"concurrency": "5"}}, "run.concurrency", "expected a whole number, not '5'"),
        ({"run": {"concurrency": False}}, "run.concurrency", "expected a whole number, not False"),
        ({"filters": {"max_size_kb": 1.0}}, "filters.max_size_kb", "expected a whole number, not 1.0"),
        ({"filters": {"skip_trash": 1}}, "filters.skip_trash", "expected true or false, not 1"),
        ({"filters": {"skip_junk": "true"}}, "filters.skip_junk", "expected true or false, not 'true'"),
        ({"source": {"host": 127}}, "source.host", "expected a string, not 127"),
        ({"source": {"host": ["a"]}}, "source.host", "expected a string, not ['a']"),
        ({"schedule": {"start": dt.time(22, 0)}}, "schedule.start", "expected a string, not datetime.time(22, 0)"),
        ({"schedule": {"days": "mon"}}, "schedule.days", "this is a list in square brackets, not 'mon'"),
        (
            {"schedule": {"days": {"mon": True}}},
            "schedule.days",
            "this is a list in square brackets, not {'mon': True}",
        ),
        ({"users": "alice"}, "users", "this is a list in square brackets, not 'alice'"),
        ({"filters": {"mailboxes": []}}, "filters.mailboxes", "this must be a table"),
        (
            {"filters": {"skip_before": 20150101}},
            "filters.skip_before",
            "20150101 is not a date; write it as YYYY-MM-DD, e.g. 2015-01-31",
        ),
    ],
)
def test_from_dict_never_coerces_a_value_of_the_wrong_type(data, field, message):
    assert problems_of(Task, {"name": "acme", **data}) == {field: message}


def test_every_field_type_of_the_model_has_a_strict_hook():
    """from_dict refuses wrong types through hooks for str, int, bool and dates only: a field of another
    type (float, time…) would be coerced by cattrs's defaults until model.py gets a strict hook for it."""

    def leaves(cls) -> set:
        found = set()
        for hint in typing.get_type_hints(cls).values():
            args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
            for t in args:
                t = typing.get_args(t)[0] if typing.get_origin(t) is list else t
                found |= leaves(t) if dataclasses.is_dataclass(t) else {t}
        return found

    assert leaves(Task) | leaves(Settings) == {str, int, bool, dt.date}


def test_from_dict_nested_unknown_keys_with_their_paths():
    problems = problems_of(
        Task,
        {
            "name": "acme",
            "source": {"delegate": {"enabled": True, "logn": "admin"}},
            "filters": {"mailboxes": {"polcy": "skip"}},
            "users": [{"source": "a", "destination": "a"}, {"source": "b", "destination": "b", "zzz": 1}],
        },
    )
    assert problems == {
        "source.delegate.logn": 'unknown key; did you mean "login"?',
        "filters.mailboxes.polcy": 'unknown key; did you mean "policy"?',
        "users[1].zzz": "unknown key; known keys: source, destination",
    }


def test_from_dict_reports_every_problem_in_the_order_of_the_data():
    with pytest.raises(ValidationError) as info:
        from_dict(
            Task,
            {
                "schedule": {"repeat_hours": "2", "days": ["mon", 3, "fri", None]},
                "source": {"prot": 993, "port": True},
                "users": [{"destination": 1}],
                "run": {"concurrency": "4"},
            },
        )
    assert [(p.field, p.message) for p in info.value.problems] == [
        ("schedule.repeat_hours", "expected a whole number, not '2'"),
        ("schedule.days[1]", "expected a string, not 3"),
        ("schedule.days[3]", "expected a string, not None"),
        ("source.prot", 'unknown key; did you mean "port"?'),
        ("source.port", "expected a whole number, not True"),
        ("users[0].destination", "expected a string, not 1"),
        ("users[0].source", "this key is required"),
        ("run.concurrency", "expected a whole number, not '4'"),
        ("name", "this key is required"),
    ]


def test_from_dict_refuses_secrets_in_the_settings_file():
    problems = problems_of(Settings, {"destination": {"password": "x"}, "smtp": {"host": "h", "password": "y"}})
    assert set(problems) == {"destination.password", "smtp.password"}
    assert all(m.startswith("passwords and secrets do not belong in this file") for m in problems.values())


def test_from_dict_misspelt_key_did_you_mean():
    problems = problems_of(Task, {"name": "acme", "source": {"prot": 993}, "filtres": {}})
    assert problems["source.prot"] == 'unknown key; did you mean "port"?'
    assert problems["filtres"] == 'unknown key; did you mean "filters"?'


def test_from_dict_unknown_key_without_close_match_lists_known_keys():
    problems = problems_of(Task, {"name": "acme", "run": {"zzz": 1}})
    assert problems["run.zzz"] == "unknown key; known keys: accounts_per_period, concurrency"


def test_from_dict_refuses_secrets_in_a_task_file():
    problems = problems_of(Task, {"name": "a", "users": [{"source": "a", "destination": "a", "password": "x"}]})
    assert list(problems) == ["users[0].password"]
    assert problems["users[0].password"].startswith("passwords and secrets do not belong in this file")
    problems = problems_of(Task, {"name": "a", "source": {"client_secret": "x", "delegate": {"password": "x"}}})
    assert set(problems) == {"source.client_secret", "source.delegate.password"}


def test_from_dict_dates():
    f = from_dict(Filters, {"skip_before": dt.date(2015, 1, 1), "skip_after": "2026-06-30"})
    assert (f.skip_before, f.skip_after) == (dt.date(2015, 1, 1), dt.date(2026, 6, 30))
    problems = problems_of(Filters, {"skip_before": "yesterday", "skip_after": dt.datetime(2020, 1, 1, 10, 0)})
    assert problems["skip_before"] == "'yesterday' is not a date; write it as YYYY-MM-DD, e.g. 2015-01-31"
    assert problems["skip_after"].startswith("a date without time is expected")


def test_from_dict_required_keys_and_tables():
    problems = problems_of(Task, {"source": 5, "users": [{"source": "a"}, "bob"]})
    assert problems == {
        "name": "this key is required",
        "source": "this must be a table",
        "users[0].destination": "this key is required",
        "users[1]": "this must be a table",
    }


def test_to_dict_leaves_secrets_out_and_round_trips():
    task = imap_task(
        source=Source(host="h", delegate=Delegate(enabled=True, login="admin", password="delegate-secret")),
        filters=Filters(skip_before=dt.date(2015, 1, 1), mailboxes=MailboxFilter(keywords=["Old"])),
    )
    task.source.client_secret = "client-secret"
    task.users[0].destination_password = "dest-secret"
    data = to_dict(task)
    text = repr(data)
    for secret in ("delegate-secret", "client-secret", "dest-secret", "pw-a", "pw-b", "password"):
        assert secret not in text
    assert "skip_after" not in data["filters"]
    assert data["users"] == [
        {"source": "alice@acme.example", "destination": "alice"},
        {"source": "bob@acme.example", "destination": "bob"},
    ]
    back = from_dict(Task, data)
    assert to_dict(back) == data
