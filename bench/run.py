"""mailmig-tui's benchmark: one command, two private Dovecots, a generated mailbox, a table.

    python -m bench.run [--quick] [--reps 3] [--latency-ms 25] [--only first,rerun,multi,streams,mbsync]

See bench/README.md for what each scenario measures.  Every server, proxy and child process
started here is stopped at the end, also on Ctrl-C or an error.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import selectors
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from imapclient import imap_utf7

from bench import compare, corpus, servers, tools
from bench.corpus import MB, CorpusSpec
from bench.report import render_table, summary_rows, targets, write_json
from bench.scenarios import (
    DEST_PASSWORD,
    Bench,
    Corpus,
    all_dest_users,
    measure_fsync,
    measure_startup,
    run_profile,
    run_reps,
    say,
    source_password,
    source_user,
)

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SEED = 20240601
SCENARIOS = ("first", "rerun", "multi", "streams")
OPT_IN = ("many",)  # run only when named in --only
WRAPPED = 4_000_000_000  # a date read back past this is a wrapped pre-1970 one


# --------------------------------------------------------------------------------------------
# Corpora


def corpus_specs(quick: bool, seed: int, accounts: int) -> dict[str, list[CorpusSpec]]:
    if quick:
        return {
            "main": [CorpusSpec("main-quick", 300, 22 * MB, seed, big_messages=1, big_min=4 * MB, big_max=6 * MB)],
            "small": [CorpusSpec("small-quick", 120, 6 * MB, seed + 1, big_messages=0, odd_dates=1)],
            "multi": [
                CorpusSpec(
                    f"acct-quick{i:02}", 40, 2 * MB, seed + 100 + i, folders="small", big_messages=0, odd_dates=0
                )
                for i in range(accounts)
            ],
            "many": [CorpusSpec("many-quick", 3000, 9 * MB, seed + 2, folders="small", big_messages=0, odd_dates=0)],
        }
    return {
        # like the reference mailbox: 5,058 messages, ~467 MB, 22 folders, 0.1% of 10-25 MB
        "main": [CorpusSpec("main", 5058, 460 * MB, seed)],
        # the latency rows: 1,058 messages, ~78 MB
        "small": [CorpusSpec("small", 1058, 76 * MB, seed + 1, odd_dates=1)],
        # 10 x 500 messages; every other account has one 10-25 MB message (0.1% overall)
        "multi": [
            CorpusSpec(
                f"acct{i:02}", 500, 45 * MB, seed + 100 + i, folders="small", big_messages=1 - i % 2, odd_dates=0
            )
            for i in range(accounts)
        ],
        # one account of 100,000 messages (~1.5 GB, 9 folders): what grows with the message count
        "many": [CorpusSpec("many", 100_000, 1500 * MB, seed + 2, folders="small", big_messages=0, odd_dates=0)],
    }


def prepare_corpora(b: Bench, needed: set[str]) -> dict[str, list[tuple[CorpusSpec, Path, corpus.Manifest]]]:
    cache = Path(b.args.cache_dir).expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    out = {}
    for key, specs in corpus_specs(b.args.quick, b.args.seed, b.args.accounts).items():
        if key not in needed:
            continue
        began = time.monotonic()
        out[key] = [(spec, *corpus.generate(spec, cache)) for spec in specs]
        n = sum(m.messages for _, _, m in out[key])
        size = sum(m.octets for _, _, m in out[key])
        say(
            f"corpus {key}: {len(specs)} account(s), {n} messages, {size / MB:.1f} MB ({time.monotonic() - began:.1f} s, cache {cache})"
        )
    return out


def check_seed(user: str, snap: compare.Snapshot, manifest: corpus.Manifest) -> list[str]:
    """What the source server reads back must be what was generated (counts, octets, flags, dates)."""
    problems = []
    logical = {imap_utf7.decode(name.encode()): items for name, items in snap.items()}
    for folder, count in manifest.folders.items():
        items = logical.get(folder)
        if items is None:
            problems.append(f"{user}/{folder}: folder missing")
            continue
        if len(items) != count:
            problems.append(f"{user}/{folder}: {len(items)} messages, generated {count}")
        if sum(i.size for i in items) != manifest.folder_octets[folder]:
            problems.append(f"{user}/{folder}: octets differ from the generated files")
        flags: dict[str, int] = {}
        for i in items:
            for f in i.flags:
                flags[f] = flags.get(f, 0) + 1
        if flags != manifest.folder_flags[folder]:
            problems.append(f"{user}/{folder}: flags/keywords {flags} != generated {manifest.folder_flags[folder]}")
        # Dovecot reads a pre-1970 mtime as a negative date, and from its index later as one wrapped
        # past 2100: those are left out here (the manifest sums only the non-negative dates)
        dates = sum(i.date for i in items if 0 <= i.date < WRAPPED)
        if dates != manifest.folder_dates[folder]:
            problems.append(f"{user}/{folder}: INTERNALDATEs differ from the generated files")
    return problems


# --------------------------------------------------------------------------------------------
# Servers and proxy


def start_servers(b: Bench, stack: contextlib.ExitStack, prepared: dict) -> None:
    src_users = {
        source_user(spec): source_password(source_user(spec)) for specs in prepared.values() for spec, _, _ in specs
    }
    b.src = servers.DovecotServer(servers.make_root(b.workdir, "src"), users=src_users, name="bench-src")
    stack.callback(stop_server, b.src)
    b.src.start()
    for key, specs in prepared.items():
        users = []
        for spec, template, _manifest in specs:
            user = source_user(spec)
            servers.install_corpus(b.src, user, template)
            users.append(user)
        b.corpora[key] = Corpus(key, users, {source_user(s): m for s, _, m in specs})
    began = time.monotonic()
    problems: list[str] = []
    for c in b.corpora.values():
        for user in c.users:
            b.refs[user] = compare.snapshot(b.src.host, b.src.port, user, source_password(user))
            problems += check_seed(user, b.refs[user], c.manifests[user])
    say(f"source seeded and read back in {time.monotonic() - began:.1f} s (index built, page cache warm)")
    if problems:
        raise SystemExit("the source does not hold what was generated:\n  " + "\n  ".join(problems[:20]))
    b.notes.append(
        "seed verified: every folder's message count, octets, flags+keywords and INTERNALDATEs read back as generated"
    )
    dest_users = {name: DEST_PASSWORD for name in all_dest_users(b)}
    fsync = "" if b.args.dest_fsync == "default" else f"mail_fsync = {b.args.dest_fsync}\n"
    b.dst = servers.BenchDovecot(
        servers.make_root(b.workdir, "dst"), users=dest_users, name="bench-dst", autocreate=True, extra_config=fsync
    )
    if fsync:
        b.notes.append(f"destination Dovecot runs with {fsync.strip()} (not its default)")
    stack.callback(stop_server, b.dst)
    b.dst.start()


def stop_server(server: servers.DovecotServer) -> None:
    try:
        server.stop()
    except Exception as exc:  # noqa: BLE001 - keep stopping the rest
        print(f"bench: stopping {server.instance_name}: {exc}", file=sys.stderr)


def start_proxy(b: Bench, stack: contextlib.ExitStack, rtt_ms: float) -> None:
    assert b.src is not None
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.latency_proxy", "--target", f"127.0.0.1:{b.src.port}", "--rtt-ms", str(rtt_ms)],
        cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=(b.logs / "proxy.err").open("wb"),
    )  # fmt: skip

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    stack.callback(stop)
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout=10):
            raise SystemExit("the latency proxy did not start within 10 s")
    line = proc.stdout.readline().decode()
    if not line.startswith("listening "):
        raise SystemExit(f"the latency proxy did not start: {line!r}")
    b.proxy_port = int(line.rsplit(":", 1)[1])
    imap = compare.RawImap("127.0.0.1", b.proxy_port)
    try:
        samples = []
        for _ in range(21):
            t = time.perf_counter()
            imap.command(b"NOOP")
            samples.append((time.perf_counter() - t) * 1000)
    finally:
        imap.logout()
    b.proxy_rtt_ms = statistics.median(samples)
    b.notes.append(
        f"latency proxy: {rtt_ms:g} ms RTT asked, NOOP round trip through it {b.proxy_rtt_ms:.1f} ms (median of 21)"
    )
    say(b.notes[-1])


# --------------------------------------------------------------------------------------------
# Main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small mailboxes for a smoke run (~1 minute)")
    p.add_argument(
        "--reps", type=int, default=3, help="repetitions of every scenario; the table shows medians (default 3)"
    )
    p.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="also run first copy/re-run through a delaying proxy adding this RTT to the source (e.g. 25)",
    )
    p.add_argument(
        "--latency-corpus",
        choices=("small", "main"),
        default="small",
        help="the mailbox of the latency rows: small (1,058 messages, as the issue) or main (the full one)",
    )
    p.add_argument(
        "--only",
        default="",
        help="comma-separated subset of first,rerun,multi,streams,mbsync,dsync (default: all), "
        "or many (only when named)",
    )
    p.add_argument("--accounts", type=int, default=10, help="accounts in the multi-account scenario (default 10)")
    p.add_argument(
        "--concurrency", type=int, default=4, help="concurrency of the parallel multi-account run (default 4)"
    )
    p.add_argument(
        "--profile",
        choices=("none", "py-spy"),
        default="none",
        help="also profile one first copy with py-spy (not timed)",
    )
    p.add_argument("--profile-variant", metavar="NAME", help="profile this --variant instead of mailmig-tui as it is")
    p.add_argument("--json-out", help="results file (default: WORKDIR/results.json)")
    p.add_argument("--workdir", help="where servers, homes, logs go (default: a new temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the servers' mail and the tools' homes at the end")
    p.add_argument(
        "--cache-dir",
        default=str(Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "mailmig-bench"),
        help="generated mailboxes are cached here",
    )
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="the corpus seed (same seed, same bytes)")
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=CMD",
        help='also measure mailmig-tui started as CMD, as tool "mailmig[NAME]", e.g. '
        '"opt=/usr/bin/python3 -O -m mailmig_tui" (repeatable)',
    )
    p.add_argument(
        "--dest-fsync",
        choices=("default", "never", "always"),
        default="default",
        help="the destination Dovecot's mail_fsync (default: Dovecot's own, optimized); never shows what fsync costs",
    )
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds after which one tool run is killed")
    args = p.parse_args(argv)
    only = {x.strip() for x in args.only.split(",") if x.strip()}
    unknown = only - {*SCENARIOS, *OPT_IN, "mbsync", "dsync"}
    if unknown:
        p.error(
            f"--only: unknown {', '.join(sorted(unknown))}; choose from first,rerun,multi,streams,many,mbsync,dsync"
        )
    variants = {}
    for item in args.variant:
        name, sep, cmd = item.partition("=")
        if not sep or not name.isidentifier() or not cmd.strip():
            p.error(f"--variant {item!r}: write NAME=COMMAND, NAME a word")
        variants[name] = cmd
    args.variants = variants
    if args.profile_variant and args.profile_variant not in variants:
        p.error(f"--profile-variant {args.profile_variant}: no such --variant")
    args.scenarios = sorted((only & {*SCENARIOS, *OPT_IN}) or set(SCENARIOS))
    args.with_mbsync = not only or "mbsync" in only
    args.with_dsync = not only or "dsync" in only
    if args.reps < 1 or args.accounts < 1 or not 1 <= args.concurrency <= 64:
        p.error("--reps and --accounts must be at least 1, --concurrency 1..64")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="mailmig-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o755)
    b = Bench(args, workdir, Path(args.json_out) if args.json_out else workdir / "results.json")
    b.logs.mkdir(parents=True, exist_ok=True)
    scenarios = set(args.scenarios)
    with_mbsync = args.with_mbsync and tools.mbsync_available() is not None
    if args.with_mbsync and not with_mbsync:
        b.notes.append("mbsync is not installed (Debian: isync): no comparison")
    with_dsync = args.with_dsync and tools.doveadm_available() is not None
    if args.with_dsync and not with_dsync:
        b.notes.append("doveadm is not installed (Debian: dovecot-core): no dsync rows")
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    say(f"bench work dir {workdir}; {os.cpu_count()} CPUs; load {os.getloadavg()[0]:.2f}")
    try:
        with contextlib.ExitStack() as stack:
            stack.callback(tools.kill_running)
            needed = set()
            if scenarios & {"first", "rerun", "streams"} or args.profile != "none":
                needed.add("main")
                if args.latency_ms and args.latency_corpus == "small":
                    needed.add("small")
            needed |= scenarios & {"multi", "many"}
            prepared = prepare_corpora(b, needed)
            start_servers(b, stack, prepared)
            if args.latency_ms and args.latency_corpus in b.corpora:
                start_proxy(b, stack, args.latency_ms)
            measure_startup(b)
            measure_fsync(b)
            run_reps(b, scenarios, with_mbsync, with_dsync)
            if args.profile == "py-spy":
                run_profile(b)
            write_json(b, final=True)
    except KeyboardInterrupt:
        print("bench: interrupted; servers stopped", file=sys.stderr)
        write_json(b)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
        if not args.keep:
            for sub in ("src", "dst", "homes", "mbsync"):
                shutil.rmtree(workdir / sub, ignore_errors=True)
    rows = summary_rows(b)
    say("")
    say(render_table(rows))
    say("")
    for t in targets(b, rows):
        say(f"  [{'met' if t['met'] else 'NOT met'}] {t['target']}: {t['measured']}")
    for note in b.notes:
        say(f"  note: {note}")
    say(f"results: {b.json_out}")
    return 0


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
