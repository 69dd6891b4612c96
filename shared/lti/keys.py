"""The tool's signing keys (API.md, "LTI 1.3 Advantage"; Security Framework 1.0 §6.1-6.3: the
tool signs its JWTs with RS256, names the key by `kid` in the header, and publishes its public
keys as a JWKS, `GET /lti/jwks`).

Where the keys live: the key of LTI_PRIVATE_KEY_FILE when it is set (then it is the only one:
rotate it by replacing the file), else MongoDB's `lti_keys`. MongoDB rather than Redis: it is
the durable store (replicated, backed up, majority writes) and LTI needs it anyway (the
registrations), while Redis here is a buffer that may run without AOF or as a cluster and may
be emptied; a lost key breaks every platform's cached key set and every token the tool handed
out. The private keys are stored unencrypted: MongoDB's access control guards them.

A key document: `_id` its generation (1, 2, ...), `kid` (the RFC 7638 thumbprint of its public
key), `private_pem` (PKCS#8), `created_at`, `signs_from` (epoch seconds). The rules:

- The signing key at time t is the highest generation whose `signs_from <= t`. Every process
  computes it from the same documents with its own clock: all switch at the same moment.
- First use makes generation 1, signing at once, inserted only if absent (`_id` is unique): of
  processes making it at the same time, one insert lands and the others adopt that key.
- A rotation inserts generation n+1 signing from now + LTI_KEY_GRACE_S (never before the
  latest key): published at once, so a platform caching the JWKS knows it before it signs.
- A key stops signing when its successor starts. What it signed lives at most
  LTI_SIGNED_LIFETIME_S (`sign` refuses longer), so it stays published until its successor's
  `signs_from` + LTI_SIGNED_LIFETIME_S + CLOCK_SKEW_S; then it is deleted, private key and all.
- A process re-reads the set at least every KEYSET_REFRESH_S (less than the shortest grace),
  so it holds a new key before that key signs.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from shared.clock import Clock
from shared.errors import Unavailable
from shared.settings import Settings
from shared.storage.mongo_store import unavailable_on_outage

COLLECTION = "lti_keys"
ALG = "RS256"
KEY_BITS = 2048
KEYSET_REFRESH_S = 30.0  # Settings: LTI_KEY_GRACE_S >= 60
CLOCK_SKEW_S = 60.0  # between the processes' clocks, and the platforms'


class RotationRefused(Exception):
    """The key set cannot be rotated here (a configured key, or another rotation won)."""


def _b64uint(value: int) -> str:
    raw = value.to_bytes(max(1, math.ceil(value.bit_length() / 8)), "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def thumbprint(public_key: rsa.RSAPublicKey) -> str:
    """The RFC 7638 JWK thumbprint (SHA-256) of an RSA public key: the `kid` the tool gives it."""
    numbers = public_key.public_numbers()
    members = {"e": _b64uint(numbers.e), "kty": "RSA", "n": _b64uint(numbers.n)}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()


def load_private_key(pem: bytes) -> rsa.RSAPrivateKey:
    """An unencrypted PEM RSA private key of at least KEY_BITS bits; ValueError otherwise."""
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < KEY_BITS:
        raise ValueError(f"the LTI key must be an RSA private key of at least {KEY_BITS} bits")
    return key


def new_private_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True)
class ToolKey:
    generation: int  # 0: the configured key
    kid: str
    private_key: rsa.RSAPrivateKey
    signs_from: float
    # When it leaves the JWKS: its successor's start + the longest lifetime + skew; None while
    # it has no successor.
    unpublish_at: float | None = None

    def public_jwk(self) -> dict[str, str]:
        numbers = self.private_key.public_key().public_numbers()
        return {
            "kty": "RSA",
            "alg": ALG,
            "use": "sig",
            "kid": self.kid,
            "n": _b64uint(numbers.n),
            "e": _b64uint(numbers.e),
        }


def configured_key(settings: Settings) -> ToolKey | None:
    """The key of LTI_PRIVATE_KEY_FILE, if set."""
    if settings.lti_private_key_file is None:
        return None
    private_key = load_private_key(settings.lti_private_key_file.read_bytes())
    return ToolKey(0, thumbprint(private_key.public_key()), private_key, 0.0)


class ToolKeys:
    """The tool's keys as every process sees them. `signing_key` and `sign` are what the LTI
    messages use; `published` is the JWKS. Methods that read MongoDB raise Unavailable when it
    is unreachable (a process never signs from a key set older than KEYSET_REFRESH_S)."""

    def __init__(self, settings: Settings, db: Database[dict[str, Any]], clock: Clock) -> None:
        self.keys = db[COLLECTION]
        self.clock = clock
        self.grace_s = settings.lti_key_grace_s
        self.lifetime_s = settings.lti_signed_lifetime_s
        self.configured = configured_key(settings)
        self._cached: list[ToolKey] = []
        self._read_at = -math.inf
        self._parsed: dict[tuple[int, str], rsa.RSAPrivateKey] = {}

    def signing_key(self) -> ToolKey:
        """The key to sign with now; makes the first key when there is none."""
        if self.configured is not None:
            return self.configured
        keys = self._keys(max_age_s=KEYSET_REFRESH_S)
        now = self.clock.time()
        started = [k for k in keys if k.signs_from <= now]
        return started[-1] if started else keys[0]

    def sign(self, claims: Mapping[str, Any], lifetime_s: float) -> str:
        """`claims` as a JWT signed with the signing key (RS256, its `kid` in the header), with
        `iat` now and `exp` `lifetime_s` later. ValueError for a lifetime over
        LTI_SIGNED_LIFETIME_S: a key that stopped signing is published only that much longer."""
        if not 0 < lifetime_s <= self.lifetime_s:
            raise ValueError(
                f"lifetime_s must be in (0, {self.lifetime_s}] (LTI_SIGNED_LIFETIME_S)"
            )
        key = self.signing_key()
        now = self.clock.time()
        payload = {**claims, "iat": int(now), "exp": int(now + lifetime_s)}
        return jwt.encode(payload, key.private_key, algorithm=ALG, headers={"kid": key.kid})

    def published(self) -> list[ToolKey]:
        """The keys of the JWKS, read now: the signing key, a successor waiting for its grace
        period to end, and predecessors whose signatures may still be in use. Keys past that
        are deleted."""
        if self.configured is not None:
            return [self.configured]
        keys = self._keys(max_age_s=0)
        now = self.clock.time()
        gone = {k.generation for k in keys if k.unpublish_at is not None and k.unpublish_at <= now}
        for generation in gone:
            self._delete(generation)
        return [k for k in keys if k.generation not in gone]

    def public_keys(self) -> dict[str, rsa.RSAPublicKey]:
        """The stored keys' public halves by `kid`, read now (what verifies the tokens the tool
        signed); makes no key and deletes none."""
        if self.configured is not None:
            keys = [self.configured]
        else:
            docs = self._read()
            keys = self._tool_keys(docs) if docs else []
        return {k.kid: k.private_key.public_key() for k in keys}

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": [key.public_jwk() for key in self.published()]}

    def rotate(self) -> ToolKey:
        """Add a key, published now, signing after LTI_KEY_GRACE_S; the first key (signing at
        once) when there is none. RotationRefused with a configured key, or when another
        rotation inserted the same generation first."""
        if self.configured is not None:
            raise RotationRefused(
                "the key comes from LTI_PRIVATE_KEY_FILE: rotate it by replacing that file"
            )
        if not self._read():  # nothing signed yet: the first key may sign at once
            return self._keys(max_age_s=0)[-1]
        latest = self._keys(max_age_s=0)[-1]
        signs_from = max(self.clock.time() + self.grace_s, latest.signs_from)
        if not self._insert(latest.generation + 1, new_private_pem(), signs_from):
            raise RotationRefused("another rotation added a key at the same time; nothing added")
        return self._keys(max_age_s=0)[-1]

    # -- MongoDB ---------------------------------------------------------------------------

    def _keys(self, max_age_s: float) -> list[ToolKey]:
        """The key set by generation (read again when older than `max_age_s`), never empty."""
        if self.clock.monotonic() - self._read_at >= max_age_s or not self._cached:
            docs = self._read()
            if not docs:
                self.make_first_key()
                docs = self._read()
            self._cached = self._tool_keys(docs)
            self._read_at = self.clock.monotonic()
        return self._cached

    def make_first_key(self) -> str:
        """Insert generation 1, signing at once, unless it exists: of processes making it at
        the same time one insert lands, and all of them get that key's `kid`."""
        self._insert(1, new_private_pem(), self.clock.time())
        return str(self._generation_1()["kid"])

    def _tool_keys(self, docs: list[dict[str, Any]]) -> list[ToolKey]:
        docs = sorted(docs, key=lambda d: int(d["_id"]))
        keys = []
        for doc, successor in zip(docs, [*docs[1:], None], strict=True):
            unpublish_at = None
            if successor is not None:
                unpublish_at = float(successor["signs_from"]) + self.lifetime_s + CLOCK_SKEW_S
            ident = (int(doc["_id"]), doc["kid"])
            if ident not in self._parsed:
                self._parsed[ident] = load_private_key(doc["private_pem"].encode())
            keys.append(
                ToolKey(
                    ident[0], ident[1], self._parsed[ident], float(doc["signs_from"]), unpublish_at
                )
            )
        return keys

    @unavailable_on_outage
    def _read(self) -> list[dict[str, Any]]:
        return list(self.keys.find({}))

    @unavailable_on_outage
    def _generation_1(self) -> dict[str, Any]:
        doc = self.keys.find_one({"_id": 1})
        if doc is None:  # retired and deleted between the insert and this read: try again
            raise Unavailable("the tool's key set changed meanwhile", retry_after_s=1)
        return doc

    @unavailable_on_outage
    def _insert(self, generation: int, pem: bytes, signs_from: float) -> bool:
        """Insert a key unless that generation exists (False then: another process won)."""
        private_key = load_private_key(pem)
        doc = {
            "_id": generation,
            "kid": thumbprint(private_key.public_key()),
            "private_pem": pem.decode(),
            "created_at": self.clock.time(),
            "signs_from": signs_from,
        }
        try:
            self.keys.insert_one(doc)
        except DuplicateKeyError:
            return False
        return True

    @unavailable_on_outage
    def _delete(self, generation: int) -> None:
        self.keys.delete_one({"_id": generation})
        self._read_at = -math.inf
