"""The headless CLI, run as the real ``mailmig-tui`` console script (DESIGN.md §7)."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import json
import os
import re
import shutil
import subprocess
import sysconfig
from collections import Counter
from pathlib import Path

import pytest

from mailmig_tui.engine import store, userlist
from mailmig_tui.engine.model import Delegate, Destination, Notifications, Settings, Smtp, Source, Task, User


def _script() -> str:
    candidate = Path(sysconfig.get_path("scripts")) / "mailmig-tui"
    found = str(candidate) if candidate.exists() else shutil.which("mailmig-tui")
    assert found, "the mailmig-tui console script is not installed (pip install -e '.[test]')"
    return found


MAILMIG = _script()


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MAILMIG_HOME": str(home), "COLUMNS": "100"}
    return subprocess.run([MAILMIG, *args], capture_output=True, text=True, env=env, timeout=60, check=False)


def imap_task(name: str = "acme", **source) -> Task:
    return Task(
        name=name,
        source=Source(host="mail.acme.example", **source),
        users=[User("alice@acme.example", "alice", password="pw"), User("bob@acme.example", "bob", password="pw")],
    )


def write_csv(tmp_path: Path, text: str, name: str = "users.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(f.relative_to(root)): f.read_bytes() for f in sorted(root.rglob("*")) if f.is_file()}


# --------------------------------------------------------------------------------------------
# --help and arguments.


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], ["usage: mailmig-tui", "list", "show", "validate", "import-users", "export-users", "Exit codes: 0"]),
        (["list"], ["usage: mailmig-tui list", "--json"]),
        (["show"], ["usage: mailmig-tui show", "task", "--json", "passwords are never shown"]),
        (["validate"], ["usage: mailmig-tui validate", "task", "--json", "exit 2"]),
        (["import-users"], ["usage: mailmig-tui import-users", "task", "file", "--valid-only", "--json"]),
        (["export-users"], ["usage: mailmig-tui export-users", "task", "--with-passwords"]),
    ],
)
def test_help(mailmig_home, args, expected):
    result = cli(mailmig_home, *args, "--help")
    assert result.returncode == 0, result.stderr
    for text in expected:
        assert text in result.stdout
    assert result.stderr == ""


@pytest.mark.parametrize("args", [["bogus"], ["show"], ["import-users", "acme"], ["list", "--nope"]])
def test_bad_arguments_exit_2(mailmig_home, args):
    result = cli(mailmig_home, *args)
    assert result.returncode == 2
    assert "usage: mailmig-tui" in result.stderr
    assert result.stdout == ""


# --------------------------------------------------------------------------------------------
# list.


def test_list_empty(mailmig_home):
    result = cli(mailmig_home, "list")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"No tasks yet (they live in {mailmig_home / 'config' / 'tasks'}).\n"
    result = cli(mailmig_home, "list", "--json")
    assert (result.returncode, json.loads(result.stdout)) == (0, [])


def test_list_tasks(mailmig_home):
    store.save_task(imap_task("acme"))
    store.save_task(
        Task(name="globex", source=Source(type="google", key_file="/k.json"), users=[User("a@g.example", "a")])
    )
    result = cli(mailmig_home, "list")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout.splitlines() == [
        "acme    IMAP              2 account(s)",
        "globex  Google Workspace  1 account(s)",
    ]
    result = cli(mailmig_home, "list", "--json")
    assert json.loads(result.stdout) == [
        {"name": "acme", "type": "imap", "accounts": 2, "error": None},
        {"name": "globex", "type": "google", "accounts": 1, "error": None},
    ]


def test_list_with_a_broken_task(mailmig_home):
    store.save_task(imap_task("acme"))
    broken = store.paths().task_file("broken")
    broken.write_text('name = "broken"\n[source]\nport = abc\n')
    result = cli(mailmig_home, "list")
    assert result.returncode == 2
    assert result.stdout.splitlines() == ["acme    IMAP              2 account(s)", "broken  BROKEN"]
    assert result.stderr.startswith(f"mailmig-tui: {broken}, line 3: TOML syntax error")
    result = cli(mailmig_home, "list", "--json")
    assert result.returncode == 2
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == ["acme", "broken"]
    assert rows[1]["error"].startswith(f"{broken}, line 3: TOML syntax error")


def test_list_with_an_unknown_source_type(mailmig_home):
    store.paths().tasks_dir.mkdir(parents=True)
    store.paths().task_file("odd").write_text('name = "odd"\n[source]\ntype = "pop3"\n')
    result = cli(mailmig_home, "list")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["odd", "pop3", "0", "account(s)"]


# --------------------------------------------------------------------------------------------
# show.


def test_show(mailmig_home):
    task = imap_task(port=1993, security="starttls", delegate=Delegate(enabled=True, login="admin@acme.example"))
    task.users[1].password = ""
    task.users[1].destination_password = "d"
    store.save_task(task)
    result = cli(mailmig_home, "show", "acme")
    assert (result.returncode, result.stderr) == (0, "")
    lines = result.stdout.splitlines()
    assert lines[0] == "Task acme: IMAP"
    assert "  server      mail.acme.example:1993 (starttls), path prefix (auto)" in lines
    assert "  delegate    admin@acme.example (authzid)" in lines
    assert "    alice@acme.example -> alice  password •••" in lines
    assert "    bob@acme.example -> bob  password (none)" in lines
    data = json.loads(cli(mailmig_home, "show", "acme", "--json").stdout)
    assert data["name"] == "acme"
    assert data["source"]["port"] == 1993
    assert data["users"] == [
        {"source": "alice@acme.example", "destination": "alice", "password": "set"},
        {"source": "bob@acme.example", "destination": "bob", "password": "", "destination_password": "set"},
    ]


def test_show_list_and_validate_escape_control_characters(mailmig_home):
    """A hand-edited task (TOML escapes such as "\\u001b") is shown with its control characters escaped."""
    task = imap_task(path_prefix="IN\rBOX", delegate=Delegate(enabled=True, login="admin\x1b]0;pwned\x07"))
    task.users[0].source = "al\x1b[2Jice@acme.example"
    task.users[1].destination = "bob\nforged line\x00\x9b"
    store.save_task(task)
    store.paths().task_file("odd\x1b]0;x\x07").write_text('name = "odd"\n[source]\nport = abc\n')
    raw = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")

    show = cli(mailmig_home, "show", "acme")
    listed = cli(mailmig_home, "list")
    validate = cli(mailmig_home, "validate", "acme")

    assert show.returncode == 0, show.stderr
    for result in (show, listed, validate):
        assert not raw.search(result.stdout + result.stderr), repr(result.stdout + result.stderr)
    lines = show.stdout.splitlines()
    assert "  server      mail.acme.example:993 (ssl), path prefix IN\\rBOX" in lines
    assert "  delegate    admin\\x1b]0;pwned\\x07 (authzid)" in lines
    assert "    al\\x1b[2Jice@acme.example -> alice  password •••" in lines
    assert "    bob@acme.example -> bob\\nforged line\\x00\\x9b  password •••" in lines
    assert "odd\\x1b]0;x\\x07  BROKEN" in listed.stdout.splitlines()
    assert json.loads(cli(mailmig_home, "show", "acme", "--json").stdout)["users"][1]["destination"] == (
        "bob\nforged line\x00\x9b"
    )


def test_show_unknown_task(mailmig_home):
    result = cli(mailmig_home, "show", "nope")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == (
        f'mailmig-tui: {store.paths().task_file("nope")}: there is no task named "nope" (see "mailmig-tui list")\n'
    )


def test_show_hand_broken_task_names_file_field_and_line(mailmig_home):
    store.save_task(imap_task())
    path = store.paths().task_file("acme")
    text = path.read_text().replace("port = 993", 'port = "imaps"')
    path.write_text(text)
    line = text.splitlines().index('port = "imaps"') + 1
    result = cli(mailmig_home, "show", "acme")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == f"mailmig-tui: {path}, line {line}: source.port: expected a whole number, not 'imaps'\n"
    assert path.read_text() == text


# --------------------------------------------------------------------------------------------
# validate.


def test_validate_valid_task(mailmig_home):
    store.save_task(imap_task())
    store.save_settings(Settings(Destination(password="master-pw")))
    result = cli(mailmig_home, "validate", "acme")
    assert (result.returncode, result.stdout, result.stderr) == (0, "Task acme is valid.\n", "")
    data = json.loads(cli(mailmig_home, "validate", "acme", "--json").stdout)
    assert data == {"task": "acme", "problems": [], "warnings": []}


def test_validate_says_the_destination_master_password_is_missing(mailmig_home):
    store.save_task(imap_task())
    result = cli(mailmig_home, "validate", "acme")
    assert result.returncode == 2
    assert "  - destination.password: the master/admin password is missing" in result.stderr
    store.save_settings(Settings(Destination(auth="per-user", login="")))
    assert cli(mailmig_home, "validate", "acme").returncode == 2, "per user: each account's password is needed"


def test_validate_reports_every_problem_on_stderr(mailmig_home):
    task = imap_task(port=0)
    task.notifications = Notifications(on_failure=True, failure_to=["it"])
    store.save_task(task)
    store.save_settings(Settings(Destination(password="master-pw")))
    result = cli(mailmig_home, "validate", "acme")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{store.paths().task_file('acme')}: 3 problem(s)",
        "  - source.port: a port is a number from 1 to 65535, not 0",
        "  - notifications.failure_to[0]: 'it' is not an e-mail address (user@domain)",
        "  - notifications: notifications need the SMTP relay: set it in Settings (settings.toml [smtp])",
    ]
    result = cli(mailmig_home, "validate", "acme", "--json")
    assert result.returncode == 2
    assert [p["field"] for p in json.loads(result.stdout)["problems"]] == [
        "source.port",
        "notifications.failure_to[0]",
        "notifications",
    ]


def test_validate_checks_the_settings_too(mailmig_home):
    store.save_task(imap_task())
    store.save_settings(Settings(destination=Destination(auth="per-user"), smtp=Smtp(host="smtp.acme.example")))
    result = cli(mailmig_home, "validate", "acme")
    assert result.returncode == 2
    assert "  - users[0].destination_password: the destination logs in per user" in result.stderr
    assert "  - smtp.sender: the sender is an e-mail address" in result.stderr


def test_validate_broken_settings_file(mailmig_home):
    store.save_task(imap_task())
    settings = store.paths().settings_file
    settings.write_text("[destination]\nhost = '127.0.0.1'\nprot = 993\n")
    result = cli(mailmig_home, "validate", "acme")
    assert result.returncode == 2
    assert result.stderr == f'mailmig-tui: {settings}, line 3: destination.prot: unknown key; did you mean "port"?\n'


# --------------------------------------------------------------------------------------------
# import-users / export-users.


def test_import_users(mailmig_home, tmp_path):
    store.save_task(Task(name="acme", source=Source(host="mail.acme.example")))
    csv_file = write_csv(
        tmp_path, 'source,password,destination\nalice@acme.example,a-pw,alice\nbob,"b,pw",bob,b-dest\n'
    )
    result = cli(mailmig_home, "import-users", "acme", str(csv_file))
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == (
        "Imported into acme: 2 added, 0 updated, 0 line(s) rejected "
        "(the first line was taken as a column header and skipped: source,password,destination).\n"
    )
    task = store.load_task("acme")
    assert [(u.source, u.password, u.destination, u.destination_password) for u in task.users] == [
        ("alice@acme.example", "a-pw", "alice", ""),
        ("bob", "b,pw", "bob", "b-dest"),
    ]
    again = write_csv(tmp_path, "ALICE@acme.example,new-pw,alice2\ncarol,c,carol\n", "again.csv")
    result = cli(mailmig_home, "import-users", "acme", str(again), "--json")
    assert result.returncode == 0
    assert json.loads(result.stdout) == {"added": 1, "updated": 1, "rejected": [], "header_skipped": False}
    task = store.load_task("acme")
    assert [(u.source, u.password, u.destination) for u in task.users] == [
        ("ALICE@acme.example", "new-pw", "alice2"),
        ("bob", "b,pw", "bob"),
        ("carol", "c", "carol"),
    ]


def test_import_users_with_a_bad_line_changes_nothing(mailmig_home, tmp_path):
    store.save_task(imap_task())
    before = snapshot(mailmig_home)
    csv_file = write_csv(tmp_path, "carol,c,carol\n\ndave:x,d,dave\nerin,e\n")
    result = cli(mailmig_home, "import-users", "acme", str(csv_file))
    assert result.returncode == 2
    assert result.stdout == ""
    err = result.stderr
    assert err.startswith(f"mailmig-tui: {csv_file}: 2 line(s) cannot be imported, so nothing was imported:")
    assert "  line 3: an account may not contain \":\" ('dave:x')" in err
    assert "  line 4: 2 field(s); expected source account, source password, destination account" in err
    assert "--valid-only" in err
    assert snapshot(mailmig_home) == before


def test_import_users_valid_only(mailmig_home, tmp_path):
    store.save_task(imap_task())
    csv_file = write_csv(tmp_path, "carol,c,carol\n\ndave:x,d,dave\n")
    result = cli(mailmig_home, "import-users", "acme", str(csv_file), "--valid-only")
    assert result.returncode == 0
    assert result.stderr == f"{csv_file}: skipped line 3: an account may not contain \":\" ('dave:x')\n"
    assert result.stdout == "Imported into acme: 1 added, 0 updated, 1 line(s) rejected.\n"
    assert [u.source for u in store.load_task("acme").users] == ["alice@acme.example", "bob@acme.example", "carol"]
    result = cli(mailmig_home, "import-users", "acme", str(csv_file), "--valid-only", "--json")
    assert json.loads(result.stdout) == {
        "added": 0,
        "updated": 1,
        "rejected": [{"line": 3, "message": "an account may not contain \":\" ('dave:x')"}],
        "header_skipped": False,
    }


def test_import_users_windows_1252(mailmig_home, tmp_path):
    store.save_task(imap_task())
    csv_file = tmp_path / "latin1.csv"
    csv_file.write_bytes("carol,c,carol\njürgen,pässwörd€,j\n".encode("cp1252"))
    result = cli(mailmig_home, "import-users", "acme", str(csv_file))
    assert (result.returncode, result.stderr) == (0, "")
    assert store.load_task("acme").users[3].password == "pässwörd€"


def test_import_users_refuses_a_file_mixing_encodings(mailmig_home, tmp_path):
    store.save_task(imap_task())
    csv_file = tmp_path / "mixed.csv"
    csv_file.write_bytes("carol,c,carol\nzoë,z,z\n".encode() + "jürgen,j,j\n".encode("cp1252"))
    result = cli(mailmig_home, "import-users", "acme", str(csv_file))
    assert result.returncode == 2
    assert result.stderr.startswith(f"mailmig-tui: {csv_file}, line 3: the file mixes UTF-8 with another encoding")


FRENCH_EXCEL = (
    "compte source;mot de passe;compte MailPlus\r\n"
    "alice@acme.example;pw-é;alice\r\n"
    'bob@acme.example;"p;w,""b""";bob\r\n'
).encode("utf-8-sig")


def test_import_users_french_excel_csv(mailmig_home, tmp_path):
    """Excel's CSV UTF-8 in a French locale: BOM, ';', CRLF, a French header."""
    store.save_task(Task(name="acme", source=Source(host="mail.acme.example")))
    csv_file = tmp_path / "comptes.csv"
    csv_file.write_bytes(FRENCH_EXCEL)
    result = cli(mailmig_home, "import-users", "acme", str(csv_file))
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == (
        "Imported into acme: 2 added, 0 updated, 0 line(s) rejected "
        "(the first line was taken as a column header and skipped: compte source;mot de passe;compte MailPlus).\n"
    )
    assert [(u.source, u.password, u.destination) for u in store.load_task("acme").users] == [
        ("alice@acme.example", "pw-é", "alice"),
        ("bob@acme.example", 'p;w,"b"', "bob"),
    ]
    again = cli(mailmig_home, "import-users", "acme", str(csv_file), "--json")
    assert json.loads(again.stdout) == {"added": 0, "updated": 2, "rejected": [], "header_skipped": True}


def test_import_users_missing_file_or_task(mailmig_home, tmp_path):
    store.save_task(imap_task())
    result = cli(mailmig_home, "import-users", "acme", str(tmp_path / "none.csv"))
    assert result.returncode == 2
    assert result.stderr == f"mailmig-tui: {tmp_path / 'none.csv'}: cannot read the file: No such file or directory\n"
    csv_file = write_csv(tmp_path, "carol,c,carol\n")
    result = cli(mailmig_home, "import-users", "nope", str(csv_file))
    assert result.returncode == 2
    assert 'there is no task named "nope"' in result.stderr


def test_export_users(mailmig_home):
    task = imap_task()
    task.users[0].password = 'pa,ss"word'
    task.users[1].destination_password = "bob-dest"
    store.save_task(task)
    result = cli(mailmig_home, "export-users", "acme")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "alice@acme.example,,alice\nbob@acme.example,,bob\n"
    result = cli(mailmig_home, "export-users", "acme", "--with-passwords")
    assert result.stdout == 'alice@acme.example,"pa,ss""word",alice\nbob@acme.example,pw,bob,bob-dest\n'


# --------------------------------------------------------------------------------------------
# Secrets never leak.

SECRETS = {
    "alice": "Sekr1t-alice-pw",
    "alice_dest": "Sekr1t-alice-dest",
    "bob": 'Sekr1t-bob,"pw"',
    "rejected": "Sekr1t-rejected-line",
    "delegate": "Sekr1t-delegate",
    "client": "Sekr1t-client-secret",
    "destination": "Sekr1t-destination-master",
    "smtp": "Sekr1t-smtp-relay",
    "broken": "Sekr1t-in-a-broken-file",
}


def test_no_password_in_task_files_logs_or_output(mailmig_home, tmp_path):
    p = store.paths()
    store.save_task(Task(name="acme", source=Source(host="mail.acme.example")))
    good = write_csv(
        tmp_path,
        f"alice@acme.example,{SECRETS['alice']},alice,{SECRETS['alice_dest']}\n"
        f'bob@acme.example,"{SECRETS["bob"].replace(chr(34), chr(34) * 2)}",bob\n',
    )
    bad = write_csv(tmp_path, f"carol:x,{SECRETS['rejected']},carol\nerin,{SECRETS['rejected']}\n", "bad.csv")
    outputs = []

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        result = cli(mailmig_home, *args)
        outputs.append((args, result.stdout + result.stderr))
        return result

    assert run("import-users", "acme", str(good)).returncode == 0
    task = store.load_task("acme")
    task.source.delegate = Delegate(enabled=True, login="admin@acme.example", password=SECRETS["delegate"])
    store.save_task(task, old_name="acme")
    m365 = Task(name="m365", source=Source(type="microsoft365", tenant="t.example", client_id="c"))
    m365.source.client_secret = SECRETS["client"]
    m365.users = [User("alice@acme.example", "alice")]
    store.save_task(m365)
    store.save_settings(
        Settings(
            destination=Destination(auth="per-user", password=SECRETS["destination"]),
            smtp=Smtp(host="smtp.acme.example", sender="mailmig@acme.example", password=SECRETS["smtp"]),
        )
    )
    store.save_task(Task(name="leaky", users=[User("alice", "alice")]))
    p.task_secrets_file("leaky").write_text(f"[users.alice]\npassword = {SECRETS['broken']}\n")

    # the secrets are really stored (so the checks below can fail)
    stored = b"".join(f.read_bytes() for f in p.secrets_dir.iterdir()).decode()
    for key in ("alice", "alice_dest", "delegate", "client", "destination", "smtp", "broken"):
        assert SECRETS[key] in stored, key
    assert store.load_task("acme").users[1].password == SECRETS["bob"]

    assert run("import-users", "acme", str(good)).returncode == 0
    assert run("import-users", "acme", str(good), "--json").returncode == 0
    assert run("import-users", "acme", str(bad)).returncode == 2
    assert run("import-users", "acme", str(bad), "--valid-only").returncode == 0
    assert run("import-users", "acme", str(bad), "--valid-only", "--json").returncode == 0
    assert run("list").returncode == 2
    assert run("list", "--json").returncode == 2
    for name in ("acme", "m365"):
        assert run("show", name).returncode == 0
        assert run("show", name, "--json").returncode == 0
        assert run("validate", name).returncode in (0, 2)
        assert run("validate", name, "--json").returncode in (0, 2)
        assert run("export-users", name).returncode == 0
    assert run("show", "leaky").returncode == 2
    assert run("validate", "leaky").returncode == 2

    for args, text in outputs:
        for secret in SECRETS.values():
            assert secret not in text, (args, secret)
    files = [*p.tasks_dir.rglob("*"), *(p.logs.rglob("*") if p.logs.exists() else [])]
    assert p.task_file("acme") in files
    for f in files:
        if f.is_file():
            content = f.read_text(encoding="utf-8", errors="replace")
            for secret in SECRETS.values():
                assert secret not in content, (f, secret)

    # and the one command that is asked to print them does
    shown = cli(mailmig_home, "export-users", "acme", "--with-passwords").stdout
    assert SECRETS["alice"] in shown and SECRETS["alice_dest"] in shown


@pytest.mark.parametrize("name", ["settings", "Settings"])
def test_a_task_may_not_share_a_global_file_name(mailmig_home, tmp_path, name):
    """A task named "settings" shared config/secrets/settings.toml: importing users into it wiped the
    destination password, deleting it deleted the global secrets."""
    store.save_settings(Settings(Destination(password="master-secret"), Smtp(password="smtp-secret")))
    global_secrets = store.paths().settings_secrets_file
    before = global_secrets.read_bytes()
    with pytest.raises(store.ConfigError, match="the global settings use that file name"):
        store.save_task(imap_task(name))
    csv = tmp_path / "users.csv"
    csv.write_text("alice@acme.example,pw,alice\n")
    imported = cli(mailmig_home, "import-users", name, str(csv))
    assert imported.returncode == 2
    assert "the global settings use that file name" in imported.stderr + imported.stdout

    # a task file of that name left by an older version: refused, never read or deleted with the globals
    legacy = store.paths().task_file(name)
    legacy.parent.mkdir(parents=True, exist_ok=True)
    legacy.write_text(store.task_toml(imap_task(name)))
    shown = cli(mailmig_home, "show", name)
    assert shown.returncode == 2 and "rename the file and the name in it" in shown.stderr + shown.stdout
    with pytest.raises(store.ConfigError):
        store.delete_task(name)
    assert global_secrets.read_bytes() == before
    assert store.load_settings().destination.password == "master-secret"


def test_export_users_is_safe_for_spreadsheets_and_exact_on_request(mailmig_home, tmp_path):
    """Cells a spreadsheet would run as formulas are neutralised; --exact round-trips through import-users."""
    task = imap_task()
    task.users = [
        User("alice@acme.example", "=cmd|'/C.calc'!A0", password="=1+1", destination_password="@dest"),
        User("bob@acme.example", "+bob", password="-pw"),
        User("carol@acme.example", "carol", password="+pw"),
        User("dave@acme.example", "dave", password="plain"),
    ]
    store.save_task(task)
    safe = cli(mailmig_home, "export-users", "acme", "--with-passwords")
    assert safe.returncode == 0
    rows = list(csv.reader(io.StringIO(safe.stdout, newline="")))
    assert rows[0] == ["alice@acme.example", "'=1+1", "'=cmd|'/C.calc'!A0", "'@dest"]
    assert rows[1] == ["bob@acme.example", "'-pw", "'+bob"]
    assert rows[2] == ["carol@acme.example", "'+pw", "carol"]
    # tab and CR (no CSV field may hold them on import, a hand-edited secrets file may)
    assert (userlist.spreadsheet_safe("\tpw"), userlist.spreadsheet_safe("\rpw")) == ("'\tpw", "'\rpw")
    assert rows[3] == ["dave@acme.example", "plain", "dave"]

    exact = cli(mailmig_home, "export-users", "acme", "--with-passwords", "--exact")
    assert exact.returncode == 0
    exported = tmp_path / "exact.csv"
    exported.write_text(exact.stdout, newline="")
    store.save_task(dataclasses.replace(imap_task("copy"), users=[]))
    imported = cli(mailmig_home, "import-users", "copy", str(exported))
    assert imported.returncode == 0, imported.stderr
    again = store.load_task("copy").users
    assert [(u.source, u.password, u.destination, u.destination_password) for u in again] == [
        (u.source, u.password, u.destination, u.destination_password) for u in store.load_task("acme").users
    ]


@pytest.mark.parametrize(
    ("content", "what"),
    [(b"", "no line with an account"), (b"\xef\xbb\xbf\r\n\r\n", "no line with an account"),
     (b"source,password,destination\r\n", "only a header line")],
)  # fmt: skip
def test_import_of_an_empty_or_header_only_csv_exits_2(mailmig_home, tmp_path, content, what):
    store.save_task(imap_task())
    csv_file = tmp_path / "users.csv"
    csv_file.write_bytes(content)
    result = cli(mailmig_home, "import-users", "acme", str(csv_file))
    assert result.returncode == 2
    assert result.stderr == f"mailmig-tui: {csv_file}: no accounts to import: the file holds {what}; " + (
        "one account per line: source account, source password, destination account\n"
    )
    assert len(store.load_task("acme").users) == 2


def test_import_of_a_50_mb_line_gives_the_right_hint(mailmig_home, tmp_path):
    store.save_task(imap_task())
    csv_file = tmp_path / "users.csv"
    csv_file.write_bytes(b"carol@acme.example,pw,carol\n" + b'dave@acme.example,"' + b"x" * 50_000_000 + b"\n")
    result = cli(mailmig_home, "import-users", "acme", str(csv_file))
    assert result.returncode == 2
    assert "line 2: a field is longer than 128 KB: is this a CSV user list?" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_host_name_over_253_characters_is_invalid_not_a_traceback(mailmig_home):
    long_host = ".".join(["a" * 60] * 5)  # 304 characters
    task = imap_task()
    task.source.host = long_host
    store.save_task(task)
    result = cli(mailmig_home, "validate", "acme")
    assert result.returncode == 2
    assert "is too long for a host name (304 characters; at most 253" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    run = cli(mailmig_home, "run", "acme")
    assert run.returncode == 2 and "Traceback" not in run.stderr


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_state_database_names_the_file_and_the_fix(mailmig_home, damage):
    store.save_task(imap_task())
    store.save_settings(Settings(Destination(password="master-pw")))
    path = store.paths().state_file("acme")
    if damage == "garbage":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"this is not a database\n" * 500)
    else:
        from mailmig_tui.engine.state import StateDB

        db = StateDB(path)
        db.bind_account("alice@acme.example", "imap://x", "alice")
        db.close()
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3] + b"\0" * 100)
    for args in (["report", "acme"], ["run", "acme"], ["run", "acme", "--dry-run"]):
        result = cli(mailmig_home, *args)
        assert "Traceback" not in result.stderr, (args, result.stderr)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert f"{path}: the task's state database cannot be read" in result.stderr
        assert "Fix: move it aside" in result.stderr
    for args in (["list"], ["show", "acme"]):  # they do not need the state
        result = cli(mailmig_home, *args)
        assert "Traceback" not in result.stderr and "acme" in result.stdout


def test_security_none_towards_another_host_warns_in_validate_and_show(mailmig_home):
    store.save_settings(Settings(Destination(host="127.0.0.1", security="none", password="m")))
    store.save_task(imap_task("far", security="none", port=143))
    store.save_task(imap_task("near", security="ssl"))
    validated = cli(mailmig_home, "validate", "far")
    assert validated.returncode == 0
    assert validated.stderr.startswith(
        'warning: source.security: security is "none": passwords and mail to mail.acme.example cross'
    )
    data = json.loads(cli(mailmig_home, "validate", "far", "--json").stdout)
    assert [w["field"] for w in data["warnings"]] == ["source.security"]
    shown = cli(mailmig_home, "show", "far")
    assert 'warning     source.security: security is "none": passwords and mail to mail.acme.example' in shown.stdout
    for args in (["validate", "near"], ["show", "near"]):  # ssl, and a destination on 127.0.0.1: no warning
        result = cli(mailmig_home, *args)
        assert "warning" not in result.stdout + result.stderr


# --------------------------------------------------------------------------------------------
# Pipes, --json errors, stdin, --version, test-smtp (issue 14, first hour 9).


def many_users_task(name: str = "big", n: int = 6000) -> Task:
    padding = "x" * 120  # about 1 MB of export / report: far more than a pipe holds
    return Task(
        name=name,
        source=Source(host="mail.acme.example"),
        users=[User(f"user{i}.{padding}@acme.example", f"user{i}", password="pw") for i in range(n)],
    )


def first_line_then_close(home: Path, *args: str) -> tuple[str, int, str]:
    """Run the command into a real pipe, read one line and close the pipe, as ``| head -1`` does."""
    env = {**os.environ, "MAILMIG_HOME": str(home), "COLUMNS": "100"}
    proc = subprocess.Popen(
        [MAILMIG, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env
    )
    assert proc.stdout is not None and proc.stderr is not None
    line = proc.stdout.readline().decode()
    proc.stdout.close()
    try:
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    return line, code, proc.stderr.read().decode()


@pytest.mark.parametrize(
    ("args", "first"),
    [
        (["export-users", "big"], "user0."),
        (["export-users", "big", "--with-passwords"], "user0."),
        (["report", "big"], "Task big: last run never"),
        (["report", "big", "--json"], "{"),
        (["show", "big"], "Task big: IMAP"),
        (["list"], "big"),
        (["list", "--json"], "["),
    ],
)
def test_a_reader_that_goes_away_gets_no_traceback(mailmig_home, args, first):
    store.save_task(many_users_task())
    for i in range(1200 if args[0] == "list" else 0):  # about 100 KB of list
        store.save_task(Task(name=f"task-{i:05d}-{'y' * 50}", source=Source(host="mail.acme.example")))
    line, code, err = first_line_then_close(mailmig_home, *args)
    assert line.startswith(first)
    assert (code, err) == (141, "")


def test_version(mailmig_home):
    from importlib.metadata import version

    result = cli(mailmig_home, "--version")
    assert (result.returncode, result.stdout, result.stderr) == (0, f"mailmig-tui {version('mailmig-tui')}\n", "")


def json_error(result: subprocess.CompletedProcess[str]) -> dict:
    try:
        data = json.loads(result.stdout)
    except ValueError:
        pytest.fail(f"stdout is not JSON:\n{result.stdout}\n--- stderr:\n{result.stderr}")
    assert isinstance(data, dict) and data["exit_code"] == result.returncode, data
    assert result.stderr.startswith("mailmig-tui: ") or "usage: mailmig-tui" in result.stderr
    assert "Traceback" not in result.stderr
    return data


def test_every_error_with_json_is_a_json_object_on_stdout(mailmig_home, tmp_path):
    p = store.paths()
    missing = json_error(cli(mailmig_home, "show", "nope", "--json"))
    assert missing == {
        "error": f'{p.task_file("nope")}: there is no task named "nope" (see "mailmig-tui list")',
        "exit_code": 2,
        "file": str(p.task_file("nope")),
        "problems": [{"field": "", "message": 'there is no task named "nope" (see "mailmig-tui list")'}],
    }

    store.save_task(imap_task())
    path = p.task_file("acme")
    text = path.read_text().replace("port = 993", 'port = "imaps"')
    path.write_text(text)
    broken = json_error(cli(mailmig_home, "validate", "acme", "--json"))
    assert (broken["exit_code"], broken["file"], broken["line"]) == (
        2,
        str(path),
        text.splitlines().index('port = "imaps"') + 1,
    )
    assert broken["problems"] == [{"field": "source.port", "message": "expected a whole number, not 'imaps'"}]

    store.save_task(imap_task(), old_name="acme")
    bad = write_csv(tmp_path, "carol,c,carol\n\ndave:x,d,dave\n")
    rejected = json_error(cli(mailmig_home, "import-users", "acme", str(bad), "--json"))
    assert rejected["file"] == str(bad)
    assert rejected["lines"] == [{"line": 3, "message": "an account may not contain \":\" ('dave:x')"}]
    assert rejected["error"].startswith(f"{bad}: 1 line(s) cannot be imported, so nothing was imported")

    mixed = tmp_path / "mixed.csv"
    mixed.write_bytes("zoë,z,z\n".encode() + "jürgen,j,j\n".encode("cp1252"))
    encoding = json_error(cli(mailmig_home, "import-users", "acme", str(mixed), "--json"))
    assert (encoding["file"], encoding["line"]) == (str(mixed), 2)
    assert encoding["error"].startswith(f"{mixed}, line 2: the file mixes UTF-8 with another encoding")

    unreadable = json_error(cli(mailmig_home, "import-users", "acme", str(tmp_path / "none.csv"), "--json"))
    assert unreadable == {
        "error": f"{tmp_path / 'none.csv'}: cannot read the file: No such file or directory",
        "exit_code": 2,
        "file": str(tmp_path / "none.csv"),
    }

    cannot_run = json_error(cli(mailmig_home, "run", "acme", "--json"))
    assert [p["field"] for p in cannot_run["problems"]] == ["destination.password"]

    usage = json_error(cli(mailmig_home, "show", "--json"))
    assert usage["exit_code"] == 2 and "the following arguments are required: task" in usage["error"]
    assert json_error(cli(mailmig_home, "verify", "acme", "--account", "zed", "--json"))["error"] == (
        "not in the user list: zed"
    )


def test_import_users_reads_stdin_for_a_dash(mailmig_home, tmp_path):
    store.save_task(Task(name="acme", source=Source(host="mail.acme.example")))
    env = {**os.environ, "MAILMIG_HOME": str(mailmig_home)}
    result = subprocess.run(
        [MAILMIG, "import-users", "acme", "-"],
        input=FRENCH_EXCEL,
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, b"")
    assert result.stdout.decode().startswith("Imported into acme: 2 added, 0 updated, 0 line(s) rejected")
    assert [u.password for u in store.load_task("acme").users] == ["pw-é", 'p;w,"b"']
    bad = subprocess.run(
        [MAILMIG, "import-users", "acme", "-", "--json"],
        input=b"carol,c\n",
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2
    assert json.loads(bad.stdout)["file"] == "<stdin>"
    assert bad.stderr.decode().startswith("mailmig-tui: <stdin>: 1 line(s) cannot be imported")


def test_test_smtp_without_a_relay_is_a_configuration_problem(mailmig_home):
    result = cli(mailmig_home, "test-smtp")
    assert result.returncode == 2
    assert result.stderr == (
        "mailmig-tui: no SMTP relay is set: fill in its host in Settings (g), or [smtp] host in "
        f"{store.paths().settings_file}\n"
    )


def test_every_reason_the_engine_words_has_a_json_code():
    """The codes of README "Reason codes", derived from the engine's own wording (so a reworded reason fails here)."""
    from mailmig_tui import cli as cli_module
    from mailmig_tui.engine.account import SKIP_VANISHED
    from mailmig_tui.engine.folders import MailboxFilter, RemoteFolder, plan_folders
    from mailmig_tui.engine.sources.base import SKIP_EXISTING, SKIP_TOO_BIG, SKIP_TOO_NEW, SKIP_TOO_OLD
    from mailmig_tui.engine.sources.gmail import SKIP_CHAT

    skips = {SKIP_TOO_OLD: 1, SKIP_TOO_NEW: 2, SKIP_TOO_BIG: 3, SKIP_EXISTING: 4, SKIP_VANISHED: 5, SKIP_CHAT: 6}
    assert cli_module._skip_codes(skips) == {
        "too_old": 1, "too_new": 2, "too_large": 3, "duplicate": 4, "vanished": 5, "not_mail": 6,
    }  # fmt: skip
    source = [
        RemoteFolder("INBOX", "/"),
        RemoteFolder("Parent", "/", frozenset({"\\Noselect"})),
        RemoteFolder("All Mail", "/", frozenset({"\\All"})),
        RemoteFolder("Trash", "/", frozenset({"\\Trash"})),
        RemoteFolder("Spam", "/", frozenset({"\\Junk"})),
        RemoteFolder("Old", "/"),
        RemoteFolder("Keep", "/"),
    ]
    plans = plan_folders(
        source, source_prefix="", dest_folders=[RemoteFolder("INBOX", "/")], dest_delimiter="/",
        skip_trash=True, skip_junk=True, mailbox_filter=MailboxFilter("skip", ["Old"]),
    )  # fmt: skip
    reasons = [p.skip_reason for p in plans if p.skip_reason]
    assert cli_module._folder_skip_codes(dict.fromkeys(reasons, 1)) == {
        "not_selectable": 1, "virtual": 1, "trash": 1, "junk": 1, "filtered": 1,
    }  # fmt: skip
    assert cli_module._folder_skip_codes({"a reason from a newer engine": 2}) == {"other": 2}
    assert cli_module.failure_code("70000 bytes is over the destination's APPENDLIMIT of 50000 bytes") == "too_large"
    assert cli_module.failure_code("refused by the destination: [OVERQUOTA] Quota exceeded") == "refused"
    assert cli_module.failure_code("not appended") == "not_appended"
    assert cli_module.failure_code("something else") == "error"


# --------------------------------------------------------------------------------------------
# report, show and list of large tasks (issue 14): the same text, made faster.


def test_iso_times_are_what_datetime_writes(timezone_named):
    from mailmig_tui import cli as cli_module

    def reference(ts: float) -> str:
        return dt.datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")

    # whole and rounding seconds (datetime rounds to the microsecond, half to even), around the hours
    # of a year's DST changes, and far back, when offsets had seconds (Amsterdam +00:19:32)
    base = [1767225600 + h * 3600 for h in range(0, 24 * 366, 5)]
    times = [t + d for t in base for d in (0, -1, 0.4999995, 0.9999994, 0.9999995, 0.5)] + [-2e9, -1.5e9, 1.7e9 + 0.25]
    for zone in ("UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata", "Europe/Amsterdam"):
        timezone_named(zone)
        cli_module._iso_second.cache_clear()
        assert [cli_module._iso(t) for t in times] == [reference(t) for t in times], zone
    assert cli_module._iso(None) is None and cli_module._iso(0) is None


def seed_report_state(name: str, users: list[User]) -> None:
    """Every third account never ran; the others ran once, with skips, failures and an error to show."""
    from types import SimpleNamespace

    from mailmig_tui.engine.model import account_key
    from mailmig_tui.engine.state import COPIED, EXISTING, FAILED, SKIPPED, MessageRow, StateDB

    db = StateDB(store.paths().state_file(name))
    run = db.start_run(False, started=1767261600.9999996)
    for i, user in enumerate(users):
        if i % 3 == 0:
            continue
        key = account_key(user.source)
        db.bind_account(key, "imap://mail.acme.example", user.destination)
        db.set_account_status(key, "running")
        db.set_account_status(key, "complete" if i % 2 else "partial", error="" if i % 2 else f"lost\n\x1b[2J{i}")
        if i % 4 == 1:
            db.save_folder(
                key, "INBOX\x07", validity="1", marker="m", filters="f", dest_folder="INBOX",
                skipped=Counter({"received before the date filter": i, "a reason from a newer engine": 1}), clean=True,
            )  # fmt: skip
        statuses = (COPIED, EXISTING, FAILED, SKIPPED)
        reasons = {FAILED: "refused by the destination: [OVERQUOTA]\u2028", SKIPPED: "over the size limit"}
        db.record(
            key,
            [
                MessageRow(
                    "INBOX\x07", "1", str(j), statuses[j % 4], size=1000 * j, reason=reasons.get(statuses[j % 4], "")
                )
                for j in range(i % 5 * 3)
            ],
        )
        result = SimpleNamespace(
            account=key, status="complete", folders=1, copied=0, skipped={}, failed=0, bytes=0, duration=i / 3, error=""
        )
        db.record_account_run(run, result, 1767261601.0)
    db.finish_run(run, "completed")
    db.close()


def test_the_report_of_many_accounts_is_written_as_json_dumps_and_the_lines_escaped(mailmig_home):
    users = [User(f"user{i}\x7f@acme.example", f"dest\u2028{i}", password="pw") for i in range(40)]
    store.save_task(Task(name="many", source=Source(host="mail.acme.example"), users=users))
    seed_report_state("many", users)

    result = cli(mailmig_home, "report", "many", "--json")
    assert (result.returncode, result.stderr) == (0, "")
    data = json.loads(result.stdout)
    controls = {c: f"\\u{c:04x}" for c in (*range(0x7F, 0xA0), 0x2028, 0x2029)}
    assert result.stdout == json.dumps(data, indent=2, ensure_ascii=False).translate(controls) + "\n"
    assert data["last_run"]["started"] == dt.datetime.fromtimestamp(1767261601).astimezone().isoformat()
    never, partial, complete = data["accounts"][0], data["accounts"][2], data["accounts"][13]
    assert (never["status"], never["skipped"], never["last_started"], never["failed_messages"]) == (
        "not started", {}, None, []
    )  # fmt: skip
    assert (partial["status"], partial["last_error"], partial["skipped"]) == (
        "partial",
        "lost\n\x1b[2J2",
        {"duplicate": 2, "too_large": 1},
    )
    assert partial["failed_messages"] == [
        {"folder": "INBOX\x07", "id": "2", "code": "refused", "reason": "refused by the destination: [OVERQUOTA]\u2028"}
    ]
    assert (complete["status"], complete["copied"], complete["skipped"], complete["duration"]) == (
        "complete", 3, {"too_old": 13, "other": 1, "duplicate": 2, "too_large": 2}, 13 / 3
    )  # fmt: skip

    text = cli(mailmig_home, "report", "many")
    assert (text.returncode, text.stderr) == (0, "")
    lines = text.stdout.splitlines()
    assert (
        lines[0]
        == f"Task many: last run {dt.datetime.fromtimestamp(1767261601).strftime('%Y-%m-%d %H:%M')} (completed)"
    )
    assert lines[1] == (
        "  user0\\x7f@acme.example → dest\\u20280: not started; 0 folder(s), 0 copied, skipped: none, 0 failed, 0 B, "
        "last run 0.0 s"
    )
    assert lines[lines.index(next(x for x in lines if x.startswith("  user2\\x7f"))) + 1 :][:2] == [
        "      last error: lost\\n\\x1b[2J2",
        "      failed: [INBOX\\x07] message 2: refused by the destination: [OVERQUOTA]\\u2028",
    ]
    assert not re.search("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]", text.stdout)


PROBE_IMPORTS = """
import contextlib, io, json, sys
from mailmig_tui import cli
with contextlib.redirect_stdout(io.StringIO()):
    code = cli.main(sys.argv[1:])
print(json.dumps([code, sorted(m for m in sys.modules if m.startswith("mailmig_tui."))]))
"""


@pytest.mark.parametrize(
    "args", [["report", "acme"], ["report", "acme", "--json"], ["show", "acme"], ["show", "acme", "--json"], ["list"]]
)
def test_report_show_and_list_do_not_import_the_runner_or_the_sources(mailmig_home, args):
    """They start within a tenth of a second less: the runner, the sources and the user-list parser are
    imported by the commands that use them."""
    import sys

    store.save_task(imap_task())
    result = subprocess.run(
        [sys.executable, "-c", PROBE_IMPORTS, *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    code, modules = json.loads(result.stdout)
    assert code == 0 and "mailmig_tui.engine.state" in modules
    heavy = {"runner", "userlist", "verify", "account", "sources.imap", "sources.gmail", "sources.graph"}
    assert not {m.removeprefix("mailmig_tui.engine.") for m in modules} & heavy


def test_main_called_in_process_leaves_the_cycle_collector_as_it_found_it(mailmig_home, capsys):
    """One-shot commands run without Python's cycle collector (half of a large report's time); a
    process that goes on after main() (a script, this test) gets it back."""
    import gc

    from mailmig_tui import cli as cli_module

    store.save_task(imap_task())
    assert gc.isenabled()
    for args in (["list"], ["report", "acme"], ["show", "nope"]):
        cli_module.main(args)
        assert gc.isenabled(), args
    gc.disable()
    try:
        cli_module.main(["list"])
        assert not gc.isenabled()
    finally:
        gc.enable()
    assert "acme" in capsys.readouterr().out


@pytest.mark.parametrize("batch", [1, 3, 4096])
def test_lines_are_written_escaped_whatever_the_batches(capsys, batch):
    """A report's lines go out a few thousand at a time; a line holding a newline or an escape, in any
    batch, shows it escaped, and no line is lost or joined to the next."""
    from mailmig_tui import cli as cli_module
    from mailmig_tui.engine.textsafe import escape_controls

    lines = ["header", "a", "b\nforged: line", "c", "d\x1b[2J", "e", "f", "g\u2028h"]
    cli_module._say_lines(lines, batch=batch)
    assert capsys.readouterr().out == "".join(escape_controls(line) + "\n" for line in lines)
    cli_module._say_lines([], batch=batch)
    assert capsys.readouterr().out == ""


LEAVE_PROBE = """
import atexit, sys
from mailmig_tui import cli
atexit.register(lambda: print("teardown ran", file=sys.stderr, flush=True))
sys.argv = ["mailmig-tui", *sys.argv[1:]]
cli.run()
"""


@pytest.mark.parametrize(
    ("args", "code", "teardown"),
    [
        (["list"], 0, False),
        (["report", "acme"], 0, False),
        (["show", "nope"], 2, True),
        (["validate", "acme"], 2, False),
    ],
)
def test_the_command_leaves_without_the_teardown_after_a_one_shot_command(mailmig_home, args, code, teardown):
    """The ``mailmig-tui`` command ends a one-shot command's process as soon as its output is written
    (the interpreter's teardown frees 100,000 accounts' objects one by one); its output and exit
    status are whole. An error exits the usual way."""
    import sys

    store.save_task(imap_task())
    env = {**os.environ, "MAILMIG_HOME": str(mailmig_home)}
    result = subprocess.run(
        [sys.executable, "-c", LEAVE_PROBE, *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert result.returncode == code, result.stderr
    assert ("teardown ran" in result.stderr) is teardown
    expected = cli(mailmig_home, *args)
    assert (result.stdout, expected.returncode) == (expected.stdout, code)
