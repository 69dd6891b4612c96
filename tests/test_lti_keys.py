"""The tool's keys (API.md, "LTI 1.3 Advantage"; shared/lti/keys.py): made on first use and
kept in MongoDB (one key even when two processes start using it at once), or configured from a
file; published at `/lti/jwks`; rotated with a grace period, the old key published until what
it signed has expired. Time is a MockedClock: no test sleeps."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from pydantic import ValidationError
from pymongo.database import Database

from ingest.app import create_app
from shared.clock import MockedClock
from shared.lti.keys import RotationRefused, ToolKeys, thumbprint
from shared.settings import Settings
from tests.helpers import SECRET, make_settings

ROOT = Path(__file__).resolve().parent.parent
GRACE_S, LIFETIME_S = 600.0, 300.0
SKEW_S = 60.0  # docs/lti.md: an old key stays a minute more, for clock skew


@pytest.fixture
def settings(redis_url: str, mongo_url: str) -> Settings:
    return make_settings(
        redis_url, mongo_url, lti_key_grace_s=GRACE_S, lti_signed_lifetime_s=LIFETIME_S
    )


@pytest.fixture
def clock() -> MockedClock:
    return MockedClock(time.time())  # the CLI's processes rotate on the real clock


@pytest.fixture
def client(settings: Settings, clock: MockedClock) -> Iterator[TestClient]:
    with TestClient(create_app(settings, clock=clock)) as c:
        yield c


def tool_keys(client: TestClient) -> ToolKeys:
    keys: ToolKeys = client.app.state.ctx.lti_keys  # type: ignore[attr-defined]  # Starlette
    return keys


def published(client: TestClient) -> list[dict[str, Any]]:
    r = client.get("/lti/jwks")
    assert r.status_code == 200, r.text
    found: list[dict[str, Any]] = r.json()["keys"]
    return found


def kids(client: TestClient) -> list[str]:
    return [k["kid"] for k in published(client)]


class JwksOf(jwt.PyJWKClient):
    """PyJWKClient's lookup by `kid`, reading the key set from the in-process app."""

    def __init__(self, client: TestClient) -> None:
        super().__init__("http://testserver/lti/jwks", cache_jwk_set=False, cache_keys=False)
        self.client = client

    def fetch_data(self) -> Any:
        return self.client.get("/lti/jwks").json()


def verify(client: TestClient, token: str) -> dict[str, Any]:
    """The claims, when the signature checks against the published key its `kid` names (time
    claims are checked by the tests against the moved clock, not PyJWT's real one)."""
    key = JwksOf(client).get_signing_key_from_jwt(token)
    claims: dict[str, Any] = jwt.decode(
        token, key.key, algorithms=["RS256"], options={"verify_exp": False, "verify_iat": False}
    )
    return claims


def test_the_thumbprint_is_rfc_7638s() -> None:
    # RFC 7638 §3.1: this key's thumbprint is NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs.
    n = (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_B"
        "JECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_F"
        "DW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4"
        "vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
    )
    modulus = int.from_bytes(base64.urlsafe_b64decode(n + "=" * (-len(n) % 4)), "big")
    public_key = rsa.RSAPublicNumbers(65537, modulus).public_key()
    assert thumbprint(public_key) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_the_first_key_is_made_on_first_use_and_signs_what_the_jwks_verifies(
    client: TestClient, clock: MockedClock, mongo_db: Database[dict[str, Any]]
) -> None:
    assert mongo_db["lti_keys"].count_documents({}) == 0  # starting made nothing
    [jwk] = published(client)
    assert set(jwk) == {"kty", "alg", "use", "kid", "n", "e"}
    assert (jwk["kty"], jwk["alg"], jwk["use"], jwk["e"]) == ("RSA", "RS256", "sig", "AQAB")
    assert len(base64.urlsafe_b64decode(jwk["n"] + "==")) == 256  # 2048 bits
    members = json.dumps({k: jwk[k] for k in ("e", "kty", "n")}, separators=(",", ":"))
    digest = hashlib.sha256(members.encode()).digest()
    assert jwk["kid"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    token = tool_keys(client).sign({"iss": "tool", "sub": "tool"}, lifetime_s=LIFETIME_S)
    assert jwt.get_unverified_header(token) == {"alg": "RS256", "kid": jwk["kid"], "typ": "JWT"}
    claims = verify(client, token)
    assert claims["exp"] - claims["iat"] <= LIFETIME_S and claims["iat"] <= clock.time()
    assert tool_keys(client).signing_key().kid == jwk["kid"]
    assert mongo_db["lti_keys"].count_documents({}) == 1


def test_a_lifetime_past_the_setting_is_refused(client: TestClient) -> None:
    with pytest.raises(ValueError, match="LTI_SIGNED_LIFETIME_S"):
        tool_keys(client).sign({"sub": "x"}, lifetime_s=LIFETIME_S + 1)


def test_rotation_publishes_at_once_signs_after_the_grace_and_unpublishes_after_the_lifetime(
    client: TestClient,
    settings: Settings,
    clock: MockedClock,
    mongo_db: Database[dict[str, Any]],
) -> None:
    keys = tool_keys(client)
    old = keys.signing_key().kid
    another_process = ToolKeys(settings, keys.keys.database, clock)
    assert another_process.signing_key().kid == old  # it read the set before the rotation
    t0 = clock.time()

    new = keys.rotate().kid
    assert new != old and kids(client) == [old, new]  # published at once
    clock.advance(GRACE_S - 1)
    assert keys.signing_key().kid == another_process.signing_key().kid == old
    last_old = keys.sign({"sub": "last"}, lifetime_s=LIFETIME_S)  # the old key's last signature
    clock.advance(1)  # t0 + grace: the new key signs, in every process
    assert keys.signing_key().kid == another_process.signing_key().kid == new
    assert verify(client, keys.sign({"sub": "first"}, 60))["sub"] == "first"

    # The old key stays while its last token may be in use: its exp, plus the skew.
    assert (
        jwt.decode(last_old, options={"verify_signature": False})["exp"]
        <= t0 + GRACE_S - 1 + LIFETIME_S
    )
    clock.advance(LIFETIME_S + SKEW_S - 1)
    assert kids(client) == [old, new]
    assert verify(client, last_old)["sub"] == "last"
    clock.advance(1)  # t0 + grace + lifetime + skew
    assert kids(client) == [new]
    assert [d["kid"] for d in mongo_db["lti_keys"].find({})] == [new]  # private key gone
    with pytest.raises(jwt.PyJWKClientError):
        verify(client, last_old)


def test_a_rotation_during_a_grace_period_waits_for_the_previous_one(
    client: TestClient, clock: MockedClock
) -> None:
    keys = tool_keys(client)
    first = keys.signing_key().kid
    second = keys.rotate()
    clock.advance(100)
    third = keys.rotate()  # signs from now + grace, after the second
    assert third.signs_from == second.signs_from + 100
    assert kids(client) == [first, second.kid, third.kid]
    clock.advance(GRACE_S - 100)
    assert keys.signing_key().kid == second.kid
    clock.advance(100)
    assert keys.signing_key().kid == third.kid
    clock.advance(LIFETIME_S + SKEW_S - 100)  # the first left; the second signed until just now
    assert kids(client) == [second.kid, third.kid]


FIRST_USE = """
import sys
from pymongo import MongoClient
from shared.clock import SystemClock
from shared.lti.keys import ToolKeys
from shared.settings import Settings

settings = Settings()
keys = ToolKeys(settings, MongoClient(settings.mongo_url).get_default_database(), SystemClock())
sys.stdin.readline()
print(keys.signing_key().kid, flush=True)
"""


def test_a_process_whose_first_key_lost_the_insert_adopts_the_winners(
    settings: Settings, mongo_db: Database[dict[str, Any]]
) -> None:
    # Both found no key and made one; the second insert finds the first's in place.
    first, second = (ToolKeys(settings, mongo_db, MockedClock()) for _ in range(2))
    kid = first.make_first_key()
    assert second.make_first_key() == kid
    assert second.signing_key().kid == first.signing_key().kid == kid
    assert [d["kid"] for d in mongo_db["lti_keys"].find({})] == [kid]


def test_processes_first_use_ends_with_one_key(
    mongo_url: str, mongo_db: Database[dict[str, Any]]
) -> None:
    env = {**os.environ, "MONGO_URL": mongo_url, "JWT_SECRET": SECRET}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", FIRST_USE],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    for proc in procs:  # both are ready (imports done) and waiting: start them together
        assert proc.stdin is not None
        proc.stdin.write("go\n")
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.flush()
    outputs = [proc.communicate(timeout=60)[0].strip() for proc in procs]
    assert all(proc.returncode == 0 for proc in procs)
    assert outputs[0] == outputs[1] == outputs[2] != ""
    assert [d["kid"] for d in mongo_db["lti_keys"].find({})] == [outputs[0]]


def cli(settings: Settings, *args: str, **more_env: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "MONGO_URL": settings.mongo_url,
        "JWT_SECRET": SECRET,
        "LTI_KEY_GRACE_S": str(GRACE_S),
        "LTI_SIGNED_LIFETIME_S": str(LIFETIME_S),
        **more_env,
    }
    return subprocess.run(
        [sys.executable, "-m", "shared.devtools.cli", "lti", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_cli_rotates_the_key_the_app_publishes(
    client: TestClient, settings: Settings, clock: MockedClock
) -> None:
    old = kids(client)
    rotated = cli(settings, "rotate-key")
    assert rotated.returncode == 0, rotated.stderr + rotated.stdout
    [new] = [k for k in kids(client) if k not in old]  # published at once
    assert new in rotated.stdout
    listed = cli(settings, "keys")
    assert [line.split("\t")[0] for line in listed.stdout.splitlines()] == [*old, new]
    assert tool_keys(client).signing_key().kid == old[0]
    clock.advance(GRACE_S + 60)  # the CLI's grace began a little after the clock's start
    assert tool_keys(client).signing_key().kid == new


def private_pem(bits: int) -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def test_a_configured_key_is_the_only_one(
    redis_url: str,
    mongo_url: str,
    tmp_path: Path,
    clock: MockedClock,
    mongo_db: Database[dict[str, Any]],
) -> None:
    pem = private_pem(2048)
    (tmp_path / "tool.pem").write_bytes(pem)
    settings = make_settings(redis_url, mongo_url, lti_private_key_file=tmp_path / "tool.pem")
    public_key = serialization.load_pem_private_key(pem, None).public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    with TestClient(create_app(settings, clock=clock)) as client:
        assert kids(client) == [thumbprint(public_key)]
        token = tool_keys(client).sign({"sub": "x"}, 60)
        assert verify(client, token)["sub"] == "x"
        with pytest.raises(RotationRefused):
            tool_keys(client).rotate()
    rotated = cli(settings, "rotate-key", LTI_PRIVATE_KEY_FILE=str(tmp_path / "tool.pem"))
    assert rotated.returncode == 2 and "LTI_PRIVATE_KEY_FILE" in rotated.stdout
    assert mongo_db["lti_keys"].count_documents({}) == 0  # nothing made, nothing stored


def test_a_short_key_or_a_key_inside_the_project_is_refused(
    redis_url: str, mongo_url: str, tmp_path: Path, mongo_db: Database[dict[str, Any]]
) -> None:
    (tmp_path / "short.pem").write_bytes(private_pem(1024))
    short = make_settings(redis_url, mongo_url, lti_private_key_file=tmp_path / "short.pem")
    with pytest.raises(ValueError, match="2048"):
        ToolKeys(short, mongo_db, MockedClock())
    with pytest.raises(ValidationError, match="outside the project"):
        make_settings(redis_url, mongo_url, lti_private_key_file=ROOT / "pyproject.toml")
    with pytest.raises(ValidationError, match="no file"):
        make_settings(redis_url, mongo_url, lti_private_key_file=tmp_path / "missing.pem")


def test_the_jwks_is_503_while_mongodb_is_down(redis_url: str) -> None:
    settings = make_settings(redis_url, "mongodb://127.0.0.1:1/down", mongo_timeout_ms=200)
    with TestClient(create_app(settings)) as client:
        r = client.get("/lti/jwks")
    assert r.status_code == 503 and r.json()["error"]["code"] == "unavailable"
