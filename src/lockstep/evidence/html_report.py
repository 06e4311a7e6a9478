"""A report as one self-contained HTML file: no script, no external asset (styles and the
charts, drawn as inline SVG, are in the file), readable on screen and printed. Every value
from the estate is escaped."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from lockstep.engine.inert import inert

SHOWN_FINDINGS = 200
_COLOURS = {"satisfied": "#1a7f37", "not_satisfied": "#cf222e", "not_assessed": "#6e7781"}
_LABELS = {
    "satisfied": "satisfied",
    "not_satisfied": "not satisfied",
    "not_assessed": "not assessed",
}

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2328;
margin:2rem auto;max-width:70rem;padding:0 1rem}
h1{font-size:1.6rem;margin:0 0 .2rem}h2{font-size:1.2rem;margin:2rem 0 .5rem;
border-bottom:1px solid #d0d7de;padding-bottom:.2rem}h3{font-size:1.05rem;margin:1.4rem 0 .3rem}
.meta{color:#59636e;margin:.1rem 0}.mono{font-family:ui-monospace,Menlo,Consolas,monospace;
font-size:.85em;word-break:break-all}
table{border-collapse:collapse;width:100%;margin:.4rem 0}th,td{border:1px solid #d0d7de;
padding:.25rem .45rem;text-align:left;vertical-align:top}th{background:#f6f8fa}
.badge{display:inline-block;border-radius:1rem;padding:0 .55rem;color:#fff;font-size:.8rem;
white-space:nowrap}.satisfied{background:#1a7f37}.not_satisfied{background:#cf222e}
.not_assessed{background:#6e7781}
.charts{display:flex;flex-wrap:wrap;gap:1rem;align-items:flex-start}.chart{border:1px solid #d0d7de;
border-radius:.4rem;padding:.5rem}.control{break-inside:avoid-page}
.needed{background:#fff8c5;padding:.3rem .5rem;border-radius:.3rem}
@media print{body{margin:0;max-width:none;font-size:10pt}.control{break-inside:auto}
a{color:inherit;text-decoration:none}h2{break-after:avoid}table{font-size:9pt}
.badge{border:1px solid #000;color:#000;background:#fff}}
"""


def render_html(report: Mapping[str, Any]) -> str:
    head = report["journal_head"]
    journal = report["journal"]
    by_id = {f["id"]: f for f in report["findings"]}
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(report['framework_title'])}: lockstep report</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{_e(report['framework_title'])}</h1>",
        f'<p class="meta">Lockstep report, framework <b>{_e(report["framework"])}</b> '
        f"version {_e(report['framework_version'])} "
        f'(<a href="{_e(report["framework_source"])}">{_e(report["framework_source"])}</a>)</p>',
        f'<p class="meta">Generated {_e(report["generated_at"])}; state as of '
        f"{_e(report['as_of'] or 'never read')}</p>",
        f'<p class="meta">Journal head: entry {head["seq"]}, hash '
        f'<span class="mono">{_e(head["hash"])}</span>, '
        + ("chain intact" if journal["intact"] else f"<b>broken</b>: {_e(journal['reason'])}")
        + "</p>",
        "<h2>Summary</h2>",
        _status_chart(report["summary"]),
        '<div class="charts">',
        *_figure_charts(report["figures"]),
        "</div>",
        "<h2>Controls</h2>",
        _controls_table(report["controls"]),
        *(_control(c, by_id) for c in report["controls"]),
        '<p class="meta">Verify the evidence: <span class="mono">lockstep audit export -o '
        'journal.jsonl</span> then <span class="mono">lockstep audit verify --file '
        "journal.jsonl</span>; each entry's seq and hash above is in it.</p>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _status_chart(summary: Mapping[str, int]) -> str:
    total = sum(summary.values()) or 1
    width, x, bars, legend = 640, 0.0, [], []
    for status in ("satisfied", "not_satisfied", "not_assessed"):
        n = summary.get(status, 0)
        w = width * n / total
        if n:
            bars.append(
                f'<rect x="{x:.1f}" y="0" width="{w:.1f}" height="28" fill="{_COLOURS[status]}"/>'
                f'<text x="{x + w / 2:.1f}" y="19" fill="#fff" font-size="13" '
                f'text-anchor="middle">{n}</text>'
            )
        legend.append(f"{_LABELS[status]}: {n}")
        x += w
    return (
        f'<svg role="img" width="{width}" height="28" viewBox="0 0 {width} 28" '
        f'xmlns="http://www.w3.org/2000/svg"><title>Controls by status: {", ".join(legend)}'
        f"</title>{''.join(bars)}</svg>"
        f'<p class="meta">{" &middot; ".join(_e(item) for item in legend)}</p>'
    )


_GROUPS: Sequence[tuple[str, Sequence[str]]] = (
    ("Removals proven", ("revocations_verified", "revocations_attempted")),
    (
        "Credential age (days)",
        ("credential_age_p50_d", "credential_age_p95_d", "credential_age_max_d"),
    ),
    ("Drift to verified remediation (s)", ("remediation_p50_s", "remediation_p99_s")),
    ("Shares", ("owner_active_share", "sponsor_active_share", "reviewed_on_time_share")),
)


def _figure_charts(figures: Sequence[Mapping[str, Any]]) -> list[str]:
    by_id = {f["id"]: f for f in figures}
    return [_bars(title, [by_id[i] for i in ids if i in by_id]) for title, ids in _GROUPS]


def _bars(title: str, figures: Sequence[Mapping[str, Any]]) -> str:
    shares = all(f["unit"] == "share" for f in figures)
    values = [f["value"] for f in figures if f["value"] is not None]
    top = 1.0 if shares else max([float(v) for v in values] + [1e-9])
    rows = []
    for i, figure in enumerate(figures):
        y = 22 + i * 30
        value = figure["value"]
        width = 0.0 if value is None else 160 * float(value) / top
        shown = "unknown" if value is None else (f"{value * 100:.1f}%" if shares else f"{value:g}")
        rows.append(
            f'<text x="0" y="{y + 13}" font-size="12">{_e(figure["label"])}</text>'
            f'<rect x="250" y="{y}" width="{width:.1f}" height="18" fill="#0969da"/>'
            f'<rect x="250" y="{y}" width="160" height="18" fill="none" stroke="#d0d7de"/>'
            f'<text x="420" y="{y + 13}" font-size="12">{_e(shown)}</text>'
        )
    height = 30 + 30 * len(figures)
    return (
        f'<div class="chart"><svg role="img" width="500" height="{height}" '
        f'viewBox="0 0 500 {height}" xmlns="http://www.w3.org/2000/svg">'
        f'<title>{_e(title)}</title><text x="0" y="12" font-size="13" font-weight="bold">'
        f"{_e(title)}</text>{''.join(rows)}</svg></div>"
    )


def _controls_table(controls: Sequence[Mapping[str, Any]]) -> str:
    rows = "".join(
        f'<tr><td><a href="#{_e(c["oscal_id"])}">{_e(c["id"])}</a></td><td>{_e(c["title"])}</td>'
        f"<td>{_badge(c['status'])}</td><td>{len(c['findings'])}</td>"
        f"<td>{c['evidence_total']}</td></tr>"
        for c in controls
    )
    return (
        "<table><thead><tr><th>Control</th><th>Title</th><th>Status</th><th>Findings</th>"
        f"<th>Evidence entries</th></tr></thead><tbody>{rows}</tbody></table>"
    )


def _control(c: Mapping[str, Any], by_id: Mapping[str, Mapping[str, Any]]) -> str:
    parts = [
        f'<section class="control" id="{_e(c["oscal_id"])}">',
        f"<h3>{_e(c['id'])} {_e(c['title'])} {_badge(c['status'])}</h3>",
        f"<p>{_e(c['description'])}</p>",
        f"<p><b>Why:</b> {_e(c['reason'])}</p>",
    ]
    if c["needed"]:
        parts.append(f'<p class="needed"><b>Needed to assess it:</b> {_e(c["needed"])}</p>')
    if c["checks"]:
        parts.append(
            "<ul>"
            + "".join(
                f"<li>{_e(k['name'])}: <b>{_e(k['status'])}</b>, {_e(k['detail'])}</li>"
                for k in c["checks"]
            )
            + "</ul>"
        )
    if c["figures"]:
        parts.append(
            "<p>" + "; ".join(f"{_e(f['label'])}: {_e(_shown(f))}" for f in c["figures"]) + "</p>"
        )
    if c["findings"]:
        shown = [by_id[i] for i in c["findings"][:SHOWN_FINDINGS]]
        rows = "".join(
            f'<tr><td class="mono">{_e(f["id"])}</td><td>{_e(f["type"])}</td>'
            f"<td>{_e(f['severity'])}</td><td>{_e(f['target'])}/{_e(f['account'] or '*')}</td>"
            f"<td>{_e(f['entitlement'] or '')}</td><td>{_e(f['status'])}</td>"
            f"<td>{_e(f['first_seen'])}</td></tr>"
            for f in shown
        )
        more = len(c["findings"]) - len(shown)
        parts.append(
            "<table><thead><tr><th>Finding</th><th>Type</th><th>Severity</th><th>Account</th>"
            f"<th>Entitlement</th><th>Status</th><th>First seen</th></tr></thead><tbody>{rows}"
            "</tbody></table>"
            + (f'<p class="meta">and {more} more (the JSON report lists all)</p>' if more else "")
        )
    if c["evidence"]:
        rows = "".join(
            f"<tr><td>{e['seq']}</td><td>{_e(e['kind'])}</td><td>{_e(e['at'])}</td>"
            f'<td>{_e(e["summary"])}</td><td class="mono">{_e(e["hash"])}</td></tr>'
            for e in c["evidence"]
        )
        parts.append(
            f'<p class="meta">Evidence: the latest {len(c["evidence"])} of '
            f"{c['evidence_total']} journal entries</p><table><thead><tr><th>Entry</th>"
            "<th>Kind</th><th>At</th><th>What</th><th>Hash</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>"
        )
    parts.append("</section>")
    return "\n".join(parts)


def _badge(status: str) -> str:
    return f'<span class="badge {_e(status)}">{_e(_LABELS.get(status, status))}</span>'


def _shown(figure: Mapping[str, Any]) -> str:
    value = figure["value"]
    if value is None:
        return "unknown"
    if figure["unit"] == "share":
        return f"{value * 100:.1f}%"
    return f"{value:g}" if figure["unit"] == "count" else f"{value:g} {figure['unit']}"


def _e(value: object) -> str:
    return escape(inert(str(value)), quote=True)
