"""The one settings object every process reads (environment variables and `.env`)."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.domain.progress import Verification

# Values people paste from examples; production start-up refuses them.
PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "changethis", "secret", "jwt-secret", "dev"}
MIN_SECRET_LENGTH = 32
PROJECT_DIR = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        extra="ignore",
        frozen=True,
        populate_by_name=True,
        hide_input_in_errors=True,  # a rejected secret must not be echoed into logs
    )

    environment: Literal["production", "development"] = Field(
        "production", validation_alias="APP_ENV"
    )

    # RQ's Redis: queues, scheduler, cron (a plain Redis; RQ does not support Redis Cluster).
    redis_url: str = "redis://127.0.0.1:6379/0"
    # The heartbeat buffer (README, "Scaling"): REDIS_URL's server unless set; with
    # BUFFER_REDIS_CLUSTER the URL names one startup node of a Redis Cluster.
    buffer_redis_url: str | None = None
    buffer_redis_cluster: bool = False
    # Partitions of the buffer (each one hash tag, so one cluster slot). Every process must use
    # the same number; change it only with a drained buffer.
    buffer_partitions: int = Field(48, ge=1, le=4096)
    mongo_url: str = "mongodb://127.0.0.1:27017/videoprogress"
    mongo_timeout_ms: int = 5000

    jwt_secret: SecretStr | None = None
    jwt_public_key: str | None = None  # PEM text of the identity provider's key (RS256/ES256)
    # The identity provider's key set (JWKS): keys chosen by the token's `kid` (shared/jwks.py).
    jwt_jwks_url: str | None = None
    jwt_algorithms: list[str] = ["HS256"]
    # Checked when set; required with a public key (JWT_PUBLIC_KEY or JWT_JWKS_URL).
    jwt_issuer: str | None = None
    jwt_audience: str | None = None

    completion_threshold: float = Field(80.0, gt=0, le=100)
    # A dirty (student, video) is written to MongoDB at most once per interval; teacher views
    # lag ingest by at most this much.
    flush_interval_s: float = Field(30.0, gt=0)
    # How often the clock process enqueues a flush job; keys become due this much earlier so
    # that the lag bound above holds.
    flush_tick_s: int = Field(5, ge=1)
    flush_batch_size: int = Field(500, ge=1)
    # How long an enrollment's rollup may live only in Redis (shared/storage/live_rollups.py)
    # before it is written to MongoDB: teacher views read Redis beside MongoDB, so they lag
    # ingest by one flush interval whatever this is. 0: written by every flush (two documents
    # per flush of a key instead of about one).
    rollup_persist_s: float = Field(600.0, ge=0)
    # A claimed batch not finished within this time is taken over by another worker.
    claim_lease_s: float = Field(60.0, gt=0)
    # Unflushed-buffer bounds; past them ingest answers 503 instead of exhausting Redis. Each
    # partition holds at most its share (bound / BUFFER_PARTITIONS, rounded up).
    max_dirty_keys: int = Field(1_000_000, ge=1)
    max_pending_heartbeats: int = Field(5_000_000, ge=1)
    hot_state_ttl_s: int = Field(7 * 24 * 3600, ge=60)
    # (student, video) keys whose state each web process keeps (shared/storage/views.py). Below
    # the keys sending to one process, the cache misses on nearly every heartbeat (each is
    # evicted before its next one comes) and every reply folds from the hot state. A state is
    # about 1 KB as Python objects for a player's ordinary history, tens of KB at its caps (256
    # intervals, 4 x 64 readings, 64 chains).
    state_cache_keys: int = Field(50_000, ge=1)
    # Heartbeats per student per minute: a player sends 6 to 12, an outbox flush after a long
    # time offline a few hundred at once. 0 disables the limit.
    rate_limit_per_minute: int = Field(1200, ge=0)
    # Reads per user per minute (status reads, course views, /api/me/courses; an export counts
    # as EXPORT_READ_COST of them): a page load makes 1 to 3, a teacher paging through courses a
    # few a second at most. 0 disables the limit.
    read_rate_limit_per_minute: int = Field(600, ge=0)
    # How long erasure tombstones live (Redis and MongoDB): what a flush or completion job read
    # before an erasure is refused for this long. At least an hour more than a lease (a flush's
    # lease, then a completion job with its retries: workers/flush.py COMPLETION_RETRY).
    erasure_tombstone_ttl_s: int = Field(24 * 3600, ge=3600)
    # Heartbeats one (student, video) may hold in Redis while waiting for a worker: 10 hours of
    # a player's heartbeats (one per 10 s), so an outage of the worker tier of that long costs
    # at most ~1 MB per key; past it ingest answers 503 for that key only.
    max_pending_per_key: int = Field(3600, ge=10)
    # A heartbeat's client_ts older than this is refused (422 client_ts_out_of_range): a
    # tracker's outbox keeps heartbeats for days, never for a month.
    max_client_age_s: float = Field(30 * 24 * 3600.0, gt=0)

    # Verified watching (docs/verified-watching.md): credited watched seconds are at most
    # MAX_PLAYBACK_RATE x the server time over which heartbeats arrived + VIEWING_SLACK_S, a
    # silence longer than VIEWING_GAP_S not counting. 0 trusts the client (no bound).
    max_playback_rate: float = Field(2.0, ge=0, le=16)
    viewing_slack_s: float = Field(0.0, ge=0)
    viewing_gap_s: float = Field(60.0, gt=0)

    log_level: str = "INFO"  # request lines are INFO; WARNING keeps only problems

    max_body_bytes: int = Field(64 * 1024, ge=1024)
    queue_name: str = "videoprogress"

    # The built browser pages, served at / when present.
    frontend_dist: Path = Path(__file__).resolve().parent.parent / "frontend" / "dist"
    # The web edge (docs/browser.md, "Embedding the tracker in an LMS page"): origins whose
    # pages may call the API (comma-separated, e.g. "https://lms.school.example"), and who may
    # frame the pages (CSP frame-ancestors sources, separated by spaces as in the directive).
    cors_origins: str = ""
    frame_ancestors: str = "'self'"

    # Interoperability (docs/interop.md). xAPI is off while
    # XAPI_LRS_URL is unset; webhooks are off while WEBHOOK_URLS is empty.
    xapi_lrs_url: str | None = None  # the LRS's xAPI base, ending in "/": <base>statements
    xapi_lrs_username: str | None = None
    xapi_lrs_password: SecretStr | None = None
    xapi_actor_homepage: str = "https://idp.example.org"
    xapi_activity_base: str = "https://videoprogress.example.org/xapi/activities/"
    xapi_batch_size: int = Field(100, ge=1, le=1000)
    # A session whose last heartbeat is older than this gets its `terminated` statement.
    xapi_session_timeout_s: float = Field(1800.0, gt=0)
    webhook_urls: str = ""  # comma-separated receivers
    webhook_secret: SecretStr | None = None  # whsec_<base64>, Standard Webhooks
    webhook_max_age_s: float = Field(24 * 3600.0, gt=0)  # then the event is dead-lettered
    # Entries waiting in each outbox (Redis); past it new entries are dropped and counted.
    outbox_max_entries: int = Field(1_000_000, ge=1)
    # The share of it kept for `completed` statements and completion webhooks: other entries
    # are dropped once the outbox holds OUTBOX_MAX_ENTRIES x (1 - this).
    outbox_reserved_share: float = Field(0.1, ge=0, lt=1)
    # xAPI statements (`completed` aside) one student may queue: a bucket of
    # OUTBOX_STATEMENTS_BURST refilled at OUTBOX_STATEMENTS_PER_MINUTE (0: no quota). A player
    # reports a statement per event (play, pause, seek, exit), a few a minute; the burst holds a
    # whole key's backlog (MAX_PENDING_PER_KEY) after a worker outage or an offline player.
    outbox_statements_per_minute: int = Field(120, ge=0)
    outbox_statements_burst: int = Field(3600, ge=1)
    # New player sessions per (student, video) per hour whose `initialized`/`terminated` are
    # queued (a page load or tab is a session; 0: no quota).
    outbox_sessions_per_hour: int = Field(120, ge=0)
    outbox_tick_s: int = Field(5, ge=1)  # how often the clock enqueues a delivery job
    outbox_retry_base_s: float = Field(2.0, gt=0)  # first retry delay, doubled per attempt
    outbox_retry_max_s: float = Field(600.0, gt=0)  # the longest delay between two attempts
    delivery_timeout_s: float = Field(10.0, gt=0)  # per HTTP request to an LRS or receiver
    # Delivered ids kept per student and outbox (~60 bytes each): an id in it is never queued
    # again, and erasure lists them. 0 keeps none (then only the LRS's own dedupe protects).
    sent_ids_per_student: int = Field(1_000, ge=0)

    # LTI 1.3 (docs/lti.md): nothing here is needed to start. Without a key the tool makes one
    # on first use and keeps it in MongoDB; LTI_PRIVATE_KEY_FILE (a PEM RSA key of 2048 bits
    # or more, kept outside the repository) makes that key the only one instead.
    lti_private_key_file: Path | None = None
    # `videoprogress lti rotate-key` publishes a new key at once and signs with it this much
    # later: platforms cache the tool's JWKS. At least a minute (processes re-read the key set
    # every KEYSET_REFRESH_S, shared/lti/keys.py).
    lti_key_grace_s: float = Field(3600.0, ge=60)
    # The longest lifetime (exp - iat) of any JWT the tool signs; a key that stopped signing
    # stays published this much longer (plus a minute of clock skew).
    lti_signed_lifetime_s: float = Field(3600.0, gt=0, le=24 * 3600)
    # How long a login's state and nonce wait for the platform's launch (the nonce's TTL in
    # Redis, the state cookie's Max-Age).
    lti_login_ttl_s: int = Field(600, ge=10, le=3600)
    # AGS scores (docs/lti.md, Grades): at most one post per learner and line item per this
    # many seconds; a score carries the highest credited figure reached by then.
    lti_score_interval_s: float = Field(60.0, gt=0)
    # How long an LTI launch's session can be renewed for (`POST /lti/session`): past this,
    # the learner launches again from the LMS, which checks who they are. A school day.
    lti_session_max_age_s: int = Field(12 * 3600, ge=900, le=7 * 24 * 3600)
    # How long a deep-linking launch's picker waits for the instructor's choice (its context,
    # kept in Redis, is used once).
    lti_deep_link_ttl_s: int = Field(1800, ge=60, le=24 * 3600)
    # How long an invitation to register by LTI Dynamic Registration stays usable (once).
    lti_registration_invite_ttl_s: int = Field(7 * 24 * 3600, ge=60, le=30 * 24 * 3600)
    # NRPS rosters (docs/lti.md): each class's roster is read again this often (and at every
    # instructor launch); a roster longer than this many pages is refused, changing nothing.
    lti_roster_sync_interval_s: int = Field(3600, ge=1)
    lti_roster_max_pages: int = Field(1000, ge=1)
    # The base of the URLs the tool hands out (`redirect_uri`); default: the request's own.
    public_base_url: str | None = None

    @model_validator(mode="after")
    def _buffer_cluster_needs_its_own_url(self) -> Settings:
        if self.buffer_redis_cluster and not self.buffer_redis_url:
            raise ValueError(
                "BUFFER_REDIS_CLUSTER=true needs BUFFER_REDIS_URL (a node of the cluster): "
                "REDIS_URL is RQ's, which must be a plain Redis"
            )
        return self

    @model_validator(mode="after")
    def _tombstones_outlive_work_in_flight(self) -> Settings:
        if self.erasure_tombstone_ttl_s < self.claim_lease_s + 3600:
            raise ValueError(
                "ERASURE_TOMBSTONE_TTL_S must be at least CLAIM_LEASE_S + 3600: a flush and a "
                "completion job with its retries may still be in flight that long"
            )
        return self

    @model_validator(mode="after")
    def _public_keys_need_issuer_and_audience(self) -> Settings:
        if self.jwt_public_key and self.jwt_jwks_url:
            raise ValueError("set JWT_PUBLIC_KEY or JWT_JWKS_URL, not both")
        if not (self.jwt_public_key or self.jwt_jwks_url):
            return self
        # Any token the provider signs for another service would pass the signature check.
        if not (self.jwt_issuer and self.jwt_audience):
            raise ValueError(
                "JWT_ISSUER and JWT_AUDIENCE must be set when tokens are verified with a "
                "public key (JWT_PUBLIC_KEY or JWT_JWKS_URL)"
            )
        if not self.public_key_algorithms:
            raise ValueError(
                "JWT_ALGORITHMS must name a public-key algorithm (e.g. RS256 or ES256) when "
                "JWT_PUBLIC_KEY or JWT_JWKS_URL is set"
            )
        if self.jwt_jwks_url and urlsplit(self.jwt_jwks_url).scheme not in ("http", "https"):
            raise ValueError("JWT_JWKS_URL must be an http(s) URL")
        return self

    @model_validator(mode="after")
    def _lti_key_outside_the_repository(self) -> Settings:
        path = self.lti_private_key_file
        if path is None:
            return self
        if not path.is_file():
            raise ValueError(f"LTI_PRIVATE_KEY_FILE: no file at {path}")
        if path.resolve().is_relative_to(PROJECT_DIR):  # it would end up in a commit or image
            raise ValueError("LTI_PRIVATE_KEY_FILE must be outside the project's directory")
        return self

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.webhook_receivers:
            secret = self.webhook_secret.get_secret_value() if self.webhook_secret else ""
            if not secret.startswith("whsec_"):
                raise ValueError(
                    "WEBHOOK_SECRET must be a whsec_... secret when WEBHOOK_URLS is set"
                )
        for origin in self.cors_origin_list:
            if not is_origin(origin):
                raise ValueError(
                    f"CORS_ORIGINS: {origin!r} is not an origin (scheme://host[:port], no path, "
                    "as a browser sends it in Origin)"
                )
        if not self.frame_ancestors.strip() or set(";,\r\n") & set(self.frame_ancestors):
            raise ValueError(
                "FRAME_ANCESTORS: CSP sources separated by spaces (e.g. 'self' "
                "https://lms.school.example), without ';' or ','"
            )
        if self.xapi_lrs_url is not None and not self.xapi_lrs_url.endswith("/"):
            raise ValueError("XAPI_LRS_URL must end with '/' (statements go to <base>statements)")
        if self.environment != "production":
            return self
        uses_hmac = any(alg.startswith("HS") for alg in self.jwt_algorithms)
        if uses_hmac:
            secret = self.jwt_secret.get_secret_value() if self.jwt_secret else ""
            if secret.strip().lower() in PLACEHOLDER_SECRETS or len(secret) < MIN_SECRET_LENGTH:
                raise ValueError(
                    f"JWT_SECRET must be set to a random value of at least {MIN_SECRET_LENGTH} "
                    "characters in production (APP_ENV=production)"
                )
        if "none" in {alg.lower() for alg in self.jwt_algorithms}:
            raise ValueError("JWT_ALGORITHMS may not contain 'none'")
        return self

    @property
    def public_key_algorithms(self) -> list[str]:
        """The configured algorithms that verify with a public key (RS256, ES256, ...)."""
        return [
            a for a in self.jwt_algorithms if not a.upper().startswith("HS") and a.lower() != "none"
        ]

    @property
    def webhook_receivers(self) -> list[str]:
        return [u.strip() for u in self.webhook_urls.split(",") if u.strip()]

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    @property
    def mongo_database(self) -> str:
        return urlsplit(self.mongo_url).path.lstrip("/").split("/")[0] or "videoprogress"

    @property
    def verification(self) -> Verification:
        return Verification(self.max_playback_rate, self.viewing_slack_s, self.viewing_gap_s)

    @property
    def buffer_url(self) -> str:
        return self.buffer_redis_url or self.redis_url

    @property
    def max_dirty_per_partition(self) -> int:
        return -(-self.max_dirty_keys // self.buffer_partitions)

    @property
    def max_pending_per_partition(self) -> int:
        return -(-self.max_pending_heartbeats // self.buffer_partitions)

    @property
    def due_delay_s(self) -> float:
        """How long a dirty key waits before a flush takes it (interval minus one tick)."""
        return max(0.0, self.flush_interval_s - self.flush_tick_s)


def is_origin(value: str) -> bool:
    """Whether `value` is spelled as a browser sends its Origin header: http(s), a lower-case
    host, an optional port, nothing after (a trailing slash or a path would never match)."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  # raises ValueError for a port that is not a number in range
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and _HOST.fullmatch(parts.hostname or "") is not None
        and "@" not in parts.netloc
        and value == value.lower() == f"{parts.scheme}://{parts.netloc}"
    )


# A host name's labels (letters, digits, hyphens), or an IP address: never a wildcard (`*`) or
# anything a header could be split at (`;`, `,`, a space) once the origin goes into the CSP.
_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
_HOST = re.compile(rf"{_LABEL}(?:\.{_LABEL})*|[0-9a-f:.]+")


@lru_cache
def get_settings() -> Settings:
    return Settings()
