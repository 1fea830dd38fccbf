"""The bench's results: the summary table, the issue's targets, the JSON file."""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bench.corpus import MB

if TYPE_CHECKING:
    from bench.scenarios import Bench

REPO = Path(__file__).resolve().parent.parent
RERUN_TARGET_S = 0.5


def latency_labels(b: Bench, rerun: bool = True) -> tuple[str, str | None]:
    """The scenario names of the rows through the latency proxy."""
    which = "small mailbox, " if b.args.latency_corpus == "small" else ""
    rtt = f"{b.args.latency_ms:g} ms RTT"
    return f"first copy, {which}{rtt}", (f"re-run, {which}{rtt}" if rerun else None)


def summary_rows(b: Bench) -> list[dict]:
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in b.rows:
        if r["report"]:
            groups.setdefault((r["scenario"], r["tool"]), []).append(r)
    out = []
    for (scenario, tool), rows in groups.items():
        wall = statistics.median(r["wall_s"] for r in rows)
        mb = rows[0]["octets"] / MB
        problems = max(r["diff"]["problems"] for r in rows)
        kinds: dict[str, int] = {}
        for r in rows:
            for k, n in r["diff"]["counts"].items():
                kinds[k] = max(kinds.get(k, 0), n)
        out.append(
            {
                "scenario": scenario,
                "tool": tool,
                "reps": len(rows),
                "wall_s": round(wall, 3),
                "walls": [r["wall_s"] for r in rows],
                "messages": rows[0]["messages"],
                "mb": round(mb, 1),
                "msgs_per_s": None if rows[0]["rerun"] else round(rows[0]["messages"] / wall, 1),
                "mb_per_s": None if rows[0]["rerun"] else round(mb / wall, 1),
                "peak_rss_mb": max(r["peak_rss_mb"] for r in rows),
                "tool_cpu_s": round(statistics.median(r["tool_cpu_s"] for r in rows), 2),
                "server_cpu_s": round(statistics.median(r["src_cpu_s"] + r["dst_cpu_s"] for r in rows), 2),
                "machine_busy": round(statistics.median(r.get("machine_busy", 0.0) for r in rows), 2),
                "complete": all(r["complete"] for r in rows),
                "problems": problems,
                "diff_kinds": kinds,
                "exit_codes": sorted({r["rc"] for r in rows}),
                "load1": [r["load"][0] for r in rows],
                "fsync_ms": [r["fsync_ms"] for r in rows],
            }
        )
    by_key = {(s["scenario"], s["tool"]): s for s in out}
    for s in out:
        for peer in ("mbsync", "dsync"):
            other = by_key.get((s["scenario"], peer))
            s[f"vs_{peer}"] = (
                round(s["wall_s"] / other["wall_s"], 2) if other and s["tool"] != peer and other["wall_s"] else None
            )
    return out


def targets(b: Bench, rows: list[dict]) -> list[dict]:
    """The issue's "Done when" items that this run measured."""
    get = {(r["scenario"], r["tool"]): r for r in rows}
    rtt = b.args.latency_ms
    n, c = (len(b.corpora["multi"].users) if "multi" in b.corpora else 0), b.args.concurrency
    checks = []

    def check(what: str, ok: bool | None, detail: str) -> None:
        if ok is not None:
            checks.append({"target": what, "met": ok, "measured": detail})

    first, first_mb = get.get(("first copy", "mailmig")), get.get(("first copy", "mbsync"))
    if first and first_mb:
        check(
            "first copy ≤ mbsync (loopback)",
            first["wall_s"] <= first_mb["wall_s"],
            f"{first['wall_s']:.2f} s vs {first_mb['wall_s']:.2f} s ({first['vs_mbsync']}×)",
        )
    first_ds = get.get(("first copy", "dsync"))
    if first and first_ds:
        check(
            "goal: first copy within 1.3× of dsync (which writes the destination's storage itself)",
            first["wall_s"] <= 1.3 * first_ds["wall_s"],
            f"{first['wall_s']:.2f} s vs {first_ds['wall_s']:.2f} s ({first['vs_dsync']}×)",
        )
    if first:
        check("first copy complete (octets, flags+keywords, dates)", first["complete"], _kinds(first))
        check(
            "peak RSS ≤ 150 MB, one account incl. 10-25 MB messages",
            first["peak_rss_mb"] <= 150,
            f"{first['peak_rss_mb']:.0f} MB",
        )
    lat, lat_mb = (
        get.get((latency_labels(b)[0], "mailmig")),
        get.get((latency_labels(b)[0], "mbsync")),
    )
    if lat and lat_mb:
        check(
            f"first copy ≤ mbsync under {rtt:g} ms RTT",
            lat["wall_s"] <= lat_mb["wall_s"],
            f"{lat['wall_s']:.2f} s vs {lat_mb['wall_s']:.2f} s ({lat['vs_mbsync']}×)",
        )
    rerun = get.get(("re-run, nothing new", "mailmig"))
    if rerun:
        check(
            f"re-run ≤ {RERUN_TARGET_S} s ({rerun['messages']} messages, loopback)",
            rerun["wall_s"] <= RERUN_TARGET_S,
            f"{rerun['wall_s']:.2f} s",
        )
    lr, lr_mb = (
        get.get((latency_labels(b)[1], "mailmig")),
        get.get((latency_labels(b)[1], "mbsync")),
    )
    if lr and lr_mb:
        check(
            f"re-run ≤ mbsync under {rtt:g} ms RTT",
            lr["wall_s"] <= lr_mb["wall_s"],
            f"{lr['wall_s']:.2f} s vs {lr_mb['wall_s']:.2f} s",
        )
    par, seq = (
        get.get((f"{n} accounts, concurrency {c}", "mailmig")),
        get.get((f"{n} accounts, concurrency 1", "mailmig")),
    )
    if par and seq:
        par_mb, seq_mb = (
            get.get((f"{n} accounts, concurrency {c}", "mbsync")),
            get.get((f"{n} accounts, concurrency 1", "mbsync")),
        )
        # what independent processes with nothing shared reach on this machine, for scale
        scale = (
            f"; mbsync's {c} processes in the same run: {par_mb['wall_s'] / seq_mb['wall_s']:.2f}×"
            if par_mb and seq_mb
            else ""
        )
        check(
            f"{n} accounts at concurrency {c} ≤ 0.6× sequential",
            par["wall_s"] <= 0.6 * seq["wall_s"],
            f"{par['wall_s']:.2f} s vs {seq['wall_s']:.2f} s ({par['wall_s'] / seq['wall_s']:.2f}×){scale}",
        )
        check(f"peak RSS ≤ 300 MB, {c} concurrent accounts", par["peak_rss_mb"] <= 300, f"{par['peak_rss_mb']:.0f} MB")
    return checks


def _kinds(row: dict) -> str:
    return ", ".join(f"{n} {k}" for k, n in sorted(row["diff_kinds"].items())) or "no differences"


def render_table(rows: list[dict]) -> str:
    head = (
        "scenario",
        "tool",
        "wall s",
        "msgs/s",
        "MB/s",
        "peak RSS MB",
        "tool CPU s",
        "server CPU s",
        "cores busy",
        "complete",
        "vs mbsync",
        "vs dsync",
        "load1",
        "fsync ms",
    )
    table = [head]
    for r in rows:
        if r["complete"]:
            complete = "yes" + (
                f" ({r['diff_kinds']['date_unstorable']} unstorable dates)"
                if r["diff_kinds"].get("date_unstorable")
                else ""
            )
        else:
            complete = f"no: {r['problems']} ({_kinds(r)})"
        table.append(
            (
                r["scenario"],
                r["tool"],
                f"{r['wall_s']:.2f}",
                "-" if r["msgs_per_s"] is None else f"{r['msgs_per_s']:.0f}",
                "-" if r["mb_per_s"] is None else f"{r['mb_per_s']:.1f}",
                f"{r['peak_rss_mb']:.0f}",
                f"{r['tool_cpu_s']:.1f}",
                f"{r['server_cpu_s']:.1f}",
                f"{r['machine_busy']:.0%}",
                complete,
                "-" if r["vs_mbsync"] is None else f"{r['vs_mbsync']:.2f}×",
                "-" if r.get("vs_dsync") is None else f"{r['vs_dsync']:.2f}×",
                "/".join(f"{x:.1f}" for x in r["load1"]),
                "/".join(f"{x:.1f}" for x in r["fsync_ms"]),
            )  # fmt: skip
        )
    widths = [max(len(str(row[i])) for row in table) for i in range(len(head))]
    lines = []
    for k, row in enumerate(table):
        lines.append("| " + " | ".join(str(v).ljust(widths[i]) for i, v in enumerate(row)) + " |")
        if k == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def code_version() -> dict:
    """Which mailmig-tui was measured: the commit, and a digest of the engine as it is on disk."""
    digest = hashlib.sha256()
    for path in sorted((REPO / "mailmig_tui").rglob("*.py")):
        digest.update(path.read_bytes())
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--short", "--", "mailmig_tui"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        head, dirty = "?", []
    return {
        "commit": head,
        "modified": [line for line in dirty if line.strip()],
        "sources_sha256": digest.hexdigest()[:16],
    }


def write_json(b: Bench, final: bool = False) -> None:
    rows = summary_rows(b)
    data = {
        "args": {k: v for k, v in vars(b.args).items()},
        "code": b.extra.setdefault("code", code_version()),
        "machine": {"cpus": os.cpu_count(), "loadavg_end": os.getloadavg(), "python": sys.version.split()[0]},
        "corpora": {
            k: {"accounts": len(c.users), "messages": c.messages, "octets": c.octets} for k, c in b.corpora.items()
        },
        "table": rows,
        "targets": targets(b, rows) if final else [],
        "notes": b.notes,
        "extra": b.extra,
        "runs": b.rows,
        "complete_run": final,
    }
    b.json_out.parent.mkdir(parents=True, exist_ok=True)
    tmp = b.json_out.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False, default=str))
    os.replace(tmp, b.json_out)
