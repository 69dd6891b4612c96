"""The LMS of the LTI tests: a real third-party platform implementation, `lti1p3platform`
0.1.8 (OpenLearning's, derived from Open edX's LTI code), builds and signs the id_token from
the tool's authentication request; a small HTTP server of the suite's own serves what an LMS
serves over HTTP beside it (the key set; with a `Gradebook`, service tokens, AGS line items and
scores, and paged NRPS rosters). A test adds an endpoint with `lms.route(...)`: each is a
function of the request that answers (status, headers, body)."""

from __future__ import annotations

import html
import json
import socket
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
from lti1p3platform.deep_linking import LtiDeepLinking
from lti1p3platform.exceptions import LtiDeepLinkingResponseException, LtiException
from lti1p3platform.ltiplatform import LTI1P3PlatformConfAbstract
from lti1p3platform.message_launch import LTIAdvantageMessageLaunchAbstract
from lti1p3platform.registration import Registration
from lti1p3platform.request import Request, TRequest

CLIENT_ID, DEPLOYMENT, PLATFORM_ID = "tool-client-1", "dep-1", "moodle-test"
NRPS_SCOPE = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"
MEMBERSHIPS = "application/vnd.ims.lti-nrps.v2.membershipcontainer+json"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MESSAGE_TYPE = "https://purl.imsglobal.org/spec/lti/claim/message_type"
CLAIM = "https://purl.imsglobal.org/spec/lti/claim/"
LEARNER = "http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"
INSTRUCTOR = "http://purl.imsglobal.org/vocab/lis/v2/membership#Instructor"
VIDEO = "v-100"  # tests.helpers.COURSE's, in COURSE_ID
DL_CLAIM = "https://purl.imsglobal.org/spec/lti-dl/claim/"
DEEP_LINK_RETURN = "/deep-link-return"
TOOL_CONFIGURATION = "https://purl.imsglobal.org/spec/lti-tool-configuration"


@dataclass(frozen=True)
class Profile:
    """How an LMS registers and launches the tool, as a test parameter (docs/lti.md, "Platform
    profiles"): its issuer (None: the site's own URL), the client ids of its registrations,
    the deployment its launches name, the deployments an admin registers (empty: any, recorded
    at the first launch) and the `lti_storage_target` its logins send."""

    name: str
    issuer: str | None
    client_ids: tuple[str, ...]
    deployment_id: str
    registered_deployments: tuple[str, ...]
    storage_target: str | None


# Canvas: one issuer for every school, one registration (developer key) per school told apart
# by client id, deployments learned at launch, logins asking for platform storage.
CANVAS = Profile(
    "canvas-like",
    "https://canvas.instructure.com",
    ("10000000000001", "10000000000002"),
    "7:8865aa05b4b79b64a91a86042e43af5ea8ae79eb",
    (),
    "post_message_forwarding",
)
# Moodle: the issuer is the site's URL, the tool's one deployment is "1".
MOODLE = Profile("moodle-like", None, ("aW9zZ3JhcGh5MTIz",), "1", ("1",), None)


@dataclass(frozen=True)
class Link:
    """A resource link the platform made from an `ltiResourceLink` item of a deep-linking
    response (Deep Linking 2.0 §3.4.1), as an LMS adds it to the course."""

    resource_link_id: str
    title: str
    custom: dict[str, Any]
    lineitem: str | None  # the gradebook column made from the item's `lineItem`, if any


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

    def __init__(
        self, profile: Profile | None = None, public: tuple[str, ssl.SSLContext] | None = None
    ) -> None:
        self.fetches = 0
        self.profile = profile
        self.deep_links: list[dict[str, Any]] = []  # the responses accepted, as claims
        self.deep_link_data: Any = None  # the `data` of the last deep-linking request
        self.links: list[Link] = []  # resource links made from the accepted responses
        self.gradebook: Gradebook | None = None  # AGS, once a test serves it
        self.tool_registrations: list[dict[str, Any]] = []  # dynamic registrations accepted
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
        self.route("POST", DEEP_LINK_RETURN, self._deep_link_return)
        if profile is not None:
            self.registration.set_iss(profile.issuer or self.base)
            self.registration.set_client_id(profile.client_ids[0])
            self.registration.set_deployment_id(profile.deployment_id)
        self.servers = [self.server]
        self.public_base = self.base
        if public is not None:
            host, tls = public
            secure = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
            # The handshake in each request's thread, not in accept(): a browser's idle
            # preconnect would otherwise hold the one accepting thread, and every page after it.
            secure.socket = tls.wrap_socket(
                secure.socket, server_side=True, do_handshake_on_connect=False
            )
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
                if answer.status == 0:  # the platform drops the connection unanswered
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
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
        link_id, link_title = claims.pop("resource_link", ("rl-1", "Speed"))
        launch.set_resource_link_claim(link_id, title=link_title)
        context_id, title = claims.pop("context", ("ctx-1", "Physics"))
        launch.set_launch_context_claim(context_id, context_title=title)
        if memberships_url := claims.pop("memberships_url", None):
            launch.set_nrps(memberships_url)
        launch.set_custom_parameters_claim({"material_id": claims.pop("material_id", VIDEO)})
        launch.set_extra_claims(claims)
        form: dict[str, str] = launch.lti_launch()
        return form

    def authorize_link(
        self, auth_request: dict[str, str], link: Link, **claims: Any
    ) -> dict[str, str]:
        """A launch of `link` as the LMS makes it: its resource link id and title, its custom
        `material_id`, and (when it has a column) the AGS claim naming that line item."""
        ags = {}
        if link.lineitem is not None and self.gradebook is not None:
            ags = self.gradebook.claim(link.lineitem)
        material = link.custom["material_id"]
        resource_link = (link.resource_link_id, link.title)
        return self.authorize(
            auth_request, resource_link=resource_link, material_id=material, **ags, **claims
        )

    # -- platform profiles ----------------------------------------------------------------

    def use_client(self, client_id: str) -> None:
        """Launch as the registration of `client_id` (Canvas: one issuer, one key set, several
        registrations)."""
        self.registration.set_client_id(client_id)

    def profile_registration(self, client_id: str) -> dict[str, Any]:
        """The registration an admin enters for the profile's registration `client_id`."""
        assert self.profile is not None
        return {
            **self.registration_body(list(self.profile.registered_deployments)),
            "name": f"{self.profile.name} ({client_id})",
            "issuer": self.profile.issuer or self.base,
            "client_id": client_id,
        }

    def login_params(self, target_link_uri: str, storage: bool) -> dict[str, str]:
        """The third-party login the profile starts (Core 1.3 §5.1.1), `lti_storage_target`
        only when `storage` (the storage-target login is another slice's)."""
        assert self.profile is not None
        params = {
            "iss": self.profile.issuer or self.base,
            "login_hint": "u-42",
            "target_link_uri": target_link_uri,
            "lti_message_hint": "hint-1",
            "client_id": str(self.registration.get_client_id()),
            "lti_deployment_id": self.profile.deployment_id,
        }
        if storage and self.profile.storage_target:
            params["lti_storage_target"] = self.profile.storage_target
        return params

    # -- deep linking ---------------------------------------------------------------------

    def authorize_deep_link(
        self,
        auth_request: dict[str, str],
        accept_types: tuple[str, ...] = ("ltiResourceLink",),
        accept_multiple: bool = True,
        data: Any = None,
        context: tuple[str, str] = ("ctx-1", "Physics"),
        **claims: Any,
    ) -> dict[str, str]:
        """An `LtiDeepLinkingRequest` answering the tool's authentication request: its
        `deep_linking_settings` built by lti1p3platform's LtiDeepLinking (return URL: this
        server's DEEP_LINK_RETURN), with `accept_multiple` and `data` as given (no `data` when
        None); an instructor by default."""
        dl = LtiDeepLinking(self.base + DEEP_LINK_RETURN)
        claim = dl.get_lti_deep_linking_launch_claim("Add videos", "", set(accept_types))
        settings = claim[DL_CLAIM + "deep_linking_settings"]
        settings["accept_multiple"] = accept_multiple
        if data is not None:
            settings["data"] = data
        self.deep_link_data = data
        launch = _Launch(_Req(auth_request), _Conf(registration=self.registration))
        launch.set_user_data(claims.pop("sub", "t-1"), claims.pop("roles", [INSTRUCTOR]))
        launch.set_launch_context_claim(context[0], context_title=context[1])
        launch.set_extra_claims({MESSAGE_TYPE: "LtiDeepLinkingRequest", **claim, **claims})
        form: dict[str, str] = launch.lti_launch()
        return form

    def serve_browser_deep_linking(self) -> None:
        """GET /auth as a browser meets it: the platform answers the tool's authentication
        request with a page that posts the `LtiDeepLinkingRequest` (`id_token`, `state`) to the
        request's `redirect_uri` by itself, as an LMS does."""

        def auth(request: HttpRequest) -> HttpAnswer:
            query = dict(parse_qsl(request.query))
            form = self.authorize_deep_link(query)
            fields = "".join(
                f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                for k, v in form.items()
            )
            page = (
                f'<!doctype html><form method="post" action="{html.escape(query["redirect_uri"])}">'
                f"{fields}</form><script>document.forms[0].submit()</script>"
            )
            return HttpAnswer(200, page.encode(), {"Content-Type": "text/html"})

        self.route("GET", "/auth", auth)

    def trust_tool_keys(self, jwks: dict[str, Any]) -> None:
        """The tool's key set as the platform holds it (from the tool's /lti/jwks)."""
        self.registration.set_tool_key_set(jwks)

    def accept_deep_link(self, token: str) -> list[dict[str, Any]]:
        """A deep-linking response checked as a platform does: lti1p3platform verifies the
        signature by the tool's key of its `kid`, `exp`, the message type and the item types;
        then what it leaves out: `iss` = the client id, `aud` = the issuer, the deployment,
        the version, a `nonce`, and `data` echoed exactly (absent when none was sent).
        LtiException names what fails; the items otherwise. Each `ltiResourceLink` item
        becomes a link in `links`, with a gradebook column from its `lineItem` (when a
        Gradebook serves AGS)."""
        conf = _Conf(registration=self.registration)
        items: list[dict[str, Any]] = conf.validate_deeplinking_resp({"JWT": token})
        claims = conf.tool_validate_and_decode(token)
        aud = claims.get("aud")
        checks = {
            "iss": claims.get("iss") == self.registration.get_client_id(),
            "aud": self.registration.get_iss() in (aud if isinstance(aud, list) else [aud]),
            "deployment_id": claims.get(CLAIM + "deployment_id")
            == self.registration.get_deployment_id(),
            "version": claims.get(CLAIM + "version") == "1.3.0",
            "nonce": isinstance(claims.get("nonce"), str) and bool(claims["nonce"]),
            "data": claims.get(DL_CLAIM + "data") == self.deep_link_data
            and ((DL_CLAIM + "data") in claims) == (self.deep_link_data is not None),
        }
        failed = [name for name, held in checks.items() if not held]
        if failed:
            raise LtiException(f"the deep-linking response fails: {', '.join(failed)}")
        for item in items:
            if item.get("type") == "ltiResourceLink":
                self.links.append(self._link(item))
        self.deep_links.append(claims)
        return items

    def _link(self, item: dict[str, Any]) -> Link:
        link_id = f"dl-{len(self.links) + 1}"
        lineitem = None
        if self.gradebook is not None and isinstance(item.get("lineItem"), dict):
            lineitem = self.gradebook.add_column(item["lineItem"], link_id)
        return Link(link_id, str(item.get("title", "")), dict(item.get("custom", {})), lineitem)

    def _deep_link_return(self, request: HttpRequest) -> HttpAnswer:
        token = dict(parse_qsl(request.body.decode())).get("JWT", "")
        try:
            items = self.accept_deep_link(token)
        except (LtiException, LtiDeepLinkingResponseException, jwt.PyJWTError) as exc:
            return HttpAnswer(400, str(exc).encode(), {"Content-Type": "text/plain"})
        return HttpAnswer(200, f"added {len(items)}".encode(), {"Content-Type": "text/plain"})

    # -- dynamic registration ---------------------------------------------------------------

    def serve_dynamic_registration(
        self, client_id: str, deployment_id: str | None, token: str | None, issuer: str = ""
    ) -> str:
        """The platform's side of LTI Dynamic Registration 1.0: its OpenID configuration
        (issuer: this site, unless `issuer`) and a registration endpoint that wants `token` as
        the bearer token (when not None), checks the tool's registration as Moodle does, and
        answers `client_id` (and `deployment_id`). Returns the openid_configuration URL."""
        config = {
            "issuer": issuer or self.base,
            "authorization_endpoint": f"{self.base}/auth",
            "token_endpoint": f"{self.base}/token",
            "jwks_uri": f"{self.base}/jwks",
            "registration_endpoint": f"{self.base}/register",
            "scopes_supported": ["openid"],
            "response_types_supported": ["id_token"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "https://purl.imsglobal.org/spec/lti-platform-configuration": {
                "product_family_code": "moodle",
                "version": "4.3",
                "messages_supported": [
                    {"type": "LtiResourceLinkRequest"},
                    {"type": "LtiDeepLinkingRequest"},
                ],
            },
        }
        self.route("GET", "/.well-known/openid-configuration", lambda _: HttpAnswer.json(config))

        def register(request: HttpRequest) -> HttpAnswer:
            if token is not None and request.headers.get("authorization") != f"Bearer {token}":
                return HttpAnswer.json({"error": "invalid_token"}, 401)
            body = json.loads(request.body or b"null")
            problems = _registration_problems(body)
            if problems:
                return HttpAnswer.json(
                    {"error": "invalid_client_metadata", "error_description": problems}, 400
                )
            self.tool_registrations.append(body)
            self.registration.set_client_id(client_id)
            tool = {**body[TOOL_CONFIGURATION]}
            if deployment_id is not None:
                tool["deployment_id"] = deployment_id
                self.registration.set_deployment_id(deployment_id)
            return HttpAnswer.json({**body, "client_id": client_id, TOOL_CONFIGURATION: tool})

        self.route("POST", "/register", register)
        return f"{self.base}/.well-known/openid-configuration"

    def close(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()


def _registration_problems(body: Any) -> str:
    """What a platform refuses in a tool's client registration (LTI Dynamic Registration 1.0
    §3.5.2): the OpenID fields an LTI tool must send, and the LTI tool configuration."""
    if not isinstance(body, dict):
        return "not a JSON object"
    tool = body.get(TOOL_CONFIGURATION)
    checks = {
        "application_type": body.get("application_type") == "web",
        "response_types": body.get("response_types") == ["id_token"],
        "grant_types": {"implicit", "client_credentials"} <= set(body.get("grant_types", [])),
        "initiate_login_uri": str(body.get("initiate_login_uri", "")).startswith("https://"),
        "redirect_uris": bool(body.get("redirect_uris")),
        "jwks_uri": str(body.get("jwks_uri", "")).startswith("https://"),
        "token_endpoint_auth_method": body.get("token_endpoint_auth_method") == "private_key_jwt",
        "tool configuration": isinstance(tool, dict)
        and bool(tool.get("domain"))
        and bool(tool.get("target_link_uri")),
    }
    return ", ".join(name for name, held in checks.items() if not held)


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


# -- services: tokens (Security Framework 1.0 §4.1), grades (AGS 2.0), rosters (NRPS 2.0) -----

AGS = "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint"
AGS_SCOPE = "https://purl.imsglobal.org/spec/lti-ags/scope/"
LINEITEM, SCORE = AGS_SCOPE + "lineitem", AGS_SCOPE + "score"
LINEITEM_READ = AGS_SCOPE + "lineitem.readonly"


def _parse_ts(value: str) -> float:
    from datetime import datetime

    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise ValueError("a timestamp without a zone")
    return moment.timestamp()


class Gradebook:
    """The platform's services on the Lms's server: one token endpoint, the gradebook (AGS)
    and rosters (NRPS), each endpoint asking for its own scopes.

    - `POST /token`: lti1p3platform's `get_access_token` (grant type, required fields, the
      client assertion's signature against the tool's key set, read again at each request
      from `tool_jwks`: the tool's JWKS URL, or a function giving the set), plus what it
      lacks: `aud` = this token URL, `iss` = `sub` = the client id, a `jti` used once,
      `iat` and `exp` present and holding on `now()`, and only scopes this platform offers
      (`offered`; else `400 invalid_scope`), granting them less `withheld` (the answer's
      `scope` says which). `expires_in` is `token_lifetime_s`.
    - Every other endpoint wants a token this endpoint issued (else `401`) holding one of its
      scopes (else `403`): line items (`GET|POST /lineitems`, filtered by `resource_link_id`
      and `tag`) the `lineitem` scope (GET: or `lineitem.readonly`); scores (`POST <line
      item>/scores`) the `score` scope; a roster (`serve_roster`) the NRPS scope.
    - A score must be `application/vnd.ims.lis.v1.score+json` with a zoned ISO 8601 timestamp
      later than the last one accepted for that line item and user, else `409` (AGS 2.0
      §3.4.1: older timestamps are dropped). `refuse` holds users it cannot grade (`422`).
    - `mode`: "up", "down" (`503`), "drop" (the connection closed unanswered), "429" (with
      `Retry-After: retry_after`); it applies to the score endpoint only.
    - It becomes `lms.gradebook`: a deep-linking response's `lineItem` makes a column
      (`add_column`), and the roster (`Lms.serve_roster`) takes its tokens.
    """

    def __init__(
        self,
        lms: Lms,
        tool_jwks: Callable[[], dict[str, Any]] | str,
        offered: tuple[str, ...] = (LINEITEM, SCORE, LINEITEM_READ, NRPS_SCOPE),
        now: Callable[[], float] = time.time,
    ) -> None:
        self.lms, self.offered, self.now = lms, offered, now
        self.conf = _Conf(registration=lms.registration)
        self.tool_jwks: Callable[[], Any] = (
            (lambda: self.conf.fetch_public_key(tool_jwks))  # the tool's /lti/jwks, over HTTP
            if isinstance(tool_jwks, str)
            else tool_jwks
        )
        # lti1p3platform checks times against the system clock, without leeway: the harness
        # checks them on `now()` instead (tests move a MockedClock).
        self.conf._jwt_verify_options = {
            "verify_aud": False,
            "verify_exp": False,
            "verify_iat": False,
        }
        self.lock = threading.Lock()
        self.token_lifetime_s = 3600
        self.withheld: set[str] = set()  # scopes asked for and offered, but not granted
        self.jtis: set[str] = set()
        self.tokens_issued: list[str] = []  # the scope string of each token issued
        self.token_refusals: list[str] = []
        self.line_items: dict[str, dict[str, Any]] = {}  # url -> line item
        self.scores: dict[tuple[str, str], list[dict[str, Any]]] = {}  # (url, user) -> accepted
        self.score_posts = 0
        self.conflicts = 0  # scores answered 409 (a timestamp not after the last one)
        self.refuse: set[str] = set()
        self.mode, self.retry_after = "up", 1
        self.failing_pages: set[int] = set()  # roster pages answering 500
        # roster page -> what happens before it is answered (while a sync reads the roster)
        self.before_page: dict[int, Callable[[], None]] = {}
        lms.route("POST", "/token", self._token)
        lms.route("GET", "/lineitems", self._get_line_items)
        lms.route("POST", "/lineitems", self._post_line_item)
        lms.gradebook = self

    @property
    def token_url(self) -> str:
        return f"{self.lms.base}/token"

    @property
    def line_items_url(self) -> str:
        return f"{self.lms.base}/lineitems"

    def claim(
        self, lineitem: str | None = None, scopes: tuple[str, ...] | None = None
    ) -> dict[str, Any]:
        """The AGS claim of a launch (AGS 2.0 §3.1)."""
        body: dict[str, Any] = {
            "scope": list(scopes or self.offered),
            "lineitems": self.line_items_url,
        }
        if lineitem:
            body["lineitem"] = lineitem
        return {AGS: body}

    def add_line_item(self, label: str, resource_link_id: str = "rl-1") -> str:
        with self.lock:
            return self._add(
                {"label": label, "scoreMaximum": 100, "resourceLinkId": resource_link_id}
            )

    def add_column(self, line_item: dict[str, Any], resource_link_id: str) -> str:
        """The column an LMS makes for a deep-linked resource link from its item's `lineItem`
        (Deep Linking 2.0 §3.4.1; `scoreMaximum` and `label` required, else LtiException):
        its URL."""
        if not isinstance(line_item.get("scoreMaximum"), int | float) or not line_item.get("label"):
            raise LtiException(f"a lineItem needs scoreMaximum and label: {line_item}")
        with self.lock:
            return self._add({**line_item, "resourceLinkId": resource_link_id})

    def final(self, lineitem: str, user: str) -> dict[str, Any] | None:
        with self.lock:
            accepted = self.scores.get((lineitem, user), [])
            return accepted[-1] if accepted else None

    def serve_roster(self, path: str, members: list[dict[str, Any]], page_size: int) -> str:
        """GET `path` (NRPS 2.0 §3.6): the membership container, `page_size` members a page,
        `?page=N` (from 1), a `Link: <...>; rel="next"` header on every page but the last;
        a token with the NRPS scope only (401 unknown, 403 without the scope). Pages in
        `failing_pages` answer 500; `before_page[N]` runs before page N is answered. `members`
        may change between requests. Returns the URL."""
        url = f"{self.lms.base}{path}"

        def roster(request: HttpRequest) -> HttpAnswer:
            if (refused := self.authorized(request, [NRPS_SCOPE])) is not None:
                return refused
            number = int(dict(parse_qsl(request.query)).get("page", "1"))
            if (meanwhile := self.before_page.get(number)) is not None:
                meanwhile()
            if number in self.failing_pages:
                return HttpAnswer.json({"error": "page failed"}, 500)
            start = (number - 1) * page_size
            body = {"id": url, "context": {"id": path.rsplit("/", 1)[-1]},
                    "members": members[start : start + page_size]}  # fmt: skip
            headers = {"Content-Type": MEMBERSHIPS}
            if start + page_size < len(members):
                headers["Link"] = f'<{url}?page={number + 1}>; rel="next"'
            return HttpAnswer(200, json.dumps(body).encode(), headers)

        self.lms.route("GET", path, roster)
        return url

    def roster_pages_read(self, path: str) -> int:
        """How many roster pages at `path` were asked for, answered or not."""
        return sum(1 for r in self.lms.requests if r.method == "GET" and r.path == path)

    # -- endpoints ------------------------------------------------------------------------

    def _token(self, request: HttpRequest) -> HttpAnswer:
        form = dict(parse_qsl(request.body.decode()))
        refusal = self._check_assertion(form)
        if refusal is not None:
            self.token_refusals.append(refusal)
            return HttpAnswer.json({"error": "invalid_client", "error_description": refusal}, 400)
        asked = form.get("scope", "").split()
        if not asked or any(scope not in self.offered for scope in asked):
            self.token_refusals.append(f"scope {asked}")
            return HttpAnswer.json({"error": "invalid_scope"}, 400)
        granted = [scope for scope in asked if scope not in self.withheld]
        answer = dict(self.conf.get_access_token({**form, "scope": " ".join(granted)}))
        answer["expires_in"] = self.token_lifetime_s
        self.tokens_issued.append(answer["scope"])
        return HttpAnswer.json(answer)

    def _check_assertion(self, form: dict[str, str]) -> str | None:
        if form.get("grant_type") != "client_credentials":
            return "grant_type"
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            return "client_assertion_type"
        self.lms.registration.set_tool_key_set(self.tool_jwks())  # read at each request
        try:
            claims = self.conf.tool_validate_and_decode(form.get("client_assertion", ""))
        except (LtiException, jwt.PyJWTError) as exc:
            return f"signature: {exc}"
        now = self.now()
        if claims.get("aud") != self.token_url and self.token_url not in (claims.get("aud") or []):
            return "aud"
        client_id = self.lms.registration.get_client_id()  # the registration launching
        if claims.get("iss") != client_id or claims.get("sub") != client_id:
            return "iss/sub"
        if not isinstance(claims.get("iat"), int) or claims["iat"] > now + 5:
            return "iat"
        if not isinstance(claims.get("exp"), int) or claims["exp"] <= now:
            return "exp"
        jti = claims.get("jti")
        with self.lock:
            if not isinstance(jti, str) or not jti or jti in self.jtis:
                return "jti"
            self.jtis.add(jti)
        return None

    def authorized(self, request: HttpRequest, scopes: list[str]) -> HttpAnswer | None:
        auth = request.headers.get("authorization", "").split()
        if len(auth) != 2 or auth[0].lower() != "bearer":
            return HttpAnswer.json({"error": "no token"}, 401)
        try:
            allowed = self.conf.validate_token(auth[1], allowed_scopes=scopes)
        except (LtiException, jwt.PyJWTError):
            return HttpAnswer.json({"error": "invalid token"}, 401)
        return None if allowed else HttpAnswer.json({"error": "scope"}, 403)

    def _get_line_items(self, request: HttpRequest) -> HttpAnswer:
        if (refused := self.authorized(request, [LINEITEM, LINEITEM_READ])) is not None:
            return refused
        wanted = dict(parse_qsl(request.query))
        with self.lock:
            items = [
                item
                for item in self.line_items.values()
                if all(
                    item.get(k) == wanted[q]
                    for q, k in (("resource_link_id", "resourceLinkId"), ("tag", "tag"))
                    if q in wanted
                )
            ]
        kind = {"Content-Type": "application/vnd.ims.lis.v2.lineitemcontainer+json"}
        return HttpAnswer(200, json.dumps(items).encode(), kind)

    def _post_line_item(self, request: HttpRequest) -> HttpAnswer:
        if (refused := self.authorized(request, [LINEITEM])) is not None:
            return refused
        body = json.loads(request.body)
        if not isinstance(body.get("scoreMaximum"), int | float) or not body.get("label"):
            return HttpAnswer.json({"error": "scoreMaximum and label are required"}, 400)
        with self.lock:
            item = self.line_items[self._add(body)]
        return HttpAnswer.json(item, 201)

    def _add(self, body: dict[str, Any]) -> str:
        url = f"{self.line_items_url}/{len(self.line_items) + 1}"
        self.line_items[url] = {**body, "id": url}
        self.lms.route("POST", urlsplit(url).path + "/scores", lambda r: self._score(url, r))
        return url

    def _score(self, lineitem: str, request: HttpRequest) -> HttpAnswer:
        with self.lock:
            self.score_posts += 1
        if self.mode == "down":
            return HttpAnswer.json({"error": "down"}, 503)
        if self.mode == "drop":
            return HttpAnswer(0)
        if self.mode == "429":
            return HttpAnswer.json(
                {"error": "slow down"}, 429, **{"Retry-After": str(self.retry_after)}
            )
        if (refused := self.authorized(request, [SCORE])) is not None:
            return refused
        if request.headers.get("content-type") != "application/vnd.ims.lis.v1.score+json":
            return HttpAnswer.json({"error": "content type"}, 415)
        score = json.loads(request.body)
        user = score.get("userId")
        if user in self.refuse:
            return HttpAnswer.json({"error": "this user cannot be graded"}, 422)
        try:
            ts = _parse_ts(score["timestamp"])
        except (KeyError, TypeError, ValueError):
            return HttpAnswer.json({"error": "timestamp"}, 400)
        with self.lock:
            accepted = self.scores.setdefault((lineitem, user), [])
            if accepted and ts <= _parse_ts(accepted[-1]["timestamp"]):
                self.conflicts += 1
                return HttpAnswer.json({"error": "timestamp not after the last one"}, 409)
            accepted.append(score)
        return HttpAnswer(204)
