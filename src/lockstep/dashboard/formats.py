"""How the pages write times, ages and durations."""

from __future__ import annotations

from datetime import UTC, datetime


def when(value: datetime | str | None) -> str:
    """A time as ``2026-06-01 12:00Z``; '' for none."""
    if value is None or value == "":
        return ""
    at = datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else value
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%MZ")


def age(value: datetime | str | None, now: datetime | None = None) -> str:
    """How long ago, in the largest whole unit: ``3d``, ``5h``; '' for none."""
    if value is None or value == "":
        return ""
    at = datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) else value
    return duration(((now or datetime.now(UTC)) - at).total_seconds())


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    s = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s / size:.1f}{unit}" if s < 10 * size else f"{s // size:.0f}{unit}"
    return f"{s:.1f}s" if s < 10 else f"{s:.0f}s"


def count(n: int) -> str:
    return f"{n:,}"
