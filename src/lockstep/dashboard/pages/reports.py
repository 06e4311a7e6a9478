"""Reports: each framework's evidence report, built from the state store when asked for,
downloadable in every format (JSON, HTML, OSCAL, OCSF); the HTML one can also be read in
the browser. Reports cover the whole estate: for those who may see all of it."""

from __future__ import annotations

import base64
import hashlib
import re
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO, Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response, StreamingResponse

from lockstep.evidence.frameworks import FRAMEWORKS, load_framework
from lockstep.evidence.render import FORMATS, write_report
from lockstep.evidence.report import build_report, gather
from lockstep.secret import redact

from ..app import Dashboard, SignedIn

MEDIA = {
    "json": ("application/json", "json"),
    "html": ("text/html; charset=utf-8", "html"),
    "oscal": ("application/json", "oscal.json"),
    "ocsf": ("application/x-ndjson", "ocsf.jsonl"),
}
TITLES = {
    "owasp-nhi-2025": "OWASP Non-Human Identities Top 10 (2025)",
    "nist-csf-2.0": "NIST Cybersecurity Framework 2.0",
    "nist-800-53-r5": "NIST SP 800-53 Rev. 5",
    "nist-ai-rmf": "NIST AI Risk Management Framework",
}
_CHUNK = 1 << 16
_STYLE = re.compile(r"<style>(.*?)</style>", re.S)


def register(router: APIRouter, dash: Dashboard) -> None:
    @router.get("/reports")
    def reports(request: Request, viewer: SignedIn) -> Response:
        allowed = viewer.authority.sees_everything(viewer.principal)
        return dash.render(
            request,
            "reports.html",
            {
                "title": "Reports",
                "section": "reports",
                "allowed": allowed,
                "frameworks": [(f, TITLES.get(f, f)) for f in FRAMEWORKS],
                "formats": list(FORMATS),
            },
            viewer,
        )

    @router.get("/reports/{framework}/{fmt}")
    def report(
        request: Request, viewer: SignedIn, framework: str, fmt: str, view: bool = False
    ) -> Response:
        if not viewer.authority.sees_everything(viewer.principal):
            raise HTTPException(403, "reports cover the whole estate: ask an admin")
        if framework not in FRAMEWORKS or fmt not in FORMATS:
            raise HTTPException(404, "no such report")
        now = datetime.now(UTC)
        loaded, _ = dash.estate.current()
        built = build_report(
            load_framework(framework), gather(loaded.policy, dash.estate.store), now
        )
        out = tempfile.TemporaryFile("w+", encoding="utf-8", newline="\n")  # noqa: SIM115
        write_report(built, fmt, _Redacted(out))
        out.seek(0)
        media, ext = MEDIA[fmt]
        name = f"lockstep-{framework}-{now:%Y%m%dT%H%M%SZ}.{ext}"
        headers = {
            "content-disposition": f"{'inline' if view and fmt == 'html' else 'attachment'}; "
            f'filename="{name}"'
        }
        if fmt == "html":
            headers["content-security-policy"] = _report_csp(out)
        dash.log.info("report downloaded", target=None, op="report", status="ok",
                      framework=framework, format=fmt, person=viewer.principal.name)  # fmt: skip
        return StreamingResponse(_chunks(out), media_type=media, headers=headers)


def _report_csp(out: IO[str]) -> str:
    """The HTML report has its styles inline: allowed by their hash alone, and nothing else
    (it has no script)."""
    head = out.read(_CHUNK * 4)
    out.seek(0)
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(m.encode()).digest()).decode()}'"
        for m in _STYLE.findall(head)
    )
    return f"default-src 'none'; style-src {hashes or 'none'}; img-src data:; base-uri 'none'; " \
        "form-action 'none'; frame-ancestors 'none'"  # fmt: skip


def _chunks(out: IO[str]) -> Iterator[bytes]:
    try:
        while chunk := out.read(_CHUNK):
            yield chunk.encode("utf-8")
    finally:
        out.close()


class _Redacted:
    def __init__(self, out: IO[str]) -> None:
        self._out = out

    def write(self, text: str, /) -> Any:
        return self._out.write(redact(text))
