"""Shared test setup: pytest plugins and helpers that several test modules use."""
