"""LTI platform registrations (API.md, "LTI 1.3 Advantage", Registration), in MongoDB's
`lti_platforms` collection.

A document's `_id` is the platform id the admin chose. A launch finds its platform by
(`issuer`, `client_id`): the `iss` and `aud` of the platform's id_token (LTI Core 1.3 §5.1.2,
Security Framework 1.0 §5.1.3 steps 2-3). Canvas uses one issuer for every school, so the
issuer alone names no platform; a unique index on the pair refuses two registrations a launch
could not tell apart, and serves the lookup (its `issuer` prefix serves a third-party login that
names no `client_id`, Core 1.3 §5.1.1).

Registration fields are written with `$set`, so fields a later step keeps in the same document
(deployments recorded at launch, the last launch) survive an admin's re-registration.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic_core import PydanticCustomError
from pymongo import ASCENDING
from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from shared.domain.catalog import PrintableId
from shared.errors import DuplicatePlatform
from shared.settings import is_origin
from shared.storage.mongo_store import unavailable_on_outage

COLLECTION = "lti_platforms"
MAX_URL_CHARS = 2000


def is_loopback(host: str) -> bool:
    """`localhost` (RFC 6761 §6.3: always the loopback), or a loopback IPv4/IPv6 address."""
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _https_url(value: str, *, query: bool = True) -> str:
    """An absolute https URL (http only on a loopback host: tests, a local LMS), without
    credentials or a fragment; `query=False` also refuses a query (an issuer's, Security
    Framework 1.0 §5.1.2)."""
    if not value.isprintable() or " " in value:
        raise PydanticCustomError("url", "must be a URL without spaces or control characters")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  # raises ValueError for a port that is not a number in range
    except ValueError:
        raise PydanticCustomError("url", "must be an absolute http(s) URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        raise PydanticCustomError("url", "must be an absolute http(s) URL without credentials")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise PydanticCustomError("https_required", "must use https (http only on loopback)")
    if parts.fragment or "#" in value or (not query and parts.query):
        what = "a fragment" if parts.fragment or "#" in value else "a query"
        raise PydanticCustomError("url", "must not hold {what}", {"what": what})
    return value


def service_url(value: object) -> str | None:
    """A URL a platform names for the tool to call with its token (a line item, a roster, the
    next page), when it is one the tool may call (as a registration's: https, http only on a
    loopback host; no credentials or fragment; at most MAX_URL_CHARS); else None."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_URL_CHARS:
        return None
    try:
        return _https_url(value)
    except PydanticCustomError:
        return None


def _issuer(value: str) -> str:
    return _https_url(value, query=False)


def _frame_origin(value: str) -> str:
    if not is_origin(value):
        raise PydanticCustomError(
            "origin", "must be an origin (scheme://host[:port], lower case, nothing after)"
        )
    return _https_url(value)


_Url = Annotated[str, StringConstraints(min_length=1, max_length=MAX_URL_CHARS)]
PlatformUrl = Annotated[_Url, AfterValidator(_https_url)]
Issuer = Annotated[_Url, AfterValidator(_issuer)]
FrameOrigin = Annotated[_Url, AfterValidator(_frame_origin)]


def _unique(values: list[str]) -> list[str]:
    if len(values) != len(set(values)):
        raise PydanticCustomError("unique", "must not repeat a value")
    return values


class PlatformBody(BaseModel):
    """A platform as PUT by an admin or added from the CLI (the id comes from the URL)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=300, pattern=r"^[^\x00-\x1f\x7f]*$")
    issuer: Issuer = Field(description="the platform's `iss` (https URL, no query)")
    client_id: PrintableId = Field(description="the tool's client id on that platform")
    auth_login_url: PlatformUrl = Field(description="the platform's OIDC authorization URL")
    auth_token_url: PlatformUrl = Field(description="the platform's OAuth 2 token URL")
    jwks_url: PlatformUrl = Field(description="the platform's public key set")
    deployment_ids: Annotated[list[PrintableId], AfterValidator(_unique)] = Field(
        max_length=100,
        description="deployments accepted; empty: any, each recorded on its first launch",
    )
    frame_origins: Annotated[list[FrameOrigin], AfterValidator(_unique)] = Field(
        default_factory=list,
        max_length=20,
        description="origins of the LMS pages that frame the tool (added to frame-ancestors)",
    )


class Platform(PlatformBody):
    platform_id: str


class RegisteredPlatform(Platform):
    """A registration as the admin's list shows it: with what its launches recorded."""

    last_launch_at: datetime | None = Field(
        None, description="the last launch that passed every check (none yet: null)"
    )
    seen_deployment_ids: list[str] = Field(
        default_factory=list, description="deployments recorded at launch (deployment_ids [])"
    )


REGISTRATION_FIELDS = tuple(PlatformBody.model_fields)


def _platform(doc: dict[str, Any]) -> Platform:
    return Platform.model_validate(
        {"platform_id": doc["_id"], **{f: doc[f] for f in REGISTRATION_FIELDS if f in doc}}
    )


def _registered(doc: dict[str, Any]) -> RegisteredPlatform:
    at = doc.get("last_launch_at")
    return RegisteredPlatform(
        **_platform(doc).model_dump(),
        last_launch_at=None if at is None else datetime.fromtimestamp(at, UTC),
        seen_deployment_ids=list(doc.get("seen_deployment_ids", [])),
    )


class AmbiguousIssuer(Exception):
    """A login names an issuer several registrations share, and no client_id."""


class PlatformRegistry:
    """Platform registrations; every method raises Unavailable when MongoDB is unreachable."""

    def __init__(self, db: Database[dict[str, Any]]) -> None:
        self.platforms = db[COLLECTION]
        self._indexed = False

    @unavailable_on_outage
    def ensure_indexes(self) -> None:
        """The unique (issuer, client_id) index; idempotent. `save` calls it once per process
        before its first write, so uniqueness holds even when start-up could not create it."""
        self.platforms.create_index([("issuer", ASCENDING), ("client_id", ASCENDING)], unique=True)
        self._indexed = True

    @unavailable_on_outage
    def save(self, platform_id: str, body: PlatformBody, now: float) -> bool:
        """Create (True) or replace (False) a registration. DuplicatePlatform when another
        platform id holds the same (issuer, client_id); then nothing changed."""
        if not self._indexed:
            self.ensure_indexes()
        update = {
            "$set": {**body.model_dump(), "updated_at": now},
            "$setOnInsert": {"created_at": now},
        }
        for _ in range(2):  # a second round only after losing an insert race on the same id
            try:
                result = self.platforms.update_one({"_id": platform_id}, update, upsert=True)
                return result.upserted_id is not None
            except DuplicateKeyError:
                holder = self.find(body.issuer, body.client_id)
                if holder is not None and holder.platform_id != platform_id:
                    raise DuplicatePlatform(
                        f"platform '{holder.platform_id}' is registered with this issuer and "
                        "client_id; a launch could not tell the two apart",
                        {"fields": ["issuer", "client_id"], "platform_id": holder.platform_id},
                    ) from None
        raise DuplicatePlatform("the registration changed meanwhile; try again")

    @unavailable_on_outage
    def all(self) -> list[RegisteredPlatform]:
        """Every registration, by platform id, with its last launch and recorded deployments."""
        return sorted(map(_registered, self.platforms.find({})), key=lambda p: p.platform_id)

    @unavailable_on_outage
    def find(self, issuer: str, client_id: str) -> Platform | None:
        """The platform a launch with this `iss` and `aud` (client id) comes from."""
        doc = self.platforms.find_one({"issuer": issuer, "client_id": client_id})
        return None if doc is None else _platform(doc)

    @unavailable_on_outage
    def by_id(self, platform_id: str) -> Platform | None:
        """The registration of this platform id (a background job's lookup)."""
        doc = self.platforms.find_one({"_id": platform_id})
        return None if doc is None else _platform(doc)

    @unavailable_on_outage
    def record_launch(self, platform_id: str, deployment_id: str | None, now: float) -> None:
        """A launch passed: its time, and (`deployment_id` given: the registration accepts any)
        the deployment in `seen_deployment_ids`, apart from the admin's `deployment_ids`."""
        update: dict[str, Any] = {"$set": {"last_launch_at": now}}
        if deployment_id is not None:
            # The array first: the tests' MongoDB stand-in (nx-27017 0.8) adds to an existing
            # array only; on MongoDB this is a no-op beside $addToSet's own creation.
            missing = {"_id": platform_id, "seen_deployment_ids": {"$exists": False}}
            self.platforms.update_one(missing, {"$set": {"seen_deployment_ids": []}})
            update["$addToSet"] = {"seen_deployment_ids": deployment_id}
        self.platforms.update_one({"_id": platform_id}, update)

    @unavailable_on_outage
    def seen_deployments(self, platform_id: str) -> list[str]:
        """The deployments recorded at launch (registrations that accept any)."""
        doc = self.platforms.find_one({"_id": platform_id}, {"seen_deployment_ids": 1})
        return list(doc.get("seen_deployment_ids", [])) if doc else []

    @unavailable_on_outage
    def find_for_login(self, issuer: str, client_id: str | None) -> Platform | None:
        """The platform a third-party login names (Core 1.3 §5.1.1: `client_id` is optional):
        by both when given, else the issuer's only registration. AmbiguousIssuer when it has
        several (Canvas's one issuer for every school): only the client id tells them apart."""
        if client_id:
            return self.find(issuer, client_id)
        docs = list(self.platforms.find({"issuer": issuer}).limit(2))
        if len(docs) > 1:
            raise AmbiguousIssuer(
                "several platforms share this issuer (as Canvas's schools do): the login must "
                "name its client_id"
            )
        return _platform(docs[0]) if docs else None

    @unavailable_on_outage
    def remove(self, platform_id: str) -> bool:
        """Delete a registration; False when there was none."""
        return self.platforms.delete_one({"_id": platform_id}).deleted_count == 1
