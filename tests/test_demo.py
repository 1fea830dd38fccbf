"""`mailmig-tui demo --headless`: two throwaway servers, sample mail, a complete migration, then cleanup."""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path


def test_demo_runs_a_whole_migration_and_leaves_nothing_behind() -> None:
    before = set(Path(tempfile.gettempdir()).glob("mailmig-demo-*"))
    done = subprocess.run(
        [sys.executable, "-m", "mailmig_tui", "demo", "--headless", "--messages", "25"],
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = re.findall(r"^(\S+) → \S+: complete; 7 folder\(s\), (\d+) copied", done.stdout, re.M)
    assert sorted(summary) == [("ann@demo.example", "25"), ("ben@demo.example", "25"), ("cleo@demo.example", "25")]
    assert "Task demo: last run" in done.stdout
    assert "demo-pw" not in done.stdout + done.stderr
    assert set(Path(tempfile.gettempdir()).glob("mailmig-demo-*")) == before
