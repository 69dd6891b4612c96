"""The service's errors: each maps to one HTTP status and machine code of API.md."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class Unauthenticated(ServiceError):
    status = 401
    code = "unauthenticated"


class Forbidden(ServiceError):
    status = 403
    code = "forbidden"


class NotFound(ServiceError):
    status = 404
    code = "not_found"


class InvalidInput(ServiceError):
    status = 422
    code = "invalid"


class ClientTsOutOfRange(InvalidInput):
    """A heartbeat's `client_ts` is older than MAX_CLIENT_AGE_S, or not a date."""

    code = "client_ts_out_of_range"


class RetryLater(ServiceError):
    """The request was fine but cannot be served now; the client retries after a delay."""

    def __init__(self, message: str, retry_after_s: int = 5, details: Any = None) -> None:
        super().__init__(message, details)
        self.retry_after_s = retry_after_s


class RateLimited(RetryLater):
    """Too many requests from one student."""

    status = 429
    code = "rate_limited"


class Unavailable(RetryLater):
    """A backing service is down or the buffer is full."""

    status = 503
    code = "unavailable"


class BufferFull(Unavailable):
    code = "buffer_full"


class DuplicatePlatform(InvalidInput):
    """Another LTI platform is registered with the same (`issuer`, `client_id`): a launch
    could not tell them apart."""

    code = "duplicate_platform"


class PlatformCallFailed(Exception):
    """An LTI platform's service (token, line items, scores) did not do what the tool asked:
    `status` is its HTTP answer (None: no answer, a network error or timeout), `retry_after_s`
    what a `429` asked for. Not an HTTP error of this service: the workers decide from it
    whether to retry."""

    def __init__(
        self, what: str, status: int | None, detail: str, retry_after_s: float | None = None
    ) -> None:
        super().__init__(f"{what}: HTTP {status} {detail}" if status else f"{what}: {detail}")
        self.status, self.detail, self.retry_after_s = status, detail, retry_after_s
