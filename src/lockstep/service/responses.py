"""The API's error shape, shared by every route: ``{"error": "one line"}`` with the status."""

from __future__ import annotations

from http import HTTPStatus

from fastapi.responses import JSONResponse


def error_response(status: HTTPStatus, message: str) -> JSONResponse:
    headers = {}
    if status is HTTPStatus.UNAUTHORIZED:
        headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    return JSONResponse({"error": message}, status_code=status, headers=headers)
