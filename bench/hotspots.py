"""Summarise a py-spy ``--format raw --threads --idle`` profile: where each thread's time goes.

Every sample is one thread's stack (root first).  A sample whose innermost Python frame is a
blocking call (socket read, queue/condition/lock wait, sleep) counts as waiting; the rest is
CPU, attributed to a category by the frames on the stack, innermost match first.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import Path

_LINE = re.compile(r"^thread \((\d+)\)(?::\s*([^;]*))?;?(.*) (\d+)$")
_FRAME = re.compile(r"^(.*) \((.*?)(?::(\d+))?\)$")

WAIT_LEAVES = (
    ("socket.py", "readinto"), ("socket.py", "recv"), ("ssl.py", "read"), ("ssl.py", "recv_into"),
    ("threading.py", "wait"), ("threading.py", "_wait_for_tstate_lock"), ("queue.py", "get"), ("queue.py", "put"),
    ("selectors.py", "select"), ("threading.py", "join"), ("_base.py", "result"), ("thread.py", "_worker"),
    ("_base.py", "wait"), ("_base.py", "__exit__"), ("socket.py", "sendall"), ("imaplib.py", "send"),
    ("migrate.py", "acquire"), ("subprocess.py", "wait"),
)  # fmt: skip

_IMAPLIB_READING = (
    "_get_response", "_get_line", ".read", "readline", "_append_untagged", "_untagged_response",
    "_get_tagged_response", "_command_complete", "_check_bye",
)  # fmt: skip

# (category, file fragment, function or "") - the innermost frame that matches names the category
CATEGORIES = (
    ("sqlite (state.py)", "engine/state.py", ""),
    ("hashing (fingerprint_of)", "sources/base.py", "fingerprint_of"),
    ("imapclient response parsing", "imapclient/response_", ""),
    ("imapclient fetch/append glue", "imapclient/imapclient.py", ""),
    *(("imaplib response reading", "imaplib.py", f) for f in _IMAPLIB_READING),
    ("imaplib command/literal sending", "imaplib.py", ""),
    ("imapclient other", "imapclient/", ""),
    ("engine migrate.py", "engine/migrate.py", ""),
    ("engine destination.py", "engine/destination.py", ""),
    ("engine sources/imap.py", "sources/imap.py", ""),
    ("engine other", "mailmig_tui/", ""),
    ("imports/startup", "<frozen importlib", ""),
)


def _frames(stack: str) -> list[tuple[str, str]]:
    out = []
    for raw in stack.split(";"):
        m = _FRAME.match(raw.strip())
        if m:
            out.append((m.group(1), m.group(2)))
    return out


def _is_wait(leaf: tuple[str, str]) -> bool:
    func, path = leaf
    return any(path.endswith(f) and func.split(".")[-1] == name for f, name in WAIT_LEAVES)


def _thread_kind(name: str) -> str:
    if not name:
        return "unnamed (main thread at start-up)"
    if name.startswith("fetch-"):
        return "fetch (source reader)"
    if name.startswith("account"):
        return "account (plan + append)"
    if name == "MainThread":
        return "main"
    return re.sub(r"[-_]?\d+$", "", name)


def summarise(path: Path, top: int = 20) -> dict:
    per_thread: dict[str, Counter[str]] = defaultdict(Counter)
    leaves: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        n = int(m.group(4))
        frames = _frames(m.group(3))
        if not frames:
            continue
        total += n
        kind = _thread_kind((m.group(2) or "").strip())
        leaf = frames[-1]
        if _is_wait(leaf):
            per_thread[kind]["waiting: " + leaf[0].split(".")[-1] + f" ({Path(leaf[1]).name})"] += n
            continue
        category = "other CPU"
        for func, file in reversed(frames):
            hit = next((c for c, frag, fn in CATEGORIES if frag in file and (not fn or func.endswith(fn))), None)
            if hit:
                category = hit
                break
        per_thread[kind][category] += n
        leaves[f"{leaf[0]} ({_short(leaf[1])})"] += n
        for func, file in {(f, p) for f, p in frames}:
            inclusive[f"{func} ({_short(file)})"] += n
    return {
        "samples": total,
        "threads": {k: dict(c.most_common()) for k, c in per_thread.items()},
        "top_self_cpu": leaves.most_common(top),
        "top_inclusive_cpu": inclusive.most_common(top),
    }


def _short(path: str) -> str:
    parts = Path(path).parts
    for anchor in ("mailmig_tui", "imapclient", "site-packages"):
        if anchor in parts:
            return "/".join(parts[parts.index(anchor) :])
    return Path(path).name


def render(summary: dict, rate: int) -> str:
    lines = [f"py-spy samples: {summary['samples']} (at {rate} Hz per thread)"]
    for kind, cats in sorted(summary["threads"].items(), key=lambda kv: -sum(kv[1].values())):
        n = sum(cats.values())
        lines.append(f"  thread {kind}: {n / rate:.1f} s sampled")
        for cat, k in list(cats.items())[:10]:
            lines.append(f"      {100 * k / n:5.1f}%  {k / rate:6.2f} s  {cat}")
    lines.append("  top self CPU (innermost Python frame, non-waiting samples):")
    for name, k in summary["top_self_cpu"]:
        lines.append(f"      {k / rate:6.2f} s  {name}")
    lines.append("  top inclusive CPU:")
    for name, k in summary["top_inclusive_cpu"][:15]:
        lines.append(f"      {k / rate:6.2f} s  {name}")
    return "\n".join(lines)
