"""Domain errors to HTTP statuses: the one place where that mapping lives.

Every error body has the same shape, ``{"error": {"code", "message", ...}}``; no response ever
carries a stack trace. Unexpected exceptions are logged and answered with a bare 500.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from stalwart import errors as e

__all__ = ["STATUS", "ApiError", "error_body", "install_error_handlers", "status_for"]

log = logging.getLogger("stalwart.api")

STATUS: tuple[tuple[type[e.StalwartError], int], ...] = (
    (e.RunNotFound, 404),
    (e.InvalidInput, 422),
    (e.UnknownWorkflow, 422),
    (e.KillSwitchEngaged, 503),
    (e.NeedsConfirmation, 409),
    (e.PolicyDenied, 403),
    (e.UnauthorizedToolCall, 403),
    (e.InjectionBlocked, 400),
    (e.BudgetExceeded, 402),
    (e.OutputValidationError, 502),
    (e.ProviderError, 502),
    (e.StoreUnavailable, 503),
    (e.LeaseLost, 409),
    (e.InvalidTransition, 409),
    (e.ConfigError, 503),
    (e.WorkflowError, 409),
    (e.StalwartError, 500),
)
"""First match wins: subclasses before their parents."""


class ApiError(Exception):
    """An HTTP-level refusal raised by the API itself (auth, authorization, limits)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.details = details


def status_for(err: e.StalwartError) -> int:
    for cls, status in STATUS:
        if isinstance(err, cls):
            return status
    return 500


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return {"error": body}


def _safe_details(err: e.StalwartError) -> dict[str, Any] | None:
    # Only small, known-safe fields leave the process; provider routing internals do not.
    keep = {k: v for k, v in err.details.items() if k in ("estimate", "run_id", "status", "kind")}
    return keep or None


def install_error_handlers(api: FastAPI) -> None:
    @api.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message, exc.details), exc.status, headers=exc.headers)

    @api.exception_handler(e.StalwartError)
    async def _domain_error(request: Request, exc: e.StalwartError) -> JSONResponse:
        status = status_for(exc)
        headers = {}
        if exc.retry_after is not None and math.isfinite(exc.retry_after):
            headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
        elif status == 503:
            headers["Retry-After"] = "5"
        if status >= 500 and status != 503:
            log.warning("request %s %s failed: %s", request.method, request.url.path, exc.code)
        message = (
            exc.message
            if status < 500 or status == 503
            else f"{exc.code}: the request could not be completed"
        )
        if isinstance(exc, e.ConfigError):
            message = "the server is misconfigured; see its logs"
        return JSONResponse(error_body(exc.code, message, _safe_details(exc)), status, headers=headers)

    @api.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err.get("loc", ()))
            problems.append({"loc": loc, "message": str(err.get("msg", "invalid")), "type": err.get("type")})
        summary = "; ".join(f"{p['loc']}: {p['message']}" for p in problems[:5])
        return JSONResponse(error_body("invalid_request", f"invalid request: {summary}", problems), 422)

    @api.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and "parsing the body" in str(exc.detail):
            # A body that is not JSON (or not UTF-8) is a bad body like any other: 422, said plainly.
            return JSONResponse(
                error_body("invalid_request", "invalid request: the body is not valid JSON (UTF-8)"), 422
            )
        code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(
            exc.status_code, "http_error"
        )
        return JSONResponse(
            error_body(code, str(exc.detail)), exc.status_code, headers=getattr(exc, "headers", None)
        )

    @api.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body("internal_error", "internal server error"), 500)
