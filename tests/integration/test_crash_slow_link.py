"""A run SIGKILLed while a MULTIAPPEND is on a slow link, and run again at once (DESIGN.md §2).

The destination is reached through a relay on 127.0.0.1 that passes the client's bytes on at
about 2.7 MB/s (8 KB per 3 ms) after taking them at once: the killed run's last batch reaches
Dovecot, and is stored, while the next run is already looking at the folder. Nothing may be
there twice, whatever the kill point.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailmig_tui.engine import runner, store
from tests.integration.conftest import Pair, contents, message, when
from tests.integration.test_resume import CLI, assert_same, count, extra, seed_fast
from tests.servers import mailbox as mb
from tests.servers.relay import SlowRelay

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


@pytest.fixture
def relay(pair: Pair) -> Iterator[SlowRelay]:
    link = SlowRelay(("127.0.0.1", pair.dst.port), chunk=8192, delay=0.003)
    yield link
    link.close()


def thousand_messages() -> dict[str, list[mb.Msg]]:
    body = b"".join(b"line %04d of a message of about sixteen kilobytes, to fill the link\r\n" % i for i in range(230))
    msgs = [
        mb.Msg(message(n, message_id=n % 9 != 0, body=body), ("\\Seen",) if n % 2 else (), when(2022, 1, 1 + n % 28))
        for n in range(1000)
    ]
    return {"INBOX": msgs[:600], "Projects": msgs[600:]}


@pytest.mark.parametrize("kill_after", [1.0, 1.5, 2.0, 2.5])
def test_sigkill_during_a_slow_append_then_an_immediate_rerun_duplicates_nothing(
    pair: Pair, relay: SlowRelay, tmp_path: Path, kill_after: float
) -> None:
    seed_fast(pair.src, "alice", thousand_messages())
    src = contents(pair.src, "alice")
    task = pair.task()
    settings = pair.settings(save=False)
    settings.destination.port = relay.port
    store.save_settings(settings)

    with (tmp_path / "killed.stderr").open("wb") as stderr:
        proc = subprocess.Popen(
            [str(CLI), "run", task.name],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=os.environ,
        )
        try:
            time.sleep(kill_after)
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=10) == -signal.SIGKILL, "the run ended before the kill"
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    again = subprocess.run(
        [str(CLI), "run", task.name],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=100,
        env=os.environ,
    )
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert relay.wait_idle(60), "the relay still holds bytes a minute later"
    dst = contents(pair.dst, "alice")
    assert not extra(src, dst), f"{count(dst) - count(src)} duplicate(s) after the re-run"
    assert_same(src, dst)

    third = runner.run_task(task, settings)
    assert (third.status, third.accounts[0].copied) == ("completed", 0)
    assert_same(src, contents(pair.dst, "alice"))
