"""The two private Dovecots of a bench run, their users, and their CPU time.

Uses the test bed's DovecotServer unchanged (tests/servers/dovecot.py).  Server CPU is read
from /proc: the master's own and reaped children's time (``cutime``/``cstime``: every imap
process is the master's child and is reaped when its session ends) plus the live children's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench import corpus

try:
    from tests.servers.dovecot import MAIL_GID, MAIL_UID, DovecotServer
except ImportError:  # run from elsewhere than the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.servers.dovecot import MAIL_GID, MAIL_UID, DovecotServer

CLK_TCK = os.sysconf("SC_CLK_TCK")
SESSION_END_TIMEOUT = 10.0


class BenchDovecot(DovecotServer):
    """The test bed's server, with extra settings appended to its configuration (e.g.
    ``mail_fsync = never``, to see how much of a copy is the destination's fsync)."""

    def __init__(self, *args: object, extra_config: str = "", **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.extra_config = extra_config

    def _config_text(self) -> str:
        return super()._config_text() + self.extra_config


def make_root(parent: Path, name: str) -> Path:
    root = parent / name
    root.mkdir(parents=True)
    root.chmod(0o755)
    return root


def install_corpus(server: DovecotServer, user: str, template: Path) -> None:
    """Put a generated Maildir in place as ``user``'s mailbox (before the user's first login)."""
    owner = (MAIL_UID, MAIL_GID) if os.geteuid() == 0 else (None, None)
    corpus.install(template, server.maildir(user), *owner)


def drop_mailbox(server: DovecotServer, user: str) -> None:
    """Delete a destination mailbox that is no longer needed (frees the disk between reps)."""
    shutil.rmtree(server.mail_root / user, ignore_errors=True)


def _stat(pid: int) -> tuple[int, float, float] | None:
    """(ppid, own CPU s, reaped children's CPU s) of a process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = raw[raw.rindex(b")") + 2 :].split()
    ppid = int(fields[1])
    own = (int(fields[11]) + int(fields[12])) / CLK_TCK
    reaped = (int(fields[13]) + int(fields[14])) / CLK_TCK
    return ppid, own, reaped


def master_pid(server: DovecotServer) -> int | None:
    try:
        return int((server.root / "run" / "master.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def cpu_seconds(server: DovecotServer) -> float:
    """All CPU the instance used so far: master, live children, reaped children."""
    pid = master_pid(server)
    if pid is None:
        return 0.0
    st = _stat(pid)
    if st is None:
        return 0.0
    total = st[1] + st[2]
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            child = _stat(int(entry.name))
            if child is not None and child[0] == pid:
                total += child[1] + child[2]
    return total


def imap_sessions(server: DovecotServer) -> int:
    """How many imap (mail) processes of this instance are running."""
    result = subprocess.run(
        ["pgrep", "-c", "-f", f"{server.instance_name}/imap$"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=10,
    )  # fmt: skip
    try:
        return int(result.stdout.strip() or 0)
    except ValueError:
        return 0


def wait_sessions_end(*servers: DovecotServer, timeout: float = SESSION_END_TIMEOUT) -> None:
    """Wait (bounded) until no imap process is left, so CPU totals and mailboxes are final."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(imap_sessions(s) == 0 for s in servers):
            return
        time.sleep(0.05)
