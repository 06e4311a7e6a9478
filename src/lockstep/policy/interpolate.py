"""``${VAR}`` expansion, and the refusal of secrets written literally into a policy.

A policy lives in git; a password in it is a leaked password. Secrets come in through
``${VAR}`` (expanded here from the environment) or ``file:PATH`` (read when the target's
settings are built), and both checks run on the text as written, before expansion.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from lockstep.policy.documents import Document, PathKey
from lockstep.policy.errors import PolicyError

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SECRET_KEY = re.compile(r"(password|passwd|secret|token)$", re.IGNORECASE)
_KEYWORD_PASSWORD = re.compile(
    r"(?:^|\s)(?:ssl)?(?:password|passwd|pass|pwd)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)",
    re.IGNORECASE,
)
# Query parameters that carry a secret in a DSN or URL (libpq's password and sslpassword,
# the pass/pwd of many drivers, tokens and keys of HTTP-ish ones).
SECRET_PARAMETER = re.compile(
    r"(ssl)?(password|passwd|pass|pwd)|secret|token|auth|api_?key|access_?key|"
    r"secret_?access_?key|credentials?",
    re.IGNORECASE,
)


def _indirect(value: str) -> bool:
    return bool(_VAR.fullmatch(value)) or value.startswith("file:")


def literal_secret(key: str | int, raw: str) -> str | None:
    """Why ``raw`` (as written under ``key``) holds a secret in clear, or None."""
    if isinstance(key, str) and _SECRET_KEY.search(key) and not _indirect(raw):
        return f"{key!r} holds a literal secret: pass it as ${{VAR}} or file:PATH"
    if "://" in raw:
        try:
            password = urlsplit(raw).password
        except ValueError:
            password = None
        if password and not _VAR.fullmatch(password):
            return "a password is written literally in this URL: pass it as ${VAR} or file:PATH"
        for name in query_secrets(raw):
            return (
                f"a secret is written literally in this URL's query string ({name}=): "
                "pass the whole URL as ${VAR} or file:PATH"
            )
    match = _KEYWORD_PASSWORD.search(raw)
    if match and not _VAR.fullmatch(match.group(1).strip("'")):
        return "a password is written literally in this DSN: pass it as ${VAR} or file:PATH"
    return None


def query_secrets(url: str, indirect_ok: bool = True) -> list[str]:
    """The query parameters of ``url`` that carry a secret written literally (a value that
    is a ``${VAR}`` is not, unless ``indirect_ok`` is False)."""
    try:
        query = urlsplit(url).query
    except ValueError:
        return []
    return [
        name
        for name, value in parse_qsl(query, keep_blank_values=False)
        if SECRET_PARAMETER.fullmatch(name) and not (indirect_ok and _VAR.fullmatch(value))
    ]


def expand(
    doc: Document,
    env: Mapping[str, str],
    errors: list[PolicyError],
    deferred: set[PathKey] | None = None,
) -> Any:
    """A copy of ``doc.data`` with every ``${VAR}`` replaced; errors for missing variables
    and literal secrets are collected with their line. With ``deferred`` (offline), a
    missing variable is no error: the path of its value is added there instead, and the
    value left empty."""

    def walk(value: Any, path: PathKey) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, (*path, str(k))) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, (*path, i)) for i, v in enumerate(value)]
        if not isinstance(value, str):
            return value
        why = literal_secret(path[-1] if path else "", value)
        if why:
            errors.append(PolicyError(doc.locate(path), why))
            return value

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in env and deferred is not None:
                deferred.add(path)
                return ""
            if name not in env:
                errors.append(
                    PolicyError(doc.locate(path), f"environment variable {name} is not set")
                )
                return ""
            if not env[name].strip():
                errors.append(
                    PolicyError(
                        doc.locate(path),
                        f"environment variable {name} is set but empty: "
                        "an empty setting is never a default",
                    )
                )
            return env[name]

        return _VAR.sub(substitute, value)

    return walk(doc.data, ())
