"""IAM policy conditions, decided three ways: true, false, or unknown when lockstep cannot know
a context key's value (the caller's IP address, MFA, the time of a future request). Pure.

Written from the IAM User Guide's "Condition operators" and "Conditions with multiple context
keys or values": operators AND together, keys of one operator AND together, values of one key
OR together (NOR for a negated operator); a key absent from the request makes a condition
false, a negated one true, except ``...IfExists`` (absent: true) and ``Null`` (tests presence);
``ForAllValues:`` is true of an absent or empty key, ``ForAnyValue:`` false.

An unknown condition is never dropped: it is kept, written out, and reported with the path it
qualifies, so that "allowed if aws:MultiFactorAuthPresent is true" reads as such.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from functools import cache
from typing import Any


class Tri(Enum):
    FALSE = 0
    UNKNOWN = 1
    TRUE = 2


@dataclass(frozen=True, slots=True)
class Verdict:
    """A three-valued answer and, when unknown, the conditions it hangs on."""

    value: Tri
    conditions: frozenset[str] = frozenset()

    def __and__(self, other: Verdict) -> Verdict:
        if self.value is Tri.FALSE or other.value is Tri.FALSE:
            return FALSE
        return Verdict(min(self.value, other.value, key=_order), self.conditions | other.conditions)

    def __or__(self, other: Verdict) -> Verdict:
        if self.value is Tri.TRUE or other.value is Tri.TRUE:
            return TRUE
        return Verdict(max(self.value, other.value, key=_order), self.conditions | other.conditions)

    def __invert__(self) -> Verdict:
        flipped = {Tri.TRUE: Tri.FALSE, Tri.FALSE: Tri.TRUE, Tri.UNKNOWN: Tri.UNKNOWN}
        return Verdict(flipped[self.value], self.conditions)


def _order(value: Tri) -> int:
    return value.value


TRUE = Verdict(Tri.TRUE)
FALSE = Verdict(Tri.FALSE)


def unknown(condition: str) -> Verdict:
    return Verdict(Tri.UNKNOWN, frozenset({condition}))


def all_of(verdicts: Iterable[Verdict]) -> Verdict:
    result = TRUE
    for v in verdicts:
        result = result & v
        if result.value is Tri.FALSE:
            return FALSE
    return result


def any_of(verdicts: Iterable[Verdict]) -> Verdict:
    result = FALSE
    for v in verdicts:
        result = result | v
        if result.value is Tri.TRUE:
            return TRUE
    return result


class _Unknown:
    """The value of a context key lockstep cannot know."""


UNKNOWN_VALUE = _Unknown()
Lookup = tuple[str, ...] | None | _Unknown  # values; None: absent from the request


@dataclass(frozen=True, slots=True)
class Context:
    """What lockstep knows of a request: ``values`` by lower-case key; a key under one of
    ``complete`` (lower-case prefixes whose keys are all known) that has no value is absent;
    any other key is unknown."""

    values: Mapping[str, tuple[str, ...]]
    complete: tuple[str, ...] = ()

    def lookup(self, key: str) -> Lookup:
        lowered = key.lower()
        if lowered in self.values:
            return self.values[lowered]
        if any(lowered == p or (p.endswith("/") and lowered.startswith(p)) for p in self.complete):
            return None
        return UNKNOWN_VALUE

    def with_values(self, extra: Mapping[str, tuple[str, ...]]) -> Context:
        return Context({**self.values, **{k.lower(): v for k, v in extra.items()}}, self.complete)


# ---------------------------------------------------------------- policy variables

_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_SPECIAL = {"*": "*", "?": "?", "$": "$"}


@dataclass(frozen=True, slots=True)
class Substituted:
    """A policy value with its variables replaced: ``text``, or None when a variable is
    absent (the value then matches nothing), or ``pending`` naming an unknown one."""

    text: str | None
    pending: str | None = None


def substitute(value: str, context: Context, literal_wildcards: bool = False) -> Substituted:
    """Replace ``${key}`` and ``${key, 'default'}``; ``${*}``, ``${?}`` and ``${$}`` stand for
    the characters themselves (escaped as literals when ``literal_wildcards``)."""
    if "${" not in value:
        return Substituted(value)
    parts: list[str] = []
    last = 0
    for match in _VARIABLE.finditer(value):
        parts.append(value[last : match.start()])
        last = match.end()
        inner = match.group(1).strip()
        if inner in _SPECIAL:
            parts.append("\x00" + inner if literal_wildcards else inner)
            continue
        key, _, default = inner.partition(",")
        found = context.lookup(key.strip())
        if isinstance(found, _Unknown):
            return Substituted(None, pending=key.strip())
        if not found:
            fallback = default.strip().strip("'") if default else None
            if fallback is None:
                return Substituted(None)
            parts.append(fallback)
        else:
            parts.append(found[0])
    parts.append(value[last:])
    return Substituted("".join(parts))


# ---------------------------------------------------------------- matching


@cache
def glob(pattern: str, ignore_case: bool = False) -> re.Pattern[str]:
    """``*`` any run of characters, ``?`` one; a character escaped by ``substitute`` as
    ``\\x00c`` is literal."""
    out: list[str] = []
    chars = iter(pattern)
    for c in chars:
        if c == "\x00":
            out.append(re.escape(next(chars, "")))
        elif c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        else:
            out.append(re.escape(c))
    return re.compile("".join(out), re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def arn_like(pattern: str, arn: str) -> bool:
    """ArnLike: the six colon-separated parts compared one by one, each a glob; the resource
    part keeps any further colons. ``*`` alone matches any ARN."""
    if pattern == "*":
        return True
    wanted, actual = pattern.split(":", 5), arn.split(":", 5)
    if len(wanted) != 6 or len(actual) != 6:
        return glob(pattern).fullmatch(arn) is not None
    return all(glob(w).fullmatch(a) is not None for w, a in zip(wanted, actual, strict=True))


def _number(text: str) -> float:
    return float(text)


def _date(text: str) -> datetime:
    if re.fullmatch(r"-?\d+(\.\d+)?", text):
        return datetime.fromtimestamp(float(text), UTC)
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _compare(parse: Callable[[str], Any], test: Callable[[Any, Any], bool]) -> _Match:
    def match(actual: str, wanted: str) -> bool:
        try:
            return bool(test(parse(actual), parse(wanted)))
        except (ValueError, OverflowError):
            return False

    return match


def _ip(actual: str, wanted: str) -> bool:
    try:
        return ipaddress.ip_address(actual) in ipaddress.ip_network(wanted, strict=False)
    except ValueError:
        return False


def _binary(actual: str, wanted: str) -> bool:
    try:
        return base64.b64decode(actual) == base64.b64decode(wanted)
    except (binascii.Error, ValueError):
        return False


_Match = Callable[[str, str], bool]

# Operator -> (how one request value matches one policy value, negated, wildcards allowed).
_OPERATORS: Mapping[str, tuple[_Match, bool, bool]] = {
    "stringequals": (lambda a, w: a == w, False, False),
    "stringnotequals": (lambda a, w: a == w, True, False),
    "stringequalsignorecase": (lambda a, w: a.casefold() == w.casefold(), False, False),
    "stringnotequalsignorecase": (lambda a, w: a.casefold() == w.casefold(), True, False),
    "stringlike": (lambda a, w: glob(w).fullmatch(a) is not None, False, True),
    "stringnotlike": (lambda a, w: glob(w).fullmatch(a) is not None, True, True),
    "numericequals": (_compare(_number, lambda a, w: a == w), False, False),
    "numericnotequals": (_compare(_number, lambda a, w: a == w), True, False),
    "numericlessthan": (_compare(_number, lambda a, w: a < w), False, False),
    "numericlessthanequals": (_compare(_number, lambda a, w: a <= w), False, False),
    "numericgreaterthan": (_compare(_number, lambda a, w: a > w), False, False),
    "numericgreaterthanequals": (_compare(_number, lambda a, w: a >= w), False, False),
    "dateequals": (_compare(_date, lambda a, w: a == w), False, False),
    "datenotequals": (_compare(_date, lambda a, w: a == w), True, False),
    "datelessthan": (_compare(_date, lambda a, w: a < w), False, False),
    "datelessthanequals": (_compare(_date, lambda a, w: a <= w), False, False),
    "dategreaterthan": (_compare(_date, lambda a, w: a > w), False, False),
    "dategreaterthanequals": (_compare(_date, lambda a, w: a >= w), False, False),
    "bool": (lambda a, w: a.lower() == w.lower(), False, False),
    "binaryequals": (_binary, False, False),
    "ipaddress": (_ip, False, False),
    "notipaddress": (_ip, True, False),
    "arnequals": (lambda a, w: arn_like(w, a), False, True),
    "arnlike": (lambda a, w: arn_like(w, a), False, True),
    "arnnotequals": (lambda a, w: arn_like(w, a), True, True),
    "arnnotlike": (lambda a, w: arn_like(w, a), True, True),
}


def evaluate_block(block: Mapping[str, Any], context: Context) -> Verdict:
    """A statement's whole Condition element."""
    return all_of(_operator(operator, keys, context) for operator, keys in sorted(block.items()))


def _operator(operator: str, keys: Any, context: Context) -> Verdict:
    if not isinstance(keys, Mapping):
        return unknown(f"{operator}: malformed condition")
    return all_of(
        _key(operator, key, _as_list(wanted), context) for key, wanted in sorted(keys.items())
    )


def _as_list(value: Any) -> Sequence[str]:
    items = value if isinstance(value, list) else [value]
    return [str(v).lower() if isinstance(v, bool) else str(v) for v in items]


def _key(operator: str, key: str, wanted: Sequence[str], context: Context) -> Verdict:
    text = f"{operator} {key} {list(wanted)}"
    qualifier, _, base = operator.rpartition(":")
    base = base.lower()
    if_exists = base.endswith("ifexists") and base != "null"
    if if_exists:
        base = base.removesuffix("ifexists")
    found = context.lookup(key)
    if isinstance(found, _Unknown):
        return unknown(text)
    if base == "null":
        absent = not found
        return _bool(all(w.lower() == ("true" if absent else "false") for w in wanted[:1]))
    if base not in _OPERATORS:
        return unknown(f"{text} (operator unknown to lockstep)")
    match, negated, wildcards = _OPERATORS[base]
    resolved: list[str] = []
    for w in wanted:
        sub = substitute(w, context, literal_wildcards=wildcards)
        if sub.pending is not None:
            return unknown(text)
        if sub.text is not None:
            resolved.append(sub.text)
    qualifier = qualifier.lower()
    if qualifier == "forallvalues":
        if not found:
            return TRUE
        return _bool(all(_one(match, negated, v, resolved) for v in found))
    if qualifier == "foranyvalue":
        if not found:
            return FALSE
        return _bool(any(_one(match, negated, v, resolved) for v in found))
    if not found:
        return _bool(if_exists or negated)
    return _bool(any(_one(match, negated, v, resolved) for v in found))


def _one(match: _Match, negated: bool, actual: str, wanted: Sequence[str]) -> bool:
    hit = any(match(actual, w) for w in wanted)
    return not hit if negated else hit


def _bool(value: bool) -> Verdict:
    return TRUE if value else FALSE
