"""What someone with write access to the state store does to a journal to hide what it says:
rewrite it consistently (every later hash and the head recomputed) or roll it back."""

from __future__ import annotations

import json

from sqlalchemy import Connection, text

from lockstep.journal import entry_hash, raw_entries, record_text


def rewrite_from(conn: Connection, seq: int, payload: str | None = None) -> None:
    """Replace entry ``seq``'s payload (by default, with one saying nothing) and recompute
    every hash from there on, and the head: the chain alone still verifies."""
    rows = list(raw_entries(conn))
    prev = rows[seq - 2][5] if seq > 1 else "0" * 64
    for s, at, kind, body, _, _ in rows[seq - 1 :]:
        if s == seq:
            body = payload if payload is not None else '{"rewritten":true}'
        digest = entry_hash(prev, record_text(s, at, json.dumps(kind), body))
        conn.execute(
            text("UPDATE journal SET payload = :p, prev_hash = :ph, hash = :h WHERE seq = :s"),
            {"p": body, "ph": prev, "h": digest, "s": s},
        )
        prev = digest
    conn.execute(text("UPDATE journal_head SET hash = :h"), {"h": prev})


def roll_back_to(conn: Connection, seq: int) -> None:
    """The journal as it was at entry ``seq`` (a restored backup, or a truncation with the
    head made to match)."""
    digest = conn.execute(text("SELECT hash FROM journal WHERE seq = :s"), {"s": seq}).scalar()
    conn.execute(text("DELETE FROM journal WHERE seq > :s"), {"s": seq})
    conn.execute(text("UPDATE journal_head SET seq = :s, hash = :h"), {"s": seq, "h": digest})
