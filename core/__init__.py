"""Shared foundation: settings, database, errors, clock and the audit log."""
