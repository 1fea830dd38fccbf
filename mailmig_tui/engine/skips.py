"""Why a message was not copied: the reasons every source, the state and the reports share.

Kept apart from the sources so that reading a task's state imports no IMAP or HTTP client.
"""

from __future__ import annotations

SKIP_TOO_OLD = "received before the date filter"
SKIP_TOO_NEW = "received after the date filter"
SKIP_TOO_BIG = "over the size limit"
SKIP_EXISTING = "already at the destination"
