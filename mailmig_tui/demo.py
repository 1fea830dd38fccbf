"""``mailmig-tui demo``: a whole migration between two throwaway local IMAP servers.

Starts two in-memory IMAP servers on free 127.0.0.1 ports (a "source" full of generated sample
mail and an empty "destination"), writes a ready task and settings into a throwaway home, and opens
the app on it (or, with ``--headless``, runs the task and prints the report). Everything is removed
on exit; no real server is touched.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

from imapclient import IMAPClient

from mailmig_tui.embedded_imap import EmbeddedImapServer

USERS = {"ann@demo.example": "ann-demo-pw", "ben@demo.example": "ben-demo-pw", "cleo@demo.example": "cleo-demo-pw"}
FOLDERS = ["INBOX", "Sent", "Drafts", "Archive", "Projects/Alpha", "Projects/Beta", "Reisen/Übersicht"]
MASTER = ("mailmig-admin", "demo-master-pw")
TASK_NAME = "demo"
SUBJECTS = [
    "Quarterly figures",
    "Re: [urgent] server move",
    "Lunch on Friday?",
    "Invoice 2024-{n:04d}",
    "Meeting notes",
    "Grüße aus Köln",
    "Your ticket #{n}",
    "Fwd: photos",
]
FLAGS = [(), (b"\\Seen",), (b"\\Seen", b"\\Answered"), (b"\\Seen", b"$Forwarded"), (b"\\Flagged",)]


@dataclass
class Demo:
    home: Path
    source: EmbeddedImapServer
    destination: EmbeddedImapServer
    messages: int


def sample_message(rng: random.Random, n: int, user: str, when: dt.datetime) -> bytes:
    """A plausible message: plain text, sometimes an HTML alternative or a small attachment."""
    msg = EmailMessage()
    peer = rng.choice(["dana@partner.example", "eli@supplier.example", "fay@demo.example"])
    msg["From"], msg["To"] = (peer, user) if rng.random() < 0.7 else (user, peer)
    msg["Subject"] = rng.choice(SUBJECTS).format(n=n)
    msg["Date"] = format_datetime(when)
    if rng.random() > 0.05:  # a few messages have no Message-ID, as real mailboxes do
        msg["Message-ID"] = make_msgid(idstring=str(n), domain="demo.example")
    text = "\n".join(f"Line {i} of message {n}: " + "lorem ipsum dolor sit amet " * rng.randint(1, 4) for i in range(8))
    msg.set_content(text + "\n")
    kind = rng.random()
    if kind < 0.25:
        msg.add_alternative(f"<html><body><p>{text.replace(chr(10), '<br>')}</p></body></html>\n", subtype="html")
    elif kind < 0.35:
        msg.add_attachment(bytes(rng.getrandbits(8) for _ in range(2048)), maintype="application",
                           subtype="octet-stream", filename=f"data-{n}.bin")  # fmt: skip
    return bytes(msg).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def fill_source(server: EmbeddedImapServer, per_user: int, seed: int = 2026) -> int:
    """Generated folders and messages for every demo user; returns how many messages were stored."""
    rng = random.Random(seed)
    start = dt.datetime(2016, 1, 1, tzinfo=dt.UTC)
    total = 0
    for user, password in server.users.items():
        client = IMAPClient(server.host, port=server.port, ssl=False, timeout=30)
        client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no delayed-ACK stall per APPEND
        try:
            client.login(user, password)
            for folder in FOLDERS:
                if folder != "INBOX":
                    client.create_folder(folder)
                    client.subscribe_folder(folder)
            for i in range(per_user):
                when = start + dt.timedelta(minutes=rng.randint(0, 10 * 365 * 24 * 60))
                folder = rng.choices(FOLDERS, weights=[8, 3, 1, 3, 2, 2, 1])[0]
                client.append(folder, sample_message(rng, total + i, user, when), rng.choice(FLAGS), when)
            total += per_user
        finally:
            client.logout()
    return total


@contextmanager
def demo_environment(per_user: int = 120) -> Iterator[Demo]:
    """Servers, sample mail, task and settings in a throwaway ``MAILMIG_HOME``; all removed afterwards."""
    from mailmig_tui.engine import store
    from mailmig_tui.engine.model import Destination, Settings, Source, Task, User

    base = Path(tempfile.mkdtemp(prefix="mailmig-demo-"))
    previous = os.environ.get(store.HOME_ENV)
    os.environ[store.HOME_ENV] = str(base / "home")
    source = EmbeddedImapServer(base / "source", users=USERS, master_user=MASTER[0], master_password=MASTER[1])
    destination = EmbeddedImapServer(
        base / "destination", users={u: p + "-dest" for u, p in USERS.items()}, master_user=MASTER[0],
        master_password=MASTER[1],
    )  # fmt: skip
    try:
        source.start()
        destination.start()
        count = fill_source(source, per_user)
        task = Task(
            name=TASK_NAME,
            source=Source(type="imap", host=source.host, port=source.port, security="none"),
            users=[User(u, u, password=p) for u, p in USERS.items()],
        )
        task.run.concurrency = 3
        store.save_task(task)
        store.save_settings(
            Settings(
                Destination(
                    host=destination.host,
                    port=destination.port,
                    security="none",
                    auth="authzid",
                    login=MASTER[0],
                    password=MASTER[1],
                )  # fmt: skip
            )
        )
        yield Demo(base / "home", source, destination, count)
    finally:
        source.stop()
        destination.stop()
        if previous is None:
            os.environ.pop(store.HOME_ENV, None)
        else:
            os.environ[store.HOME_ENV] = previous
        shutil.rmtree(base, ignore_errors=True)


def run_demo(*, headless: bool, per_user: int = 120) -> int:
    """The ``demo`` command: open the app on the demo task, or run it headless and report."""
    try:
        import pymap  # noqa: F401 - only to give a clear message when the extra is missing
    except ImportError:
        print("mailmig-tui demo needs the demo extra: python3 -m pip install 'mailmig-tui[demo]' (or '.[demo]')")
        return 2
    print("Starting two throwaway IMAP servers on 127.0.0.1 and generating sample mail…", flush=True)
    with demo_environment(per_user) as demo:
        print(
            f"Source 127.0.0.1:{demo.source.port} holds {demo.messages} messages for {len(USERS)} users; "
            f"destination 127.0.0.1:{demo.destination.port}. Task: {TASK_NAME}.",
            flush=True,
        )
        if headless:
            from mailmig_tui.cli import main

            code = main(["run", TASK_NAME])
            main(["report", TASK_NAME])
            return code
        from mailmig_tui.app import MailmigApp

        app = MailmigApp()
        app.run()
        return app.return_code or 0
