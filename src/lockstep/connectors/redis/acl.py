"""What lockstep knows of Redis ACLs without a server: the entitlement grammar, the order
rules are applied in, and how ``ACL LIST`` lines and ``ACL GETUSER`` replies read.

See ``lockstep.connectors.redis.connector`` for why rule sets are checked against a throw-away user.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from lockstep.connectors.base import GrammarError

RULES_KEY = "lockstep:acl-rules"
MARKER_PREFIX = "unexpressible ACL rules: "
SCRATCH_PREFIX = "lockstep-scratch-"

# Every rewrite starts from these, so nothing of the previous rule set survives.
RESET_PERMISSIONS = ("resetkeys", "resetchannels", "-@all", "clearselectors")
# What ACL LIST shows for a user that holds nothing: not entitlements.
_BASELINE = frozenset({"resetchannels", "-@all"})
# Any other word is taken for a rule, so one a later Redis adds shows up (as unexpressible)
# rather than being ignored.
_FLAGS = frozenset({"on", "off", "nopass", "sanitize-payload", "skip-sanitize-payload"})
_RULE_PREFIXES = ("~", "%", "&", "+", "-")

_ACCOUNT = re.compile(r"[A-Za-z0-9_.:@-]+")
_KEY_RULE = re.compile(r"(~|%R~|%W~|%RW~)(.+)", re.DOTALL)
_CHANNEL_RULE = re.compile(r"&(.+)", re.DOTALL)
_COMMAND_RULE = re.compile(r"[+-](?:@[a-z0-9_.-]+|[a-z0-9_.-]+(?:\|[a-z0-9_.-]+)?)")
_GRAMMAR = (
    "exactly one ACL rule: ~PATTERN, %R~PATTERN, %W~PATTERN, %RW~PATTERN, &PATTERN, "
    "+COMMAND, +COMMAND|SUB, +@CATEGORY, -COMMAND, -COMMAND|SUB or -@CATEGORY"
)


# ---------------------------------------------------------------- grammar (no server)


def canonical_entitlement(text: str) -> str:
    """The entitlement as Redis renders it, or GrammarError."""
    if key := _KEY_RULE.fullmatch(text):
        prefix, pattern = key.groups()
        _check_pattern(text, pattern)
        return ("~" if prefix == "%RW~" else prefix) + pattern
    if channel := _CHANNEL_RULE.fullmatch(text):
        _check_pattern(text, channel.group(1))
        return text
    # Lower-casing non-ASCII could turn a look-alike (the Kelvin sign) into a real command.
    rule = text.lower() if text.isascii() else text
    if _COMMAND_RULE.fullmatch(rule):
        if rule == "-@all":
            raise GrammarError("-@all is where every Redis user starts, not an entitlement")
        return rule
    raise GrammarError(f"{text!r} is not {_GRAMMAR}")


def _check_pattern(text: str, pattern: str) -> None:
    # Whitespace or control characters would make the rule ambiguous where rules are written
    # one after another (ACL LIST, ACL files, policy review); quotes break ACL file parsing.
    if any(c.isspace() or not c.isprintable() or c in "\"'" for c in pattern):
        raise GrammarError(
            f"{text!r}: a pattern cannot contain whitespace, control characters or quotes "
            f"(an entitlement is {_GRAMMAR})"
        )


def check_account(name: str) -> None:
    if name == "default":
        raise GrammarError("'default' is Redis's built-in user and is never managed")
    # ASCII only: a look-alike letter would let an account pass for 'default' or the admin.
    if not _ACCOUNT.fullmatch(name):
        raise GrammarError(
            f"Redis account {name!r}: use ASCII letters, digits and _ . : @ - only "
            "(no spaces, quotes or control characters)"
        )


def _is_rule(token: str) -> bool:
    """A permission rule (never a flag or password) that lockstep can report and write back."""
    if printable(token) != token:
        return False
    if token.startswith("("):
        return token.endswith(")")
    return token.startswith(_RULE_PREFIXES) and not any(c.isspace() for c in token)


def printable(text: str) -> str:
    """Bytes that are not UTF-8 (decoded exactly, as lone surrogates) escaped as ``\\xff``:
    what leaves the session must be plain text."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def apply_order(rules: Iterable[str]) -> list[str]:
    return sorted(set(rules), key=_rank)


def _rank(rule: str) -> tuple[int, str]:
    """Where a rule goes in a rewrite (see the module docstring for why)."""
    if rule.startswith(("~", "%")):
        return (1 if rule == "~*" else 0, rule)
    if rule.startswith("&"):
        return (3 if rule == "&*" else 2, rule)
    if rule.startswith("("):
        return (10, rule)
    if rule == "+@all":
        return (4, rule)
    breadth = 0 if rule[1:2] == "@" else 2 if "|" in rule else 1
    return (5 + 2 * breadth + rule.startswith("-"), rule)


# ---------------------------------------------------------------- what Redis shows


@dataclass(frozen=True, slots=True)
class AclUser:
    name: str
    flags: frozenset[str]
    passwords: int
    rules: tuple[str, ...]  # permission rules as rendered, baseline dropped, selectors whole

    @property
    def enabled(self) -> bool:
        # A nopass user is not guarded by any credential lockstep could manage.
        return "on" in self.flags and "nopass" not in self.flags and self.passwords > 0


def user_from_line(line: str) -> AclUser:
    """One ``ACL LIST`` line: ``user NAME flags... #hash... rules... (selector)...``."""
    _, name, *words = (w for w in line.split(" ") if w)
    # Only rules are grouped: a user may well be called "(x".
    rest = _merge_selectors(words)
    rules = tuple(w for w in rest if w not in _FLAGS and w not in _BASELINE and w[0] != "#")
    return AclUser(
        name, frozenset(w for w in rest if w in _FLAGS), sum(w[0] == "#" for w in rest), rules
    )


def _merge_selectors(words: Iterable[str]) -> list[str]:
    # The same grouping Redis uses when it loads an ACL file.
    merged: list[str] = []
    for word in words:
        if merged and merged[-1].startswith("(") and not merged[-1].endswith(")"):
            merged[-1] += " " + word
        else:
            merged.append(word)
    return merged


def user_from_reply(name: str, reply: Mapping[str, Any]) -> AclUser:
    """An ``ACL GETUSER`` reply, as the same rules its ``ACL LIST`` line shows."""
    root = [w for w in _selector_words(reply) if w not in _BASELINE]
    selectors = ["(" + " ".join(_selector_words(s)) + ")" for s in reply["selectors"]]
    return AclUser(name, frozenset(reply["flags"]), len(reply["passwords"]), (*root, *selectors))


def _selector_words(selector: Mapping[str, Any]) -> list[str]:
    # Mirrors how ACL LIST describes a selector: keys, channels, then commands.
    channels = str(selector["channels"]).split()
    channel_words = channels if channels == ["&*"] else ["resetchannels", *channels]
    return [*str(selector["keys"]).split(), *channel_words, *str(selector["commands"]).split()]


def _permissions(reply: Mapping[str, Any]) -> tuple[object, ...]:
    # Pattern order does not change what a user may touch; command order may (Redis 7.2+).
    return (
        frozenset(str(reply["keys"]).split()),
        frozenset(str(reply["channels"]).split()),
        str(reply["commands"]),
        frozenset(" ".join(_selector_words(s)) for s in reply["selectors"]),
    )


def reproduces(real: object, scratch: object) -> bool | None:
    """Whether the candidate set reproduces the user; None when the user is gone."""
    if not isinstance(real, Mapping):
        return None
    return isinstance(scratch, Mapping) and _permissions(real) == _permissions(scratch)


def candidates(user: AclUser, recorded: frozenset[str] | None) -> list[frozenset[str]]:
    rendered = frozenset(user.rules)
    options = [recorded] if recorded is not None and recorded != rendered else []
    if all(_is_rule(t) for t in rendered):
        options.append(rendered)
    return options


def unexpressible(user: AclUser) -> frozenset[str]:
    described = printable(" ".join(user.rules))
    return frozenset({*filter(_is_rule, user.rules), MARKER_PREFIX + described})


def parse_record(text: object) -> frozenset[str] | None:
    # Anyone who may write the key may write anything there: keep only permission rules.
    if not isinstance(text, str):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, list) or not all(isinstance(t, str) and _is_rule(t) for t in value):
        return None
    return frozenset(value)


def count_sessions(client_list: str) -> Counter[str]:
    return Counter(
        field[len("user=") :]
        for line in client_list.splitlines()
        for field in line.split(" ")
        if field.startswith("user=")
    )
