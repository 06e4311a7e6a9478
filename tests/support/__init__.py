"""Shared test setup: pytest plugins and helpers that several test modules use."""

import pytest

# Test modules import these helpers directly, so pytest must know before the first import to
# rewrite their asserts.
pytest.register_assert_rewrite("support.cli_project")
pytest.register_assert_rewrite("support.postgres_sessions")
