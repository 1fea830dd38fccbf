"""engine/store.py: locations, TOML round trips, secrets files, errors on hand-edited files."""

from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path

import platformdirs
import pytest

from mailmig_tui.engine import store
from mailmig_tui.engine.model import (
    Delegate,
    Destination,
    Filters,
    MailboxFilter,
    Notifications,
    RunOptions,
    Schedule,
    Settings,
    Smtp,
    Source,
    Task,
    User,
)
from mailmig_tui.engine.store import ConfigError


@pytest.fixture
def p(mailmig_home) -> store.Paths:
    return store.paths()


def common(name: str, source: Source, users: list[User]) -> Task:
    """A task whose every field outside ``source`` differs from the default."""
    return Task(
        name=name,
        source=source,
        run=RunOptions(accounts_per_period=3, concurrency=7),
        schedule=Schedule(enabled=True, days=["sat", "sun"], start="21:30", repeat_hours=2, end="05:45"),
        filters=Filters(
            skip_before=dt.date(2015, 1, 1),
            skip_after=dt.date(2026, 6, 30),
            skip_trash=True,
            skip_junk=True,
            max_size_kb=20480,
            mailboxes=MailboxFilter(
                enabled=True, policy="migrate", keywords=["Old", "/^Projects/20(0|1)[0-9]$/"], exceptions=["Old/Keep"]
            ),
        ),
        notifications=Notifications(
            on_success=True, success_to=["boss@acme.example"], on_failure=True, failure_to=["it@acme.example", "x@y.z"]
        ),
        users=users,
    )


IMAP_SECRETS = ["delegate-pw ,\"'=\\x", 'alice-pw, "quoted"', "bob-pw\nline2", "alice-dest-pw", "bob-dest-pw"]


def full_imap_task(name: str = "acme-exchange") -> Task:
    src = Source(
        type="imap",
        host="mail.acme.example",
        port=1993,
        security="starttls",
        path_prefix="INBOX",
        tls_fingerprint="sha256:" + ":".join(["AB"] * 32),
        delegate=Delegate(
            enabled=True, login="admin@acme.example", method="template", template="acme\\{delegate}\\{user}"
        ),
    )
    src.delegate.password = IMAP_SECRETS[0]
    users = [
        User("alice@acme.example", "alice", password=IMAP_SECRETS[1], destination_password=IMAP_SECRETS[3]),
        User("Bob.Smith@acme.example", "bob", password=IMAP_SECRETS[2], destination_password=IMAP_SECRETS[4]),
        User("carol", "carol.jones"),
    ]
    return common(name, src, users)


def full_google_task() -> Task:
    src = Source(
        type="google",
        key_file="/etc/mailmig/acme-key.json",
        label_strategy="primary",
        quota_units_per_minute=1234,
        api_endpoint="http://127.0.0.1:8080/",
    )
    return common("acme-google", src, [User("alice@acme.example", "alice"), User("bob@acme.example", "bob")])


def full_m365_task() -> Task:
    src = Source(
        type="microsoft365",
        tenant="acme.onmicrosoft.com",
        client_id="11111111-2222-3333-4444-555555555555",
        auth="device",
        authority="http://127.0.0.1:9000/{tenant}",
        graph_url="http://127.0.0.1:9001",
        certificate_file="/etc/mailmig/cert.pem",
    )
    src.client_secret = "m365-client-secret~value"
    return common("acme-m365", src, [User("alice@acme.example", "alice", password="unused-but-kept")])


def write(path: Path, text: str) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path.read_bytes()


def leaves(data: dict) -> list:
    return [x for v in data.values() for x in (leaves(v) if isinstance(v, dict) else [v])]


def all_files(root: Path) -> list[str]:
    return sorted(str(f.relative_to(root)) for f in root.rglob("*") if f.is_file())


# --------------------------------------------------------------------------------------------
# Locations.


def test_mailmig_home_redirects_everything(mailmig_home, tmp_path, monkeypatch):
    elsewhere = tmp_path / "xdg"
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        monkeypatch.setenv(var, str(elsewhere / var))
    monkeypatch.setenv("HOME", str(elsewhere / "home"))
    p = store.paths()
    assert (p.config, p.data, p.logs) == (mailmig_home / "config", mailmig_home / "data", mailmig_home / "logs")
    assert p.task_file("t") == mailmig_home / "config/tasks/t.toml"
    assert p.task_secrets_file("t") == mailmig_home / "config/secrets/t.toml"
    assert p.settings_file == mailmig_home / "config/settings.toml"
    assert p.settings_secrets_file == mailmig_home / "config/secrets/settings.toml"
    assert p.state_file("t") == mailmig_home / "data/state/t.sqlite"
    assert p.log_file("t") == mailmig_home / "logs/t.log"
    store.save_task(full_imap_task("t"))
    store.save_settings(Settings(smtp=Smtp(password="smtp-pw")))
    assert all_files(mailmig_home) == [
        "config/secrets/settings.toml",
        "config/secrets/t.toml",
        "config/secrets/t.users.csv",
        "config/settings.toml",
        "config/tasks/t.toml",
        "config/tasks/t.users.csv",
    ]
    assert not elsewhere.exists()


def test_without_mailmig_home_the_platform_dirs_are_used(monkeypatch, tmp_path):
    monkeypatch.delenv("MAILMIG_HOME")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    p = store.paths()
    assert p.config == Path(platformdirs.user_config_dir("mailmig-tui"))
    assert p.data == Path(platformdirs.user_data_dir("mailmig-tui"))
    assert p.logs == Path(platformdirs.user_log_dir("mailmig-tui"))
    assert str(p.config).startswith(str(tmp_path))


# --------------------------------------------------------------------------------------------
# Round trips and secrets.


@pytest.mark.parametrize("make", [full_imap_task, full_google_task, full_m365_task])
def test_fully_filled_task_round_trip(make, p):
    task = make()
    store.save_task(task)
    loaded = store.load_task(task.name)
    assert loaded == task
    # secret fields are compare=True dataclass fields; check them explicitly all the same
    assert loaded.source.delegate.password == task.source.delegate.password
    assert loaded.source.client_secret == task.source.client_secret
    assert [(u.password, u.destination_password) for u in loaded.users] == [
        (u.password, u.destination_password) for u in task.users
    ]
    assert store.list_tasks() == [task.name]


def test_task_file_is_the_documented_toml(p):
    store.save_task(full_imap_task())
    text = p.task_file("acme-exchange").read_text()
    assert text.startswith('name = "acme-exchange"\n')
    for line in [
        "[source]",
        'type = "imap"',
        "[source.delegate]",
        "[filters]",
        "skip_before = 2015-01-01",
        "skip_after = 2026-06-30",
        "[filters.mailboxes]",
    ]:
        assert line in text.splitlines()
    assert "users" not in text, "the user list is in the CSV beside the task file"
    assert p.task_users_file("acme-exchange").read_text() == (
        "source,destination\nalice@acme.example,alice\nBob.Smith@acme.example,bob\ncarol,carol.jones\n"
    )
    # only the keys of the task's own server type are written
    assert "key_file" not in text and "tenant" not in text


def test_no_secret_in_the_task_file(p):
    task = full_imap_task()
    m365 = full_m365_task()
    store.save_task(task)
    store.save_task(m365)
    task_text = "".join(f.read_text() for n in (task.name, m365.name) for f in (p.task_file(n), p.task_users_file(n)))
    stored = leaves(store.read_secrets(p.task_secrets_file(task.name))) + leaves(
        store.read_secrets(p.task_secrets_file(m365.name))
    )
    stored += [
        pw
        for n in (task.name, m365.name)
        for pws in store.read_user_secrets(p.task_user_secrets_file(n)).values()
        for pw in pws
    ]
    for secret in [*IMAP_SECRETS, "m365-client-secret~value", "unused-but-kept"]:
        assert secret not in task_text
        assert secret in stored
    assert "password" not in task_text and "client_secret" not in task_text
    assert store.read_user_secrets(p.task_user_secrets_file(task.name))["bob.smith@acme.example"] == (
        "bob-pw\nline2",
        "bob-dest-pw",
    )
    assert "users" not in store.read_secrets(p.task_secrets_file(task.name))
    assert store.read_secrets(p.task_secrets_file(m365.name))["microsoft365"] == {
        "client_secret": "m365-client-secret~value"
    }


def test_secrets_file_mode_0600_in_a_0700_dir(p):
    old_umask = os.umask(0)
    try:
        store.save_task(full_imap_task())
        store.save_settings(Settings(destination=Destination(password="dest-master-pw")))
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(p.secrets_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(p.task_secrets_file("acme-exchange").stat().st_mode) == 0o600
    assert stat.S_IMODE(p.task_user_secrets_file("acme-exchange").stat().st_mode) == 0o600
    assert stat.S_IMODE(p.settings_secrets_file.stat().st_mode) == 0o600


def test_secrets_dir_made_private_even_if_it_existed(p):
    p.secrets_dir.mkdir(parents=True, mode=0o755)
    os.chmod(p.secrets_dir, 0o755)
    store.save_task(full_imap_task())
    assert stat.S_IMODE(p.secrets_dir.stat().st_mode) == 0o700


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_loading_refuses_a_readable_secrets_file(p, mode):
    store.save_task(full_imap_task())
    secrets = p.task_secrets_file("acme-exchange")
    os.chmod(secrets, mode)
    with pytest.raises(ConfigError) as info:
        store.load_task("acme-exchange")
    message = str(info.value)
    assert str(secrets) in message
    assert f"chmod 600 {secrets}" in message
    assert f"mode {mode:04o}" in message
    assert stat.S_IMODE(secrets.stat().st_mode) == mode  # refused, not silently "fixed"


def _symlinked(p, secrets):
    target = p.secrets_dir.parent / "elsewhere.toml"
    secrets.rename(target)
    secrets.symlink_to(target)
    return "is a symbolic link", "put the file itself there: mv --remove-destination"


def _foreign(p, secrets):
    os.chown(secrets, 54321, -1)
    return "belongs to another user (uid 54321", "chown"


def _open_dir(p, secrets):
    os.chmod(p.secrets_dir, 0o770)
    return "directory of this secrets file can be written by other users (mode 0770)", f"chmod 700 {p.secrets_dir}"


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
@pytest.mark.parametrize("spoil", [_symlinked, _foreign, _open_dir], ids=["symlink", "other-owner", "open-dir"])
def test_loading_refuses_a_secrets_file_others_could_replace(p, spoil):
    """A secrets file that is a symlink, belongs to someone else or sits in a directory others can
    write is refused like a readable one (its 0600 mode alone proves nothing)."""
    store.save_settings(Settings(destination=Destination(password="dest-master-pw")))
    secrets = p.settings_secrets_file
    problem, fix = spoil(p, secrets)
    with pytest.raises(ConfigError) as info:
        store.load_settings()
    message = str(info.value)
    assert str(secrets) in message and problem in message and f"Fix: {fix}" in message


def test_loading_refuses_readable_settings_secrets(p):
    store.save_settings(Settings(smtp=Smtp(password="smtp-pw")))
    os.chmod(p.settings_secrets_file, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        store.load_settings()


def test_secrets_file_written_by_hand(p):
    store.save_task(Task(name="t", source=Source(host="h"), users=[User("alice", "alice")]))
    write(
        p.task_secrets_file("t"),
        '[delegate]\npassword = "d"\n[users."ALICE"]\npassword = "a"\ndestination_password = "b"\n',
    )
    os.chmod(p.task_secrets_file("t"), 0o600)
    task = store.load_task("t")
    assert task.source.delegate.password == "d"
    assert (task.users[0].password, task.users[0].destination_password) == ("a", "b")


def test_secrets_file_with_a_wrong_type(p):
    store.save_task(Task(name="t", users=[User("alice", "alice")]))
    write(p.task_secrets_file("t"), "[users.alice]\npassword = 1234\n")
    os.chmod(p.task_secrets_file("t"), 0o600)
    with pytest.raises(ConfigError) as info:
        store.load_task("t")
    assert 'users."alice".password: a password is a quoted string' in str(info.value)


def test_broken_secrets_file_does_not_echo_the_password(p):
    store.save_task(Task(name="t", users=[User("alice", "alice")]))
    write(p.task_secrets_file("t"), "[users.alice]\npassword = Hunter2-secret\n")
    os.chmod(p.task_secrets_file("t"), 0o600)
    with pytest.raises(ConfigError) as info:
        store.load_task("t")
    assert info.value.line == 2
    assert str(p.task_secrets_file("t")) in str(info.value)
    assert "Hunter2" not in str(info.value)


def test_settings_round_trip_with_passwords_in_secrets(p):
    settings = Settings(
        destination=Destination(
            host="imap.nas.example",
            port=1993,
            security="starttls",
            tls_fingerprint="sha256:" + ":".join(["0F"] * 32),
            auth="authzid",
            login="root-admin",
            master_separator="#",
            password="dest-master-pw",
        ),
        smtp=Smtp(
            host="smtp.nas.example",
            port=587,
            security="ssl",
            login="relay",
            sender="mailmig@nas.example",
            password="smtp-relay-pw",
        ),
    )
    store.save_settings(settings)
    assert store.load_settings() == settings
    text = p.settings_file.read_text()
    assert "dest-master-pw" not in text and "smtp-relay-pw" not in text and "password" not in text
    assert store.read_secrets(p.settings_secrets_file) == {
        "destination": {"password": "dest-master-pw"},
        "smtp": {"password": "smtp-relay-pw"},
    }


def test_settings_default_when_no_file(p):
    assert store.load_settings() == Settings()
    assert not p.config.exists()


def test_settings_bad_value(p):
    write(p.settings_file, '[destination]\nhost = "h"\nport = "imaps"\n')
    with pytest.raises(ConfigError) as info:
        store.load_settings()
    assert info.value.line == 3
    assert str(info.value) == f"{p.settings_file}, line 3: destination.port: expected a whole number, not 'imaps'"


# --------------------------------------------------------------------------------------------
# Hand-edited task files.


GOOD = """name = "acme"

[source]   # the IMAP server
type = "imap"
host = "mail.acme.example"
port = 993

[filters]
skip_before = 2015-01-01

[[users]]
source = "alice"
destination = "alice"

[[users]]
source = "bob"
destination = "bob"
"""


def test_hand_written_task_loads(p):
    write(p.task_file("acme"), GOOD)
    task = store.load_task("acme")
    assert task.source.host == "mail.acme.example"
    assert [u.source for u in task.users] == ["alice", "bob"]


def test_toml_syntax_error_reported_with_its_line_and_file_untouched(p):
    before = write(p.task_file("acme"), GOOD.replace('host = "mail.acme.example"', "host = mail.acme.example"))
    mtime = p.task_file("acme").stat().st_mtime_ns
    with pytest.raises(ConfigError) as info:
        store.load_task("acme")
    err = info.value
    assert err.line == 5
    assert str(err).startswith(f"{p.task_file('acme')}, line 5: TOML syntax error")
    assert "'host = mail.acme.example'" in str(err)
    assert 'text values need double quotes, e.g. key = "value"' in str(err)
    assert p.task_file("acme").read_bytes() == before
    assert p.task_file("acme").stat().st_mtime_ns == mtime
    assert all_files(p.config) == ["tasks/acme.toml"]


@pytest.mark.parametrize(
    ("old", "new", "field", "line", "message"),
    [
        ("port = 993", 'port = "abc"', "source.port", 6, "expected a whole number, not 'abc'"),
        ("port = 993", "prot = 993", "source.prot", 6, 'unknown key; did you mean "port"?'),
        (
            "skip_before = 2015-01-01",
            'skip_before = "yesterday"',
            "filters.skip_before",
            9,
            "'yesterday' is not a date; write it as YYYY-MM-DD, e.g. 2015-01-31",
        ),
        ('source = "bob"', "source = 42", "users[1].source", 16, "expected a string, not 42"),
    ],
)
def test_bad_value_reported_with_field_and_line(p, old, new, field, line, message):
    before = write(p.task_file("acme"), GOOD.replace(old, new))
    with pytest.raises(ConfigError) as info:
        store.load_task("acme")
    assert info.value.line == line
    assert str(info.value) == f"{p.task_file('acme')}, line {line}: {field}: {message}"
    assert p.task_file("acme").read_bytes() == before


def test_several_bad_values_each_with_its_line(p):
    write(
        p.task_file("acme"),
        GOOD.replace("port = 993", "port = true").replace("skip_before = 2015-01-01", "skip_trash = 1"),
    )
    with pytest.raises(ConfigError) as info:
        store.load_task("acme")
    text = str(info.value)
    assert text.startswith(f"{p.task_file('acme')}:\n")
    assert "  - source.port (line 6): expected a whole number, not True" in text
    assert "  - filters.skip_trash (line 9): expected true or false, not 1" in text


def test_every_problem_of_a_file_reported_at_once_in_file_order(p):
    text = (
        GOOD.replace("port = 993", 'port = "993"\nsecurity = 1')
        .replace("skip_before = 2015-01-01", 'skip_before = "2015"\n\n[filters.mailboxes]\npolcy = "skip"')
        .replace('source = "bob"', 'source = "bob"\npassword = "secret"')
        + '\n[schedule]\ndays = "mon"\n'
    )
    write(p.task_file("acme"), text)
    with pytest.raises(ConfigError) as info:
        store.load_task("acme")
    assert info.value.line is None
    assert str(info.value).splitlines() == [
        f"{p.task_file('acme')}:",
        "  - source.port (line 6): expected a whole number, not '993'",
        "  - source.security (line 7): expected a string, not 1",
        "  - filters.skip_before (line 10): '2015' is not a date; write it as YYYY-MM-DD, e.g. 2015-01-31",
        '  - filters.mailboxes.polcy (line 13): unknown key; did you mean "policy"?',
        "  - users[1].password (line 21): passwords and secrets do not belong in this file: "
        "put it in config/secrets/ (mode 0600)",
        "  - schedule.days (line 25): this is a list in square brackets, not 'mon'",
    ]
    assert "secret" not in str(info.value).replace("secrets", "")


def test_not_utf8_task_file(p):
    path = p.task_file("acme")
    path.parent.mkdir(parents=True)
    path.write_bytes(b'name = "acme\xe9"\n')
    with pytest.raises(ConfigError, match="not UTF-8"):
        store.load_task("acme")


def test_file_name_and_name_mismatch(p):
    write(p.task_file("acme"), GOOD.replace('name = "acme"', 'name = "acme-old"'))
    with pytest.raises(ConfigError) as info:
        store.load_task("acme")
    assert info.value.line == 1
    assert 'name: the file is acme.toml but its name is "acme-old"' in str(info.value)


def test_missing_task_and_bad_name(p):
    with pytest.raises(ConfigError, match='there is no task named "nope"'):
        store.load_task("nope")
    with pytest.raises(ConfigError, match="may not contain /"):
        store.load_task("../settings")


# --------------------------------------------------------------------------------------------
# Saving: atomicity, names, rename, delete, copy.


def test_atomic_write_leaves_no_temp_files(p):
    for i in range(3):
        task = full_imap_task()
        task.run.concurrency = i + 1
        store.save_task(task, old_name="acme-exchange" if i else None)
        store.save_settings(Settings())
    assert all_files(p.config) == [
        "secrets/acme-exchange.toml",
        "secrets/acme-exchange.users.csv",
        "secrets/settings.toml",
        "settings.toml",
        "tasks/acme-exchange.toml",
        "tasks/acme-exchange.users.csv",
    ]
    assert store.load_task("acme-exchange").run.concurrency == 3


def test_failed_write_keeps_the_old_file_and_no_temp_file(p, monkeypatch):
    store.save_task(full_imap_task())
    before = p.task_file("acme-exchange").read_bytes()

    def boom(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store.os, "fsync", boom)
    changed = full_imap_task()
    changed.run.concurrency = 1
    with pytest.raises(OSError):
        store.save_task(changed, old_name="acme-exchange")
    assert p.task_file("acme-exchange").read_bytes() == before
    assert all_files(p.config) == [
        "secrets/acme-exchange.toml",
        "secrets/acme-exchange.users.csv",
        "tasks/acme-exchange.toml",
        "tasks/acme-exchange.users.csv",
    ]


def test_save_refuses_an_existing_name_case_insensitively(p):
    store.save_task(Task(name="Acme"))
    for name in ("Acme", "acme", "ACME"):
        with pytest.raises(ConfigError, match="already exists"):
            store.save_task(Task(name=name))
    assert store.list_tasks() == ["Acme"]


def test_save_refuses_a_bad_name(p):
    with pytest.raises(ConfigError, match="may not contain"):
        store.save_task(Task(name="a:b"))
    assert not p.config.exists()


def test_saving_under_the_same_name_overwrites(p):
    store.save_task(Task(name="acme"))
    store.save_task(Task(name="acme", run=RunOptions(concurrency=9)), old_name="acme")
    assert store.load_task("acme").run.concurrency == 9


def state_files(p: store.Paths, name: str) -> list[Path]:
    db = p.state_file(name)
    return [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]


def test_rename_moves_state_with_its_wal_log_and_secrets(p):
    task = full_imap_task("old")
    store.save_task(task)
    p.state_dir.mkdir(parents=True)
    for f in state_files(p, "old"):
        f.write_bytes(f"content of {f.name}".encode())
    p.logs.mkdir(parents=True)
    p.log_file("old").write_text("2025-01-01 alice INFO copied\n")
    task.name = "new"
    store.save_task(task, old_name="old")
    assert store.list_tasks() == ["new"]
    assert [f.read_bytes() for f in state_files(p, "new")] == [
        b"content of old.sqlite",
        b"content of old.sqlite-wal",
        b"content of old.sqlite-shm",
    ]
    assert p.log_file("new").read_text() == "2025-01-01 alice INFO copied\n"
    for gone in (p.task_file("old"), p.task_secrets_file("old"), p.log_file("old"), *state_files(p, "old")):
        assert not gone.exists()
    assert store.load_task("new") == task


def test_rename_never_mixes_a_wal_into_another_database(p):
    store.save_task(Task(name="old"))
    p.state_dir.mkdir(parents=True)
    old_db, old_wal, _ = state_files(p, "old")
    old_db.write_bytes(b"old db")
    old_wal.write_bytes(b"old wal")
    p.state_file("new").write_bytes(b"left over from a deleted task")
    store.save_task(Task(name="new"), old_name="old")
    new_db, new_wal, _ = state_files(p, "new")
    assert new_db.read_bytes() == b"left over from a deleted task"
    assert not new_wal.exists()


def test_rename_onto_an_existing_task_is_refused(p):
    store.save_task(Task(name="a"))
    store.save_task(Task(name="b", run=RunOptions(concurrency=2)))
    with pytest.raises(ConfigError, match="already exists"):
        store.save_task(Task(name="B"), old_name="a")
    assert store.list_tasks() == ["a", "b"]
    assert store.load_task("b").run.concurrency == 2


def test_rename_changing_only_case(p):
    store.save_task(Task(name="acme"))
    store.save_task(Task(name="Acme"), old_name="acme")
    assert store.list_tasks() == ["Acme"]


def test_list_tasks(p):
    assert store.list_tasks() == []
    for name in ("zeta", ".hidden", "Alpha"):
        store.save_task(Task(name=name))
    (p.tasks_dir / "notes.txt").write_text("x")
    assert store.list_tasks() == [".hidden", "Alpha", "zeta"]


def test_delete_task(p):
    store.save_task(full_imap_task("t"))
    p.state_dir.mkdir(parents=True)
    for f in state_files(p, "t"):
        f.write_bytes(b"s")
    p.logs.mkdir(parents=True)
    p.log_file("t").write_text("log\n")
    store.delete_task("t")
    assert store.list_tasks() == [] and not p.task_secrets_file("t").exists()
    assert all(f.exists() for f in state_files(p, "t")) and p.log_file("t").exists()
    store.delete_task("t", with_state=True)
    assert not any(f.exists() for f in [*state_files(p, "t"), p.log_file("t")])


def test_copy_task_is_independent(p):
    task = full_imap_task("a")
    dup = store.copy_task(task, "b")
    assert dup.name == "b" and dup.users == task.users and dup.users[0].password == IMAP_SECRETS[1]
    dup.users[0].destination = "changed"
    assert task.users[0].destination == "alice"


def test_source_secrets_travel_with_a_renamed_task_and_go_with_a_deleted_one():
    from mailmig_tui.engine.model import Task

    p = store.paths()
    store.save_task(Task(name="old"))
    cache = p.secrets_dir / "old.msal-cache.json"
    key = p.secrets_dir / "old.google-key.json"
    cache.write_text("{}")
    key.write_text("{}")
    store.save_task(Task(name="new"), old_name="old")
    assert not cache.exists() and not key.exists()
    assert (p.secrets_dir / "new.msal-cache.json").exists() and (p.secrets_dir / "new.google-key.json").exists()
    store.delete_task("new")
    assert not list(p.secrets_dir.glob("new*"))


# --------------------------------------------------------------------------------------------
# The user list in CSV files beside the task and its secrets.


def test_an_older_task_file_with_users_is_migrated_without_losing_a_user_or_password(p):
    write(p.task_file("acme"), GOOD)
    write(
        p.task_secrets_file("acme"),
        '[delegate]\npassword = "d"\n[users.alice]\npassword = "a-pw"\n[users."BOB"]\ndestination_password = "b-dest"\n',
    )
    os.chmod(p.task_secrets_file("acme"), 0o600)
    task = store.load_task("acme")
    assert [(u.source, u.destination, u.password, u.destination_password) for u in task.users] == [
        ("alice", "alice", "a-pw", ""),
        ("bob", "bob", "", "b-dest"),
    ]
    store.save_task(task, old_name="acme")
    assert "users" not in p.task_file("acme").read_text()
    assert "users" not in store.read_secrets(p.task_secrets_file("acme"))
    assert p.task_users_file("acme").read_text() == "source,destination\nalice,alice\nbob,bob\n"
    assert store.read_user_secrets(p.task_user_secrets_file("acme")) == {"alice": ("a-pw", ""), "bob": ("", "b-dest")}
    again = store.load_task("acme")
    assert again == task and [(u.password, u.destination_password) for u in again.users] == [
        ("a-pw", ""),
        ("", "b-dest"),
    ]
    assert again.source.delegate.password == "d"


def test_users_left_in_the_task_file_beside_a_csv_are_kept_after_the_csvs(p):
    """A save cut short between the CSV and the task file (or a hand edit) leaves both: nobody is lost."""
    write(p.task_file("acme"), GOOD)
    write(p.task_users_file("acme"), "source,destination\ncarol,carol\nBOB,bob2\n")
    assert [(u.source, u.destination) for u in store.load_task("acme").users] == [
        ("carol", "carol"),
        ("BOB", "bob2"),
        ("alice", "alice"),
    ]


def test_hand_edited_users_csv_loads(p):
    store.save_task(Task(name="t", source=Source(host="h")))
    write(p.task_users_file("t"), '\ufeffSource,Destination\r\n\r\n alice@x , alice\r\n"o,dd@x",odd\r\nbob@x,bob\r\n')
    assert [(u.source, u.destination) for u in store.load_task("t").users] == [
        ("alice@x", "alice"),
        ("o,dd@x", "odd"),
        ("bob@x", "bob"),
    ]


def test_a_broken_users_csv_line_is_named_with_the_fix(p):
    store.save_task(Task(name="t", users=[User("alice", "alice")]))
    path = p.task_users_file("t")
    before = write(path, "source,destination\nalice,alice\nbob,bob,pw-bob\n")
    with pytest.raises(ConfigError) as info:
        store.load_task("t")
    assert info.value.line == 3
    assert str(info.value) == (
        f"{path}, line 3: 3 field(s); a line is: source account,destination account "
        "(passwords go in the secrets file; quote a value that holds a comma)"
    )
    assert path.read_bytes() == before

    write(path, "alice\nbob,bob\ncarol\n")
    with pytest.raises(ConfigError) as info:
        store.load_task("t")
    assert str(info.value).startswith(f"{path}:\n  - line 1: 1 field(s)")
    assert "\n  - line 3: 1 field(s)" in str(info.value)

    write(path, 'alice,alice\n"bob,bob\n')
    with pytest.raises(ConfigError, match="broken CSV quoting.*close the quotes") as info:
        store.load_task("t")
    assert info.value.line == 2

    path.write_bytes(b"alice,alice\nb\xe9b,bob\n")
    with pytest.raises(ConfigError, match="not UTF-8") as info:
        store.load_task("t")
    assert info.value.line == 2


def test_line_numbers_stay_right_after_blank_lines_and_a_value_over_two_lines(p):
    store.save_task(Task(name="t", users=[User("alice", "alice")]))
    path = p.task_users_file("t")
    write(path, "source,destination\n\n , \nalice,alice\n")
    assert [(u.source, u.destination) for u in store.load_task("t").users] == [("alice", "alice")]
    write(path, 'source,destination\n"al\nice",alice\n\nbob\n')  # the quoted value spans lines 2-3
    with pytest.raises(ConfigError) as info:
        store.load_task("t")
    assert info.value.line == 5 and "1 field(s)" in str(info.value)
    secrets = p.task_user_secrets_file("t")
    secrets.write_text('source,password,destination_password\n"pw\nx",a,b\n\nalice,pw,x,y\n')
    write(path, "alice,alice\n")
    with pytest.raises(ConfigError) as info:
        store.load_task("t")
    assert info.value.line == 5 and "4 field(s)" in str(info.value)


def test_a_broken_user_secrets_csv_never_shows_a_password(p):
    store.save_task(Task(name="t", users=[User("alice", "alice", password="pw")]))
    secrets = p.task_user_secrets_file("t")
    secrets.write_text('source,password,destination_password\nalice,"Hunter2-secret\n')
    with pytest.raises(ConfigError) as info:
        store.load_task("t")
    assert info.value.line == 2 and str(secrets) in str(info.value) and "Hunter2" not in str(info.value)
    secrets.write_text("alice,Hunter2-secret,x,y\n")
    with pytest.raises(ConfigError, match="line 1: 4 field") as info:
        store.load_task("t")
    assert "Hunter2" not in str(info.value)


def test_a_readable_user_secrets_csv_is_refused(p):
    store.save_task(Task(name="t", users=[User("alice", "alice", password="pw")]))
    os.chmod(p.task_user_secrets_file("t"), 0o644)
    with pytest.raises(ConfigError, match=f"chmod 600 {p.task_user_secrets_file('t')}"):
        store.load_task("t")


def test_rename_copy_and_delete_carry_the_users_csv_files(p):
    task = full_imap_task("old")
    store.save_task(task)
    task.name = "new"
    store.save_task(task, old_name="old")
    assert not p.task_users_file("old").exists() and not p.task_user_secrets_file("old").exists()
    loaded = store.load_task("new")
    assert loaded == task and [u.password for u in loaded.users] == [u.password for u in task.users]

    store.save_task(store.copy_task(loaded, "dup"))
    dup = store.load_task("dup")
    assert [(u.source, u.password) for u in dup.users] == [(u.source, u.password) for u in task.users]

    store.delete_task("new")
    store.delete_task("dup")
    assert all_files(p.config) == []


def test_loading_a_task_leaves_the_cycle_collector_as_it_found_it(p):
    import gc

    store.save_task(Task(name="t", users=[User("alice", "alice", password="pw")]))
    was = gc.isenabled()
    try:
        for enabled in (True, False):
            (gc.enable if enabled else gc.disable)()
            assert [u.source for u in store.load_task("t").users] == ["alice"]
            assert gc.isenabled() is enabled
            with pytest.raises(ConfigError):
                store.load_task("nope")
            assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()
