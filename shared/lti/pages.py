"""The HTML of the login and launch pages that act in the browser (ingest/routes_lti.py serves
them). Their script is one file, `lti_pages.js` beside this module, served at PAGES_SCRIPT:
the pages' Content-Security-Policy runs no inline script. Each page hands the script what it
needs as a JSON data block (`<script type="application/json">`, never executed).

- `storage_login_page`: lti-cs-oidc v0p1, its login with `lti_storage_target`: ask the
  storage frame for `lti.capabilities` (lti-cs-pm v0p1), put the state and the nonce with
  `lti.put_data` (lti-pm-s v0p1), then go to the authentication request. Every message goes to
  the origin of the platform's `auth_login_url` (lti-pm-s: the storage frame is served from the
  OIDC authorization origin) and only replies from that origin with our `message_id` count.
  `lti.capabilities` goes again every STORAGE_RESEND_MS until answered (the storage frame may
  load after the tool's frame). Without an answer (no such frame, no storage offered,
  STORAGE_TIMEOUT_MS) the page starts the same login the cookie way instead.
- `storage_check_page`: lti-cs-oidc v0p1, its launch: `lti.get_data` of both keys from the
  same frame; only when both hold what the login put does the page post the launch again
  (`lti_storage_checked`), which is when the tool uses the nonce and stores anything. Otherwise
  the page shows the refusal.
- `open_page`: the launch's answer; it opens the frontend by itself, and shows the link.
- `new_window_page`: the refusal of a cookie login whose cookie did not come back (a
  third-party frame that keeps no cookies), with a link starting the same login in a new
  window, where the tool's cookies are first-party.
"""

from __future__ import annotations

import html
import json
from typing import Any

PAGES_SCRIPT = "/lti/pages.js"
STORAGE_TIMEOUT_MS = 2000  # an LMS without platform storage never answers lti.capabilities
# lti.capabilities is sent again at this interval until answered: the storage frame may still
# be loading when the tool's page runs, and a message to a page not yet listening is lost.
STORAGE_RESEND_MS = 200


def document(title: str, body: str, config: dict[str, Any] | None = None) -> str:
    """A page: its title as a heading, `body`, and (with `config`) the pages' script."""
    script = ""
    if config is not None:
        data = json.dumps(config).replace("<", "\\u003c").replace(">", "\\u003e")
        script = (
            f'<script type="application/json" id="lti-page">{data}</script>'
            f'<script src="{PAGES_SCRIPT}" defer></script>'
        )
    return (
        '<!doctype html><html lang="en"><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>{script}<h1>{html.escape(title)}</h1>{body}</html>"
    )


def storage_login_page(
    storage_target: str,
    platform_origin: str,
    state: str,
    nonce: str,
    next_url: str,
    cookie_url: str,
) -> str:
    """The login's page: `next_url` is the authentication request, `cookie_url` the same
    login without storage (where the LMS offers none)."""
    config = {
        "kind": "login",
        "target": storage_target,
        "origin": platform_origin,
        "put": {f"state-{state}": state, f"nonce-{nonce}": nonce},
        "next": next_url,
        "fallback": cookie_url,
        "timeout_ms": STORAGE_TIMEOUT_MS,
        "resend_ms": STORAGE_RESEND_MS,
    }
    body = '<p id="status" role="status">Signing you in through your LMS…</p>'
    return document("Signing in", body, config)


def storage_check_page(
    storage_target: str, platform_origin: str, state: str, nonce: str, form: dict[str, str]
) -> str:
    """The launch's first answer for a storage login: nothing is used or stored yet."""
    config = {
        "kind": "check",
        "target": storage_target,
        "origin": platform_origin,
        "get": {f"state-{state}": state, f"nonce-{nonce}": nonce},
        "form": form,
        "action": "/lti/launch",
        "timeout_ms": STORAGE_TIMEOUT_MS,
        "resend_ms": STORAGE_RESEND_MS,
        "refusal": "The LMS launch was refused: the state and nonce in your LMS's storage "
        "do not match this launch's (was the login in this browser?).",
    }
    body = '<p id="status" role="status">Checking the launch with your LMS…</p>'
    return document("Checking the launch", body, config)


def open_page(href: str, title: str) -> str:
    """Opens `href` (the frontend) at once; the link stays for a browser that does not."""
    link = f'<p><a id="open" href="{html.escape(href)}">Open {html.escape(title)}</a></p>'
    return document("Opening the video", link, {"kind": "open", "href": href})


def new_window_page(reason: str, relogin_url: str) -> str:
    body = (
        f"<p>{html.escape(reason)}</p>"
        "<p>Your browser keeps no cookies for this tool inside the LMS page. It works in a "
        "window of its own:</p>"
        f'<p><a id="new-window" href="{html.escape(relogin_url)}" target="_blank" '
        'rel="noopener">Open the video in a new window</a></p>'
    )
    return document("Open the tool in a new window", body)
