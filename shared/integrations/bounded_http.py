"""Calls to servers outside the school's control (an LRS, webhook receivers, LTI platforms),
bounded so that none of them can hold a worker or fill its memory.

httpx's timeouts bound each read, not a request: a server that sends a byte just inside each
read timeout is never cut off, and a compressed answer of a few KB inflates to gigabytes when
it is read. `fetch` gives the whole request `timeout_s` (asyncio's timeout around httpx's async
client), asks for the answer uncompressed, refuses a compressed one (`identity` only) and reads
at most `max_bytes` of it as it arrives: past that the answer is refused (`AnswerRefused`), or,
with `truncate`, cut (and a compressed one not read: the caller wants its status). Every
failure is an `httpx.HTTPError`, so callers keep their handling.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx


class AnswerRefused(httpx.HTTPError):
    """The answer took longer than the call's time in all, was larger than it may be, or was
    compressed though asked not to be."""


async def fetch(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    timeout_s: float,
    max_bytes: int,
    truncate: bool = False,
    **request: Any,
) -> httpx.Response:
    """The answer to one request, read whole within `timeout_s` in all and at most `max_bytes`
    (more: AnswerRefused, or with `truncate` the first `max_bytes`), its body in `.content`."""
    headers = httpx.Headers(request.pop("headers", None))
    headers["Accept-Encoding"] = "identity"
    try:
        async with (
            asyncio.timeout(timeout_s),
            http.stream(method, url, headers=headers, **request) as answer,
        ):
            body = b""
            if answer.headers.get("content-encoding", "identity").lower() != "identity":
                if not truncate:
                    raise AnswerRefused("the answer is compressed (asked not to be)")
                max_bytes = 0  # its status is all a caller that truncates gets of it
            async for chunk in answer.aiter_raw() if max_bytes else _nothing():
                body += chunk
                if len(body) > max_bytes:
                    if not truncate:
                        raise AnswerRefused(f"the answer is larger than {max_bytes} bytes")
                    body = body[:max_bytes]
                    break
    except TimeoutError:
        raise AnswerRefused(f"no whole answer within {timeout_s:g} s") from None
    kept = {k: v for k, v in answer.headers.items() if k.lower() != "content-length"}
    return httpx.Response(answer.status_code, headers=kept, content=body, request=answer.request)


async def _nothing() -> Any:
    """An answer not read at all (closing the stream drops it)."""
    return
    yield
