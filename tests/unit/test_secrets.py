"""Secrets never render in clear, and the redactor scrubs every one it knows."""

from __future__ import annotations

import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockstep import secrets
from lockstep.secrets import Secret, generate_password, redact


def test_a_secret_renders_masked_everywhere():
    s = Secret("hunter2-very-secret")
    assert "hunter2" not in f"{s} {s!r} {s:>30} {[s]}"
    with pytest.raises(TypeError):
        pickle.dumps(s)


def test_every_occurrence_is_redacted_and_overlaps_are_masked_once():
    secrets.register("abcdef-secret")
    secrets.register("def-secret-xyz")
    text = "a=abcdef-secret b=abcdef-secret-xyz c=def-secret-xyz"
    out = redact(text)
    assert "secret" not in out
    assert out.startswith("a=*** b=***")


def test_many_secrets_of_one_length_are_all_redacted():
    many = [generate_password() for _ in range(200)]
    text = " ".join(f'{{"password": "{p.reveal()}"}}' for p in many[::7])
    out = redact(text)
    assert not any(p.reveal() in out for p in many)
    assert out.count("***") == len(many[::7])


def test_a_forgotten_secret_is_no_longer_redacted():
    value = generate_password().reveal()
    assert redact(value) == "***"
    secrets.forget(value)
    assert redact(value) == value


@given(st.text(max_size=200))
def test_text_without_secrets_is_unchanged(text):
    known = {v for group in secrets._current_groups() for v in group.values}
    if not any(v in text for v in known):
        assert redact(text) == text
