"""Reproducible performance benchmark of mailmig-tui against private Dovecot instances (see README.md)."""
