"""The web edge: what browsers are told on every response (API.md, "Hostile input").

- Cross-origin: pages on `CORS_ORIGINS` may call the API (preflights answered, `Authorization`
  and `Content-Type` allowed, `Retry-After` readable by scripts); any other origin gets no
  `Access-Control-Allow-Origin`, so its browser withholds the answer (and, for a heartbeat,
  never sends it: the preflight fails). The tracker bundle (`/embed/*`) is readable anywhere.
- `X-Content-Type-Options: nosniff` on every response; the HTML pages carry a
  `Content-Security-Policy` and `Referrer-Policy: same-origin`.

`ingest/app.py` adds `WebEdge` outermost, so the heartbeat route (a bare ASGI app) and the
request log's 500s get the same headers as every FastAPI route's.
"""

from __future__ import annotations

import re
from base64 import b64encode
from collections.abc import Callable, Iterable, Mapping
from hashlib import sha256

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.routing import get_route_path  # type: ignore[attr-defined]  # not re-exported; the router's own
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ingest.errors import error_response
from shared.settings import Settings

EMBED_PREFIX = "/embed/"  # the tracker bundle, for any page (docs/browser.md)
CORS_METHODS = ("GET", "POST", "PUT", "DELETE")
CORS_REQUEST_HEADERS = ("Authorization", "Content-Type")
CORS_EXPOSED_HEADERS = ("Retry-After",)  # the tracker waits as long as a 429 or 503 asks

# What the pages use: scripts and styles from this service only (React and uPlot set styles
# through the DOM, which CSP allows; no page has inline styles); videos, HLS playlists and
# segments from wherever a material's url points (any http(s) address) and `blob:` for
# hls.js's Media Source and its transmuxer worker. No form-action: it does not fall back to
# default-src, and a page may post a form to another site (an LMS's deep-linking return).
PAGE_POLICY: dict[str, tuple[str, ...]] = {
    "default-src": ("'self'",),
    "script-src": ("'self'",),
    "style-src": ("'self'",),
    "img-src": ("'self'", "data:"),
    "media-src": ("'self'", "blob:", "https:", "http:"),
    "connect-src": ("'self'", "https:", "http:"),
    "worker-src": ("'self'", "blob:"),
    "object-src": ("'none'",),
    "base-uri": ("'self'",),
}
# FastAPI's Swagger UI page loads its bundle and styles from this CDN, its icon from FastAPI's
# site, and starts with one inline script (allowed by its hash).
SWAGGER_CDN = "https://cdn.jsdelivr.net"
# Swagger UI at one version, each file with its hash (Subresource Integrity): the browser runs
# nothing else the CDN might serve under that name. The hashes are npm's swagger-ui-dist 5.36.0
# files' (`npm pack swagger-ui-dist@5.36.0`; `openssl dgst -sha384 -binary <file> | base64`).
SWAGGER_DIST = f"{SWAGGER_CDN}/npm/swagger-ui-dist@5.36.0"
SWAGGER_FILES = {
    f"{SWAGGER_DIST}/swagger-ui-bundle.js":
        "sha384-fUpRgC19yPykTqzdrUbdAg8NTiu16NEKf9U12J+IJWCg8/1mEI8f2+PEIz60Wyd+",
    f"{SWAGGER_DIST}/swagger-ui.css":
        "sha384-z/AtSaOHGn5MJ5auAHXUypohywlIWLBZo1jeGmhdpVIbCnFhxAH92cwdV41oyINc",
}  # fmt: skip
SWAGGER_ICON_SITE = "https://fastapi.tiangolo.com"
INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def frame_ancestors(settings: Settings, registered: Iterable[str] = ()) -> list[str]:
    """Who may frame the pages: `FRAME_ANCESTORS`, as CSP sources, then the `frame_origins`
    of the registered LTI platforms (`registered`, shared/lti/frames.py). The one place that
    decides."""
    sources = settings.frame_ancestors.split()
    return [*sources, *(o for o in registered if o not in sources)]


def content_security_policy(
    settings: Settings,
    extra: Mapping[str, Iterable[str]] | None = None,
    registered: Iterable[str] = (),
) -> str:
    """The pages' policy, with `extra` sources added to its directives (a page that loads more,
    like the API docs), framed by `frame_ancestors`."""
    extra = extra or {}
    directives = {name: [*sources, *extra.get(name, ())] for name, sources in PAGE_POLICY.items()}
    directives["frame-ancestors"] = frame_ancestors(settings, registered)
    return "; ".join(f"{name} {' '.join(sources)}" for name, sources in directives.items())


_KEPT_ON_REFUSAL = ("vary", "access-control-allow-methods", "access-control-allow-headers")


class Preflights(CORSMiddleware):
    """Starlette's CORS rules, used only to answer preflights: a refused one (origin, method or
    header not allowed) in the error shape (403) instead of plain text, and never with
    `Access-Control-Allow-Origin` (Starlette names a listed origin even when it refuses a
    header)."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code == 200:
            return response
        kept = {k: v for k, v in response.headers.items() if k in _KEPT_ON_REFUSAL}
        reason = bytes(response.body).decode()  # "Disallowed CORS origin, headers"
        return error_response(403, "cors_refused", f"{reason} (CORS_ORIGINS)", None, kept)


NOSNIFF = (b"x-content-type-options", b"nosniff")
VARY_ORIGIN = (b"vary", b"Origin")  # the CORS headers depend on it: so must caches
EXPOSED = (b"access-control-expose-headers", ", ".join(CORS_EXPOSED_HEADERS).encode())
ANY_PAGE = [
    NOSNIFF,
    (b"access-control-allow-origin", b"*"),
    (b"cross-origin-resource-policy", b"cross-origin"),
]
RawHeaders = list[tuple[bytes, bytes]]


class WebEdge:
    """The headers of the module docstring on every response, the heartbeat route's included.

    Preflights are answered by Starlette's CORS rules (`Preflights`); the other answers get
    their few headers appended here. Measured on a bare ASGI app, a request with an Origin:
    Starlette's CORS middleware added 26 us (a sixth of a heartbeat at 6,300 req/s), this 5.5.
    """

    def __init__(
        self,
        app: ASGIApp,
        settings: Settings,
        registered: Callable[[], Iterable[str]] = tuple,
    ) -> None:
        self.app = app
        self.settings = settings
        self.registered = registered  # the LTI platforms' frame origins, held in memory
        self.origins = frozenset(origin.encode() for origin in settings.cors_origin_list)
        self.preflights = Preflights(
            app,
            allow_origins=settings.cors_origin_list,
            allow_methods=CORS_METHODS,
            allow_headers=CORS_REQUEST_HEADERS,
            expose_headers=CORS_EXPOSED_HEADERS,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin: bytes | None = None
        asks_preflight = False
        for name, value in scope["headers"]:  # the first of repeated headers, as Starlette
            if name == b"origin" and origin is None:
                origin = value
            elif name == b"access-control-request-method":
                asks_preflight = True
        if origin is not None and asks_preflight and scope["method"] == "OPTIONS":
            response = self.preflights.preflight_response(Headers(scope=scope))
            await response(scope, receive, self._adding([NOSNIFF], send))
            return
        if get_route_path(scope).startswith(EMBED_PREFIX):
            extra = ANY_PAGE  # the same bundle for every page, whatever its origin
        elif origin is not None and origin in self.origins:
            extra = [NOSNIFF, VARY_ORIGIN, (b"access-control-allow-origin", origin), EXPOSED]
        else:
            extra = [NOSNIFF, VARY_ORIGIN]
        await self.app(scope, receive, self._adding(extra, send))

    def _adding(self, extra: RawHeaders, send: Send) -> Send:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: RawHeaders = message.setdefault("headers", [])
                headers += extra
                self._page_headers(headers)
            await send(message)

        return send_with_headers

    def _page_headers(self, headers: RawHeaders) -> None:
        """On an HTML page: the pages' policy (unless it set its own), Referrer-Policy, and
        `Cache-Control: no-store` (unless it set its own): the policy's `frame-ancestors`
        changes when an LMS is registered, and a cached page (or a 304, which carries no
        policy) would keep the old one, refusing the new LMS's frame."""
        html = has_policy = has_cache = False
        for name, value in headers:
            if name == b"content-type":
                html = value.startswith(b"text/html")
            elif name == b"content-security-policy":
                has_policy = True
            elif name == b"cache-control":
                has_cache = True
        if not html:
            return
        if not has_policy:
            policy = content_security_policy(self.settings, registered=self.registered())
            headers.append((b"content-security-policy", policy.encode()))
        if not has_cache:
            headers.append((b"cache-control", b"no-store"))
        headers.append((b"referrer-policy", b"same-origin"))


def _with_integrity(page: HTMLResponse) -> HTMLResponse:
    """The page with `integrity` (and `crossorigin`, which SRI needs) on each CDN file."""
    text = bytes(page.body).decode()
    for url, digest in SWAGGER_FILES.items():
        for attribute in (f'src="{url}"', f'href="{url}"'):
            if attribute not in text:
                continue
            text = text.replace(
                attribute, f'{attribute} integrity="{digest}" crossorigin="anonymous"', 1
            )
    return HTMLResponse(text, status_code=page.status_code)


def add_docs(app: FastAPI, settings: Settings) -> None:
    """`GET /docs`: FastAPI's Swagger UI page (create the app with `docs_url=None`), under a
    policy that lets it run and nothing more."""

    async def docs(request: Request) -> HTMLResponse:
        openapi_url = request.scope.get("root_path", "").rstrip("/") + (app.openapi_url or "")
        page = get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{SWAGGER_DIST}/swagger-ui-bundle.js",
            swagger_css_url=f"{SWAGGER_DIST}/swagger-ui.css",
            swagger_ui_parameters={"validatorUrl": None},  # no badge from a third site
        )
        page = _with_integrity(page)
        hashes = [
            f"'sha256-{b64encode(sha256(script.encode()).digest()).decode()}'"
            for script in INLINE_SCRIPT.findall(bytes(page.body).decode())
        ]
        extra = {
            "script-src": [SWAGGER_CDN, *hashes],
            "style-src": [SWAGGER_CDN],
            "img-src": [SWAGGER_ICON_SITE],
        }
        page.headers["Content-Security-Policy"] = content_security_policy(settings, extra)
        return page

    app.add_route("/docs", docs, include_in_schema=False)
