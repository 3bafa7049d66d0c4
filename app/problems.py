"""RFC 9457 problem details: every error Engram answers with has a stable `type` and a useful message."""

from __future__ import annotations

from typing import Any

import structlog
from litestar import MediaType, Request, Response
from litestar.exceptions import (
    HTTPException,
    MethodNotAllowedException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    ValidationException,
)
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:engram:problem:"

log = structlog.get_logger("engram.errors")


class ProblemError(Exception):
    """Raised anywhere below the routes; rendered as application/problem+json."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.headers = headers or {}
        self.extensions = extensions


def not_found(what: str = "memory") -> ProblemError:
    # The same answer for "does not exist" and "belongs to someone else": existence never leaks.
    return ProblemError(404, "not-found", "Not found", f"No {what} with that id exists for you.")


def bad_request(detail: str, **extensions: Any) -> ProblemError:
    return ProblemError(400, "invalid-request", "Invalid request", detail, **extensions)


def problem_response(request: Request[Any, Any, Any], problem: ProblemError) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {
        "type": TYPE_PREFIX + problem.slug,
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
        "instance": request.url.path,
    }
    body.update(problem.extensions)
    return Response(body, status_code=problem.status, media_type=PROBLEM_MEDIA_TYPE, headers=problem.headers)


def _from_http_exception(exc: HTTPException) -> ProblemError:
    headers = dict(exc.headers or {})
    if isinstance(exc, ValidationException):
        errors = exc.extra if isinstance(exc.extra, list) else []
        fields = [
            {"field": str(e.get("key", "")), "message": str(e.get("message", ""))}
            for e in errors
            if isinstance(e, dict)
        ]
        detail = "; ".join(f"{f['field']}: {f['message']}" if f["field"] else f["message"] for f in fields)
        return ProblemError(
            400,
            "validation",
            "The request is not valid",
            detail or str(exc.detail),
            headers=headers,
            errors=fields,
        )
    if isinstance(exc, NotFoundException):
        return ProblemError(404, "not-found", "Not found", "Nothing is served at this path.", headers=headers)
    if isinstance(exc, MethodNotAllowedException):
        return ProblemError(405, "method-not-allowed", "Method not allowed", str(exc.detail), headers=headers)
    if isinstance(exc, NotAuthorizedException):
        return ProblemError(401, "unauthorized", "Authentication required", str(exc.detail), headers=headers)
    if isinstance(exc, PermissionDeniedException):
        return ProblemError(403, "forbidden", "Forbidden", str(exc.detail), headers=headers)
    slug = {413: "too-large", 415: "unsupported-media-type", 429: "rate-limited", 503: "unavailable"}.get(
        exc.status_code, "http-error"
    )
    return ProblemError(exc.status_code, slug, str(exc.detail), str(exc.detail), headers=headers)


def handle_problem(request: Request[Any, Any, Any], exc: ProblemError) -> Response[dict[str, Any]]:
    return problem_response(request, exc)


def handle_http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    return problem_response(request, _from_http_exception(exc))


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error", path=request.url.path, error_type=type(exc).__name__)
    if request.headers.get("accept", "").startswith("text/html"):
        return Response("Something went wrong on our side.", status_code=500, media_type=MediaType.TEXT)
    return problem_response(
        request,
        ProblemError(
            HTTP_500_INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "Engram could not complete the request; the server log has the details.",
        ),
    )


EXCEPTION_HANDLERS: dict[Any, Any] = {
    ProblemError: handle_problem,
    HTTPException: handle_http_exception,
    Exception: handle_unexpected,
}
