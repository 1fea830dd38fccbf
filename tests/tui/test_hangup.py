"""The real program in a pseudo-terminal loses its terminal mid-run (as when SSH drops): the run stops
cleanly, the program exits, and the next run resumes without duplicating anything."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import sys
import termios
import threading
import time

import pytest

from mailmig_tui.engine import runner, store
from mailmig_tui.engine.state import StateDB
from mailmig_tui.engine.status import StatusReader
from tests.integration.conftest import Pair, contents
from tests.tui.test_runs import seed_many

pytestmark = pytest.mark.slow

MESSAGES = 3000


class Terminal:
    """The master side of a pty running ``python -m mailmig_tui``; its output is read continuously."""

    def __init__(self) -> None:
        env = dict(os.environ, TERM="xterm-256color", COLUMNS="100", LINES="30")
        pid, fd = pty.fork()
        if pid == 0:  # the child: a session leader whose controlling terminal is the pty
            os.execve(sys.executable, [sys.executable, "-m", "mailmig_tui"], env)
        self.pid, self.fd = pid, fd
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
        self.output = bytearray()
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.fd], [], [], 0.05)
            if ready:
                try:
                    data = os.read(self.fd, 65536)
                except OSError:
                    return
                if not data:
                    return
                self.output.extend(data)

    def wait_for_output(self, text: bytes, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            assert time.monotonic() < deadline, f"{text!r} never appeared"
            time.sleep(0.05)

    def hang_up(self) -> None:
        """Close the master side: the kernel hangs up the terminal and sends SIGHUP to the program."""
        self._stop.set()
        self._reader.join(timeout=5)
        os.close(self.fd)

    def wait_exit(self, timeout: float = 60) -> int | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.05)
        return None

    def kill(self) -> None:
        try:
            os.kill(self.pid, 9)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def copied_so_far() -> int:
    summaries, _ = StatusReader().state("acme")
    return summaries["alice"].copied if "alice" in summaries else 0


def test_sighup_in_a_real_terminal_stops_the_run_resumably(pair: Pair):
    seed_many(pair.src, "alice", MESSAGES)
    pair.task(["alice"])
    settings = pair.settings()
    term = Terminal()
    try:
        term.wait_for_output(b"acme")
        time.sleep(0.5)  # the first poll of the task list
        os.write(term.fd, b"s")
        deadline = time.monotonic() + 30
        while copied_so_far() == 0:
            assert time.monotonic() < deadline, "the run never copied anything"
            time.sleep(0.05)
        assert runner.lock_holder(runner.lock_path(store.paths(), "acme"))["by"] == "tui"
        term.hang_up()
        code = term.wait_exit()
        assert code is not None, "the program did not exit after losing its terminal"
        assert code >= 0, f"killed by signal {-code}: the hangup was not handled"
    finally:
        term.kill()
    p = store.paths()
    assert runner.lock_holder(runner.lock_path(p, "acme")) is None
    db = StateDB.open_readonly(p.state_file("acme"))
    try:
        assert db.last_run()["status"] == "stopped"
        assert db.summaries()["alice"].status == "stopped"
    finally:
        db.close()
    partial = len(contents(pair.dst, "alice").get("INBOX", []))
    assert 0 < partial < MESSAGES
    assert partial == copied_so_far(), "every message at the destination is recorded"
    again = runner.run_task(store.load_task("acme"), settings)
    assert again.status == "completed"
    assert again.accounts[0].copied == MESSAGES - partial
    assert sorted(contents(pair.dst, "alice")["INBOX"]) == sorted(contents(pair.src, "alice")["INBOX"])
