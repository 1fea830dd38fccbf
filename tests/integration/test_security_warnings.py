"""security = "none" towards a host that is not this machine: ``validate`` and ``show`` warn, and every
run logs the warning at its start (engine.model.task_warnings / settings_warnings)."""

from __future__ import annotations

import json
from pathlib import Path

from mailmig_tui.engine import store
from mailmig_tui.engine.model import Smtp
from tests.integration.conftest import Pair
from tests.integration.test_cli_run import TASK, cli, save_task, seed_inboxes

SMTP_WARNING = (
    'smtp.security: security is "none": passwords and mail to smtp.acme.example cross the network unencrypted'
)


def relay_without_tls(pair: Pair) -> None:
    """A relay that is never contacted here (notifications are off), configured without TLS."""
    settings = pair.settings(save=False)
    settings.smtp = Smtp(host="smtp.acme.example", port=25, security="none", sender="mailmig@acme.example")
    store.save_settings(settings)


def test_run_logs_the_warning_at_its_start_and_loopback_does_not_warn(pair: Pair, mailmig_home: Path) -> None:
    seed_inboxes(pair, ("alice",))
    save_task(pair, ("alice",))  # source and destination: security "none" on 127.0.0.1

    quiet = cli(mailmig_home, "run", TASK)

    assert quiet.returncode == 0, quiet.stderr
    assert "WARNING" not in quiet.stdout + quiet.stderr
    assert "security is" not in store.paths().log_file(TASK).read_text()

    relay_without_tls(pair)
    proc = cli(mailmig_home, "run", TASK)

    assert proc.returncode == 0, proc.stderr
    assert f"WARNING {SMTP_WARNING}" in proc.stderr
    lines = store.paths().log_file(TASK).read_text().splitlines()
    started = max(i for i, line in enumerate(lines) if "\trun started: " in line)
    assert lines[started + 1].split("\t")[1:4] == ["WARNING", "", ""]
    assert lines[started + 1].split("\t")[4].startswith(SMTP_WARNING)

    plan = cli(mailmig_home, "run", TASK, "--dry-run")

    assert plan.returncode == 0, plan.stderr
    assert f"WARNING {SMTP_WARNING}" in plan.stderr


def test_validate_and_show_warn(pair: Pair, mailmig_home: Path) -> None:
    task = save_task(pair, ("alice",))
    task.source.host = "mail.acme.example"  # not this machine, still security "none"
    store.save_task(task, old_name=TASK)
    relay_without_tls(pair)
    source_warning = (
        'source.security: security is "none": passwords and mail to mail.acme.example cross the network unencrypted'
    )

    validate = cli(mailmig_home, "validate", TASK)

    assert validate.returncode == 0, validate.stderr
    assert validate.stdout == f"Task {TASK} is valid.\n"
    warnings = validate.stderr.splitlines()
    assert [w.split(":", 1)[0] for w in warnings] == ["warning"] * 2, warnings
    assert warnings[0].startswith(f"warning: {source_warning}") and warnings[1].startswith(f"warning: {SMTP_WARNING}")

    as_json = json.loads(cli(mailmig_home, "validate", TASK, "--json").stdout)
    assert as_json["problems"] == []
    assert [w["field"] for w in as_json["warnings"]] == ["source.security", "smtp.security"]

    show = cli(mailmig_home, "show", TASK)

    assert show.returncode == 0, show.stderr
    assert f"  warning     {source_warning}" in "\n".join(show.stdout.splitlines())
    assert "smtp" not in show.stdout, "show is about the task; validate checks the settings too"
