"""The installed ``mailmig-tui`` driven as an admin drives it: in a terminal (a private tmux server),
keys in with ``tmux send-keys``, the screen read back with ``tmux capture-pane``.

Create a task by keyboard, import its user list from a CSV file, start it, watch it finish on the info
screen, quit; then check what the destination Dovecot holds and that the program exited with status 0.
Nothing here reaches into the app: only the global settings are written beforehand, as ``mailmig-tui``
expects to find them.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mailmig_tui.engine import model, store
from tests.integration.conftest import Pair, contents, message, when
from tests.servers import mailbox as mb

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (.ci/run installs it)"),
]

WIDTH, HEIGHT = 120, 40
STEP_TIMEOUT = 15.0
RUN_TIMEOUT = 60.0
USERS = ("alice", "bob")
ANSI = re.compile(r"\x1b\[[0-9;:?]*[ -/]*[@-~]")


# tmux 3.3a at times never reaps a pane's process (its SIGCHLD is lost): #{pane_dead} turns 1 but
# #{pane_dead_status} stays empty. So a shell runs the program and writes its exit status to a file.
RECORD_STATUS = '"$1"; echo $? > "$2"'


class Terminal:
    """One program in a tmux pane on a private tmux server (its own socket, no configuration file)."""

    def __init__(self, status_file: Path) -> None:
        self.socket = f"mailmig-smoke-{os.getpid()}-{secrets.token_hex(4)}"
        self.target = "smoke"
        self.status_file = status_file
        self.group: int | None = None  # the pane's process group: the shell and the program
        self.socket_path: Path | None = None

    def tmux(self, *args: str, env: dict[str, str] | None = None) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, "-f", "/dev/null", *args],
            capture_output=True, text=True, env=env, timeout=10, check=False, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"tmux {' '.join(args)}: exit {done.returncode}: {done.stderr.strip()}")
        return done.stdout

    def start(self, program: str, env: dict[str, str]) -> None:
        """Run ``program`` in a WIDTH x HEIGHT pane that stays after it exits (its status goes to ``status_file``)."""
        argv = ["sh", "-c", RECORD_STATUS, "sh", program, str(self.status_file)]
        # COLUMNS/LINES (pytest-xdist sets 80x24) would override the pane's size: Textual asks shutil
        base = {k: v for k, v in os.environ.items() if k not in ("TMUX", "COLUMNS", "LINES")} | env
        options = [a for name, value in env.items() for a in ("-e", f"{name}={value}")]
        self.tmux(
            "start-server", ";",
            "set-option", "-g", "remain-on-exit", "on", ";",
            "set-option", "-g", "default-terminal", env.get("TERM", "xterm-256color"), ";",
            "new-session", "-d", "-s", self.target, "-x", str(WIDTH), "-y", str(HEIGHT), *options, *argv,
            env=base,
        )  # fmt: skip
        self.group = int(self.pane("pane_pid"))  # tmux makes each pane's process a session leader
        self.socket_path = Path(self.pane("socket_path"))

    def kill(self) -> None:
        """Stop the tmux server (its pane gets SIGHUP), make sure the program is gone, remove the socket."""
        try:
            self.tmux("kill-server")
        except (RuntimeError, subprocess.TimeoutExpired):
            pass  # already gone
        deadline = time.monotonic() + 10
        while self.group is not None and _group_running(self.group):
            if time.monotonic() > deadline:
                os.killpg(self.group, signal.SIGKILL)
                break
            time.sleep(0.1)
        if self.socket_path is not None:
            self.socket_path.unlink(missing_ok=True)

    def pane(self, variable: str) -> str:
        return self.tmux("display-message", "-p", "-t", self.target, f"#{{{variable}}}").strip()

    def keys(self, *keys: str) -> None:
        """Press keys by tmux name: ``Tab``, ``Enter``, ``Escape``, ``C-s``, ``F5``, ``Down``, ``n``."""
        self.tmux("send-keys", "-t", self.target, *keys)

    def type(self, text: str) -> None:
        self.tmux("send-keys", "-t", self.target, "-l", text)

    def screen(self, *, styled: bool = False) -> str:
        return self.tmux("capture-pane", "-p", "-t", self.target, *(["-e"] if styled else []))

    def line(self, label: str, *, styled: bool = False) -> str:
        """The first screen line that begins with ``label`` (after blanks and a dialog's border), as shown."""
        start = re.compile(r"^[\s│]*" + re.escape(label))
        for raw in self.screen(styled=True).splitlines():
            plain = ANSI.sub("", raw)
            if start.match(plain):
                return raw if styled else plain.strip(" │")
        return ""

    def wait_for(self, text: str, timeout: float = STEP_TIMEOUT) -> str:
        return self.wait_until(lambda screen: text in screen, f"{text!r} on the screen", timeout)

    def wait_until(self, check: Callable[[str], object], what: str, timeout: float = STEP_TIMEOUT) -> str:
        """Poll the screen every 0.1 s until ``check(screen)`` is true; the screen, or a failure that shows it."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if check(screen):
                return screen
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout} s waiting for {what}; the screen:\n{screen}", pytrace=False)
            time.sleep(0.1)

    def wait_line(self, label: str, text: str, timeout: float = STEP_TIMEOUT) -> None:
        """Wait until the line of ``label`` (a form field) shows ``text``."""
        self.wait_until(lambda _: text in self.line(label), f"{label!r} to show {text!r}", timeout)

    def wait_caret(self, label: str) -> None:
        """Wait until the line of ``label`` blinks: the caret of the focused Input (others do not blink).

        For an Input focused when its screen opens; the screen can be drawn a moment before that.
        """
        seen: set[str] = set()

        def blinks(_: str) -> bool:
            seen.add(self.line(label, styled=True))
            return len(seen - {""}) > 1

        self.wait_until(blinks, f"a blinking caret on the line of {label!r}")

    def move_focus(self, keys: list[str], label: str) -> None:
        """Press ``keys`` and wait until the line of ``label`` is drawn as focused (its look changes).

        Keys that arrive before Textual has moved the focus go to the widget that had it, so typing
        only starts once the new field shows it has the focus.
        """
        before = self.line(label, styled=True)
        assert before, f"no line {label!r} on the screen:\n{self.screen()}"
        self.keys(*keys)
        self.wait_until(lambda _: self.line(label, styled=True) != before, f"the focus on {label!r}")


def _group_running(pgid: int) -> bool:
    """Whether a process of the group is still running (an exited one not yet reaped does not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _ppid, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        if int(pgrp) == pgid and state != "Z":
            return True
    return False


@pytest.fixture
def term(tmp_path: Path) -> Iterator[Terminal]:
    """A private tmux server, killed at teardown whatever happened."""
    terminal = Terminal(tmp_path / "exit-status")
    try:
        yield terminal
    finally:
        terminal.kill()


def seed_source(pair: Pair) -> dict[str, dict[str, list]]:
    """alice and bob: 25 messages each in INBOX, Sent and Work/Projects, with flags and dates; their contents."""
    n = 0
    for user in USERS:
        folders: dict[str, list[mb.Msg]] = {"INBOX": [], "Sent": [], "Work/Projects": []}
        for i in range(25):
            n += 1
            folder = ("INBOX", "INBOX", "Sent", "Work/Projects")[i % 4]
            flags = (("\\Seen",), (), ("\\Seen", "\\Flagged"), ("\\Answered",))[i % 4]
            folders[folder].append(
                mb.Msg(message(n, subject=f"{user} [{folder}] #{i}"), flags, when(2023, 1 + i % 12, 3))
            )
        mb.seed(pair.src, user, folders)
    return {user: contents(pair.src, user) for user in USERS}


def test_create_import_start_watch_quit(pair: Pair, tmp_path: Path, mailmig_home: Path, term: Terminal) -> None:
    program = shutil.which("mailmig-tui")
    assert program, "the console script mailmig-tui is not on PATH: pip install -e . first"
    before = seed_source(pair)
    store.save_settings(
        model.Settings(
            model.Destination(
                host="127.0.0.1", port=pair.dst.port, security="none", auth="master",
                login=pair.dst.master_user, password=pair.dst.master_password,
            )
        )
    )  # fmt: skip
    csv = tmp_path / "users.csv"
    csv.write_text("source,password,destination\n" + "".join(f"{u},{pair.src.users[u]},{u}\n" for u in USERS))
    port = str(pair.src.port)

    term.start(
        program,
        {"MAILMIG_HOME": str(mailmig_home), "TERM": "xterm-256color", "TEXTUAL_ANIMATIONS": "none"},
    )
    lines = term.wait_for("No tasks yet").splitlines()
    assert len(lines) == HEIGHT and "Quit" in lines[-1], "the app fills the pane, its footer on the last line"

    # A new task, General tab: name, address, port, security "none" (tab order; types and preset left as they are).
    term.keys("n")
    term.wait_for("New task")
    term.wait_caret("Task name")
    term.type("smoke")
    term.wait_line("Task name", "smoke")
    term.move_focus(["Tab", "Tab", "Tab"], "Server address")
    term.type("127.0.0.1")
    term.wait_line("Server address", "127.0.0.1")
    term.move_focus(["Tab"], "Port")
    term.keys("Home", "C-k")
    term.wait_until(lambda _: term.line("Port") == "Port", "the port field to be empty")
    term.type(port)
    term.wait_line("Port", port)
    term.move_focus(["Tab"], "Security")
    term.keys("Enter")
    term.wait_for("None (unencrypted)")
    term.keys("Down", "Down", "Enter")
    term.wait_line("Security", "None (unencrypted)")
    assert "cross the network unencrypted" not in term.screen(), "no warning for 127.0.0.1"
    term.keys("C-s")
    term.wait_for("Saved task smoke.")
    term.wait_for("Edit task")
    # Toasts cover the lower right corner, where the import dialog has its buttons: let this one go first.
    term.wait_until(lambda screen: "Saved task smoke." not in screen, "the toast to go", timeout=10)

    # User list tab: import the CSV file (the preview first), then save and leave.
    term.keys("F5")
    term.wait_for("No accounts yet")
    term.wait_for("Import CSV")  # in the footer: the user list has the focus
    term.keys("i")
    term.wait_for("Import accounts from a CSV file")
    term.wait_caret("/path/to/users.csv")
    term.type(str(csv))
    term.wait_for("2 valid account(s), 0 bad line(s)")
    term.wait_for("(the first line is a column header and was skipped)")
    term.wait_for("line 2: alice → alice (password set)")
    term.move_focus(["Enter"], "Import all")  # enter in the path field goes to the first enabled button
    term.keys("Enter")
    screen = term.wait_for("2 account(s).")
    for user in USERS:
        assert re.search(rf"^\s*{user}\s+•••\s+{user}\s+not started", screen, re.M), screen
    term.keys("C-s")
    term.keys("Escape")  # with unsaved changes the editor would ask first: the next wait would fail

    # The task list: start the task, open its info screen, watch the run finish.
    term.wait_for(f"smoke: 2 account(s) from 127.0.0.1:{port} (none)")
    term.keys("s")
    term.wait_until(lambda screen: any(w in screen for w in ("starting…", "running", "completed")), "the task to start")
    term.keys("i")
    term.wait_for("Task info")
    term.wait_for("Status: completed", timeout=RUN_TIMEOUT)
    term.wait_for("accounts complete: 2/2")
    screen = term.wait_for("run completed: 2 complete, 0 failed, 0 stopped")  # the log pane's last line
    for user in USERS:
        folders, copied = len(before[user]), sum(len(msgs) for msgs in before[user].values())
        row = rf"^\s*{user}\s+complete\s+{folders}\s+{copied}\s+0\s+0\s"  # folders, copied, skipped, failed
        assert re.search(row, screen, re.M), screen

    for user in USERS:
        assert contents(pair.src, user) == before[user], "the source must not change"
        dst = contents(pair.dst, user)
        assert {k: v for k, v in dst.items() if v or k in before[user]} == before[user]

    # Back to the list, then quit: the program ends, with status 0.
    term.keys("Escape")
    term.wait_for("smoke: 2 account(s) from 127.0.0.1")
    term.wait_for("last run completed")
    term.keys("C-q")
    term.wait_until(lambda _: term.pane("pane_dead") == "1", "the program to exit", timeout=10)
    assert term.status_file.read_text().strip() == "0", term.screen()
    # the terminal is given back as it was: main screen, no mouse reporting
    assert (term.pane("alternate_on"), term.pane("mouse_any_flag")) == ("0", "0")
