"""What a first Google Workspace run costs in Gmail API quota, per message, against the local fake.

    python -m bench.gmail_api                    # 600 messages, a fifth of them under two labels
    python -m bench.gmail_api --messages 2000 --size-filter-kb 500

The per-user quota (15,000 units a minute by default; 6,000 for projects created from May 2026), not
bandwidth, is what bounds how fast a Gmail account can be read, so units per message is the figure
that matters: ``messages.get`` costs 5 units, a ``messages.list`` page (500 ids) 5, ``labels.list``
1. This starts the Gmail/OAuth fake of the tests (tests/fakes/google.py, the real
google-api-python-client talking to it over loopback) and a private destination Dovecot, seeds a
deterministic mailbox, runs one first copy with the quota pacing off, counts the requests the fake
saw, checks the destination holds every message, and prints a table with what the counted units
allow at the published quotas. The cache of recent downloads is 32 MB per account: ``--cache-mb``
sets it smaller, to see a mailbox far bigger than the cache with a short run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import sys
import tempfile
import time
from pathlib import Path

try:
    from tests.fakes.google import FakeGoogle, make_key
    from tests.servers import mailbox as mb
    from tests.servers.dovecot import DovecotServer
except ImportError:  # run from elsewhere than the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.fakes.google import FakeGoogle, make_key
    from tests.servers import mailbox as mb
    from tests.servers.dovecot import DovecotServer

DOMAIN = "example.com"
MASTER_PASSWORD = "masterpass"
UNITS = {"get": 5, "list": 5, "labels": 1, "profile": 1}


def seed(box, n: int, seed: int) -> int:  # type: ignore[no-untyped-def]
    """``n`` messages of 2-200 KB (log-uniform); every fifth also under the label Work. Returns the
    number of (folder, message) copies the destination should hold."""
    rng = random.Random(seed)
    copies = 0
    for i in range(n):
        size = int(2048 * 100 ** rng.random())
        body = (b"line %d of a generated body, to make the size\r\n" % i) * max(1, size // 48)
        raw = (
            b"From: s%d@example.org\r\nTo: alice@%s\r\nSubject: message %d\r\nMessage-ID: <m%d@example.org>\r\n\r\n"
            % (
                i,
                DOMAIN.encode(),
                i,
                i,
            )
        )
        labels = ["INBOX", "Work"] if i % 5 == 0 else ["INBOX"]
        box.add(raw + body, labels, dt.datetime(2020, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=i))
        copies += len(labels)
    return copies


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gmail_api", description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=600)
    p.add_argument("--size-filter-kb", type=int, default=0, help="the task's size filter (0: none)")
    p.add_argument("--cache-mb", type=float, default=None, help="the source's cache of recent downloads")
    p.add_argument("--seed", type=int, default=20240601)
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="mailmig-gmail-bench-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)  # the destination's mail belongs to uid 5000 when run as root
        os.environ["MAILMIG_HOME"] = str(root / "home")
        from mailmig_tui.engine import model, runner, store
        from mailmig_tui.engine.sources import gmail

        if args.cache_mb is not None:
            gmail.RAW_CACHE_BYTES = int(args.cache_mb * 1024 * 1024)
        dst = DovecotServer(root / "dst", users={"alice": "alice-pw"}, name="gmail-bench-dst", autocreate=True)
        dst.start()
        key = make_key()
        try:
            with FakeGoogle(key) as google:
                copies = seed(google.mailbox(f"alice@{DOMAIN}"), args.messages, args.seed)
                key_file = key.write(root / "key.json", google.token_uri)
                source = model.Source(
                    type="google", key_file=str(key_file), quota_units_per_minute=10**9, api_endpoint=google.root
                )
                task = model.Task(name="gmail-bench", source=source, users=[model.User(f"alice@{DOMAIN}", "alice")])
                task.filters.max_size_kb = args.size_filter_kb
                store.save_task(task)
                settings = model.Settings(
                    model.Destination(host="127.0.0.1", port=dst.port, security="none", password=MASTER_PASSWORD)
                )
                began = time.perf_counter()
                result = runner.run_task(task, settings)
                wall = time.perf_counter() - began
                counts = {"get": 0, "list": 0, "labels": 0, "profile": 0}
                for r in google.log:
                    if r.in_batch and "/messages/" in r.path:
                        counts["get"] += 1
                    elif r.path.endswith("/messages"):
                        counts["list"] += 1
                    elif r.path.endswith("/labels"):
                        counts["labels"] += 1
                    elif r.path.endswith("/profile"):
                        counts["profile"] += 1
            acct = result.accounts[0]
            held = sum(len(v) for v in mb.contents(mb.snapshot(dst, "alice")).values())
        finally:
            dst.stop()
    units = sum(UNITS[k] * n for k, n in counts.items())
    per = units / args.messages
    complete = acct.status == "complete" and held == copies - sum(acct.skipped.values())
    rows = [
        ("messages (folder copies)", f"{args.messages} ({copies})"),
        ("size filter", f"{args.size_filter_kb} KB" if args.size_filter_kb else "none"),
        ("messages.get / list pages / labels.list", f"{counts['get']} / {counts['list']} / {counts['labels']}"),
        ("quota units, per message", f"{units}, {per:.2f}"),
        ("messages/s at 15,000 / 6,000 units a minute", f"{15000 / 60 / per:.0f} / {6000 / 60 / per:.0f}"),
        ("wall s (quota pacing off, loopback)", f"{wall:.2f}"),
        ("complete", f"{'yes' if complete else 'NO'} ({acct.copied} copied, {held} at the destination)"),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k.ljust(width)}  {v}")
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
