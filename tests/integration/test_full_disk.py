"""A log file that cannot be opened, a log or data disk that fills up mid-run: a message naming the
path and the fix, never a traceback, and the copy resumes once there is room."""

from __future__ import annotations

import os
import resource
import subprocess

from mailmig_tui.engine import store
from tests.integration.conftest import Pair, contents, message, when
from tests.integration.test_resume import CLI, assert_same
from tests.servers import mailbox as mb


def run_cli(*args: str, fsize: int | None = None) -> subprocess.CompletedProcess[str]:
    def limit() -> None:  # the file size limit makes writes past it fail (EFBIG), as a full disk does
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run(
        [str(CLI), *args], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=90,
        env=os.environ, preexec_fn=limit,
    )  # fmt: skip


def seed(pair: Pair, n: int = 60) -> None:
    mb.seed(pair.src, "alice", {"INBOX": [mb.Msg(message(i), (), when(2022, 3, 1 + i % 28)) for i in range(n)]})


def test_a_log_file_that_cannot_be_opened_stops_the_run_before_it_starts(pair: Pair) -> None:
    seed(pair)
    task, _ = pair.task(), pair.settings()
    log = store.paths().log_file(task.name)
    log.mkdir(parents=True)  # a directory in its place: not writable, even for root
    result = run_cli("run", task.name)
    assert result.returncode == 3, result.stderr
    assert f"the log file {log} cannot be written (Is a directory)" in result.stderr
    assert "Traceback" not in result.stderr
    assert sum(map(len, contents(pair.dst, "alice").values())) == 0


def test_a_full_log_disk_stops_the_run_cleanly_and_it_resumes(pair: Pair) -> None:
    seed(pair)
    task, _ = pair.task(), pair.settings()
    log = store.paths().log_file(task.name)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("x" * 4_000_000 + "\n")  # the state database stays far below the limit
    full = run_cli("run", task.name, fsize=4_000_300)
    assert "Traceback" not in full.stderr + full.stdout
    assert f"the log file {log} cannot be written (File too large): stopping the run" in full.stdout + full.stderr
    assert full.returncode != 0
    again = run_cli("run", task.name)
    assert again.returncode == 0, again.stdout + again.stderr
    assert_same(contents(pair.src, "alice"), contents(pair.dst, "alice"))


def test_a_full_data_disk_names_the_state_database(pair: Pair) -> None:
    seed(pair)
    task, _ = pair.task(), pair.settings()
    state = store.paths().state_file(task.name)
    full = run_cli("run", task.name, fsize=20_000)  # the state database cannot even be created
    assert "Traceback" not in full.stderr + full.stdout
    assert f"{state}" in full.stdout + full.stderr
    assert "cannot be written" in full.stdout + full.stderr and "free space" in full.stdout + full.stderr
    assert full.returncode in (1, 2)
    again = run_cli("run", task.name)
    assert again.returncode == 0, again.stdout + again.stderr
    assert_same(contents(pair.src, "alice"), contents(pair.dst, "alice"))
