"""Secrets never render in clear, and the redactor scrubs every one it knows."""

from __future__ import annotations

import pickle
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockstep.secret import (
    Secret,
    _current_groups,
    forget,
    generate_password,
    holds_secret,
    redact,
    register,
)


def test_a_secret_renders_masked_everywhere():
    s = Secret("hunter2-very-secret")
    assert "hunter2" not in f"{s} {s!r} {s:>30} {[s]}"
    with pytest.raises(TypeError):
        pickle.dumps(s)


def test_every_occurrence_is_redacted_and_overlaps_are_masked_once():
    register("abcdef-secret")
    register("def-secret-xyz")
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


def test_a_secret_registered_after_many_of_its_length_is_redacted_at_once():
    many = [generate_password(41) for _ in range(40)]
    assert redact(many[0].reveal()) == "***"  # the index of that length is built
    late = generate_password(41).reveal()
    assert redact(f"x {late} y") == "x *** y"
    assert holds_secret(f"x{late}y")
    forget(late)
    assert redact(late) == late and not holds_secret(late)


def test_holds_secret_answers_as_redact_does():
    value = generate_password().reveal()
    assert holds_secret(f"password={value};")
    assert not holds_secret("nothing secret here")
    assert not holds_secret("")


def test_generated_passwords_are_url_safe_and_of_the_length_asked():
    for length in (24, 32, 41):
        value = generate_password(length).reveal()
        assert len(value) == length
        assert set(value) <= set(string.ascii_letters + string.digits + "-_")


def test_a_forgotten_secret_is_no_longer_redacted():
    value = generate_password().reveal()
    assert redact(value) == "***"
    forget(value)
    assert redact(value) == value


@given(st.text(max_size=200))
def test_text_without_secrets_is_unchanged(text):
    known = {v for group in _current_groups() for v in group.values}
    if not any(v in text for v in known):
        assert redact(text) == text
