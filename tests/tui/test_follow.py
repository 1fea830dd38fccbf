"""The log pane of Task info keeps following the end across a run's stop, a new run and a terminal
resize, unless the admin scrolled up on purpose (then ``f`` follows again). Real Dovecot pair."""

from __future__ import annotations

import pytest
from textual.widgets import Log

from mailmig_tui.app import MailmigApp
from mailmig_tui.engine.account import Limits
from mailmig_tui.screens.info import InfoScreen
from tests.integration.conftest import Pair
from tests.tui.helpers import wait_for
from tests.tui.test_info_screen import rec, write_log
from tests.tui.test_runs import Gate, seed_many

pytestmark = pytest.mark.slow


def at_end(log: Log) -> bool:
    return log.max_scroll_y > 0 and log.is_vertical_scroll_end


async def test_the_log_follows_across_stop_new_run_and_resize(pair: Pair):
    seed_many(pair.src, "alice", 60)
    pair.task(["alice"])
    pair.settings()
    write_log([rec(i % 3600, text=f"old line {i}") for i in range(300)])
    gate = Gate(allow=2)
    app = MailmigApp(runner_options={"limits": Limits(batch_messages=10), "destination_factory": gate.factory})
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("i")
        await wait_for(pilot, lambda: isinstance(app.screen, InfoScreen) and app.screen.history_loaded)
        info = app.screen
        assert isinstance(info, InfoScreen)
        log = info.pane.log_widget
        await wait_for(pilot, lambda: log.line_count == 300 and at_end(log), what="the history, at its end")

        await pilot.press("s")
        await wait_for(pilot, lambda: gate.holding.is_set(), what="the run to be mid-way")
        await pilot.press("x")
        gate.release()
        await app.workers.wait_for_complete()
        await wait_for(pilot, lambda: not app.runs and any("run stopped" in x for x in log.lines), what="the stop")
        await wait_for(pilot, lambda: "run stopped" in log.lines[-1] and at_end(log), timeout=5, what="end after stop")

        gate = Gate(allow=1000)
        app.runner_options["destination_factory"] = gate.factory
        await wait_for(pilot, lambda: info.check_action("start", ()) is True, timeout=5, what="Start available")
        await pilot.press("s")
        await app.workers.wait_for_complete()
        await wait_for(pilot, lambda: not app.runs and "run completed" in log.lines[-1], what="the second run")
        await wait_for(pilot, lambda: at_end(log), timeout=5, what="end after the second run")

        await pilot.resize_terminal(100, 26)
        await pilot.pause()
        write_log([rec(3000, text="after the resize")])
        await wait_for(pilot, lambda: log.lines[-1].endswith("after the resize"), timeout=5, what="the follower")
        await wait_for(pilot, lambda: at_end(log), timeout=5, what="end after the resize")

        log.scroll_to(y=5, animate=False)  # the admin reads further up: new lines do not pull them down
        await pilot.pause()
        await pilot.resize_terminal(110, 30)
        write_log([rec(3001, text="while reading")])
        await wait_for(pilot, lambda: log.lines[-1].endswith("while reading"), timeout=5, what="the follower")
        await pilot.pause()
        assert log.scroll_y == 5
        await pilot.press("f")
        await pilot.pause()
        write_log([rec(3002, text="followed again")])
        await wait_for(pilot, lambda: log.lines[-1].endswith("followed again"), timeout=5, what="the follower")
        await wait_for(pilot, lambda: at_end(log), timeout=5, what="end after f")
