"""The overview: counts, drift by type, findings by severity, time to remediate and
credential ages, as charts drawn on the server."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from markupsafe import Markup

from .. import charts
from ..app import Dashboard, SignedIn
from ..formats import duration
from ..picture import AGE_BUCKETS_D, SEVERITIES, TTR_BUCKETS_S

STATUS_ORDER = ("managed", "suspended", "orphan", "lease", "absent", "unreachable", "excluded")
AGE_LABELS = (*(f"<{d}d" for d in AGE_BUCKETS_D), f"≥{AGE_BUCKETS_D[-1]}d")
TTR_LABELS = ("<1m", "<10m", "<1h", "<1d", "<7d", "≥7d")
_BAD = {"orphan", "unreachable", "absent"}


def register(router: APIRouter, dash: Dashboard) -> None:
    @router.get("/")
    def overview(request: Request, viewer: SignedIn) -> Response:
        picture = dash.estate.picture()
        figures = picture.overview(viewer.visible) if picture is not None else None
        return dash.render(
            request,
            "overview.html",
            {
                "title": "Overview",
                "section": "overview",
                "ov": figures,
                "drawn": _charts(figures) if figures is not None else [],
                "targets": picture.targets if picture is not None else [],
                "sees_targets": viewer.visible is None,
            },
            viewer,
        )


def _charts(ov: dict[str, Any]) -> list[tuple[str, Markup, str]]:
    """(caption, chart, note) for each chart of the overview."""
    statuses = [
        (s, ov["statuses"][s], "bad" if s in _BAD else s)
        for s in (*STATUS_ORDER, *sorted(set(ov["statuses"]) - set(STATUS_ORDER)))
        if ov["statuses"].get(s)
    ]
    severities = [(s, ov["severities"].get(s, 0), f"sev-{s}") for s in SEVERITIES]
    drift = [(t.replace("_", " "), n, "drift") for t, n in ov["drift"].items()]
    ttr = (
        f"{ov['ttr_count']:,} remediated; p50 {duration(ov['ttr_p50_s'])}, "
        f"p95 {duration(ov['ttr_p95_s'])}, from first seen to remediated and verified"
        if ov["ttr_count"]
        else "nothing remediated yet"
    )
    aged = sum(ov["age_buckets"])
    return [
        ("Accounts by status", charts.bars("Accounts by status", statuses), ""),
        ("Open findings by severity", charts.bars("Open findings by severity", severities), ""),
        ("Drift by type (open findings)", charts.bars("Drift by type", drift, "no drift"), ""),
        (
            "Time to remediate",
            charts.columns("Time to remediate", TTR_LABELS, ov["ttr_buckets"], "ttr"),
            ttr,
        ),
        (
            "Credential age",
            charts.columns("Credential age", AGE_LABELS, ov["age_buckets"], "age"),
            f"{aged:,} credentials issued by lockstep" if aged else "no credential issued yet",
        ),
    ]


assert len(TTR_LABELS) == len(TTR_BUCKETS_S) + 1
