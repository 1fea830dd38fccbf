"""Running the tools under test as measured child processes: wall time, CPU, peak RSS.

CPU time comes from ``os.wait4`` on the child.  Its ``ru_maxrss`` is not usable for the peak:
Linux carries the parent's high-water mark across fork+exec, so every child of this (large)
bench process would report at least the bench's own RSS.  Instead a sampler reads
``/proc/<pid>/status`` of the process tree every 10 ms: ``VmHWM`` (the process's own peak
since its exec, exact up to the last 10 ms of its life) for one process, and the sum of
``VmRSS`` at the worst moment for a pool of several processes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailmig_tui.engine import model, store

MASTER_USER = "mailmig-admin"
MASTER_PASSWORD = "masterpass"
TASK = "bench"
RUNNING: set[int] = set()  # children being measured, killed by kill_running() on the way out
SAMPLE_S = 0.01


@dataclass
class Measured:
    argv: list[str]
    wall: float
    rc: int
    peak_rss_kb: int  # VmHWM of the process (a pool: the summed VmRSS at its worst moment)
    sampled_rss_kb: int  # the summed VmRSS of the process tree at its worst moment
    cpu_user: float
    cpu_sys: float
    stdout: str = ""
    stderr: str = ""

    @property
    def cpu(self) -> float:
        return self.cpu_user + self.cpu_sys


@dataclass
class _Sampler:
    """Polls the process trees of ``roots`` until stopped: max VmHWM, max summed VmRSS."""

    roots: list[int] = field(default_factory=list)
    peak_kb: int = 0
    hwm_kb: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> _Sampler:
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> int:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        return self.peak_kb

    def sample(self) -> None:
        total = 0
        for root in list(self.roots):
            for pid in _tree(root):
                rss, hwm = _memory_kb(pid)
                total += rss
                self.hwm_kb = max(self.hwm_kb, hwm)
        self.peak_kb = max(self.peak_kb, total)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self.sample()


def _memory_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in KiB; zeros when it is gone."""
    rss = hwm = 0
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith(b"VmHWM:"):
                    hwm = int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return rss, hwm


def _tree(root: int) -> list[int]:
    pids = [root]
    try:
        children = Path(f"/proc/{root}/task/{root}/children").read_text().split()
    except OSError:
        return pids
    for child in children[:256]:
        pids.extend(_tree(int(child)))
    return pids


def run_measured(
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    timeout: float,
    log_dir: Path,
    label: str,
    sampler: _Sampler | None = None,
) -> Measured:
    """Run ``argv`` to its end (killed after ``timeout`` s) and measure it."""
    log_dir.mkdir(parents=True, exist_ok=True)
    out_path, err_path = log_dir / f"{label}.out", log_dir / f"{label}.err"
    own_sampler = sampler is None
    sampler = sampler or _Sampler().start()
    with out_path.open("wb") as out, err_path.open("wb") as err:
        began = time.perf_counter()
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env)
        sampler.roots.append(proc.pid)
        RUNNING.add(proc.pid)
        result: dict[str, Any] = {}

        def reap() -> None:
            _, status, usage = os.wait4(proc.pid, 0)
            result.update(status=status, usage=usage, end=time.perf_counter())

        waiter = threading.Thread(target=reap, name="wait4", daemon=True)
        waiter.start()
        waiter.join(timeout)
        if waiter.is_alive():
            _kill(proc.pid)
            waiter.join(10)
        sampler.roots.remove(proc.pid)
        RUNNING.discard(proc.pid)
    if own_sampler:
        sampler.stop()
    if "status" not in result:
        raise RuntimeError(f"{label}: {argv[0]} could not be reaped")
    proc.returncode = os.waitstatus_to_exitcode(result["status"])
    usage = result["usage"]
    return Measured(
        list(argv),
        result["end"] - began,
        proc.returncode,
        sampler.hwm_kb,
        sampler.peak_kb,
        usage.ru_utime,
        usage.ru_stime,
        out_path.read_text(errors="replace"),
        err_path.read_text(errors="replace"),
    )


def kill_running() -> None:
    """Stop the measured children still running (Ctrl-C, an error in the bench)."""
    for pid in list(RUNNING):
        _kill(pid)


def _kill(pid: int) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        time.sleep(2)


# --------------------------------------------------------------------------------------------
# mailmig-tui


@dataclass(frozen=True)
class Account:
    source_user: str
    source_password: str
    dest_user: str


def mailmig_command() -> list[str]:
    """The console script installed with this Python (not a version manager's shim, which
    would add its own start-up to every measurement), else ``python -m mailmig_tui``."""
    script = Path(sys.executable).parent / "mailmig-tui"
    if script.exists():
        return [str(script)]
    exe = shutil.which("mailmig-tui")
    return [exe] if exe else [sys.executable, "-m", "mailmig_tui"]


def write_mailmig_home(
    home: Path, source_port: int, dest_port: int, accounts: Sequence[Account], concurrency: int
) -> store.Paths:
    """A MAILMIG_HOME with the task ``bench`` and the destination settings (master user)."""
    paths = store.Paths(home / "config", home / "data", home / "logs")
    task = model.Task(
        name=TASK,
        source=model.Source(type="imap", host="127.0.0.1", port=source_port, security="none"),
        run=model.RunOptions(accounts_per_period=len(accounts), concurrency=concurrency),
        users=[model.User(a.source_user, a.dest_user, password=a.source_password) for a in accounts],
    )
    settings = model.Settings(
        model.Destination(
            host="127.0.0.1",
            port=dest_port,
            security="none",
            auth="master",
            login=MASTER_USER,
            password=MASTER_PASSWORD,
        )
    )
    store.save_task(task, paths)
    store.save_settings(settings, paths)
    return paths


def set_source_port(paths: store.Paths, port: int) -> None:
    task = store.load_task(TASK, paths)
    task.source.port = port
    store.save_task(task, paths, old_name=TASK)


def tool_env(**extra: str) -> dict[str, str]:
    """The environment the tool runs in: this one, but with Python's bytecode cache allowed.

    pip compiles an installed package's modules at install time; a machine (or a CI image) that
    sets PYTHONDONTWRITEBYTECODE would otherwise make the tool compile every module at every start
    (~45 ms here) and the bench measure a start-up no installed copy has.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(extra)
    return env


def run_mailmig(
    home: Path,
    *,
    timeout: float,
    log_dir: Path,
    label: str,
    wrapper: Sequence[str] = (),
    command: Sequence[str] = (),
) -> tuple[Measured, list[dict]]:
    env = tool_env(MAILMIG_HOME=str(home))
    argv = [*wrapper, *(command or mailmig_command()), "run", TASK, "--json"]
    m = run_measured(argv, env=env, timeout=timeout, log_dir=log_dir, label=label)
    return m, _json_tail(m.stdout)


def _json_tail(stdout: str) -> list[dict]:
    """The JSON array ``run --json`` prints after its log lines."""
    start = stdout.rfind("\n[\n")
    text = stdout[start + 1 :] if start >= 0 else stdout[stdout.find("[") :]
    try:
        data = json.loads(text)
    except ValueError:
        return []
    return data if isinstance(data, list) else []


# --------------------------------------------------------------------------------------------
# dsync (Dovecot's own migration, when the destination is Dovecot and you run on it)


def doveadm_available() -> str | None:
    return shutil.which("doveadm")


def run_dsync(
    dest_config: Path, source_port: int, account: Account, *, timeout: float, log_dir: Path, label: str
) -> Measured:
    """``doveadm backup -R … imapc:`` on the destination's configuration: dsync reads the source
    over IMAP (imapc, 20 messages prefetched) and writes straight into the destination's storage,
    as Dovecot's migration guide does it. The destination server itself only looks the user up;
    the writing is doveadm's own CPU (the tool's column)."""
    exe = doveadm_available() or "doveadm"
    argv = [
        exe, "-c", str(dest_config),
        "-o", "imapc_host=127.0.0.1", "-o", f"imapc_port={source_port}",
        "-o", f"imapc_user={account.source_user}", "-o", f"imapc_password={account.source_password}",
        "-o", "imapc_features=rfc822.size fetch-headers", "-o", "mail_prefetch_count=20",
        "backup", "-R", "-u", account.dest_user, "imapc:",
    ]  # fmt: skip
    return run_measured(argv, timeout=timeout, log_dir=log_dir, label=label)


# --------------------------------------------------------------------------------------------
# mbsync


def mbsync_available() -> str | None:
    return shutil.which("mbsync")


def write_mbsyncrc(
    path: Path, state_dir: Path, source_port: int, dest_port: int, accounts: Sequence[Account]
) -> list[str]:
    """An mbsyncrc pulling each account from the source into the destination (master user).

    Returns the channel names.  ``Create Near`` makes the folders, ``CopyArrivalDate yes`` keeps
    INTERNALDATE, ``Expunge/Remove None`` never deletes; INBOX is named explicitly because
    mbsync's wildcards do not match it.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    lines = [f"SyncState {state_dir}/", ""]
    channels = []
    for i, a in enumerate(accounts):
        for side, port, user, password in (
            ("src", source_port, a.source_user, a.source_password),
            ("dst", dest_port, f"{a.dest_user}*{MASTER_USER}", MASTER_PASSWORD),
        ):
            lines += [
                f"IMAPAccount {side}{i}", "Host 127.0.0.1", f"Port {port}", f'User "{user}"', f'Pass "{password}"',
                "SSLType None", "AuthMechs LOGIN", "", f"IMAPStore {side}{i}", f"Account {side}{i}", "",
            ]  # fmt: skip
        lines += [
            f"Channel ch{i}", f"Far :src{i}:", f"Near :dst{i}:", "Patterns INBOX *", "Create Near", "Sync Pull",
            "Expunge None", "Remove None", "CopyArrivalDate yes", "",
        ]  # fmt: skip
        channels.append(f"ch{i}")
    path.write_text("\n".join(lines))
    path.chmod(0o600)
    return channels


def run_mbsync(
    config: Path, channels: Sequence[str], *, parallel: int, timeout: float, log_dir: Path, label: str
) -> Measured:
    """mbsync over ``channels``: one process doing them in turn (``parallel`` 1), or a pool of
    ``parallel`` processes, one channel each; RSS is then the sampled sum at the worst moment."""
    exe = mbsync_available() or "mbsync"
    if parallel <= 1:
        return run_measured([exe, "-q", "-c", str(config), *channels], timeout=timeout, log_dir=log_dir, label=label)
    sampler = _Sampler().start()
    results: list[Measured] = []
    todo = list(channels)
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if not todo:
                    return
                ch = todo.pop(0)
            m = run_measured(
                [exe, "-q", "-c", str(config), ch],
                timeout=timeout,
                log_dir=log_dir,
                label=f"{label}-{ch}",
                sampler=sampler,
            )
            with lock:
                results.append(m)

    began = time.perf_counter()
    threads = [threading.Thread(target=worker, name=f"mbsync-{i}", daemon=True) for i in range(parallel)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 30)
    wall = time.perf_counter() - began
    peak = sampler.stop()
    return Measured(
        [exe, "-c", str(config), f"<{len(channels)} channels, {parallel} at a time>"],
        wall,
        max((m.rc for m in results), default=-1) if len(results) == len(channels) else -1,
        peak,  # the pool's RSS is the sampled sum at its worst moment
        peak,
        sum(m.cpu_user for m in results),
        sum(m.cpu_sys for m in results),
        "".join(m.stdout for m in results)[-4000:],
        "".join(m.stderr for m in results)[-4000:],
    )
