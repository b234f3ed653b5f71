"""The one exception of the SDK for the server's answers: `ContextIQError`.

Every error the server sends is `application/problem+json` (RFC 9457) with a stable `code`;
`ContextIQError` carries it. Subclasses by status let you catch a family
(`except NotFoundError`), but `code` is what to match on: one per kind of problem, stable
across versions (`session_not_found`, `validation_failed`, `rate_limited`, ...).
"""

from __future__ import annotations

import email.utils
import json
import time
from typing import Any, Dict, Mapping, Optional, Type

import httpx

__all__ = [
    "ContextIQError",
    "BadRequestError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "ConflictError",
    "PayloadTooLargeError",
    "ValidationError",
    "RateLimitError",
    "ServerError",
    "ServiceUnavailableError",
]


class ContextIQError(Exception):
    """A problem answer of the server (any 4xx or 5xx).

    Attributes:
        status: the HTTP status (404, 422, ...).
        code: the server's stable code (`session_not_found`, `validation_failed`, ...). An
            answer that is not a problem document (a proxy's page, a bodiless 400 from the HTTP
            layer) gets `http_<status>`.
        detail: what went wrong, in words.
        field: for validation failures, the JSON path (body), name (query) or header at fault.
        title: the short, status-level title (`Validation failed`).
        retry_after: seconds to wait before trying again, from `Retry-After` (429 and 503).
        type: the problem type URI (`urn:contextiq:problem:<code>`).
        correlation_id: the `X-Correlation-ID` of the exchange, for the server's logs.
        response: the `httpx.Response`, or None.
    """

    def __init__(
        self,
        status: int,
        code: str,
        detail: str = "",
        field: Optional[str] = None,
        title: str = "",
        retry_after: Optional[float] = None,
        *,
        type: Optional[str] = None,
        correlation_id: Optional[str] = None,
        response: Optional[httpx.Response] = None,
        body: Any = None,
    ) -> None:
        self.status = status
        self.code = code
        self.detail = detail
        self.field = field
        self.title = title
        self.retry_after = retry_after
        self.type = type if type is not None else f"urn:contextiq:problem:{code}"
        self.correlation_id = correlation_id
        self.response = response
        self.body = body
        super().__init__(self._message())

    def _message(self) -> str:
        text = f"{self.status} {self.code}"
        if self.detail:
            text += f": {self.detail}"
        if self.field:
            text += f" (field: {self.field})"
        return text

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, detail={self.detail!r}, "
            f"field={self.field!r})"
        )

    def __reduce__(self) -> Any:
        return (
            _rebuild,
            (type(self), self.status, self.code, self.detail, self.field, self.title, self.retry_after,
             self.type, self.correlation_id),
        )

    @classmethod
    def from_response(cls, response: httpx.Response) -> "ContextIQError":
        """The error of a non-2xx answer, as the subclass its status calls for."""
        status = response.status_code
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        correlation_id = response.headers.get("x-correlation-id")
        body: Any = None
        try:
            body = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
            body = None
        error_class = _class_for(status)
        if isinstance(body, dict) and isinstance(body.get("code"), str):
            field = body.get("field")
            return error_class(
                status=int(body.get("status") or status),
                code=body["code"],
                detail=str(body.get("detail") or ""),
                field=field if isinstance(field, str) else None,
                title=str(body.get("title") or ""),
                retry_after=retry_after,
                type=body.get("type") if isinstance(body.get("type"), str) else None,
                correlation_id=correlation_id,
                response=response,
                body=body,
            )
        text = response.text.strip() if response.content else ""
        return error_class(
            status=status,
            code=f"http_{status}",
            detail=text[:1000] or response.reason_phrase,
            title=response.reason_phrase,
            retry_after=retry_after,
            type="about:blank",
            correlation_id=correlation_id,
            response=response,
            body=body,
        )


def _rebuild(cls: Type[ContextIQError], status: int, code: str, detail: str, field: Optional[str], title: str,
             retry_after: Optional[float], problem_type: Optional[str], correlation_id: Optional[str]) -> ContextIQError:
    return cls(status, code, detail, field, title, retry_after, type=problem_type, correlation_id=correlation_id)


class BadRequestError(ContextIQError):
    """400: malformed JSON, conflicting credentials, a body nested too deep."""


class AuthenticationError(ContextIQError):
    """401: `missing_credentials` or `invalid_credentials` (bad, revoked or expired)."""


class PermissionDeniedError(ContextIQError):
    """403 `forbidden`: the credential lacks the permission, or the scope is out of its reach."""


class NotFoundError(ContextIQError):
    """404: `session_not_found`, `memory_not_found`, `job_not_found`, `key_not_found`, ..."""


class ConflictError(ContextIQError):
    """409: the resource exists already."""


class PayloadTooLargeError(ContextIQError):
    """413 `payload_too_large`: the body is over the server's `MAX_REQUEST_BODY_BYTES`."""


class ValidationError(ContextIQError):
    """422 `validation_failed` or `limit_exceeded`, with the `field` at fault."""


class RateLimitError(ContextIQError):
    """429 `rate_limited`, raised once the retries are spent; `retry_after` says when to try again."""


class ServerError(ContextIQError):
    """5xx."""


class ServiceUnavailableError(ServerError):
    """503: `store_unavailable`, `service_unavailable` or `timeout`; `retry_after` is set."""


_BY_STATUS: Dict[int, Type[ContextIQError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: ValidationError,
    429: RateLimitError,
    503: ServiceUnavailableError,
}


def _class_for(status: int) -> Type[ContextIQError]:
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if status >= 500:
        return ServerError
    return ContextIQError


def parse_retry_after(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Seconds from a `Retry-After` header: delay-seconds or an HTTP date; None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def problem_fields(error: ContextIQError) -> Mapping[str, Any]:
    """The problem document's fields of an error, as a dict (for logging)."""
    return {
        "type": error.type,
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
        "code": error.code,
        "field": error.field,
    }
