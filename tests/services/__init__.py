"""Launchers for the real servers the suite talks to, one module per service."""
