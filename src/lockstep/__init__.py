"""Lockstep: identity governance and enforcement in lockstep for non-human identities."""

__version__ = "0.1.0"
