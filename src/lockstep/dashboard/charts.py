"""Charts drawn on the server as inline SVG: no script, colours from the stylesheet's
classes (no inline style, which the Content-Security-Policy forbids), every label escaped,
and each chart's numbers also in its title and in a table for screen readers."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from markupsafe import Markup

Bar = tuple[str, int, str]  # label, value, CSS class

_WIDTH = 420
_LABEL_W = 170
_ROW_H = 24


def bars(title: str, items: Sequence[Bar], empty: str = "none") -> Markup:
    """Horizontal bars, one per item, scaled to the largest."""
    top = max([v for _, v, _ in items] + [1])
    height = 26 + _ROW_H * max(1, len(items))
    parts = [
        f'<svg class="chart" role="img" aria-labelledby="{_id(title)}" width="{_WIDTH}" '
        f'height="{height}" viewBox="0 0 {_WIDTH} {height}" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{_id(title)}">{_e(title)}: {_e(_said(items) or empty)}</title>',
    ]
    if not items:
        parts.append(f'<text x="0" y="40" class="muted">{_e(empty)}</text>')
    span = _WIDTH - _LABEL_W - 60
    for i, (label, value, css) in enumerate(items):
        y = 10 + i * _ROW_H
        w = span * value / top
        parts.append(
            f'<text x="0" y="{y + 14}" class="label">{_e(label)}</text>'
            f'<rect x="{_LABEL_W}" y="{y + 2}" width="{w:.1f}" height="16" class="bar {_e(css)}"/>'
            f'<text x="{_LABEL_W + w + 6:.1f}" y="{y + 14}" class="value">{value:,}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every value in it went through _e


def columns(title: str, labels: Sequence[str], values: Sequence[int], css: str = "") -> Markup:
    """A histogram: one column per bucket, labelled below."""
    top = max([*values, 1])
    n = max(1, len(values))
    slot = (_WIDTH - 20) / n
    parts = [
        f'<svg class="chart" role="img" aria-labelledby="{_id(title)}" width="{_WIDTH}" '
        f'height="170" viewBox="0 0 {_WIDTH} 170" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{_id(title)}">{_e(title)}: '
        f"{_e(', '.join(f'{lab} {v:,}' for lab, v in zip(labels, values, strict=True)))}</title>",
        f'<line x1="10" y1="130" x2="{_WIDTH - 10}" y2="130" class="axis"/>',
    ]
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        h = 105 * value / top
        x = 10 + i * slot
        parts.append(
            f'<rect x="{x + slot * 0.15:.1f}" y="{130 - h:.1f}" width="{slot * 0.7:.1f}" '
            f'height="{h:.1f}" class="bar {_e(css)}"/>'
            f'<text x="{x + slot / 2:.1f}" y="{124 - h:.1f}" class="value" '
            f'text-anchor="middle">{value:,}</text>'
            f'<text x="{x + slot / 2:.1f}" y="148" class="label" '
            f'text-anchor="middle">{_e(label)}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every value in it went through _e


def _said(items: Sequence[Bar]) -> str:
    return ", ".join(f"{label} {value:,}" for label, value, _ in items)


def _id(title: str) -> str:
    return "chart-" + "".join(c if c.isalnum() else "-" for c in title.lower())


def _e(value: object) -> str:
    return escape(str(value), quote=True)
