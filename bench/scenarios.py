"""The scenarios: a fresh destination mailbox per copy, one measured run, its check, the profile."""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench import compare, corpus, hotspots, servers, tools
from bench.corpus import CorpusSpec
from bench.report import latency_labels, write_json

DEST_PASSWORD = "dest-pw"


def say(text: str) -> None:
    print(text, flush=True)


@dataclass
class Corpus:
    key: str  # "main", "small", "multi"
    users: list[str]
    manifests: dict[str, corpus.Manifest]

    @property
    def messages(self) -> int:
        return sum(m.messages for m in self.manifests.values())

    @property
    def octets(self) -> int:
        return sum(m.octets for m in self.manifests.values())


@dataclass
class Bench:
    args: argparse.Namespace
    workdir: Path
    json_out: Path
    src: servers.DovecotServer | None = None
    dst: servers.DovecotServer | None = None
    proxy_port: int | None = None
    proxy_rtt_ms: float | None = None
    refs: dict[str, compare.Snapshot] = field(default_factory=dict)
    corpora: dict[str, Corpus] = field(default_factory=dict)
    rows: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"


def source_user(spec: CorpusSpec) -> str:
    return spec.name.replace("_", "-")


def source_password(user: str) -> str:
    return f"{user}-pw"


# --------------------------------------------------------------------------------------------
# Destination users: a fresh mailbox for every copy.


def tool_names(b: Bench) -> list[str]:
    return ["mailmig", *(f"mailmig[{name}]" for name in b.args.variants), "mbsync", "dsync", "profile"]


def dest_user(b: Bench, tool: str, scenario: str, rep: int, i: int) -> str:
    return f"t{tool_names(b).index(tool)}-{scenario}-r{rep}-{i:02}"


def all_dest_users(b: Bench) -> list[str]:
    users = []
    for tool in tool_names(b):
        for scenario in ("first", "lat", "small", "one", "c4", "c1", "many"):
            n = len(b.corpora["multi"].users) if scenario in ("c4", "c1") and "multi" in b.corpora else 1
            for rep in range(b.args.reps + 1):
                users += [dest_user(b, tool, scenario, rep, i) for i in range(n)]
    return users


# --------------------------------------------------------------------------------------------
# Measuring one run


def measure(
    b: Bench, scenario: str, tool: str, rep: int, c: Corpus, dest_users: list[str], run: Callable[[], tools.Measured],
    *, report: bool = True, rerun: bool = False,
) -> dict:  # fmt: skip
    assert b.src is not None and b.dst is not None
    servers.wait_sessions_end(b.src, b.dst)
    load = os.getloadavg()
    fsync = fsync_ms(b.workdir)
    cpu0 = servers.cpu_seconds(b.src), servers.cpu_seconds(b.dst)
    busy0 = machine_busy()
    m = run()
    busy1 = machine_busy()
    servers.wait_sessions_end(b.src, b.dst)
    cpu1 = servers.cpu_seconds(b.src), servers.cpu_seconds(b.dst)
    diff = compare.Diff()
    began = time.monotonic()
    for user, dest in zip(c.users, dest_users, strict=True):
        diff.add(compare.compare(b.refs[user], compare.snapshot(b.dst.host, b.dst.port, dest, DEST_PASSWORD)))
    row = {
        "scenario": scenario,
        "tool": tool,
        "rep": rep,
        "report": report,
        "rerun": rerun,
        "wall_s": round(m.wall, 3),
        "rc": m.rc,
        "messages": c.messages,
        "octets": c.octets,
        "peak_rss_mb": round(m.peak_rss_kb / 1024, 1),
        "sampled_rss_mb": round(m.sampled_rss_kb / 1024, 1),
        "tool_cpu_s": round(m.cpu, 2),
        "tool_user_s": round(m.cpu_user, 2),
        "tool_sys_s": round(m.cpu_sys, 2),
        "src_cpu_s": round(cpu1[0] - cpu0[0], 2),
        "dst_cpu_s": round(cpu1[1] - cpu0[1], 2),
        "load": [round(x, 2) for x in load],
        # both cores' busy share during the run (1.0: every core busy all the time), from /proc/stat
        "machine_busy": round((busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]), 2),
        "fsync_ms": round(fsync, 2),
        "complete": diff.complete,
        "diff": diff.as_dict(),
        "verify_s": round(time.monotonic() - began, 1),
        "argv": m.argv,
        "stderr_tail": m.stderr[-1500:],
    }
    b.rows.append(row)
    flag = "" if m.rc == 0 else f"  EXIT {m.rc}: {m.stderr.strip()[-300:]}"
    say(
        f"  {tool:8} {scenario:38} rep {rep}: {m.wall:7.2f} s  rss {row['peak_rss_mb']:6.1f} MB  cpu tool {m.cpu:5.1f} s"
        f" src {row['src_cpu_s']:5.1f} s dst {row['dst_cpu_s']:5.1f} s busy {row['machine_busy']:.0%}"
        f"  complete {diff.text()}  load {load[0]:.2f}"
        f" fsync {fsync:.1f} ms{flag}"
    )
    write_json(b)
    return row


def first_and_again(
    b: Bench, tool: str, rep: int, c: Corpus, dests: list[str], labels: tuple[str, str | None],
    run: Callable[[str], Callable[[], tools.Measured]], label: str, *, report_first: bool,
) -> None:  # fmt: skip
    """A tool's first copy and, if the scenario has one, its re-run; then the mailboxes go."""
    assert b.dst is not None
    first, again = labels
    measure(b, first, tool, rep, c, dests, run(f"{label}-first"), report=report_first)
    if again:
        measure(b, again, tool, rep, c, dests, run(f"{label}-rerun"), rerun=True)
    for d in dests:
        servers.drop_mailbox(b.dst, d)


def mailmig_runs(
    b: Bench,
    key: str,
    rep: int,
    c: Corpus,
    labels: tuple[str, str | None],
    *,
    port: int,
    concurrency: int,
    report_first: bool,
    tool: str = "mailmig",
) -> None:
    assert b.dst is not None
    dests = [dest_user(b, tool, key, rep, i) for i in range(len(c.users))]
    accounts = [tools.Account(u, source_password(u), d) for u, d in zip(c.users, dests, strict=True)]
    code = f"t{tool_names(b).index(tool)}"
    home = b.workdir / "homes" / f"{code}-{key}-r{rep}"
    tools.write_mailmig_home(home, port, b.dst.port, accounts, concurrency)
    variant = tool.partition("[")[2].rstrip("]")
    command = shlex.split(b.args.variants[variant]) if variant else []

    def run(label: str) -> Callable[[], tools.Measured]:
        return lambda: tools.run_mailmig(home, timeout=b.args.timeout, log_dir=b.logs, label=label, command=command)[0]

    first_and_again(b, tool, rep, c, dests, labels, run, f"{code}-{key}-r{rep}", report_first=report_first)


def mbsync_runs(
    b: Bench,
    key: str,
    rep: int,
    c: Corpus,
    labels: tuple[str, str | None],
    *,
    port: int,
    parallel: int,
    report_first: bool,
) -> None:
    assert b.dst is not None
    dests = [dest_user(b, "mbsync", key, rep, i) for i in range(len(c.users))]
    accounts = [tools.Account(u, source_password(u), d) for u, d in zip(c.users, dests, strict=True)]
    work = b.workdir / "mbsync" / f"{key}-r{rep}"
    config = work / "mbsyncrc"
    work.mkdir(parents=True, exist_ok=True)
    channels = tools.write_mbsyncrc(config, work / "state", port, b.dst.port, accounts)

    def run(label: str) -> Callable[[], tools.Measured]:
        return lambda: tools.run_mbsync(
            config, channels, parallel=parallel, timeout=b.args.timeout, log_dir=b.logs, label=label
        )

    first_and_again(b, "mbsync", rep, c, dests, labels, run, f"mbsync-{key}-r{rep}", report_first=report_first)


def dsync_runs(
    b: Bench, key: str, rep: int, c: Corpus, labels: tuple[str, str | None], *, port: int, report_first: bool
) -> None:
    assert b.dst is not None
    dests = [dest_user(b, "dsync", key, rep, 0)]
    account = tools.Account(c.users[0], source_password(c.users[0]), dests[0])

    config = b.dst.config_path

    def run(label: str) -> Callable[[], tools.Measured]:
        return lambda: tools.run_dsync(config, port, account, timeout=b.args.timeout, log_dir=b.logs, label=label)

    first_and_again(b, "dsync", rep, c, dests, labels, run, f"dsync-{key}-r{rep}", report_first=report_first)


# dsync runs per account; the scenarios of one account (not "one": its point is several streams)
DSYNC_KEYS = ("first", "small", "lat", "many")


def run_reps(b: Bench, scenarios: set[str], with_mbsync: bool, with_dsync: bool = False) -> None:
    assert b.src is not None
    rtt = b.args.latency_ms
    n = len(b.corpora["multi"].users) if "multi" in b.corpora else 0
    plan: list[
        tuple[str, str, tuple[str, str | None], int, int, bool]
    ] = []  # key, corpus, labels, port, concurrency, report
    if scenarios & {"first", "rerun"}:
        plan.append(
            (
                "first",
                "main",
                ("first copy", "re-run, nothing new" if "rerun" in scenarios else None),
                b.src.port,
                1,
                "first" in scenarios,
            )
        )
        if rtt:
            assert b.proxy_port is not None
            small = b.args.latency_corpus == "small"
            rerun = "rerun" in scenarios
            if small:
                loop = ("first copy, small mailbox, loopback", "re-run, small mailbox, loopback" if rerun else None)
                plan.append(("small", "small", loop, b.src.port, 1, "first" in scenarios))
            plan.append(("lat", b.args.latency_corpus, latency_labels(b, rerun), b.proxy_port, 1, "first" in scenarios))
    if "streams" in scenarios:  # one account, its folders copied over up to `concurrency` streams
        label = f"first copy, one account, concurrency {b.args.concurrency}"
        plan.append(("one", "main", (label, None), b.src.port, b.args.concurrency, True))
    if "many" in scenarios:
        m = b.corpora["many"].messages
        plan.append(("many", "many", (f"first copy, {m:,} messages", f"re-run, {m:,} messages"), b.src.port, 1, True))  # fmt: skip
    if "multi" in scenarios:
        c = b.args.concurrency
        plan.append(("c4", "multi", (f"{n} accounts, concurrency {c}", None), b.src.port, c, True))
        plan.append(("c1", "multi", (f"{n} accounts, concurrency 1", None), b.src.port, 1, True))
    for rep in range(b.args.reps):
        say(f"rep {rep + 1} of {b.args.reps}")
        order = tool_names(b)[:-1]  # every tool but "profile", in turn first
        order = order[rep % len(order) :] + order[: rep % len(order)]
        for key, corpus_key, labels, port, concurrency, report in plan:
            for tool in order:
                c = b.corpora[corpus_key]
                if tool.startswith("mailmig"):
                    mailmig_runs(
                        b, key, rep, c, labels, port=port, concurrency=concurrency, report_first=report, tool=tool
                    )
                elif tool == "mbsync":
                    if with_mbsync and key != "one":  # mbsync copies one account over one connection pair
                        mbsync_runs(b, key, rep, c, labels, port=port, parallel=concurrency, report_first=report)
                elif tool == "dsync" and with_dsync and key in DSYNC_KEYS:
                    dsync_runs(b, key, rep, c, labels, port=port, report_first=report)


# --------------------------------------------------------------------------------------------
# Startup cost and profile


def machine_busy() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine so far (/proc/stat: busy = all but idle and iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    total = sum(fields[:8])  # guest time is already counted in user
    return total - fields[3] - fields[4], total


def fsync_ms(workdir: Path, files: int = 20) -> float:
    """Milliseconds to create and fsync a ~90 KB file here: Dovecot does that per APPENDed message.
    Other work on the machine's disk changes it a lot, so it is probed before every run."""
    d = workdir / "fsync-probe"
    d.mkdir(exist_ok=True)
    data = b"x" * 90_000
    began = time.perf_counter()
    try:
        for i in range(files):
            fd = os.open(d / f"f{i}", os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return (time.perf_counter() - began) * 1000 / files


def measure_fsync(b: Bench) -> None:
    ms = fsync_ms(b.workdir, 100)
    b.extra["fsync_ms"] = round(ms, 2)
    main = b.corpora.get("main")
    serial = f" ({ms * main.messages / 1000:.1f} s for {main.messages} messages one after another)" if main else ""
    b.notes.append(
        f"a new 90 KB file + fsync on the work dir's disk takes {ms:.2f} ms{serial}; the table's fsync column "
        "is the same probe right before each run"
    )


def measure_startup(b: Bench) -> None:
    walls = []
    for i in range(4):  # the first start writes the bytecode cache (pip does that at install time)
        m = tools.run_measured(
            [*tools.mailmig_command(), "--help"], env=tools.tool_env(), timeout=60, log_dir=b.logs, label=f"startup-{i}"
        )
        walls.append(m.wall)
    walls = walls[1:]
    b.extra["startup_s"] = round(statistics.median(walls), 3)
    b.notes.append(f"mailmig-tui start-up alone (`mailmig-tui --help`): {b.extra['startup_s']:.2f} s (median of 3)")


def run_profile(b: Bench) -> None:
    assert b.src is not None and b.dst is not None
    spy = shutil.which("py-spy")
    if not spy:
        b.notes.append("profile skipped: py-spy is not installed (pip install py-spy)")
        return
    command = shlex.split(b.args.variants[b.args.profile_variant]) if b.args.profile_variant else []
    b.extra["profile"] = {"variant": b.args.profile_variant or None}
    # (what, label, rate, corpus, concurrency); the re-run reuses the first copy's home and mailbox
    runs = [("first copy", "first-copy", 100, "main", 1), ("re-run, nothing new", "rerun", 1000, "main", 1)]
    if "multi" in b.corpora:
        n, c = len(b.corpora["multi"].users), b.args.concurrency
        runs.append((f"{n} accounts, concurrency {c}", "multi", 100, "multi", c))
    homes: dict[str, tuple[Path, list[str]]] = {}
    for what, label, rate, key, concurrency in runs:
        c = b.corpora[key]
        if key not in homes:
            dests = [dest_user(b, "profile", "first" if key == "main" else "c4", 0, i) for i in range(len(c.users))]
            accounts = [tools.Account(u, source_password(u), d) for u, d in zip(c.users, dests, strict=True)]
            home = b.workdir / "homes" / f"profile-{key}"
            tools.write_mailmig_home(home, b.src.port, b.dst.port, accounts, concurrency)
            homes[key] = (home, dests)
        home, dests = homes[key]
        raw = b.workdir / f"profile-{label}.pyspy.txt"
        wrapper = [
            spy,
            "record",
            "--nonblocking",
            "--idle",
            "--threads",
            "--rate",
            str(rate),
            "--format",
            "raw",
            "--output",
            str(raw),
            "--",
        ]
        say(f"profiling one {what} under py-spy at {rate} Hz (not part of the table)")
        row = measure(
            b, f"{what} under py-spy", "mailmig", 0, c, dests,
            lambda: tools.run_mailmig(home, timeout=b.args.timeout, log_dir=b.logs, label=f"profile-{label}", wrapper=wrapper, command=command)[0],  # noqa: B023
            report=False, rerun=label == "rerun",
        )  # fmt: skip
        if not raw.exists():
            b.notes.append(f"profile of the {what}: py-spy wrote no output (see logs/profile-{label}.err)")
            continue
        summary = hotspots.summarise(raw)
        text = f"{what}: " + hotspots.render(summary, rate)
        (b.workdir / f"profile-{label}-summary.txt").write_text(text + "\n")
        b.extra["profile"][label] = {
            "raw": str(raw),
            "summary": summary,
            # the tool's own CPU is not known here: the measured child is py-spy
            "row": {k: row[k] for k in ("wall_s", "src_cpu_s", "dst_cpu_s")},
        }
        say(text)
    for _home, dests in homes.values():
        for d in dests:
            servers.drop_mailbox(b.dst, d)
