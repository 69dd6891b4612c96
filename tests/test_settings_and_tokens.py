"""Settings refuse unsafe production values; tokens verify only with the configured keys."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import subprocess
import sys
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from shared.clock import MockedClock
from shared.errors import Unauthenticated
from shared.settings import Settings
from shared.tokens import Principal, TokenVerifier, mint_token
from tests.helpers import SECRET


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)


@pytest.mark.parametrize(
    "secret",
    [
        pytest.param(None, id="missing"),
        pytest.param("changeme", id="placeholder"),
        pytest.param("short-but-random-7f3a", id="too-short"),
    ],
)
def test_production_refuses_a_missing_or_placeholder_secret(secret: str | None) -> None:
    with pytest.raises(ValidationError, match="JWT_SECRET"):
        settings(environment="production", jwt_secret=secret)


def test_development_runs_without_strong_secret_and_none_is_never_allowed() -> None:
    assert settings(environment="development", jwt_secret="dev").environment == "development"
    with pytest.raises(ValidationError, match="none"):
        settings(environment="production", jwt_secret=SECRET, jwt_algorithms=["HS256", "none"])


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("JWT_SECRET", SECRET)
    monkeypatch.setenv("COMPLETION_THRESHOLD", "90")
    monkeypatch.setenv("MONGO_URL", "mongodb://db.example:27017/school")
    s = Settings(_env_file=None)
    assert s.completion_threshold == 90.0 and s.mongo_database == "school"


def test_the_buffer_defaults_to_rqs_redis_and_a_cluster_needs_its_own_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("BUFFER_REDIS_URL", raising=False)
    monkeypatch.delenv("BUFFER_REDIS_CLUSTER", raising=False)
    s = settings(environment="development", redis_url="redis://rq:6379/0")
    assert s.buffer_url == "redis://rq:6379/0" and not s.buffer_redis_cluster
    with pytest.raises(ValidationError, match="BUFFER_REDIS_URL"):
        settings(environment="development", buffer_redis_cluster=True)
    monkeypatch.setenv("BUFFER_REDIS_URL", "redis://node-a:7000/0")
    monkeypatch.setenv("BUFFER_REDIS_CLUSTER", "true")
    monkeypatch.setenv("MAX_DIRTY_KEYS", "100")
    s = settings(environment="development", buffer_partitions=48)
    assert s.buffer_url == "redis://node-a:7000/0" and s.buffer_redis_cluster
    assert s.max_dirty_per_partition == 3  # the partition's share, rounded up


def test_erasure_tombstones_outlive_a_lease_and_a_completion_jobs_retries() -> None:
    s = settings(environment="development")
    assert s.erasure_tombstone_ttl_s == 86_400 and s.read_rate_limit_per_minute == 600
    assert settings(environment="development", claim_lease_s=600, erasure_tombstone_ttl_s=4200)
    with pytest.raises(ValidationError, match="ERASURE_TOMBSTONE_TTL_S"):
        settings(environment="development", claim_lease_s=600, erasure_tombstone_ttl_s=4199)


def verify(verifier: TokenVerifier, token: str) -> Principal:
    return asyncio.run(verifier.verify(token))


def test_minted_tokens_verify_and_expire() -> None:
    s = settings(environment="production", jwt_secret=SECRET)
    verifier = TokenVerifier(s)
    principal = verify(verifier, mint_token(s, "ana", "student"))
    assert (principal.user_id, principal.role) == ("ana", "student")
    with pytest.raises(Unauthenticated):
        verify(verifier, mint_token(s, "ana", "student", ttl_s=-35))  # past the 30 s leeway


@pytest.mark.parametrize("role", [["student", "admin"], {"admin": True}, 1, None, "root"])
def test_a_signed_token_whose_role_is_no_known_string_is_refused(role: Any) -> None:
    """A 401 like any unknown role (a list or an object used to raise a TypeError: a 500)."""
    s = settings(environment="production", jwt_secret=SECRET)
    token = jwt.encode({"sub": "ana", "role": role, "exp": time.time() + 600}, SECRET, "HS256")
    with pytest.raises(Unauthenticated, match="role"):
        verify(TokenVerifier(s), token)


def test_cached_tokens_are_rechecked_for_expiry_with_the_leeway() -> None:
    s = settings(environment="production", jwt_secret=SECRET)
    clock = MockedClock()
    verifier = TokenVerifier(s, clock)
    token = mint_token(s, "ana", "student", ttl_s=60, now=clock.time())
    verify(verifier, token)  # now cached
    clock.advance(60 + 29)  # 29 s past exp: within the leeway
    assert verify(verifier, token).user_id == "ana"
    clock.advance(2)  # 31 s past exp
    with pytest.raises(Unauthenticated, match="expired"):
        verify(verifier, token)


def test_issuer_and_audience_are_checked_when_configured() -> None:
    s = settings(environment="production", jwt_secret=SECRET, jwt_issuer="idp", jwt_audience="vp")
    verifier = TokenVerifier(s)
    assert verify(verifier, mint_token(s, "ana", "student")).user_id == "ana"
    claims = {
        "sub": "ana",
        "role": "student",
        "exp": int(time.time()) + 60,
        "iss": "other",
        "aud": "vp",
    }
    with pytest.raises(Unauthenticated):
        verify(verifier, jwt.encode(claims, SECRET, algorithm="HS256"))


def test_rs256_with_a_public_key_and_no_algorithm_confusion() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    s = settings(
        environment="production",
        jwt_public_key=public_pem,
        jwt_algorithms=["RS256"],
        jwt_issuer="idp",
        jwt_audience="vp",
    )
    verifier = TokenVerifier(s)
    claims = {"sub": "ana", "role": "teacher", "exp": int(time.time()) + 60}
    claims |= {"iss": "idp", "aud": "vp"}
    assert verify(verifier, jwt.encode(claims, key, algorithm="RS256")).role == "teacher"
    # An HS256 token "signed" with the public key as HMAC secret must not pass.
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(claims).encode())
    signature = hmac.new(public_pem.encode(), header + b"." + payload, hashlib.sha256).digest()
    forged = b".".join([header, payload, _b64(signature)]).decode()
    with pytest.raises(Unauthenticated):
        verify(verifier, forged)


def _b64(raw: bytes) -> bytes:
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


def test_cli_mints_a_token_that_the_service_accepts(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"APP_ENV": "production", "JWT_SECRET": SECRET, "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-m", "shared.devtools.cli", "token", "ana", "--role", "teacher"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    s = settings(environment="production", jwt_secret=SECRET)
    assert verify(TokenVerifier(s), out.stdout.strip()).role == "teacher"
