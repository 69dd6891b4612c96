"""Signing keys from a published key set, chosen by `kid`: the identity provider's
(`JWT_JWKS_URL`), and each LTI platform's (shared.lti.launch).

pyjwt's `PyJWKClient` fetches and parses the set here; when to fetch is decided here, because
PyJWKClient's own caching does not fit an async hot path: it fetches in the caller's thread
under a lock (the event loop would wait on the network), a failed fetch starts no cooldown (a
token with an unknown `kid` would fetch again on every request while the provider is down),
an expired set is dropped before a new one is had (the provider down for longer than its
lifespan refuses every token), and it reads `time.monotonic` (tests move a `MockedClock`).

The policy:
- The set is fetched at start-up and then kept. A token naming a `kid` the set lacks makes one
  fetch, at most one per `REFETCH_INTERVAL_S` (a minute) whoever asks, the start-up fetch
  included; a token naming a held `kid` never waits.
- A set older than `MAX_AGE_S` is fetched again in the background at its next use, so a key the
  provider withdrew stops verifying new tokens; the held set serves until the new one is in.
- One fetch at a time, in a worker thread, with a timeout: a request waits at most
  `FETCH_TIMEOUT_S` for it.
- A failed fetch keeps the held set. With no set at all (the provider unreachable since
  start-up), a fetch is tried at most every `RETRY_WITHOUT_KEYS_S`, and tokens get 503
  (`Unavailable`): the token may well be valid, the service cannot tell yet, so the client
  should retry rather than drop its session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Iterable

from jwt import PyJWK, PyJWKClient

from shared.clock import Clock
from shared.errors import Unavailable

log = logging.getLogger(__name__)

REFETCH_INTERVAL_S = 60.0
RETRY_WITHOUT_KEYS_S = 5
MAX_AGE_S = 300.0
FETCH_TIMEOUT_S = 5.0


class JwksKeys:
    """The signing keys of one key set URL, by `kid`; lives on one event loop. `name` says
    whose keys they are in logs and errors; `refetch_interval_s` bounds the fetches an unknown
    `kid` makes."""

    def __init__(
        self,
        url: str,
        algorithms: Iterable[str],
        clock: Clock,
        name: str = "the identity provider's keys (JWT_JWKS_URL)",
        refetch_interval_s: float = REFETCH_INTERVAL_S,
    ) -> None:
        # The client only fetches (no redirects, http(s) only) and parses; it caches nothing.
        self._client = PyJWKClient(url, cache_jwk_set=False, timeout=FETCH_TIMEOUT_S)
        self._algorithms = frozenset(algorithms)
        self._clock = clock
        self._name = name
        self._refetch_interval_s = refetch_interval_s
        self._keys: dict[str, PyJWK] | None = None  # None until a set was fetched
        self._fetched_at = -math.inf  # monotonic time the held set arrived
        self._tried_at = -math.inf  # monotonic time the last fetch started
        self._fetch: asyncio.Task[None] | None = None

    def get(self, kid: str) -> PyJWK | None:
        """The held key named `kid`, or None. Never waits; starts a background fetch when the
        held set is older than MAX_AGE_S (called on the event loop)."""
        if self._keys is None:
            return None
        if self._clock.monotonic() - self._fetched_at >= MAX_AGE_S:
            self._start_fetch()
        return self._keys.get(kid)

    async def fetch_for(self, kid: str) -> None:
        """Fetch the set again for a `kid` it lacks, if the rate allows, and wait for the
        fetch under way (at most FETCH_TIMEOUT_S). Afterwards `get(kid)` has the key if the
        provider published it. Raises Unavailable while no set at all could be fetched."""
        if self._keys is None or kid not in self._keys:
            self._start_fetch()
        await self._wait()
        if self._keys is None:
            raise Unavailable(
                f"{self._name} cannot be fetched; retry later", retry_after_s=RETRY_WITHOUT_KEYS_S
            )

    async def settled(self) -> None:
        """Wait for the fetch under way, if any (at most FETCH_TIMEOUT_S): after `get` started
        the refresh of a set older than MAX_AGE_S, a caller that must not verify with a
        withdrawn key waits here."""
        await self._wait()

    async def prefetch(self) -> None:
        """The start-up fetch; a failure is logged, not raised (tokens then get 503)."""
        self._start_fetch()
        await self._wait()

    async def close(self) -> None:
        if self._fetch is not None:
            self._fetch.cancel()  # the thread finishes its request alone; nothing waits on it
            with contextlib.suppress(asyncio.CancelledError):
                await self._fetch

    def _start_fetch(self) -> None:
        """A fetch in the background, unless one is under way or the last began too lately."""
        if self._fetch is not None and not self._fetch.done():
            return
        interval = self._refetch_interval_s if self._keys is not None else RETRY_WITHOUT_KEYS_S
        now = self._clock.monotonic()
        if now - self._tried_at < interval:
            return
        self._tried_at = now
        self._fetch = asyncio.create_task(self._refresh())

    async def _wait(self) -> None:
        task = self._fetch
        if task is not None and not task.done():
            with contextlib.suppress(TimeoutError):  # it goes on; this request stops waiting
                await asyncio.wait_for(asyncio.shield(task), FETCH_TIMEOUT_S)

    async def _refresh(self) -> None:
        try:
            fetched = await asyncio.to_thread(self._client.get_jwk_set, True)
        except Exception as exc:  # network, HTTP status, not JSON, no usable key: keep the set
            log.warning("could not fetch %s: %s", self._name, exc)
            return
        keys = {k.key_id: k for k in fetched.keys if k.key_id and self._usable(k)}
        if not keys:
            log.warning("%s: no signing key with a kid for the accepted algorithms", self._name)
        self._keys = keys
        self._fetched_at = self._clock.monotonic()

    def _usable(self, key: PyJWK) -> bool:
        return key.public_key_use in ("sig", None) and key.algorithm_name in self._algorithms
