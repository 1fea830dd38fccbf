"""engine/userlist.py: the CSV user list of DESIGN.md §2."""

from __future__ import annotations

import copy
import dataclasses

import pytest

from mailmig_tui.engine import userlist
from mailmig_tui.engine.model import Delegate, Source, Task, User
from mailmig_tui.engine.userlist import ImportRejected, ImportSummary, LineError

IMAP = Source(type="imap", host="mail.acme.example")
IMAP_DELEGATE = Source(type="imap", host="mail.acme.example", delegate=Delegate(enabled=True, login="admin"))
GOOGLE = Source(type="google", key_file="/k.json")
M365 = Source(type="microsoft365", tenant="t", client_id="c")


def rows(parsed: userlist.ParsedList) -> list[tuple[int, str, str, str, str]]:
    return [(n, u.source, u.password, u.destination, u.destination_password) for n, u in parsed.users]


def errors(parsed: userlist.ParsedList) -> list[tuple[int, str]]:
    return [(e.line, e.message) for e in parsed.errors]


def test_simple_list_with_line_numbers():
    parsed = userlist.parse("alice@acme.example,pw1,alice\nbob@acme.example,pw2,bob\n", IMAP)
    assert parsed.ok
    assert rows(parsed) == [(1, "alice@acme.example", "pw1", "alice", ""), (2, "bob@acme.example", "pw2", "bob", "")]


def test_quoted_comma_and_quotes_in_a_password():
    parsed = userlist.parse('alice,"pa,ss ""word""",alice\nbob, "x,y",bob\n"carol","""","carol"\n', IMAP)
    assert rows(parsed) == [
        (1, "alice", 'pa,ss "word"', "alice", ""),
        (2, "bob", "x,y", "bob", ""),
        (3, "carol", '"', "carol", ""),
    ]


def test_blanks_after_a_comma_are_ignored_but_not_inside_quotes():
    parsed = userlist.parse('alice , pw , alice\nbob," pw ",bob\n', IMAP)
    assert rows(parsed) == [(1, "alice", "pw ", "alice", ""), (2, "bob", " pw ", "bob", "")]


def test_a_line_break_inside_quotes_is_refused_and_line_numbers_stay_right():
    text = 'alice,"line1\nline2\r\nline3",alice\nbob,pw,bob\ncarol:x,pw,carol\n'
    parsed = userlist.parse(text, IMAP)
    assert rows(parsed) == [(4, "bob", "pw", "bob", "")]
    assert [line for line, _ in errors(parsed)] == [1, 5]
    assert errors(parsed)[0][1].startswith("field 2 holds a control character (U+000A); remove it")


@pytest.mark.parametrize(
    ("line", "field", "code"),
    [
        ("ali\x1b]0;pwned\x07ce@acme.example,pw,alice", 1, "U+001B"),
        ("alice@acme.example,p\x00w,alice", 2, "U+0000"),
        ("alice@acme.example,pw,ali\x7fce", 3, "U+007F"),
        ("alice@acme.example,pw,alice,d\x9bp", 4, "U+009B"),
        ("alice@acme.example\t,pw,alice", 1, "U+0009"),
    ],
)
def test_a_control_character_in_any_field_is_refused_with_line_and_field(line, field, code):
    parsed = userlist.parse("bob@acme.example,pw,bob\n" + line + "\n", IMAP)
    assert rows(parsed) == [(1, "bob@acme.example", "pw", "bob", "")]
    ((n, message),) = errors(parsed)
    assert n == 2 and message.startswith(f"field {field} holds a control character ({code})")
    assert "\x1b" not in message and "\x00" not in message


def test_crlf_line_endings():
    parsed = userlist.parse("alice,pw,alice\r\n\r\nbob,pw,bob\r\n", IMAP)
    assert [n for n, _ in parsed.users] == [1, 3]


def test_bom_is_removed():
    text = userlist.decode("alice@acme.example,pw,alice\n".encode("utf-8-sig"))
    parsed = userlist.parse(text, GOOGLE)
    assert rows(parsed) == [(1, "alice@acme.example", "pw", "alice", "")]


def test_bom_before_a_header():
    text = userlist.decode("source,password,destination\nalice,pw,alice\n".encode("utf-8-sig"))
    parsed = userlist.parse(text, IMAP)
    assert parsed.header_skipped
    assert rows(parsed) == [(2, "alice", "pw", "alice", "")]


def test_non_ascii_utf8_is_fine():
    text = userlist.decode("jürgen@acme.example,pässwörd€,jürgen\n".encode())
    assert rows(userlist.parse(text, IMAP)) == [(1, "jürgen@acme.example", "pässwörd€", "jürgen", "")]


def test_blank_lines_are_ignored():
    parsed = userlist.parse("\n\nalice,pw,alice\n   \n,,\n\nbob,pw,bob\n\n", IMAP)
    assert parsed.ok
    assert [n for n, _ in parsed.users] == [3, 7]


@pytest.mark.parametrize(
    "header",
    ["source,password,destination", "Source Account, Password, Destination Account", "email,password,destination,x"],
)
def test_header_line_skipped(header):
    parsed = userlist.parse(f"{header}\nalice,pw,alice\n", IMAP)
    assert parsed.header_skipped
    assert parsed.ok
    assert [n for n, _ in parsed.users] == [2]


def test_header_only_recognised_on_the_first_line():
    parsed = userlist.parse("alice,pw,alice\nsource,password,destination\n", IMAP)
    assert not parsed.header_skipped
    assert [u.source for _, u in parsed.users] == ["alice", "source"]


@pytest.mark.parametrize(
    ("line", "account"), [("al:ice,pw,alice", "al:ice"), ("alice,pw,ali:ce", "ali:ce"), ("a:b@x.y,,a", "a:b@x.y")]
)
def test_colon_in_an_account(line, account):
    parsed = userlist.parse(f"ok,pw,ok\n{line}\n", IMAP_DELEGATE)
    assert [n for n, _ in parsed.users] == [1]
    assert errors(parsed) == [(2, f'an account may not contain ":" ({account!r})')]


def test_colon_in_a_password_is_fine():
    assert rows(userlist.parse("alice,p:w,alice\n", IMAP)) == [(1, "alice", "p:w", "alice", "")]


@pytest.mark.parametrize(("line", "count"), [("alice", 1), ("alice,pw", 2)])
def test_missing_field(line, count):
    parsed = userlist.parse(f"bob,pw,bob\n{line}\n", IMAP)
    assert errors(parsed) == [(2, f"{count} field(s); expected source account, source password, destination account")]


def test_empty_account_fields():
    parsed = userlist.parse(",pw,alice\nbob,pw,\n", IMAP)
    assert errors(parsed) == [(1, "the source account is missing"), (2, "the destination account is missing")]


def test_more_than_four_fields():
    parsed = userlist.parse("alice,pw,alice,dpw\nbob,p,w,bob,dpw\n", IMAP)
    assert [n for n, _ in parsed.users] == [1]
    assert len(parsed.errors) == 1
    assert parsed.errors[0].line == 2
    assert parsed.errors[0].message.startswith("5 fields; at most 4")


def test_fourth_column_is_the_destination_password():
    parsed = userlist.parse('alice,pw,alice,"d,pw"\nbob,pw,bob,\n', IMAP)
    assert rows(parsed) == [(1, "alice", "pw", "alice", "d,pw"), (2, "bob", "pw", "bob", "")]


@pytest.mark.parametrize(("source", "label"), [(GOOGLE, "Google Workspace"), (M365, "Microsoft 365")])
def test_cloud_sources_need_full_addresses(source, label):
    parsed = userlist.parse("alice@acme.example,,alice\nbob,,bob\ncarol@,,carol\n", source)
    assert [n for n, _ in parsed.users] == [1]
    assert errors(parsed) == [
        (2, f"{label} accounts are full addresses (user@domain), not 'bob'"),
        (3, f"{label} accounts are full addresses (user@domain), not 'carol@'"),
    ]


def test_plain_imap_accepts_short_logins():
    assert userlist.parse("alice,pw,alice\n", IMAP).ok


def test_duplicate_account_reported_on_the_second_line_with_the_first_line_number():
    parsed = userlist.parse("alice@acme.example,pw,alice\nbob,pw,bob\n\nALICE@Acme.Example ,pw2,alice2\n", IMAP)
    assert [n for n, _ in parsed.users] == [1, 2]
    assert errors(parsed) == [(4, "ALICE@Acme.Example is already on line 1")]


@pytest.mark.parametrize(("source", "ok"), [(IMAP, False), (IMAP_DELEGATE, True), (GOOGLE, True), (M365, True)])
def test_empty_password_allowed_only_where_no_password_is_needed(source, ok):
    parsed = userlist.parse("alice@acme.example,,alice\n", source)
    if ok:
        assert rows(parsed) == [(1, "alice@acme.example", "", "alice", "")]
    else:
        assert parsed.users == []
        assert errors(parsed) == [
            (
                1,
                "a password is needed for this account (or enable the delegate account in the task's General tab)",
            )
        ]


def test_broken_quoting_reported_and_the_other_lines_still_checked():
    parsed = userlist.parse('alice,pw,alice\nbob,"pa"ss",bob\ncarol,pw,carol\n', IMAP)
    assert [n for n, _ in parsed.users] == [1, 3]
    assert len(parsed.errors) == 1
    assert parsed.errors[0].line == 2
    assert parsed.errors[0].message.startswith("broken CSV quoting")
    assert "close the quotes" in parsed.errors[0].message


def test_unclosed_quote_reported_on_the_line_where_it_opens():
    parsed = userlist.parse('alice,pw,alice\nbob,"pass,bob\ncarol,pw,carol\n', IMAP)
    assert [n for n, _ in parsed.users] == [1]
    assert [e.line for e in parsed.errors] == [2]
    assert "broken CSV quoting" in parsed.errors[0].message


def test_broken_quoting_with_valid_only_imports_the_other_lines():
    task = Task(name="t", source=IMAP)
    parsed = userlist.parse('alice,pw,alice\nbob,"pa"ss",bob\ncarol,pw,carol\n', IMAP)
    assert userlist.apply(task, parsed, valid_only=True) == ImportSummary(added=2, updated=0, rejected=1)
    assert [u.source for u in task.users] == ["alice", "carol"]


def test_bytes_that_are_not_utf8_are_read_as_windows_1252():
    assert userlist.decode(b"alice,pw,alice\nj\xfcrgen,\x80,j\n") == "alice,pw,alice\njürgen,€,j\n"


def test_a_mixture_of_utf8_and_another_encoding_is_refused_with_its_line():
    data = "jürgen,pw,j\n".encode() + "alice,pässwörd,alice\n".encode("cp1252")
    with pytest.raises(ValueError) as info:
        userlist.decode(data)
    assert str(info.value).startswith("line 2: the file mixes UTF-8 with another encoding (byte 0xe4)")
    assert "save it as UTF-8 CSV" in str(info.value)


# --------------------------------------------------------------------------------------------
# Files as Excel and other spreadsheets write them (real files, read back as bytes).


def read_back(tmp_path, data: bytes) -> str:
    path = tmp_path / "users.csv"
    path.write_bytes(data)
    return userlist.decode(path.read_bytes())


def test_french_excel_csv_semicolons_bom_crlf_and_a_french_header(tmp_path):
    """Excel's "CSV UTF-8 (séparateur : point-virgule)": BOM, CRLF, ';', a header in French; a ';' or a
    quote inside a password is quoted the RFC 4180 way."""
    data = (
        "compte source;mot de passe;compte MailPlus\r\n"
        "alice@acme.example;pw-é;alice@nas.example\r\n"
        'bob@acme.example;"p;w ""b""";bob@nas.example\r\n'
        "carol@acme.example;c,1;carol@nas.example\r\n"
    ).encode("utf-8-sig")
    parsed = userlist.parse(read_back(tmp_path, data), IMAP)
    assert parsed.ok, parsed.errors
    assert parsed.header_skipped
    assert rows(parsed) == [
        (2, "alice@acme.example", "pw-é", "alice@nas.example", ""),
        (3, "bob@acme.example", 'p;w "b"', "bob@nas.example", ""),
        (4, "carol@acme.example", "c,1", "carol@nas.example", ""),
    ]


def test_excel_windows_1252_csv_is_read(tmp_path):
    """Excel's plain "CSV (séparateur : point-virgule)" writes the Windows code page, not UTF-8."""
    data = "Compte;Mot de passe;Destination\r\njürgen@acme.example;pässwörd€;jürgen\r\n".encode("cp1252")
    parsed = userlist.parse(read_back(tmp_path, data), IMAP)
    assert parsed.ok, parsed.errors
    assert rows(parsed) == [(2, "jürgen@acme.example", "pässwörd€", "jürgen", "")]


def test_latin1_bytes_cp1252_leaves_undefined_are_refused_as_control_characters(tmp_path):
    data = b"alice,p\x81w,alice\n"  # 0x81: no character in Windows-1252, U+0081 (a C1 control) in Latin-1
    parsed = userlist.parse(read_back(tmp_path, data), IMAP)
    assert errors(parsed) == [
        (
            1,
            "field 2 holds a control character (U+0081); remove it (a tab, a line break inside quotes, an escape sequence…)",
        )
    ]


def test_excel_unicode_text_utf16_with_tabs(tmp_path):
    """Excel's "Texte Unicode (*.txt)": UTF-16 LE with a BOM, tab-separated."""
    data = "Quellkonto\tPasswort\tZielkonto\r\nalice@acme.example\tpa,ss;wört\talice\r\n".encode("utf-16")
    parsed = userlist.parse(read_back(tmp_path, data), IMAP)
    assert parsed.ok, parsed.errors
    assert parsed.header_skipped
    assert rows(parsed) == [(2, "alice@acme.example", "pa,ss;wört", "alice", "")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # a ';' file whose quoted passwords hold commas: split on ',' it would also give 3 fields
        ('alice;"a,b,c";alice\nbob;"d,e,f";bob\n', [("alice", "a,b,c"), ("bob", "d,e,f")]),
        # a ',' file whose quoted passwords hold semicolons
        ('alice,"a;b;c",alice\nbob,"d;e;f",bob\n', [("alice", "a;b;c"), ("bob", "d;e;f")]),
        # unquoted: the other separator inside a password
        ("alice,pa;ss,alice\n", [("alice", "pa;ss")]),
        ("alice;pa,ss;alice\n", [("alice", "pa,ss")]),
        ("alice\tpa;s,s\talice\n", [("alice", "pa;s,s")]),
        # a ';' inside a quoted password on the first line of a ',' file with a 4th column
        ('alice,"x;y;z",alice,"d;1"\nbob,pw,bob,d2\n', [("alice", "x;y;z"), ("bob", "pw")]),
    ],
)
def test_the_separator_is_detected_without_being_fooled_by_quoted_passwords(text, expected):
    parsed = userlist.parse(text, IMAP)
    assert parsed.ok, parsed.errors
    assert [(u.source, u.password) for _, u in parsed.users] == expected


def test_a_semicolon_file_reports_its_bad_lines_by_number():
    parsed = userlist.parse("alice;pw;alice\nbob;pw\ncarol:x;pw;carol\n", IMAP)
    assert rows(parsed) == [(1, "alice", "pw", "alice", "")]
    assert [line for line, _ in errors(parsed)] == [2, 3]


@pytest.mark.parametrize(
    "header",
    [
        "compte source;mot de passe;compte MailPlus",  # blanks: no account looks like that
        "Quellkonto;Passwort;Zielkonto",  # the lines below hold addresses, this one does not
        "cuenta de origen,contraseña,cuenta de destino",
        "源帐户,密码,目标帐户",
        "E-Mail;Kennwort;Ziel;Zielkennwort",
    ],
)
def test_a_header_line_in_any_language_is_recognised(header):
    sep = ";" if ";" in header else ","
    text = f"{header}\nalice@acme.example{sep}pw{sep}alice@nas.example\nbob@acme.example{sep}pw{sep}bob@nas.example\n"
    parsed = userlist.parse(text, IMAP)
    assert parsed.header_skipped
    assert parsed.ok, parsed.errors
    assert [n for n, _ in parsed.users] == [2, 3]


def test_a_header_alone_in_another_language_is_recognised():
    parsed = userlist.parse("compte source;mot de passe;compte MailPlus\r\n", IMAP)
    assert (parsed.header_skipped, parsed.users, parsed.errors) == (True, [], [])


@pytest.mark.parametrize(
    "first",
    [
        "alice smith@acme.example,pw,alice@nas.example",  # a typo in one account: an error, not a header
        "carol@acme.example,pw,carol",  # an address in one column only
        "alice,pw,alice",  # the same account on both sides: a header names two columns
        "a:b,,c d",  # ":" is in no column name
    ],
)
def test_a_first_line_with_an_account_is_not_taken_for_a_header(first):
    parsed = userlist.parse(f"{first}\nbob@acme.example,pw,bob@nas.example\n", IMAP)
    assert not parsed.header_skipped
    assert 2 in [n for n, _ in parsed.users]
    assert 1 in [n for n, _ in parsed.users] + [e.line for e in parsed.errors]  # imported or reported, never dropped


def test_several_errors_on_one_line_are_all_reported():
    parsed = userlist.parse("a:b,,c d\n", IMAP)
    assert [e.line for e in parsed.errors] == [1, 1, 1]
    assert str(parsed.errors[0]).startswith("line 1: ")


# --------------------------------------------------------------------------------------------
# apply.


def task_with(*users: User, source: Source = IMAP) -> Task:
    return Task(name="t", source=source, users=list(users))


def test_all_or_nothing():
    task = task_with(User("zed", "zed", password="z"))
    before = copy.deepcopy(task)
    parsed = userlist.parse("alice,pw,alice\nbob,,bob\ncarol,pw\n", IMAP)
    with pytest.raises(ImportRejected) as info:
        userlist.apply(task, parsed)
    assert task == before
    message = str(info.value)
    assert message.startswith("2 line(s) cannot be imported, so nothing was imported:")
    assert "  line 2: a password is needed" in message
    assert "  line 3: 2 field(s)" in message
    assert "--valid-only" in message
    assert info.value.parsed is parsed


def test_valid_only_imports_the_good_lines():
    task = task_with(User("zed", "zed", password="z"))
    parsed = userlist.parse("alice,pw,alice\nbob,,bob\ncarol,pw\ndave,pw,dave\n", IMAP)
    summary = userlist.apply(task, parsed, valid_only=True)
    assert summary == ImportSummary(added=2, updated=0, rejected=2)
    assert [u.source for u in task.users] == ["zed", "alice", "dave"]


def test_reimport_updates_instead_of_duplicating():
    task = task_with(
        User("Alice@Acme.example", "alice", password="old", destination_password="old-d"),
        User("bob", "bob", password="b"),
    )
    parsed = userlist.parse("alice@acme.example,new,alice2,new-d\ncarol,c,carol\n", IMAP)
    assert userlist.apply(task, parsed) == ImportSummary(added=1, updated=1, rejected=0)
    assert [(u.source, u.password, u.destination, u.destination_password) for u in task.users] == [
        ("alice@acme.example", "new", "alice2", "new-d"),
        ("bob", "b", "bob", ""),
        ("carol", "c", "carol", ""),
    ]
    # the same file again: nothing added
    assert userlist.apply(task, parsed) == ImportSummary(added=0, updated=2, rejected=0)
    assert len(task.users) == 3


def test_import_updates_existing_accounts_in_their_place_and_appends_new_ones_in_order():
    existing = [User(f"User{i}@Acme.example", f"user{i}", password=f"old{i}") for i in range(50)]
    before = [dataclasses.replace(u) for u in existing]
    task = task_with(*existing)
    lines = [f"user{i}@acme.EXAMPLE,new{i},dest{i}" for i in range(49, -1, -2)]  # odd ones, backwards
    lines += [f"new{i}@acme.example,n{i},new{i}" for i in range(5)]
    lines.insert(3, "newer@acme.example,n,newer")
    parsed = userlist.parse("\n".join(lines) + "\n", IMAP)
    assert userlist.apply(task, parsed) == ImportSummary(added=6, updated=25, rejected=0)
    # an updated account is a new object in the same place: the objects others hold do not change
    assert existing == before
    assert [a is b for a, b in zip(task.users, existing, strict=False)] == [i % 2 == 0 for i in range(50)]
    for i in range(50):
        u = task.users[i]
        if i % 2:
            assert (u.source, u.password, u.destination) == (f"user{i}@acme.EXAMPLE", f"new{i}", f"dest{i}")
        else:
            assert (u.source, u.password, u.destination) == (f"User{i}@Acme.example", f"old{i}", f"user{i}")
    assert [u.source for u in task.users[50:]] == ["newer@acme.example"] + [f"new{i}@acme.example" for i in range(5)]


def test_remove():
    task = task_with(User("alice", "a", password="1"), User("bob", "b", password="2"), User("carol", "c", password="3"))
    assert userlist.remove(task, ["ALICE", "carol", "nobody"]) == 2
    assert [u.source for u in task.users] == ["bob"]


# --------------------------------------------------------------------------------------------
# export.


TRICKY = [
    User("alice@acme.example", "alice", password='pa,ss "word"', destination_password="d,1"),
    User("bob@acme.example", "bob", password="=SUM(1+1) looks like a formula"),
    User("carol@acme.example", "carol", password="  leading and trailing blanks  "),
    User("dave@acme.example", "dave", password="ünï€ode:;'"),
]


def test_export_without_passwords_by_default():
    text = userlist.export(task_with(*TRICKY))
    assert text == (
        "alice@acme.example,,alice\r\nbob@acme.example,,bob\r\ncarol@acme.example,,carol\r\ndave@acme.example,,dave\r\n"
    )
    for u in TRICKY:
        assert u.password not in text


def test_export_with_passwords():
    text = userlist.export(task_with(*TRICKY), with_passwords=True)
    lines = text.split("\r\n")
    assert lines[0] == 'alice@acme.example,"pa,ss ""word""",alice,"d,1"'
    assert lines[1] == "bob@acme.example,'=SUM(1+1) looks like a formula,bob"


def test_export_parse_round_trip():
    task = task_with(*copy.deepcopy(TRICKY))
    parsed = userlist.parse(userlist.export(task, with_passwords=True, exact=True), IMAP)
    assert parsed.ok, parsed.errors
    assert [u for _, u in parsed.users] == TRICKY
    assert [(u.password, u.destination_password) for _, u in parsed.users] == [
        (u.password, u.destination_password) for u in TRICKY
    ]


def test_export_without_passwords_reimports_for_a_delegate_task():
    task = task_with(*copy.deepcopy(TRICKY), source=IMAP_DELEGATE)
    parsed = userlist.parse(userlist.export(task), IMAP_DELEGATE)
    assert parsed.ok
    assert [(u.source, u.destination) for _, u in parsed.users] == [(u.source, u.destination) for u in TRICKY]


def test_line_error_text():
    assert str(LineError(7, "bad")) == "line 7: bad"
