"""Why a message was not copied: the reasons every source, the state and the reports share.

Kept apart from the sources so that reading a task's state imports no IMAP or HTTP client.
"""

from __future__ import annotations

from collections.abc import Mapping

SKIP_TOO_OLD = "received before the date filter"
SKIP_TOO_NEW = "received after the date filter"
SKIP_TOO_BIG = "over the size limit"
SKIP_EXISTING = "already at the destination"


def skips_text(counts: Mapping[str, int]) -> str:
    """The skips as the reports write them: "none", or "N reason" each, mail already at the destination
    first (it is most accounts' only one), then by reason."""
    if not counts:
        return "none"
    if len(counts) == 1:  # most accounts: no sort, no join
        ((reason, n),) = counts.items()
        return f"{n} {reason}"
    existing = counts.get(SKIP_EXISTING)
    first = [f"{existing} {SKIP_EXISTING}"] if existing is not None else []
    return ", ".join(first + [f"{n} {reason}" for reason, n in sorted(counts.items()) if reason != SKIP_EXISTING])
