"""Folder-name rules: encoding, prefixes, separators, special use, the mailbox filter, the plan."""

from __future__ import annotations

import pytest

from mailmig_tui.engine.folders import (
    FolderPlan,
    MailboxFilter,
    RemoteFolder,
    compile_keyword,
    decode_name,
    dest_special_folder,
    encode_name,
    guess_special_use,
    logical_path,
    parse_list_response,
    parse_status_response,
    plan_folders,
)


def folder(name: str, delimiter: str | None = "/", *flags: str) -> RemoteFolder:
    return RemoteFolder(name, delimiter, frozenset(flags))


def by_name(plans: list[FolderPlan]) -> dict[str, FolderPlan]:
    return {plan.source.name: plan for plan in plans}


# --- modified UTF-7 ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "wire"),
    [
        ("Entwürfe", "Entw&APw-rfe"),
        ("日本語", "&ZeVnLIqe-"),
        ("A&B", "A&-B"),
        ("&", "&-"),
        ("&&", "&-&-"),
        ("Fotos 😀", "Fotos &2D3eAA-"),
        ("a+b-c", "a+b-c"),
        ("C++ - notes", "C++ - notes"),
        ("ä-ä", "&AOQ--&AOQ-"),
        ("Éléments envoyés", "&AMk-l&AOk-ments envoy&AOk-s"),
        ("plain", "plain"),
        ("", ""),
    ],
)
def test_modified_utf7_round_trip(name: str, wire: str) -> None:
    assert encode_name(name) == wire
    assert decode_name(wire) == name
    assert decode_name(wire.encode("ascii")) == name


@pytest.mark.parametrize(
    "wire",
    [
        "A&B",  # unescaped ampersand, never closed
        "&AOQ",  # base64 run without its closing "-"
        "&AOQ!-",  # a character outside modified base64
        "&2D3-",  # half a surrogate pair
        "&AA-",  # one byte is not UTF-16
        "&A-",  # impossible base64 length
        "Tom & Jerry",
    ],
)
def test_invalid_modified_utf7_is_kept_as_is(wire: str) -> None:
    assert decode_name(wire) == wire
    assert decode_name(wire.encode("ascii")) == wire


def test_plus_is_not_special_and_utf8_names_pass_through() -> None:
    assert decode_name("+AOQ-") == "+AOQ-"
    assert decode_name("Entwürfe") == "Entwürfe"
    assert decode_name("Entwürfe".encode()) == "Entwürfe"
    assert decode_name(b"Entw\xfcrfe") == "Entwürfe"  # neither ASCII nor UTF-8: Latin-1, not a crash


# --- RemoteFolder ------------------------------------------------------------------------------


def test_from_imapclient_with_decoded_name() -> None:
    f = RemoteFolder.from_imapclient(((b"\\HasNoChildren", b"\\Sent"), b"/", "Gesendete Elemente"))
    assert f == RemoteFolder("Gesendete Elemente", "/", frozenset({"\\HasNoChildren", "\\Sent"}))
    assert f.special_use == "\\Sent"
    assert f.selectable
    assert f.imap_name == "Gesendete Elemente"


def test_from_imapclient_with_wire_bytes_keeps_the_wire_name() -> None:
    f = RemoteFolder.from_imapclient(((), b".", b"INBOX.Entw&APw-rfe"))
    assert (f.name, f.delimiter, f.imap_name) == ("INBOX.Entwürfe", ".", "INBOX.Entw&APw-rfe")
    broken = RemoteFolder.from_imapclient(((b"\\HasNoChildren",), b"/", b"Tom&Jerry"))
    assert broken.name == "Tom&Jerry"
    assert broken.imap_name == "Tom&Jerry"  # not re-encoded to "Tom&-Jerry", which the server lacks
    assert RemoteFolder.from_imapclient(((), None, 2019)) == RemoteFolder("2019", None)


# --- LIST and STATUS responses as imaplib hands them over -----------------------------------------


def test_list_response_with_unquoted_brackets_quoted_escapes_nil_and_literal_names() -> None:
    """Dovecot sends ``Invoices[2019`` and ``Br]ace`` unquoted, which IMAPClient's parser refuses."""
    data = [
        b'(\\HasNoChildren) "/" Invoices[2019',
        b'(\\HasNoChildren) "/" Br]ace',
        b'(\\HasNoChildren \\Sent) "/" "Q\\"uote \\\\ back"',
        b'(\\Noselect) NIL ""',
        (b'() "." {12}', b'Lit "eral" ]'),
        b' ("CHILDINFO" ("SUBSCRIBED"))',
        b'() "/" Bad&AAE-Name ("CHILDINFO" ("SUBSCRIBED"))',
        b'(\\HasNoChildren) "\\\\" INBOX',
        None,
    ]
    got = [(f.name, f.delimiter, sorted(f.flags), f.imap_name) for f in parse_list_response(data)]
    assert got == [
        ("Invoices[2019", "/", ["\\HasNoChildren"], "Invoices[2019"),
        ("Br]ace", "/", ["\\HasNoChildren"], "Br]ace"),
        ('Q"uote \\ back', "/", ["\\HasNoChildren", "\\Sent"], 'Q"uote \\ back'),
        ("", None, ["\\Noselect"], ""),
        ('Lit "eral" ]', ".", [], 'Lit "eral" ]'),
        ("Bad\x01Name", "/", [], "Bad&AAE-Name"),
        ("INBOX", "\\", ["\\HasNoChildren"], "INBOX"),
    ]
    assert parse_list_response([None]) == []


def test_status_response_with_unquoted_quoted_and_literal_names() -> None:
    data = [
        b"Invoices[2019 (MESSAGES 3 UIDNEXT 4 UIDVALIDITY 17)",
        b'"Q\\"uote" (MESSAGES 0 UIDNEXT 1 UIDVALIDITY 18)',
        (b"{5}", b"a b c"),
        b" (MESSAGES 1 UIDNEXT 2 UIDVALIDITY 19)",
    ]
    assert parse_status_response(data) == [
        (b"Invoices[2019", {"MESSAGES": 3, "UIDNEXT": 4, "UIDVALIDITY": 17}),
        (b'Q"uote', {"MESSAGES": 0, "UIDNEXT": 1, "UIDVALIDITY": 18}),
        (b"a b c", {"MESSAGES": 1, "UIDNEXT": 2, "UIDVALIDITY": 19}),
    ]


@pytest.mark.parametrize(
    "line",
    [b'(\\HasNoChildren "/" Invoices', b'(\\HasNoChildren) "/"', b'() "/" "unterminated', b"() / x"],
)
def test_malformed_list_line_says_what_the_server_sent(line: bytes) -> None:
    with pytest.raises(ValueError, match="cannot read the server's LIST response"):
        parse_list_response([line])


@pytest.mark.parametrize(
    ("flags", "selectable", "special", "virtual"),
    [
        ((), True, None, None),
        (("\\Noselect", "\\HasChildren"), False, None, None),
        (("\\NoSelect",), False, None, None),
        (("\\NonExistent",), False, None, None),
        (("\\sent",), True, "\\Sent", None),
        (("\\JUNK",), True, "\\Junk", None),
        (("\\HasNoChildren", "\\All"), True, "\\All", "\\All"),
        (("\\Flagged",), True, "\\Flagged", "\\Flagged"),
        (("\\Important",), True, None, "\\Important"),
        (("\\Archive",), True, "\\Archive", None),
    ],
)
def test_attributes(flags: tuple[str, ...], selectable: bool, special: str | None, virtual: str | None) -> None:
    f = folder("X", "/", *flags)
    assert (f.selectable, f.special_use, f.virtual) == (selectable, special, virtual)


# --- logical paths -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "delimiter", "prefix", "path"),
    [
        ("INBOX.Sent", ".", "INBOX", ("Sent",)),
        ("INBOX.Sent", ".", "INBOX.", ("Sent",)),
        ("INBOX.Projects.2019", ".", "INBOX", ("Projects", "2019")),
        ("INBOX", ".", "INBOX", ("INBOX",)),
        ("INBOX", ".", "INBOX.", ("INBOX",)),
        ("inbox", "/", "", ("INBOX",)),
        ("Inbox.Sent", ".", "INBOX", ("Sent",)),
        ("INBOX.Sent", ".", "", ("INBOX", "Sent")),
        ("Sent", "/", "", ("Sent",)),
        ("Shared.Team", ".", "INBOX", ("Shared", "Team")),  # outside the prefix
        ("INBOX/Sent", "/", "INBOX/", ("Sent",)),
        ("INBOX/Sent", "/", "INBOX.", ("Sent",)),  # a prefix written with the other separator
        ("INBOX.INBOX.Old", ".", "INBOX", ("INBOX", "Old")),
        ("Mail/Archive/2020", "/", "Mail", ("Archive", "2020")),
        ("a//b/", "/", "", ("a", "b")),
        ("Flat", None, "", ("Flat",)),
        ("[Gmail]/Sent Mail", "/", "", ("[Gmail]", "Sent Mail")),
    ],
)
def test_logical_path(name: str, delimiter: str | None, prefix: str, path: tuple[str, ...]) -> None:
    assert logical_path(folder(name, delimiter), prefix) == path


# --- guessed special use -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        (("Sent",), "\\Sent"),
        (("sent items",), "\\Sent"),
        (("Sent Messages",), "\\Sent"),
        (("Gesendete Elemente",), "\\Sent"),
        (("Gesendete Objekte",), "\\Sent"),
        (("Éléments envoyés",), "\\Sent"),
        (("E\u0301le\u0301ments envoye\u0301s",), "\\Sent"),  # decomposed accents (macOS)
        (("Elementos enviados",), "\\Sent"),
        (("Posta inviata",), "\\Sent"),
        (("Verzonden items",), "\\Sent"),
        (("Drafts",), "\\Drafts"),
        (("Entwürfe",), "\\Drafts"),
        (("Brouillons",), "\\Drafts"),
        (("Borradores",), "\\Drafts"),
        (("Trash",), "\\Trash"),
        (("Deleted Items",), "\\Trash"),
        (("Deleted Messages",), "\\Trash"),
        (("Papierkorb",), "\\Trash"),
        (("Gelöschte Elemente",), "\\Trash"),
        (("Corbeille",), "\\Trash"),
        (("KOSZ",), "\\Trash"),
        (("Junk",), "\\Junk"),
        (("Junk E-Mail",), "\\Junk"),
        (("Junk Email",), "\\Junk"),
        (("Spam",), "\\Junk"),
        (("Bulk Mail",), "\\Junk"),
        (("Courrier indésirable",), "\\Junk"),
        (("Archive",), "\\Archive"),
        (("Archives",), "\\Archive"),
        (("Archiv",), "\\Archive"),
        (("INBOX", "Sent"), "\\Sent"),
        (("[Gmail]", "Sent Mail"), "\\Sent"),
        (("[Google Mail]", "Bin"), "\\Trash"),
        (("[Gmail]", "Spam"), "\\Junk"),
        (("[Gmail]", "All Mail"), "\\All"),
        (("[Gmail]", "Starred"), "\\Flagged"),
        (("Starred",), None),  # a user's folder called Starred is mail, not a view
        (("Projects", "Sent"), None),
        (("Sent stuff",), None),
        (("INBOX",), None),
    ],
)
def test_guess_special_use(path: tuple[str, ...], kind: str | None) -> None:
    assert guess_special_use(path) == kind


# --- mailbox filter ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keyword", "path", "matches"),
    [
        ("Old", ("Old",), True),
        ("Old", ("old", "2019"), True),
        ("Old", ("Older",), False),
        ("Old", ("Folder",), False),
        ("Old", ("Projects", "Old"), False),
        ("Old/Keep", ("Old", "Keep", "x"), True),
        ("Old/Keep", ("Old",), False),
        (" Old/ ", ("Old",), True),
        ("inbox", ("INBOX", "Receipts"), True),
        ("Entwürfe", ("ENTWÜRFE",), True),
        ("/^Projects/20(0|1)[0-9]$/", ("Projects", "2015"), True),
        ("/^Projects/20(0|1)[0-9]$/", ("Projects", "2015", "Q1"), False),
        ("/^Projects/20(0|1)[0-9]$/", ("Projects", "2025"), False),
        ("/old/", ("Folder", "bold"), True),  # a regex is searched, case-sensitively
        ("/old/", ("Old",), False),
        ("/(?i)old/", ("Old",), True),
    ],
)
def test_keyword_matching(keyword: str, path: tuple[str, ...], matches: bool) -> None:
    assert compile_keyword(keyword).matches(path) is matches


@pytest.mark.parametrize(
    ("keyword", "message"),
    [
        ("/^Proj(/", 'keyword "/^Proj(/": missing ), unterminated subpattern at position 5'),
        ("/[a-/", 'keyword "/[a-/": unterminated character set at position 0'),
        ("", "empty keyword: write a folder name or a /regular expression/"),
        ("   ", "empty keyword: write a folder name or a /regular expression/"),
        ("//", 'keyword "//": the regular expression is empty'),
        ("/", 'keyword "/": no folder name'),
    ],
)
def test_bad_keyword_message(keyword: str, message: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        compile_keyword(keyword)
    assert str(excinfo.value) == message


def test_bad_keyword_in_filter_and_bad_policy() -> None:
    with pytest.raises(ValueError, match=r'keyword "/\(/"'):
        MailboxFilter("skip", ["Old", "/(/"])
    with pytest.raises(ValueError, match="policy"):
        MailboxFilter("delete", ["Old"])
    with pytest.raises(ValueError, match="at least one keyword"):
        MailboxFilter("migrate", [])
    assert MailboxFilter("migrate", [], enabled=False).decide(("x",)) is None


SKIP = MailboxFilter("skip", ["Old", "/^Projects/20(0|1)[0-9]$/"], ["Old/Keep"])
MIGRATE = MailboxFilter("migrate", ["Old", "/^Projects/"], ["Old/Private"])


@pytest.mark.parametrize(
    ("mailbox_filter", "path", "reason"),
    [
        (SKIP, ("Old",), 'mailbox filter: matches "Old"'),
        (SKIP, ("Old", "2019"), 'mailbox filter: matches "Old"'),
        (SKIP, ("Old", "Keep"), None),
        (SKIP, ("Old", "Keep", "2020"), None),
        (SKIP, ("Older",), None),
        (SKIP, ("Projects", "2009"), 'mailbox filter: matches "/^Projects/20(0|1)[0-9]$/"'),
        (SKIP, ("Projects", "2021"), None),
        (SKIP, ("INBOX",), None),
        (MIGRATE, ("Old",), None),
        (MIGRATE, ("Old", "2019"), None),
        (MIGRATE, ("Old", "Private"), 'mailbox filter: matches exception "Old/Private"'),
        (MIGRATE, ("Projects", "2021"), None),
        (MIGRATE, ("Older",), "mailbox filter: not matched by any keyword"),
        (MIGRATE, ("INBOX",), "mailbox filter: not matched by any keyword"),
        (MailboxFilter("skip", ["Old"], enabled=False), ("Old",), None),
        (MailboxFilter("migrate", ["Old"], enabled=False), ("INBOX",), None),
    ],
)
def test_mailbox_filter_decide(mailbox_filter: MailboxFilter, path: tuple[str, ...], reason: str | None) -> None:
    assert mailbox_filter.decide(path) == reason


# --- destination special folders ---------------------------------------------------------------


DOVECOT = [
    folder("INBOX", "/"),
    folder("Sent", "/", "\\Sent"),
    folder("Drafts", "/", "\\Drafts"),
    folder("Trash", "/", "\\Trash"),
    folder("Junk", "/", "\\Junk"),
]


@pytest.mark.parametrize(
    ("kind", "dest_folders", "delimiter", "prefix", "expected"),
    [
        ("\\Sent", DOVECOT, "/", "", "Sent"),
        ("sent", DOVECOT, "/", "", "Sent"),
        ("\\Archive", DOVECOT, "/", "", "Archive"),
        ("\\Archive", [folder("Archiv", "/", "\\Archive"), *DOVECOT], "/", "", "Archiv"),
        (
            "\\Sent",
            [folder("INBOX", "."), folder("INBOX.Gesendete Elemente", ".", "\\Sent")],
            ".",
            "INBOX",
            "INBOX.Gesendete Elemente",
        ),
        ("\\Sent", [folder("Sent", "/"), folder("Gesendete Elemente", "/", "\\Sent")], "/", "", "Gesendete Elemente"),
        # no attributes anywhere: guessed by name, the English default preferred
        ("\\Sent", [folder("INBOX.Sent Items", "."), folder("INBOX.Sent", ".")], ".", "INBOX.", "INBOX.Sent"),
        ("\\Trash", [folder("INBOX.Deleted Items", ".")], ".", "INBOX", "INBOX.Deleted Items"),
        ("\\Junk", [folder("INBOX", ".")], ".", "INBOX.", "INBOX.Junk"),
        ("\\Drafts", [folder("Drafts", "/", "\\Noselect")], "/", "", "Drafts"),
    ],
)
def test_dest_special_folder(
    kind: str, dest_folders: list[RemoteFolder], delimiter: str, prefix: str, expected: str
) -> None:
    assert dest_special_folder(kind, dest_folders, delimiter, prefix) == expected


def test_dest_special_folder_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown special-use"):
        dest_special_folder("\\Outbox", DOVECOT, "/")


# --- plans -------------------------------------------------------------------------------------


CYRUS_SOURCE = [
    folder("INBOX", ".", "\\HasChildren"),
    folder("INBOX.Sent Items", ".", "\\Sent", "\\HasChildren"),
    folder("INBOX.Sent Items.2019", ".", "\\HasNoChildren"),
    folder("INBOX.Projects", ".", "\\HasChildren"),
    folder("INBOX.Projects.a/b", ".", "\\HasNoChildren"),
    folder("INBOX.Deleted Items", ".", "\\Trash"),
    folder("INBOX.Deleted Items.old folder", ".", "\\HasNoChildren"),
    folder("INBOX.Junk E-Mail", ".", "\\Junk"),
    folder("INBOX.Entwürfe", ".", "\\Drafts"),
]


def test_cyrus_source_onto_dovecot_destination() -> None:
    plans = by_name(plan_folders(CYRUS_SOURCE, source_prefix="INBOX", dest_folders=DOVECOT, dest_delimiter="/"))
    expected = {
        "INBOX": (("INBOX",), None, "INBOX"),
        "INBOX.Sent Items": (("Sent Items",), "\\Sent", "Sent"),
        "INBOX.Sent Items.2019": (("Sent Items", "2019"), None, "Sent/2019"),
        "INBOX.Projects": (("Projects",), None, "Projects"),
        "INBOX.Projects.a/b": (("Projects", "a/b"), None, "Projects/a_b"),
        "INBOX.Deleted Items": (("Deleted Items",), "\\Trash", "Trash"),
        "INBOX.Deleted Items.old folder": (("Deleted Items", "old folder"), None, "Trash/old folder"),
        "INBOX.Junk E-Mail": (("Junk E-Mail",), "\\Junk", "Junk"),
        "INBOX.Entwürfe": (("Entwürfe",), "\\Drafts", "Drafts"),
    }
    assert {name: (p.path, p.special_use, p.dest_name) for name, p in plans.items()} == expected
    assert all(p.skip_reason is None for p in plans.values())
    assert plans["INBOX.Projects.a/b"].notes == [
        'name part "a/b" contains the destination separator "/": written as "a_b"'
    ]
    assert plans["INBOX.Sent Items"].notes == []


def test_dovecot_source_onto_cyrus_destination() -> None:
    source = [
        folder("INBOX", "/"),
        folder("INBOX/Receipts", "/"),
        folder("Sent", "/", "\\Sent"),
        folder("Releases", "/"),
        folder("Releases/v1.2", "/"),
        folder("Trash", "/", "\\Trash"),
    ]
    dest = [folder("INBOX", "."), folder("INBOX.Sent", ".", "\\Sent"), folder("INBOX.Trash", ".", "\\Trash")]
    plans = by_name(plan_folders(source, source_prefix="", dest_folders=dest, dest_delimiter=".", dest_prefix="INBOX."))
    assert {name: p.dest_name for name, p in plans.items()} == {
        "INBOX": "INBOX",
        "INBOX/Receipts": "INBOX.Receipts",
        "Sent": "INBOX.Sent",
        "Releases": "INBOX.Releases",
        "Releases/v1.2": "INBOX.Releases.v1_2",
        "Trash": "INBOX.Trash",
    }
    assert plans["Releases/v1.2"].notes == [
        'name part "v1.2" contains the destination separator ".": written as "v1_2"'
    ]


def test_special_use_mapped_to_a_differently_named_destination_folder() -> None:
    source = [folder("Sent Items", "/", "\\Sent"), folder("Deleted Items", "/", "\\Trash")]
    dest = [
        folder("INBOX", "/"),
        folder("Sent", "/"),
        folder("Gesendete Elemente", "/", "\\Sent"),
        folder("Papierkorb", "/", "\\Trash"),
    ]
    plans = plan_folders(source, source_prefix="", dest_folders=dest, dest_delimiter="/")
    assert [p.dest_name for p in plans] == ["Gesendete Elemente", "Papierkorb"]


def test_names_are_guessed_only_when_no_attributes_anywhere() -> None:
    bare = [folder("INBOX", "/"), folder("Sent Items", "/"), folder("Deleted Items", "/"), folder("Spam", "/")]
    plans = plan_folders(bare, source_prefix="", dest_folders=DOVECOT, dest_delimiter="/", skip_junk=True)
    assert [(p.special_use, p.dest_name, p.skip_reason) for p in plans] == [
        (None, "INBOX", None),
        ("\\Sent", "Sent", None),
        ("\\Trash", "Trash", None),
        ("\\Junk", "Junk", "Junk skipped by filter"),
    ]
    assert "treated as \\Sent by its name" in plans[1].notes[0]

    announced = [*bare, folder("Gesendet", "/", "\\Sent")]
    plans = plan_folders(announced, source_prefix="", dest_folders=DOVECOT, dest_delimiter="/", skip_junk=True)
    assert [(p.special_use, p.dest_name, p.skip_reason) for p in plans] == [
        (None, "INBOX", None),
        (None, "Sent Items", None),
        (None, "Deleted Items", None),
        (None, "Spam", None),
        ("\\Sent", "Sent", None),
    ]


def test_destination_names_guessed_when_it_announces_none() -> None:
    dest = [folder("INBOX", "."), folder("INBOX.Gesendete Objekte", "."), folder("INBOX.Papierkorb", ".")]
    source = [folder("Sent", "/", "\\Sent"), folder("Trash", "/", "\\Trash"), folder("Drafts", "/", "\\Drafts")]
    plans = plan_folders(source, source_prefix="", dest_folders=dest, dest_delimiter=".", dest_prefix="INBOX")
    assert [p.dest_name for p in plans] == ["INBOX.Gesendete Objekte", "INBOX.Papierkorb", "INBOX.Drafts"]


GMAIL = [
    RemoteFolder.from_imapclient(((b"\\HasNoChildren",), b"/", "INBOX")),
    RemoteFolder.from_imapclient(((b"\\HasNoChildren",), b"/", "Receipts")),
    RemoteFolder.from_imapclient(((b"\\HasChildren",), b"/", "Work")),
    RemoteFolder.from_imapclient(((b"\\HasNoChildren",), b"/", "Work/Client A")),
    RemoteFolder.from_imapclient(((b"\\HasChildren", b"\\Noselect"), b"/", "[Gmail]")),
    RemoteFolder.from_imapclient(((b"\\All", b"\\HasNoChildren"), b"/", "[Gmail]/All Mail")),
    RemoteFolder.from_imapclient(((b"\\Drafts", b"\\HasNoChildren"), b"/", "[Gmail]/Drafts")),
    RemoteFolder.from_imapclient(((b"\\HasNoChildren", b"\\Important"), b"/", "[Gmail]/Important")),
    RemoteFolder.from_imapclient(((b"\\HasNoChildren", b"\\Sent"), b"/", "[Gmail]/Sent Mail")),
    RemoteFolder.from_imapclient(((b"\\HasNoChildren", b"\\Junk"), b"/", "[Gmail]/Spam")),
    RemoteFolder.from_imapclient(((b"\\Flagged", b"\\HasNoChildren"), b"/", "[Gmail]/Starred")),
    RemoteFolder.from_imapclient(((b"\\HasNoChildren", b"\\Trash"), b"/", "[Gmail]/Trash")),
    RemoteFolder.from_imapclient(((b"\\HasNoChildren",), b"/", "[Gmail]/Chats")),
]


def test_gmail_list_is_planned() -> None:
    plans = by_name(
        plan_folders(GMAIL, source_prefix="", dest_folders=DOVECOT, dest_delimiter="/", skip_trash=True, skip_junk=True)
    )
    assert {name: (p.dest_name, p.skip_reason) for name, p in plans.items()} == {
        "INBOX": ("INBOX", None),
        "Receipts": ("Receipts", None),
        "Work": ("Work", None),
        "Work/Client A": ("Work/Client A", None),
        "[Gmail]": ("[Gmail]", "not selectable"),
        "[Gmail]/All Mail": ("All Mail", "virtual folder (\\All)"),
        "[Gmail]/Drafts": ("Drafts", None),
        "[Gmail]/Important": ("Important", "virtual folder (\\Important)"),
        "[Gmail]/Sent Mail": ("Sent", None),
        "[Gmail]/Spam": ("Junk", "Junk skipped by filter"),
        "[Gmail]/Starred": ("Starred", "virtual folder (\\Flagged)"),
        "[Gmail]/Trash": ("Trash", "Trash skipped by filter"),
        "[Gmail]/Chats": ("Chats", None),
    }
    assert plans["[Gmail]/Sent Mail"].special_use == "\\Sent"


def test_gmail_without_skips_keeps_trash_and_junk() -> None:
    plans = by_name(plan_folders(GMAIL, source_prefix="", dest_folders=DOVECOT, dest_delimiter="/"))
    assert plans["[Gmail]/Trash"].skip_reason is None
    assert plans["[Gmail]/Spam"].skip_reason is None
    assert plans["[Gmail]/Spam"].dest_name == "Junk"


def test_skip_trash_covers_the_trash_subtree() -> None:
    plans = by_name(
        plan_folders(CYRUS_SOURCE, source_prefix="INBOX", dest_folders=DOVECOT, dest_delimiter="/", skip_trash=True)
    )
    assert plans["INBOX.Deleted Items"].skip_reason == "Trash skipped by filter"
    assert plans["INBOX.Deleted Items.old folder"].skip_reason == "Trash skipped by filter"
    assert plans["INBOX.Junk E-Mail"].skip_reason is None


def test_merged_folders_get_a_note() -> None:
    source = [
        folder("INBOX", "/"),
        folder("Sent Items", "/", "\\Sent"),
        folder("Sent", "/"),
        folder("Trash", "/"),
        folder("Deleted", "/", "\\Trash"),
        folder("Other", "/"),
    ]
    plans = by_name(plan_folders(source, source_prefix="", dest_folders=DOVECOT, dest_delimiter="/"))
    assert plans["Sent Items"].notes == ['merged with source folder "Sent" into "Sent"']
    assert plans["Sent"].notes == ['merged with source folder "Sent Items" into "Sent"']
    assert plans["Deleted"].notes == ['merged with source folder "Trash" into "Trash"']
    assert plans["Other"].notes == []


def test_merge_into_inbox_is_case_insensitive_and_skipped_folders_do_not_merge() -> None:
    source = [
        folder("INBOX", "."),
        folder("INBOX.inbox", "."),
        folder("INBOX.Old", "."),
        folder("Old", "."),
    ]
    plans = by_name(
        plan_folders(
            source,
            source_prefix="INBOX",
            dest_folders=DOVECOT,
            dest_delimiter="/",
            mailbox_filter=MailboxFilter("skip", ["Old"]),
        )
    )
    assert plans["INBOX.inbox"].dest_name == "INBOX"
    assert plans["INBOX"].notes == ['merged with source folder "INBOX.inbox" into "INBOX"']
    assert plans["INBOX.Old"].skip_reason == 'mailbox filter: matches "Old"'
    assert plans["Old"].skip_reason == 'mailbox filter: matches "Old"'
    assert plans["Old"].notes == []


@pytest.mark.parametrize(
    ("mailbox_filter", "migrated"),
    [
        (None, {"INBOX", "Old", "Old/Keep", "Older", "Projects/2015", "Projects/2025"}),
        (
            MailboxFilter("skip", ["Old"], ["Old/Keep"]),
            {"INBOX", "Old/Keep", "Older", "Projects/2015", "Projects/2025"},
        ),
        (MailboxFilter("skip", ["/^Projects/20(0|1)[0-9]$/"]), {"INBOX", "Old", "Old/Keep", "Older", "Projects/2025"}),
        (MailboxFilter("migrate", ["Old", "/^Projects/"], ["Old/Keep"]), {"Old", "Projects/2015", "Projects/2025"}),
        (MailboxFilter("migrate", ["INBOX", "/^Proj.*5$/"]), {"INBOX", "Projects/2015", "Projects/2025"}),
        (
            MailboxFilter("migrate", ["Old"], enabled=False),
            {"INBOX", "Old", "Old/Keep", "Older", "Projects/2015", "Projects/2025"},
        ),
    ],
)
def test_plan_applies_the_mailbox_filter(mailbox_filter: MailboxFilter | None, migrated: set[str]) -> None:
    source = [folder(name, "/") for name in ("INBOX", "Old", "Old/Keep", "Older", "Projects/2015", "Projects/2025")]
    plans = plan_folders(
        source, source_prefix="", dest_folders=DOVECOT, dest_delimiter="/", mailbox_filter=mailbox_filter
    )
    assert {p.dest_name for p in plans if not p.skipped} == migrated


def test_filter_sees_the_logical_path_without_the_prefix() -> None:
    source = [folder("INBOX", "."), folder("INBOX.Old", "."), folder("INBOX.Old.2019", ".")]
    plans = plan_folders(
        source,
        source_prefix="INBOX.",
        dest_folders=DOVECOT,
        dest_delimiter="/",
        mailbox_filter=MailboxFilter("skip", ["/^Old/2019$/"]),
    )
    assert [(p.dest_name, p.skip_reason) for p in plans] == [
        ("INBOX", None),
        ("Old", None),
        ("Old/2019", 'mailbox filter: matches "/^Old/2019$/"'),
    ]


def test_non_selectable_parent_is_not_copied_but_its_children_are() -> None:
    source = [folder("INBOX", "/"), folder("Clients", "/", "\\Noselect"), folder("Clients/Acme", "/")]
    plans = plan_folders(source, source_prefix="", dest_folders=DOVECOT, dest_delimiter="/")
    assert [(p.dest_name, p.skip_reason) for p in plans] == [
        ("INBOX", None),
        ("Clients", "not selectable"),
        ("Clients/Acme", None),
    ]


def test_unicode_names_travel_and_encode_for_the_destination() -> None:
    source = [RemoteFolder.from_imapclient(((), b".", b"INBOX.&ZeVnLIqe-.Entw&APw-rfe 2"))]
    (plan,) = plan_folders(
        source, source_prefix="INBOX", dest_folders=DOVECOT, dest_delimiter="/", dest_prefix="Migrated"
    )
    assert plan.path == ("日本語", "Entwürfe 2")
    assert plan.dest_name == "Migrated/日本語/Entwürfe 2"
    assert encode_name(plan.dest_name) == "Migrated/&ZeVnLIqe-/Entw&APw-rfe 2"


def test_control_characters_in_a_name_part_are_replaced_and_the_plan_says_so() -> None:
    """Dovecot refuses CREATE of a name with control characters; the folder is copied under a name it takes."""
    source = [
        folder("INBOX", "."),
        folder("Bad\x01Name", "."),
        folder("Sent", ".", "\\Sent"),
        folder("Sent.Tab\tand\x7fDEL", "."),
        folder("Clean", "."),
    ]
    plans = by_name(plan_folders(source, source_prefix="", dest_folders=DOVECOT, dest_delimiter="/"))
    assert {name: p.dest_name for name, p in plans.items()} == {
        "INBOX": "INBOX",
        "Bad\x01Name": "Bad_Name",
        "Sent": "Sent",
        "Sent.Tab\tand\x7fDEL": "Sent/Tab_and_DEL",
        "Clean": "Clean",
    }
    assert plans["Bad\x01Name"].notes == [
        'name part "Bad\\x01Name" contains control characters, which the destination may refuse: written as "Bad_Name"'
    ]
    assert plans["Sent.Tab\tand\x7fDEL"].notes == [
        'name part "Tab\\x09and\\x7fDEL" contains control characters, which the destination may refuse: '
        'written as "Tab_and_DEL"'
    ]
    assert plans["Clean"].notes == [] and plans["Sent"].notes == []
