"""Verify a user list before migrating: can we read each source account, and is each destination
account enabled (its login works and INBOX can be selected)? Accounts are checked in parallel."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from mailmig_tui.engine import imapconn
from mailmig_tui.engine.model import Settings, Task, User


@dataclass(frozen=True)
class Verdict:
    account: str
    destination: str
    source_ok: bool
    source_detail: str
    dest_ok: bool
    dest_detail: str

    @property
    def ok(self) -> bool:
        return self.source_ok and self.dest_ok

    def text(self) -> str:
        if self.ok:
            return f"OK: source {self.source_detail}; destination {self.dest_detail}"
        problems = []
        if not self.source_ok:
            problems.append(f"source: {self.source_detail}")
        if not self.dest_ok:
            problems.append(f"destination: {self.dest_detail}")
        return "; ".join(problems)


def check_source(task: Task, user: User) -> tuple[bool, str]:
    if task.source.type == "google":
        from mailmig_tui.engine.sources.gmail import check_account

        return check_account(task, user)
    if task.source.type == "microsoft365":
        from mailmig_tui.engine.sources.graph import check_mailbox

        return check_mailbox(task, user)
    if task.source.type != "imap":
        return False, f"the {task.source.type} source is not available in this version"
    try:
        client = imapconn.open_source(task.source, user, timeout=30)
    except imapconn.ImapError as exc:
        return False, str(exc)
    try:
        st = client.folder_status("INBOX", [b"MESSAGES"])
        return True, f"login OK, INBOX holds {st.get(b'MESSAGES', 0)} message(s)"
    except Exception as exc:  # noqa: BLE001 - reported as the verdict
        return False, f"login OK but INBOX cannot be read: {exc}"
    finally:
        imapconn.close_quietly(client)


def check_destination(settings: Settings, user: User) -> tuple[bool, str]:
    try:
        client = imapconn.open_destination(settings.destination, user, timeout=30)
    except imapconn.ImapError as exc:
        return False, str(exc)
    try:
        info = client.select_folder("INBOX", readonly=True)
        return True, f"enabled, INBOX holds {info.get(b'EXISTS', 0)} message(s)"
    except Exception as exc:  # noqa: BLE001 - reported as the verdict
        return False, f"login OK but INBOX cannot be selected (account disabled?): {exc}"
    finally:
        imapconn.close_quietly(client)


def verify_one(task: Task, settings: Settings, user: User) -> Verdict:
    s_ok, s_detail = check_source(task, user)
    d_ok, d_detail = check_destination(settings, user)
    return Verdict(user.source, user.destination, s_ok, s_detail, d_ok, d_detail)


def verify_users(
    task: Task,
    settings: Settings,
    users: Iterable[User] | None = None,
    *,
    workers: int = 8,
    on_result: Callable[[Verdict], None] | None = None,
) -> list[Verdict]:
    """Verdicts in user-list order; ``on_result`` is called (from a worker thread) as each arrives."""
    chosen = list(task.users if users is None else users)

    def one(user: User) -> Verdict:
        verdict = verify_one(task, settings, user)
        if on_result is not None:
            on_result(verdict)
        return verdict

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(chosen) or 1))) as pool:
        return list(pool.map(one, chosen))
