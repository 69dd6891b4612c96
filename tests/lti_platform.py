"""The LMS of the LTI tests: a real third-party platform implementation, `lti1p3platform`
0.1.8 (OpenLearning's, derived from Open edX's LTI code), builds and signs the id_token from
the tool's authentication request; a small HTTP server of the suite's own serves what an LMS
serves over HTTP beside it (the key set; service tokens and a paged NRPS roster on request). A
test adds an endpoint with `lms.route(...)`: each is a function of the request that answers
(status, headers, body)."""

from __future__ import annotations

import json
import secrets
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from lti1p3platform.ltiplatform import LTI1P3PlatformConfAbstract
from lti1p3platform.message_launch import LTIAdvantageMessageLaunchAbstract
from lti1p3platform.registration import Registration
from lti1p3platform.request import Request, TRequest

CLIENT_ID, DEPLOYMENT, PLATFORM_ID = "tool-client-1", "dep-1", "moodle-test"
NRPS_SCOPE = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"
AGS_SCORE_SCOPE = "https://purl.imsglobal.org/spec/lti-ags/scope/score"
MEMBERSHIPS = "application/vnd.ims.lti-nrps.v2.membershipcontainer+json"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MESSAGE_TYPE = "https://purl.imsglobal.org/spec/lti/claim/message_type"
LEARNER = "http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"
INSTRUCTOR = "http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor"
VIDEO = "v-100"  # tests.helpers.COURSE's, in COURSE_ID


def new_key_pem() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


@dataclass(frozen=True)
class HttpRequest:
    """What the platform's HTTP server received."""

    method: str
    path: str  # without the query
    query: str
    headers: dict[str, str]  # names in lower case
    body: bytes


@dataclass
class HttpAnswer:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, value: Any, status: int = 200, **headers: str) -> HttpAnswer:
        kind = {"Content-Type": "application/json"}
        return cls(status, json.dumps(value).encode(), {**kind, **headers})


Endpoint = Callable[[HttpRequest], HttpAnswer]


class Lms:
    """The platform: lti1p3platform's registration, keys and launch, and an HTTP server whose
    endpoints are `routes` by (method, path); GET /jwks is the platform's key set.

    `public=(host, tls)` also serves the same endpoints over TLS at `public_base`
    (`https://<host>:<port>`, the host mapped to 127.0.0.1 by the browser): the pages a browser
    opens. `base` (plain HTTP on loopback) stays the issuer and what the tool fetches."""

    def __init__(self, public: tuple[str, ssl.SSLContext] | None = None) -> None:
        self.fetches = 0
        self.requests: list[HttpRequest] = []
        self.routes: dict[tuple[str, str], Endpoint] = {}
        self.registration = Registration()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.base = f"http://127.0.0.1:{self.server.server_port}"
        self.registration.set_iss(self.base).set_client_id(CLIENT_ID)
        self.registration.set_deployment_id(DEPLOYMENT)
        self.registration.set_launch_url("https://testserver/lti/launch")
        self.registration.set_oidc_login_url("https://testserver/lti/login")
        self.rotate()
        self.route("GET", "/jwks", self._jwks)
        self.servers = [self.server]
        self.public_base = self.base
        if public is not None:
            host, tls = public
            secure = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
            secure.socket = tls.wrap_socket(secure.socket, server_side=True)
            self.public_base = f"https://{host}:{secure.server_port}"
            self.servers.append(secure)
        for server in self.servers:
            threading.Thread(target=server.serve_forever, daemon=True).start()

    def route(self, method: str, path: str, endpoint: Endpoint) -> None:
        self.routes[(method, path)] = endpoint

    def rotate(self) -> None:
        """A new platform key; the old one leaves the published set at once."""
        private, public = new_key_pem()
        self.registration.set_platform_private_key(private)
        self.registration.set_platform_public_key(public)

    @property
    def kid(self) -> str | None:
        kid: str | None = self.registration.get_kid()
        return kid

    def _jwks(self, _: HttpRequest) -> HttpAnswer:
        self.fetches += 1
        return HttpAnswer.json({"keys": self.registration.get_jwks()})

    def _answer(self, request: HttpRequest) -> HttpAnswer:
        self.requests.append(request)
        endpoint = self.routes.get((request.method, request.path))
        return endpoint(request) if endpoint else HttpAnswer.json({"error": "not found"}, 404)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        lms = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                request = HttpRequest(
                    self.command,
                    url.path,
                    url.query,
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length) if length else b"",
                )
                answer = lms._answer(request)
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            do_GET = do_POST = do_PUT = do_DELETE = _serve  # http.server's names

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def registration_body(self, deployment_ids: list[str]) -> dict[str, Any]:
        return {
            "name": "Moodle (test)",
            "issuer": self.base,
            "client_id": CLIENT_ID,
            "auth_login_url": f"{self.base}/auth",
            "auth_token_url": f"{self.base}/token",
            "jwks_url": f"{self.base}/jwks",
            "deployment_ids": deployment_ids,
        }

    def authorize(self, auth_request: dict[str, str], **claims: Any) -> dict[str, str]:
        """The platform's answer to the tool's authentication request: the form post of
        `id_token` and `state` (lti1p3platform's MessageLaunch), `claims` overriding its own."""
        conf = _Conf(registration=self.registration)
        launch = _Launch(_Req(auth_request), conf)
        launch.set_user_data(
            claims.pop("sub", "u-42"), claims.pop("roles", [LEARNER]), claims.pop("name", None)
        )
        launch.set_resource_link_claim("rl-1", title="Speed")
        context_id, title = claims.pop("context", ("ctx-1", "Physics"))
        launch.set_launch_context_claim(context_id, context_title=title)
        if memberships_url := claims.pop("memberships_url", None):
            launch.set_nrps(memberships_url)
        launch.set_custom_parameters_claim({"material_id": claims.pop("material_id", VIDEO)})
        launch.set_extra_claims(claims)
        form: dict[str, str] = launch.lti_launch()
        return form

    # -- services: tokens (Security Framework 1.0 §4.1) and the roster (NRPS 2.0) ----------

    def serve_service_tokens(self, tool_jwks: Callable[[], dict[str, Any]]) -> None:
        """POST /token: client_credentials with a JWT client assertion, checked strictly
        (signature by a key of `tool_jwks()`, `iss` = `sub` = the client id, `aud` this URL,
        `exp`, a `jti` never seen before); the token holds the scopes asked for among those
        this platform offers. `self.tokens`: token -> its scopes."""
        self.tokens: dict[str, set[str]] = {}
        self.jtis: set[str] = set()
        self.now: Callable[[], float] = time.time  # a test may give the tool's MockedClock

        def token(request: HttpRequest) -> HttpAnswer:
            form = dict(parse_qsl(request.body.decode()))
            if form.get("grant_type") != "client_credentials" or (
                form.get("client_assertion_type") != ASSERTION_TYPE
            ):
                return HttpAnswer.json({"error": "unsupported_grant_type"}, 400)
            try:
                claims = self._assertion(form.get("client_assertion", ""), tool_jwks())
            except (jwt.PyJWTError, ValueError) as exc:
                return HttpAnswer.json({"error": "invalid_client", "detail": str(exc)}, 401)
            scopes = set(form.get("scope", "").split()) & {NRPS_SCOPE, AGS_SCORE_SCOPE}
            if not scopes:
                return HttpAnswer.json({"error": "invalid_scope"}, 400)
            issued = secrets.token_urlsafe(16)
            self.tokens[issued] = scopes
            self.jtis.add(claims["jti"])
            return HttpAnswer.json(
                {
                    "access_token": issued,
                    "token_type": "Bearer",
                    "expires_in": 3600,
                    "scope": " ".join(sorted(scopes)),
                }  # fmt: skip
            )

        self.route("POST", "/token", token)

    def _assertion(self, assertion: str, jwks: dict[str, Any]) -> dict[str, Any]:
        kid = jwt.get_unverified_header(assertion).get("kid")
        keys = {k.key_id: k for k in jwt.PyJWKSet.from_dict(jwks).keys}
        if kid not in keys:
            raise ValueError("the assertion's kid is not in the tool's key set")
        claims: dict[str, Any] = jwt.decode(
            assertion,
            keys[kid],
            algorithms=["RS256"],
            audience=f"{self.base}/token",
            options={"require": ["iss", "sub", "aud", "exp", "iat", "jti"],
                     "verify_exp": False, "verify_iat": False},
        )  # fmt: skip
        now, leeway = self.now(), 60.0  # clock skew, as platforms allow
        if not claims["iat"] - leeway <= now < claims["exp"] + leeway:
            raise ValueError("the assertion is expired or not yet valid")
        if claims["iss"] != CLIENT_ID or claims["sub"] != CLIENT_ID:
            raise ValueError("iss and sub must be the client id")
        if claims["jti"] in self.jtis:
            raise ValueError("jti replayed")
        return claims

    def serve_roster(self, path: str, members: list[dict[str, Any]], page_size: int) -> str:
        """GET `path` (NRPS 2.0 §3.6): the membership container, `page_size` members a page,
        `?page=N` (from 1), a `Link: <...>; rel="next"` header on every page but the last;
        a token with the NRPS scope only (401 unknown, 403 without the scope). Pages in
        `self.failing_pages` answer 500. `members` may change between requests. Returns the
        URL."""
        self.failing_pages: set[int] = set()
        url = f"{self.base}{path}"

        def roster(request: HttpRequest) -> HttpAnswer:
            token = request.headers.get("authorization", "").removeprefix("Bearer ")
            if token not in getattr(self, "tokens", {}):
                return HttpAnswer.json({"error": "unknown token"}, 401)
            if NRPS_SCOPE not in self.tokens[token]:
                return HttpAnswer.json({"error": "scope"}, 403)
            number = int(dict(parse_qsl(request.query)).get("page", "1"))
            if number in self.failing_pages:
                return HttpAnswer.json({"error": "page failed"}, 500)
            start = (number - 1) * page_size
            body = {"id": url, "context": {"id": path.rsplit("/", 1)[-1]},
                    "members": members[start : start + page_size]}  # fmt: skip
            headers = {"Content-Type": MEMBERSHIPS}
            if start + page_size < len(members):
                headers["Link"] = f'<{url}?page={number + 1}>; rel="next"'
            return HttpAnswer(200, json.dumps(body).encode(), headers)

        self.route("GET", path, roster)
        return url

    def roster_pages_read(self, path: str) -> int:
        return sum(1 for r in self.requests if r.method == "GET" and r.path == path)

    def close(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()


class _Conf(LTI1P3PlatformConfAbstract):  # type: ignore[misc]  # untyped package
    def init_platform_config(self, **kwargs: Any) -> None:
        self._registration = kwargs["registration"]

    def get_registration_by_params(self, **kwargs: Any) -> Registration:
        return self._registration


class _Req(Request):  # type: ignore[misc]
    def build_metadata(self, request: Any) -> TRequest:
        return {"method": "GET", "get_data": request, "form_data": {}, "path": "/auth"}


class _Launch(LTIAdvantageMessageLaunchAbstract):  # type: ignore[misc]
    def render_launch_form(self, launch_data: dict[str, Any], **kwargs: Any) -> dict[str, str]:
        return {"id_token": launch_data["id_token"], "state": launch_data["state"]}
