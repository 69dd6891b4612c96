"""Tokens of the school's identity provider (API.md, "Authentication"), through the HTTP routes:
the heartbeat route (a bare ASGI app) and a FastAPI route (the status read).

The provider is a real HTTP server of the test's own on loopback serving a key set (JWKS) of
RS256 and ES256 keys made with `cryptography`, which the tests rotate; it counts the requests it
gets. Time is the app's `MockedClock`: the once-a-minute refetch limit and the 30 s leeway are
tested by moving it, never by sleeping.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import count
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient
from httpx import Response
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from pydantic import ValidationError

from ingest.app import create_app
from shared import jwks
from shared.clock import MockedClock
from shared.settings import Settings
from tests.helpers import COURSE, COURSE_ID, bearer, heartbeat, make_settings, wait_until

ISSUER, AUDIENCE = "https://idp.school.test", "videoprogress"
STUDENT = "s-ana"
T0 = 1_800_000_000.0
WATCH = "/api/progress/video/v-100/watch-time"
STATUS = "/api/progress/video/v-100/status"
_jti = count()


@pytest.fixture
def buffer_kind() -> str:
    return "single"  # tokens are checked before the buffer is touched: one Redis is enough


# -- the identity provider ------------------------------------------------------------------


@dataclass
class IdpKey:
    kid: str
    alg: str
    private: Any = field(repr=False)

    @classmethod
    def make(cls, kid: str, alg: str) -> IdpKey:
        if alg == "RS256":
            return cls(kid, alg, rsa.generate_private_key(public_exponent=65537, key_size=2048))
        return cls(kid, alg, ec.generate_private_key(ec.SECP256R1()))

    def jwk(self) -> dict[str, Any]:
        algorithm = RSAAlgorithm if self.alg == "RS256" else ECAlgorithm
        public = algorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {**public, "kid": self.kid, "use": "sig", "alg": self.alg}

    def token(self, now: float, kid: str | None = "", **claims: Any) -> str:
        """A student's token issued at `now` (valid 10 minutes); `claims` set or, as None,
        drop claims; `kid=None` leaves the header without one."""
        body: dict[str, Any] = {
            "sub": STUDENT,
            "role": "student",
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": int(now),
            "exp": int(now) + 600,
            "jti": str(next(_jti)),  # every token is new to the verifier's cache
        }
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        headers = {} if kid is None else {"kid": kid or self.kid}
        return jwt.encode(body, self.private, algorithm=self.alg, headers=headers)


@pytest.fixture(scope="module")
def idp_keys() -> dict[str, IdpKey]:
    kinds = {"rsa-1": "RS256", "ec-2": "ES256", "rsa-3": "RS256", "ec-4": "ES256"}
    return {kid: IdpKey.make(kid, alg) for kid, alg in kinds.items()}


class KeySetServer:
    """The provider's JWKS endpoint: `keys` is served (with `status`) to every GET, each
    counted in `requests`; a cleared `gate` holds answers back until it is set."""

    def __init__(self) -> None:
        self.keys: list[IdpKey] = []
        self.status = 200
        self.requests = 0
        self._lock = threading.Lock()
        self.gate = threading.Event()
        self.gate.set()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with server._lock:
                    server.requests += 1
                server.gate.wait(60)
                body = json.dumps({"keys": [k.jwk() for k in server.keys]}).encode()
                self.send_response(server.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/.well-known/jwks.json"

    def close(self) -> None:
        self.gate.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def idp(idp_keys: dict[str, IdpKey]) -> Iterator[KeySetServer]:
    server = KeySetServer()
    server.keys = [idp_keys["rsa-1"]]
    yield server
    server.close()


# -- the app --------------------------------------------------------------------------------


@pytest.fixture
def clock() -> MockedClock:
    return MockedClock(T0)


@pytest.fixture
def settings(redis_url: str, mongo_url: str, idp: KeySetServer) -> Settings:
    return make_settings(
        redis_url,
        mongo_url,
        jwt_jwks_url=idp.url,
        jwt_algorithms=["HS256", "RS256", "ES256"],  # HS256 for the tests' own admin tokens
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
    )


def started(settings: Settings, clock: MockedClock) -> TestClient:
    """An app, entered by the caller, with the course and its student enrolled."""
    client = TestClient(create_app(settings, clock=clock))
    client.__enter__()
    admin = bearer(settings, "a-root", "admin", now=clock.time())
    assert client.put(f"/api/courses/{COURSE_ID}", json=COURSE, headers=admin).is_success
    assert client.put(f"/api/courses/{COURSE_ID}/enrollments/{STUDENT}", headers=admin).is_success
    return client


@pytest.fixture
def client(settings: Settings, clock: MockedClock) -> Iterator[TestClient]:
    c = started(settings, clock)
    yield c
    c.__exit__(None, None, None)


def send(client: TestClient, token: str, watched: float = 5.0) -> Response:
    """A heartbeat, through the bare ASGI route."""
    body = heartbeat(watched, played=[[0, watched]])
    r: Response = client.post(WATCH, json=body, headers={"Authorization": f"Bearer {token}"})
    return r


def read(client: TestClient, token: str) -> Response:
    """The status read, through FastAPI's dependencies."""
    r: Response = client.get(STATUS, headers={"Authorization": f"Bearer {token}"})
    return r


def both(client: TestClient, token: str) -> tuple[int, int]:
    """The statuses of a heartbeat and a read with this token."""
    return send(client, token).status_code, read(client, token).status_code


def refused(r: Response) -> bool:
    return (
        r.status_code == 401
        and r.headers.get("WWW-Authenticate") == "Bearer"
        and r.json()["error"]["code"] == "unauthenticated"
    )


# -- rotation and the refetch limit ---------------------------------------------------------


def test_the_provider_rotates_keys_without_an_outage(
    client: TestClient, clock: MockedClock, idp: KeySetServer, idp_keys: dict[str, IdpKey]
) -> None:
    rsa1, ec2 = idp_keys["rsa-1"], idp_keys["ec-2"]
    assert idp.requests == 1  # fetched at start-up
    assert both(client, rsa1.token(clock.time())) == (202, 200)
    assert idp.requests == 1  # a known kid is never fetched again

    idp.keys = [rsa1, ec2]  # the provider publishes its next key, then signs with it
    clock.advance(60)
    assert both(client, ec2.token(clock.time())) == (202, 200)
    assert idp.requests == 2  # one fetch for the new kid
    idp.keys = [ec2]  # and withdraws the old one
    assert both(client, ec2.token(clock.time())) == (202, 200)
    assert idp.requests == 2


def test_unknown_kids_fetch_at_most_once_a_minute(
    client: TestClient, clock: MockedClock, idp: KeySetServer, idp_keys: dict[str, IdpKey]
) -> None:
    rsa1, rsa3, ec4 = idp_keys["rsa-1"], idp_keys["rsa-3"], idp_keys["ec-4"]
    clock.advance(60)
    r = send(client, rsa3.token(clock.time()))  # unknown: refetched, still unknown
    assert refused(r) and "kid" in r.json()["error"]["message"]
    assert idp.requests == 2
    idp.keys = [rsa1, rsa3]  # published now, but the last fetch was less than a minute ago
    for _ in range(5):
        assert refused(send(client, rsa3.token(clock.time())))
        assert refused(read(client, ec4.token(clock.time())))
    clock.advance(59)
    assert refused(read(client, rsa3.token(clock.time())))
    assert idp.requests == 2  # eleven tokens of unknown kids, no fetch
    assert both(client, rsa1.token(clock.time())) == (202, 200)  # known kids still pass
    clock.advance(1)
    assert both(client, rsa3.token(clock.time())) == (202, 200)  # a minute on: fetched
    assert idp.requests == 3
    assert refused(send(client, ec4.token(clock.time())))  # unknown after the refetch
    clock.advance(60)
    assert refused(read(client, ec4.token(clock.time())))  # refetched, still unknown: 401
    assert idp.requests == 4


def test_a_token_without_a_kid_is_refused_without_a_fetch(
    client: TestClient, clock: MockedClock, idp: KeySetServer, idp_keys: dict[str, IdpKey]
) -> None:
    clock.advance(60)
    r = send(client, idp_keys["rsa-1"].token(clock.time(), kid=None))
    assert refused(r) and "kid" in r.json()["error"]["message"]
    assert idp.requests == 1


def test_a_withdrawn_key_stops_verifying_new_tokens_after_the_set_ages(
    client: TestClient, clock: MockedClock, idp: KeySetServer, idp_keys: dict[str, IdpKey]
) -> None:
    rsa1 = idp_keys["rsa-1"]
    idp.keys = [idp_keys["ec-2"]]  # rsa-1 withdrawn (say, compromised)
    clock.advance(299)
    assert both(client, rsa1.token(clock.time())) == (202, 200)  # the held set, not yet old
    assert idp.requests == 1
    clock.advance(1)
    # The set is 5 minutes old: the next look-up fetches it again in the background and is
    # answered from the held set meanwhile; once the new set is in, rsa-1 is refused.
    wait_until(lambda: refused(read(client, rsa1.token(clock.time()))))
    assert idp.requests == 2


# -- the key set cannot be had --------------------------------------------------------------


def test_without_any_key_set_tokens_get_503_until_the_provider_answers(
    settings: Settings, clock: MockedClock, idp: KeySetServer, idp_keys: dict[str, IdpKey]
) -> None:
    idp.status = 500
    client = started(settings, clock)  # HS256 tokens (the admin's) still pass
    try:
        assert idp.requests == 1  # the start-up fetch, failed
        r = send(client, idp_keys["rsa-1"].token(clock.time()))
        assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable"
        assert int(r.headers["Retry-After"]) == jwks.RETRY_WITHOUT_KEYS_S
        assert read(client, idp_keys["rsa-1"].token(clock.time())).status_code == 503
        assert idp.requests == 1  # no set at all: tried again only every 5 s
        idp.status = 200
        clock.advance(jwks.RETRY_WITHOUT_KEYS_S)
        assert both(client, idp_keys["rsa-1"].token(clock.time())) == (202, 200)
        assert idp.requests == 2
    finally:
        client.__exit__(None, None, None)


def test_a_failed_refetch_is_401_and_the_held_keys_still_verify(
    client: TestClient, clock: MockedClock, idp: KeySetServer, idp_keys: dict[str, IdpKey]
) -> None:
    idp.status = 500
    idp.keys = [idp_keys["rsa-1"], idp_keys["ec-2"]]
    clock.advance(60)
    assert refused(send(client, idp_keys["ec-2"].token(clock.time())))
    assert idp.requests == 2
    assert both(client, idp_keys["rsa-1"].token(clock.time())) == (202, 200)


def test_a_hung_provider_never_holds_up_other_requests(
    settings: Settings,
    clock: MockedClock,
    idp: KeySetServer,
    idp_keys: dict[str, IdpKey],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(jwks, "FETCH_TIMEOUT_S", 60.0)  # the test releases the fetch itself
    client = started(settings, clock)
    try:
        idp.keys = [idp_keys["rsa-1"], idp_keys["ec-2"]]
        idp.gate.clear()  # the provider stops answering
        clock.advance(60)
        waiting: dict[str, int] = {}

        def new_kid() -> None:
            waiting["status"] = send(client, idp_keys["ec-2"].token(clock.time())).status_code

        other = threading.Thread(target=new_kid)
        other.start()
        wait_until(lambda: idp.requests == 2)  # the fetch is under way, held by the provider
        # Meanwhile tokens of known keys are answered at once, and nothing fetches again.
        assert both(client, idp_keys["rsa-1"].token(clock.time())) == (202, 200)
        assert "status" not in waiting and idp.requests == 2
        idp.gate.set()
        other.join(60)
        assert waiting["status"] == 202 and idp.requests == 2
    finally:
        idp.gate.set()
        client.__exit__(None, None, None)


def test_a_fetch_that_times_out_is_503_not_500(
    settings: Settings,
    clock: MockedClock,
    idp: KeySetServer,
    idp_keys: dict[str, IdpKey],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(jwks, "FETCH_TIMEOUT_S", 0.2)
    idp.gate.clear()  # the provider accepts the connection and never answers
    client = started(settings, clock)
    try:
        r = send(client, idp_keys["rsa-1"].token(clock.time()))
        assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable"
    finally:
        idp.gate.set()
        client.__exit__(None, None, None)


# -- claims ---------------------------------------------------------------------------------


def test_the_leeway_is_30_seconds_each_way(
    client: TestClient, clock: MockedClock, idp_keys: dict[str, IdpKey]
) -> None:
    key, now = idp_keys["rsa-1"], clock.time
    late = key.token(now(), exp=int(now()) - 29)  # expired 29 s ago: within the leeway
    assert both(client, late) == (202, 200)
    clock.advance(2)  # the same token, now 31 s past its exp (and cached: rechecked)
    assert refused(send(client, late)) and refused(read(client, late))
    assert "expired" in send(client, late).json()["error"]["message"]
    assert refused(send(client, key.token(now(), exp=int(now()) - 31)))
    assert refused(read(client, key.token(now(), exp=int(now()) - 30)))  # exp <= now - 30
    # A provider whose clock runs ahead: nbf and iat up to 30 s in the future pass.
    for claim in ("nbf", "iat"):
        ahead: dict[str, Any] = {claim: int(now()) + 29}
        assert both(client, key.token(now(), **ahead)) == (202, 200)
        ahead[claim] += 2
        early = key.token(now(), **ahead)
        assert refused(send(client, early)) and refused(read(client, early))


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"iss": None}, id="no-iss"),
        pytest.param({"aud": None}, id="no-aud"),
        pytest.param({"iss": "https://other-idp.test"}, id="other-iss"),
        pytest.param({"aud": "another-service"}, id="other-aud"),
    ],
)
def test_tokens_need_the_issuer_and_audience(
    client: TestClient, clock: MockedClock, idp_keys: dict[str, IdpKey], claims: dict[str, Any]
) -> None:
    token = idp_keys["rsa-1"].token(clock.time(), **claims)
    for r in (send(client, token), read(client, token)):
        assert refused(r) and next(iter(claims)) in r.json()["error"]["message"].lower()


def test_a_static_public_key_needs_the_issuer_and_audience_too(
    redis_url: str, mongo_url: str, clock: MockedClock, idp_keys: dict[str, IdpKey]
) -> None:
    key = idp_keys["rsa-1"]
    pem = key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    settings = make_settings(
        redis_url,
        mongo_url,
        jwt_public_key=pem.decode(),
        jwt_algorithms=["HS256", "RS256"],
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
    )
    client = started(settings, clock)
    try:
        assert both(client, key.token(clock.time(), kid=None)) == (202, 200)
        for claims in ({"iss": None}, {"aud": None}):
            token = key.token(clock.time(), kid=None, **claims)
            assert refused(send(client, token)) and refused(read(client, token))
    finally:
        client.__exit__(None, None, None)


# -- start-up -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        pytest.param({"jwt_jwks_url": "https://idp.test/jwks"}, id="jwks-no-iss-no-aud"),
        pytest.param({"jwt_jwks_url": "https://idp.test/jwks", "jwt_issuer": ISSUER}, id="no-aud"),
        pytest.param({"jwt_public_key": "PEM", "jwt_audience": AUDIENCE}, id="pem-no-iss"),
    ],
)
def test_settings_refuse_public_keys_without_issuer_and_audience(values: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="JWT_ISSUER and JWT_AUDIENCE must be set"):
        Settings(_env_file=None, environment="development", jwt_algorithms=["RS256"], **values)


def test_the_web_process_refuses_to_start_without_issuer_and_audience() -> None:
    env = {
        **os.environ,
        "APP_ENV": "development",
        "JWT_JWKS_URL": "https://idp.test/jwks",
        "JWT_ALGORITHMS": '["RS256"]',
    }
    for name in ("JWT_ISSUER", "JWT_AUDIENCE", "JWT_PUBLIC_KEY", "MONGO_URL"):
        env.pop(name, None)
    result = subprocess.run(
        [sys.executable, "-m", "uvicorn", "--factory", "ingest.app:create_app", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "JWT_ISSUER and JWT_AUDIENCE must be set" in result.stderr
