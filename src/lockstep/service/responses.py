"""The API's error shape, shared by every route and every refusal, FastAPI's own included (an
unknown route, a method not allowed, a malformed body): ``{"error": "one line"}`` with the
status."""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException


def error_response(
    status: HTTPStatus, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    shown = dict(headers or {})
    if status is HTTPStatus.UNAUTHORIZED:
        shown.setdefault("WWW-Authenticate", 'Bearer error="invalid_token"')
    return JSONResponse({"error": message}, status_code=status, headers=shown)


def one_shape(app: FastAPI) -> None:
    """Every error the app answers, in the shape above."""

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return error_response(HTTPStatus(exc.status_code), str(exc.detail), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(HTTPStatus.UNPROCESSABLE_ENTITY, _first_problem(exc))


def _first_problem(exc: RequestValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "the request is not valid"
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ())[1:])
    message = str(first.get("msg", "invalid"))
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return (f"{where}: {message}" if where else message) + more
