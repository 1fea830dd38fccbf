"""A local server that reads like Gmail's IMAP (X-GM-EXT-1), for the IMAP source's Gmail handling.

No IMAP server we can run here speaks Gmail's extension, so this one speaks the part a migration
reads, on 127.0.0.1, over plain TCP, the way Gmail answers it:

* Labels are folders. ``INBOX`` holds ``\\Inbox``; ``[Gmail]/Sent Mail`` (\\Sent), ``Drafts``
  (\\Drafts), ``Spam`` (\\Junk), ``Trash`` (\\Trash), ``Starred`` (\\Flagged) and ``Important``
  (\\Important) hold the system labels; ``[Gmail]/All Mail`` (\\All) holds every message outside Spam
  and Trash (which show in their own folder only, whatever their other labels); a user label is a
  folder of its name; ``[Gmail]`` itself is \\Noselect. One message appears in every folder its
  labels name, with a UID of that folder's own.
* ``X-GM-LABELS`` in FETCH gives a message's labels as Gmail does: system ones as ``"\\Inbox"``,
  ``"\\Sent"``, ``"\\Important"``, ``"\\Starred"``, ``"\\Draft"``; user ones by name. A message of
  All Mail whose labels are only views (or none) is archived mail.
* Commands: CAPABILITY, LOGIN, LIST, STATUS, EXAMINE/SELECT, UID SEARCH ALL, UID FETCH (UID,
  RFC822.SIZE, INTERNALDATE, FLAGS, BODY.PEEK[] and BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)],
  X-GM-LABELS), NOOP, CLOSE, UNSELECT, LOGOUT. Anything else is answered BAD, so a test fails
  loudly if the source starts to need more.
* ``commands`` records every command line received (for assertions: EXAMINE, never SELECT).
"""

from __future__ import annotations

import datetime as dt
import email.parser
import email.policy
import re
import socketserver
import threading
from dataclasses import dataclass, field

UIDVALIDITY = 7
SYSTEM = {  # label → (folder, special-use attribute)
    "\\Inbox": ("INBOX", ""),
    "\\Sent": ("[Gmail]/Sent Mail", "\\Sent"),
    "\\Draft": ("[Gmail]/Drafts", "\\Drafts"),
    "\\Spam": ("[Gmail]/Spam", "\\Junk"),
    "\\Trash": ("[Gmail]/Trash", "\\Trash"),
    "\\Starred": ("[Gmail]/Starred", "\\Flagged"),
    "\\Important": ("[Gmail]/Important", "\\Important"),
}
ALL_MAIL = "[Gmail]/All Mail"
CAPABILITY = "IMAP4rev1 UNSELECT CHILDREN X-GM-EXT-1 UIDPLUS SPECIAL-USE AUTH=PLAIN"
_ITEM = re.compile(r"BODY\.PEEK\[[^\]]*\]|[A-Z0-9.\-]+", re.IGNORECASE)


@dataclass
class GMessage:
    raw: bytes
    labels: set[str]
    flags: tuple[str, ...] = ()
    internaldate: dt.datetime = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)


@dataclass
class GmailImap:
    user: str
    password: str
    messages: list[GMessage] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    port: int = 0
    _server: socketserver.ThreadingTCPServer | None = None

    def add(self, raw: bytes, labels: set[str], flags: tuple[str, ...] = (), when: dt.datetime | None = None) -> None:
        self.messages.append(GMessage(raw, set(labels), flags, when or dt.datetime(2020, 1, 1, tzinfo=dt.UTC)))

    # -- the mailbox as folders ---------------------------------------------------------------

    def folders(self) -> dict[str, tuple[str, list[GMessage]]]:
        """Folder name → (attributes, its messages in UID order)."""
        binned = {"\\Spam", "\\Trash"}  # spam and trashed mail shows in Spam/Trash only
        out: dict[str, tuple[str, list[GMessage]]] = {}
        for label, (name, attr) in SYSTEM.items():
            out[name] = (attr, [m for m in self.messages if label in m.labels and not (m.labels & binned - {label})])
        out[ALL_MAIL] = ("\\All", [m for m in self.messages if not m.labels & binned])
        user_labels = sorted({lbl for m in self.messages for lbl in m.labels if not lbl.startswith("\\")})
        for label in user_labels:
            out[label] = ("", [m for m in self.messages if label in m.labels and not m.labels & binned])
        return out

    # -- server --------------------------------------------------------------------------------

    def __enter__(self) -> GmailImap:
        fake = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                _Session(fake, self.rfile, self.wfile).run()

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, name="gmail-imap", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()


class _Session:
    def __init__(self, fake: GmailImap, rfile, wfile) -> None:  # type: ignore[no-untyped-def]
        self.fake, self.rfile, self.wfile = fake, rfile, wfile
        self.selected: list[GMessage] | None = None
        self.logged_in = False

    def send(self, data: bytes | str) -> None:
        self.wfile.write(data.encode() if isinstance(data, str) else data)

    def run(self) -> None:
        self.send("* OK Gimap ready for requests from 127.0.0.1\r\n")
        while True:
            line = self.rfile.readline(65536)
            if not line:
                return
            text = line.decode().rstrip("\r\n")
            self.fake.commands.append(text)
            tag, _, rest = text.partition(" ")
            verb, _, args = rest.partition(" ")
            if verb.upper() == "UID":
                verb, _, args = args.partition(" ")
                verb = "UID " + verb
            if not self.dispatch(tag, verb.upper(), args):
                return

    def dispatch(self, tag: str, verb: str, args: str) -> bool:
        if verb == "LOGOUT":
            self.send(f"* BYE LOGOUT Requested\r\n{tag} OK 73 good day (Success)\r\n")
            return False
        if verb == "CAPABILITY":
            self.send(f"* CAPABILITY {CAPABILITY}\r\n{tag} OK Thats all she wrote!\r\n")
        elif verb == "NOOP":
            self.send(f"{tag} OK Success\r\n")
        elif verb == "LOGIN":
            user, password = (_unquote(a) for a in _args(args))
            if (user, password) != (self.fake.user, self.fake.password):
                self.send(f"{tag} NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)\r\n")
            else:
                self.logged_in = True
                self.send(f"{tag} OK [CAPABILITY {CAPABILITY}] {user} authenticated (Success)\r\n")
        elif not self.logged_in:
            self.send(f"{tag} BAD Command not valid in this state\r\n")
        elif verb == "LIST":
            self.list()
            self.send(f"{tag} OK Success\r\n")
        elif verb == "STATUS":
            name = _unquote(_args(args)[0])
            _attr, msgs = self.fake.folders()[name]
            self.send(f'* STATUS "{name}" (UIDVALIDITY {UIDVALIDITY} UIDNEXT {len(msgs) + 1} MESSAGES {len(msgs)})\r\n')
            self.send(f"{tag} OK Success\r\n")
        elif verb in ("EXAMINE", "SELECT"):
            name = _unquote(_args(args)[0])
            _attr, msgs = self.fake.folders()[name]
            self.selected = msgs
            self.send(
                "* FLAGS (\\Answered \\Flagged \\Draft \\Deleted \\Seen)\r\n* OK [PERMANENTFLAGS ()] Flags permitted.\r\n"
                f"* OK [UIDVALIDITY {UIDVALIDITY}] UIDs valid.\r\n* {len(msgs)} EXISTS\r\n* 0 RECENT\r\n"
                f"* OK [UIDNEXT {len(msgs) + 1}] Predicted next UID.\r\n"
                f"{tag} OK [{'READ-ONLY' if verb == 'EXAMINE' else 'READ-WRITE'}] {name} selected. (Success)\r\n"
            )
        elif verb in ("CLOSE", "UNSELECT"):
            self.selected = None
            self.send(f"{tag} OK Returned to authenticated state. (Success)\r\n")
        elif verb == "UID SEARCH" and self.selected is not None and args.upper() == "ALL":
            uids = " ".join(str(i + 1) for i in range(len(self.selected)))
            self.send(f"* SEARCH {uids}\r\n{tag} OK SEARCH completed (Success)\r\n")
        elif verb == "UID FETCH" and self.selected is not None:
            uid_set, _, items = args.partition(" ")
            self.fetch(self.selected, uid_set, [i.upper() for i in _ITEM.findall(items)])
            self.send(f"{tag} OK Success\r\n")
        else:
            self.send(f"{tag} BAD Unknown command {verb} (the fake does not speak it)\r\n")
        return True

    def list(self) -> None:
        self.send('* LIST (\\HasChildren \\Noselect) "/" "[Gmail]"\r\n')
        for name, (attr, _msgs) in self.fake.folders().items():
            attrs = " ".join(a for a in ("\\HasNoChildren", attr) if a)
            self.send(f'* LIST ({attrs}) "/" "{name}"\r\n')

    def fetch(self, msgs: list[GMessage], uid_set: str, items: list[str]) -> None:
        for uid in _uids(uid_set, len(msgs)):
            m = msgs[uid - 1]
            parts = [f"UID {uid}"]
            literals: list[tuple[str, bytes]] = []
            for item in items:
                if item == "RFC822.SIZE":
                    parts.append(f"RFC822.SIZE {len(m.raw)}")
                elif item == "INTERNALDATE":
                    parts.append(f'INTERNALDATE "{m.internaldate.strftime("%d-%b-%Y %H:%M:%S +0000")}"')
                elif item == "FLAGS":
                    parts.append(f"FLAGS ({' '.join(m.flags)})")
                elif item == "X-GM-LABELS":
                    labels = " ".join(_quote(lbl) for lbl in sorted(m.labels))
                    parts.append(f"X-GM-LABELS ({labels})")
                elif item == "BODY.PEEK[]":
                    literals.append(("BODY[]", m.raw))
                elif item == "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]":
                    literals.append(("BODY[HEADER.FIELDS (MESSAGE-ID)]", _message_id_field(m.raw)))
                elif item != "UID":
                    raise ValueError(f"the fake cannot FETCH {item}")
            head = f"* {uid} FETCH ({' '.join(parts)}"
            self.send(head)
            for name, data in literals:
                self.send(f" {name} {{{len(data)}}}\r\n".encode() + data)
            self.send(")\r\n")


def _args(text: str) -> list[str]:
    return re.findall(r'"(?:[^"\\]|\\.)*"|\S+', text)


def _unquote(text: str) -> str:
    if text.startswith('"') and text.endswith('"'):
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    return text


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _uids(uid_set: str, count: int) -> list[int]:
    out: list[int] = []
    for part in uid_set.split(","):
        lo, _, hi = part.partition(":")
        first = count if lo == "*" else int(lo)
        last = first if not hi else count if hi == "*" else int(hi)
        out.extend(u for u in range(min(first, last), max(first, last) + 1) if 1 <= u <= count)
    return out


def _message_id_field(raw: bytes) -> bytes:
    value = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(raw, headersonly=True)["Message-ID"]
    return (f"Message-ID: {value}\r\n\r\n" if value else "\r\n").encode()
