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


class RateLimited(ServiceError):
    """Too many requests from one student; the client must wait `retry_after_s`."""

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after_s: int = 60, details: Any = None) -> None:
        super().__init__(message, details)
        self.retry_after_s = retry_after_s


class Unavailable(ServiceError):
    """A backing service is down or the buffer is full: the client must retry later."""

    status = 503
    code = "unavailable"

    def __init__(self, message: str, retry_after_s: int = 5, details: Any = None) -> None:
        super().__init__(message, details)
        self.retry_after_s = retry_after_s


class BufferFull(Unavailable):
    code = "buffer_full"
