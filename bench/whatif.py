"""Start mailmig-tui with engine knobs changed, to measure a change before making it.

    python -m bench.run --only first --variant "nodebug=python -m bench.whatif nodebug" \\
        --variant "small=python -m bench.whatif nodebug,budget=48,batch=8,queue=1"

Knobs (comma-separated): ``nodebug`` (imaplib's debug level 0: IMAPClient sets it to 5, so
imaplib formats every response, message literals included, for a logger that drops it);
``budget=MB`` (the run's byte budget); ``batch=MB``, ``msgs=N``, ``queue=N``, ``streams=N``
(the copy's Limits; ``streams=1``: one copy stream per account whatever the spare concurrency);
``append1`` (a batch of one message goes through MULTIAPPEND's path too, instead of imaplib's
APPEND, which rewrites line ends with a regex: CPU and ~3x the message in memory); ``nocopy``
(MULTIAPPEND writes each message's bytes to the socket as they are, where imapclient copies each
into a ``_literal`` and again into ``b" {n+}\\r\\n" + message``).

The rest of the command line goes to mailmig-tui. This patches engine internals from outside, so
it may stop working when they change; it is for experiments, never for use.
"""

from __future__ import annotations

import sys

LIMITS = ("msgs", "batch", "queue", "streams")  # account.Limits' fields, in order


def apply(spec: str) -> None:
    from mailmig_tui.engine import account, runner

    limits = dict(zip(LIMITS, account.Limits.__init__.__defaults__ or (), strict=True))
    for knob in filter(None, (k.strip() for k in spec.split(","))):
        name, _, value = knob.partition("=")
        if name == "nodebug":
            import imapclient

            original = imapclient.IMAPClient.__init__

            def init(self, *args, __original=original, **kwargs):
                __original(self, *args, **kwargs)
                self._imap.debug = 0

            imapclient.IMAPClient.__init__ = init
        elif name == "append1":
            _append_via_multiappend()
        elif name == "nocopy":
            _multiappend_without_copies()
        elif name == "budget":
            defaults = runner.run_task.__kwdefaults__
            if defaults is None or "budget_bytes" not in defaults:
                raise SystemExit("bench.whatif: run_task has no budget_bytes any more")
            defaults["budget_bytes"] = int(float(value) * 1024 * 1024)
        elif name == "batch":
            limits["batch"] = int(float(value) * 1024 * 1024)
        elif name in ("msgs", "queue", "streams"):
            limits[name] = int(value)
        else:
            raise SystemExit(f"bench.whatif: unknown knob {knob!r}")
    account.Limits.__init__.__defaults__ = tuple(limits[k] for k in LIMITS)


def _append_via_multiappend() -> None:
    import imapclient

    def append(self, folder, msg, flags=(), msg_time=None):
        item = {"msg": msg, "flags": flags}
        if msg_time:
            item["date"] = msg_time
        typ, data = self.multiappend(folder, [item])
        return data[-1] if isinstance(data, list) and data else data

    imapclient.IMAPClient.append = append


def _multiappend_without_copies() -> None:
    import imapclient
    from imapclient import imapclient as impl
    from imapclient.datetime_util import datetime_to_INTERNALDATE
    from imapclient.util import to_bytes

    original = imapclient.IMAPClient.multiappend

    def multiappend(self, folder, msgs):
        if not self.has_capability("LITERAL+"):
            return original(self, folder, msgs)
        imap = self._imap
        tag = imap._new_tag()
        imap.send(tag + b" APPEND " + self._normalise_folder(folder))
        for m in msgs:
            head = b""
            if m.get("flags") is not None:
                head += b" " + to_bytes(impl.seq_to_parenstr(m["flags"]))
            if m.get("date"):
                head += b' "' + to_bytes(datetime_to_INTERNALDATE(m["date"])) + b'"'
            raw = to_bytes(m["msg"])
            imap.send(head + b" {%d+}\r\n" % len(raw))
            imap.send(raw)
        imap.send(b"\r\n")
        return imap._command_complete("APPEND", tag)

    imapclient.IMAPClient.multiappend = multiappend


def main() -> int:
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    apply(sys.argv[1])
    from mailmig_tui.cli import main as cli_main

    return cli_main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
