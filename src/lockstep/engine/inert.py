"""Text read from a target (account names, entitlements, error messages), made inert for
every output a person reads: no terminal escape (ANSI, OSC), no line break that would forge a
line, no bidi override that would reorder one. Each such character is shown escaped, as
Python writes it in a string literal, so the name stays recognisable and distinct."""

from __future__ import annotations

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def inert(text: str) -> str:
    # str.isprintable is False for C0 and C1 controls, DEL, line and paragraph separators
    # and format characters (bidi overrides, zero-width joiners): exactly what to escape.
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escaped(ch) for ch in text)


def _escaped(ch: str) -> str:
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def inert_json(encoded: str) -> str:
    """JSON text (as ``json.dumps(..., ensure_ascii=False)`` writes it) with every character
    that is not printable written as a ``\\u`` escape: the same JSON value, inert on a
    terminal. JSON puts such characters only inside strings, where the escape is valid."""
    if encoded.isprintable():
        return encoded
    return "".join(ch if ch.isprintable() or ch == "\n" else _json_escaped(ch) for ch in encoded)


def _json_escaped(ch: str) -> str:
    code = ord(ch)
    if code < 0x10000:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
