"""Credentials lockstep issues: kept encrypted in the vault, delivered through sinks."""
