"""Which way a login went, remembered per state: a state cookie, or the platform's storage
(1EdTech's LTI Client Side postMessages draft, lti-cs-pm v0p1; postMessage Platform Storage,
lti-pm-s v0p1; OIDC login with LTI Client Side postMessages, lti-cs-oidc v0p1).

A login names a storage frame with `lti_storage_target` (lti-cs-oidc v0p1: `_parent`, or the name
of a frame of the LMS page, Canvas's `post_message_forwarding`). The tool then answers a page
(shared/lti/pages.py) that asks that frame for `lti.capabilities` and stores the state and
nonce there with `lti.put_data` (keys `state-<state>` and `nonce-<nonce>`, each holding its
value), instead of a cookie a third-party frame may not keep. The launch's form post need not
repeat `lti_storage_target`: the tool looks the login up here by the launch's `state`.

The record also keeps the login's parameters, so a launch whose cookie did not arrive can offer
the same login again in a new window, where the tool's cookies are first-party.

Compared with the libraries: pylti1p3 2.0 has no platform storage; its optional
`enable_check_cookies` answers the login with a page that tests `document.cookie` and offers a
new window (`lti1p3_new_window=1`) before the platform is asked. ltijs keeps the state in a
cookie only (`state<state>`), and its dev mode skips the check. Here the launch itself sees
whether the cookie came back, so a browser that lets a test cookie be written yet drops it
across the platform's cross-site post still gets the offer, and a login with platform storage
never needs a cookie.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Literal
from urllib.parse import urlencode, urlsplit

from shared.lti.launch import STATE_COOKIE, Launch, LaunchRefused, LaunchValidator
from shared.lti.pages import new_window_page, storage_check_page
from shared.lti.registry import Platform
from shared.storage.clients import AsyncBuffer
from shared.storage.keys import lti_login

Way = Literal["cookie", "storage"]
# What a new login needs of the first one (Core 1.3 §5.1.1): never lti_storage_target, since a
# new window has no storage frame beside it.
# A login's parameters are kept in Redis until its launch, for anyone who names a registered
# issuer (no token yet): each at most this long (Canvas's `lti_message_hint`, a JWT, is about a
# kilobyte; a `target_link_uri` is a URL).
MAX_LOGIN_PARAM_CHARS = 4096
LOGIN_PARAMS = (
    "iss",
    "login_hint",
    "target_link_uri",
    "lti_message_hint",
    "client_id",
    "lti_deployment_id",
)
STORAGE_TARGET = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")  # `_parent` or a frame's name
STORAGE_CHECKED = "lti_storage_checked"  # the launch page's own second post (pages.py)


@dataclass(frozen=True)
class LoginRecord:
    """A login as the launch needs to know it."""

    way: Way
    params: dict[str, str]  # the login's LOGIN_PARAMS that it had
    storage_target: str | None = None  # the frame of `lti.put_data` (way "storage")

    def relogin_url(self, base: str) -> str:
        """The same login again (a fresh state and nonce, cookie way), e.g. in a new window."""
        return f"{base}/lti/login?{urlencode(self.params)}"


def login_record(params: Mapping[str, str]) -> LoginRecord:
    """The record of a login with these parameters. ValueError for a parameter longer than
    MAX_LOGIN_PARAM_CHARS, or an `lti_storage_target` that is neither `_parent` nor a frame
    name (it goes into a page's script)."""
    kept = {k: params[k] for k in LOGIN_PARAMS if params.get(k)}
    if too_long := [k for k, v in kept.items() if len(v) > MAX_LOGIN_PARAM_CHARS]:
        raise ValueError(f"{', '.join(too_long)} longer than {MAX_LOGIN_PARAM_CHARS} characters")
    target = params.get("lti_storage_target")
    if not target:
        return LoginRecord("cookie", kept)
    if not STORAGE_TARGET.match(target):
        raise ValueError("lti_storage_target must be _parent or a frame's name")
    return LoginRecord("storage", kept, target)


async def remember(r: AsyncBuffer, state: str, record: LoginRecord, ttl_s: int) -> None:
    """Keep the record of the login that issued `state` as long as its nonce (LTI_LOGIN_TTL_S)."""
    await r.set(lti_login(state), json.dumps(asdict(record)), ex=ttl_s)


async def recall(r: AsyncBuffer, state: str) -> LoginRecord | None:
    """The record of the login that issued `state`; None when this tool issued no such state
    or its login expired."""
    raw = await r.get(lti_login(state))
    if raw is None:
        return None
    value = json.loads(raw)
    return LoginRecord(value["way"], dict(value["params"]), value.get("storage_target"))


def same_origin(headers: Mapping[str, str], own_origin: str) -> bool:
    """A request the tool's own page made (Fetch Metadata `Sec-Fetch-Site: same-origin`, else an
    `Origin` equal to the tool's): never a cross-site page's auto-posted form."""
    site = headers.get("sec-fetch-site")
    if site is not None:
        return site == "same-origin"
    return headers.get("origin") == own_origin


def origin_of(url: str) -> str:
    """`url`'s origin as a browser names it (`event.origin`): no default port."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    host = f"[{host}]" if ":" in host else host
    default = {"https": 443, "http": 80}.get(parts.scheme)
    port = "" if parts.port in (None, default) else f":{parts.port}"
    return f"{parts.scheme}://{host}{port}"


@dataclass(frozen=True)
class Interim:
    """A page answered instead of a launch: nothing was used or stored."""

    status: int
    html: str


Find = Callable[[str, str], Awaitable[Platform | None]]


async def check_launch(
    validator: LaunchValidator,
    r: AsyncBuffer,
    form: Mapping[str, str],
    request: tuple[Mapping[str, str], Mapping[str, str]],
    find: Find,
    base: str,
) -> Launch | Interim:
    """The launch's checks, the state's by the way its login went. `request`: the headers
    (lower-case names) and cookies; `base`: the tool's own base URL. LaunchRefused (401,
    nothing stored) for any failed check.

    - Cookie login (and a state without a record, from a login before records existed): the
      state's cookie must be there. A login of this tool whose cookie did not come back (a
      frame that keeps no third-party cookies) is still refused 401, its page offering the
      same login in a new window (Interim).
    - Storage login, first post (the platform's form post): every server check, the nonce only
      read (`use_nonce=False`); the answer is the page that reads the state and nonce back with
      `lti.get_data` (lti-cs-oidc v0p1, the launch). The state check is that page's: a server cannot
      read the platform's storage (lti-pm-s: it lives in the browser's LMS frame).
    - Storage login, second post (`lti_storage_checked`, by that page once both values
      matched): only the tool's own page may make it (`same_origin`: a cross-site page
      auto-posting an attacker's id_token and state, a login CSRF, is refused), and every server
      check runs again, now taking the nonce. So whichever post is refused, nothing was stored,
      and the nonce is used once, by the launch that passed every check, the client's included.
    """
    headers, cookies = request
    id_token, state = form["id_token"], form["state"]
    record = await recall(r, state)
    if record is None or record.way == "cookie":
        if record is not None and cookies.get(STATE_COOKIE + state) != state:
            reason = "the state does not match the login's: this browser kept no cookie of it"
            return Interim(401, new_window_page(reason, record.relogin_url(base)))
        return await validator.validate(id_token, state, cookies, find)
    if form.get(STORAGE_CHECKED) != "1":
        checked = await validator.verify(id_token, state, find, use_nonce=False)
        page = storage_check_page(
            record.storage_target or "_parent",
            origin_of(checked.platform.auth_login_url),
            state,
            str(checked.claims["nonce"]),
            {"id_token": id_token, "state": state, STORAGE_CHECKED: "1"},
        )
        return Interim(200, page)
    if not same_origin(headers, origin_of(base)):
        raise LaunchRefused("the launch's check did not come from the tool's own page")
    return await validator.verify(id_token, state, find, use_nonce=True)
