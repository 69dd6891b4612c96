"""Deep Linking 2.0, the tool's side (1EdTech LTI Deep Linking 2.0,
https://www.imsglobal.org/spec/lti-dl/v2p0; API.md, "LTI 1.3 Advantage").

An instructor's verified `LtiDeepLinkingRequest` launch (shared/lti/launch.py) opens a picker
of the catalog's videos. Its context (platform, deployment, return URL, `data`) stays on the
tool's side, in Redis under a random ticket the picker's form carries: the form is trusted
for nothing but which videos were picked. The choice goes back to the platform as a
`LtiDeepLinkingResponse` JWT the tool signs, by a form post of `JWT` to
`deep_link_return_url` that the answer page submits itself ("Deep Linking Response",
#deep-linking-response-message).

Nothing here is stored beyond the ticket: no user data, so nothing for erasure or export.
"""

from __future__ import annotations

import asyncio
import html
import json
import secrets
from base64 import b64encode
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from hashlib import sha256
from typing import Any

from pydantic import TypeAdapter, ValidationError

from shared.domain.catalog import Catalog, MaterialRef
from shared.errors import Unavailable
from shared.lti.identity import role_of
from shared.lti.keys import ToolKeys
from shared.lti.launch import DEPLOYMENT, MESSAGE_TYPE, ROLES, VERSION, Launch
from shared.lti.page import Page, StepRefused
from shared.lti.registry import PlatformUrl
from shared.storage.clients import AsyncBuffer
from shared.storage.keys import lti_deep_link

DL = "https://purl.imsglobal.org/spec/lti-dl/claim/"
SETTINGS, CONTENT_ITEMS, DATA, MSG = (
    DL + "deep_linking_settings",
    DL + "content_items",
    DL + "data",
    DL + "msg",
)
RESPONSE = "LtiDeepLinkingResponse"
RESOURCE_LINK = "ltiResourceLink"
LINE_ITEM_TAG = "videoprogress"  # the lineItem's `tag`: which column is this tool's
SCORE_MAXIMUM = 100  # the scores the tool posts are percentages (AGS, API.md)
RESPONSE_LIFETIME_S = 600.0  # the browser posts it at once; pylti1p3 uses 600 s too
FIELD = "material_id"  # the picker's checkboxes; `ticket` names the launch's context
AUTOSUBMIT_SCRIPT = "document.getElementById('return').submit();"
AUTOSUBMIT_HASH = f"'sha256-{b64encode(sha256(AUTOSUBMIT_SCRIPT.encode()).digest()).decode()}'"
_RETURN_URL: TypeAdapter[str] = TypeAdapter(PlatformUrl)


class DeepLinkRefused(StepRefused):
    """A deep-linking launch or choice this tool cannot answer."""


@dataclass(frozen=True)
class DeepLinkContext:
    """What the response needs from the verified launch, kept on the tool's side."""

    issuer: str
    client_id: str
    deployment_id: str
    return_url: str
    accept_multiple: bool
    data: Any = None  # the platform's opaque `data`, echoed when it sent one
    has_data: bool = False


def _flag(value: object) -> bool:
    """A boolean setting, which some platforms send as the strings "true"/"false"."""
    return value is True or (isinstance(value, str) and value.lower() == "true")


def context_of(launch: Launch) -> DeepLinkContext:
    """The deep-linking settings of a verified launch (#deep-linking-settings): only an
    instructor may deep link (a learner: 403); `deep_link_return_url` must be an https URL
    (http on loopback); `accept_types` must hold `ltiResourceLink`, the only type this tool
    makes (#lti-resource-link). An absent `accept_multiple` reads as false: one item is what
    every platform accepts."""
    roles = launch.claims.get(ROLES)
    if role_of(roles if isinstance(roles, list) else []) != "teacher":
        raise DeepLinkRefused("only an instructor can add videos from this tool", 403)
    settings = launch.claims.get(SETTINGS)
    if not isinstance(settings, Mapping):
        raise DeepLinkRefused("the launch has no deep_linking_settings claim")
    try:
        return_url = _RETURN_URL.validate_python(settings.get("deep_link_return_url"))
    except ValidationError:
        raise DeepLinkRefused("the deep_link_return_url is not an https URL") from None
    accepted = settings.get("accept_types")
    if not isinstance(accepted, list) or RESOURCE_LINK not in accepted:
        offered = ", ".join(map(str, accepted)) if isinstance(accepted, list) else "nothing"
        raise DeepLinkRefused(
            f"this LMS accepts {offered} here; this tool adds only LTI resource links "
            f"({RESOURCE_LINK}): add the video from a place that accepts external tool links"
        )
    return DeepLinkContext(
        issuer=launch.platform.issuer,
        client_id=launch.platform.client_id,
        deployment_id=launch.deployment_id,
        return_url=return_url,
        accept_multiple=_flag(settings.get("accept_multiple")),
        data=settings.get("data"),
        has_data="data" in settings,
    )


def videos(catalog: Catalog) -> list[MaterialRef]:
    """The catalog's videos, course by course in course order."""
    return [
        MaterialRef(course_id, material)
        for course_id, course in catalog.courses.items()
        for material in course.materials
        if material.type == "video"
    ]


def content_item(ref: MaterialRef, launch_url: str) -> dict[str, Any]:
    """An `ltiResourceLink` item (#lti-resource-link) for one video: launched at the tool's
    launch URL with `custom.material_id`, and a `lineItem` (#line-item: `scoreMaximum` 100,
    `label`, `resourceId` = the material id, `tag`) so the platform makes a gradebook column."""
    material = ref.material
    return {
        "type": RESOURCE_LINK,
        "title": material.title,
        "url": launch_url,
        "custom": {FIELD: material.material_id},
        "lineItem": {
            "scoreMaximum": SCORE_MAXIMUM,
            "label": material.title,
            "resourceId": material.material_id,
            "tag": LINE_ITEM_TAG,
        },
    }


def response_claims(context: DeepLinkContext, items: list[dict[str, Any]]) -> dict[str, Any]:
    """The claims of the Deep Linking Response message (#deep-linking-response-message): `iss`
    the tool's client id, `aud` the platform's issuer, a fresh `nonce`, the message type,
    version and deployment, the items, and `data` exactly as the request carried it (absent
    when it carried none). The signer adds `iat` and `exp`."""
    claims: dict[str, Any] = {
        "iss": context.client_id,
        "aud": context.issuer,
        "nonce": secrets.token_urlsafe(24),
        MESSAGE_TYPE: RESPONSE,
        VERSION: "1.3.0",
        DEPLOYMENT: context.deployment_id,
        CONTENT_ITEMS: items,
    }
    if context.has_data:
        claims[DATA] = context.data
    if items:
        claims[MSG] = f"Added {len(items)} video{'s' if len(items) > 1 else ''}"
    return claims


class DeepLinking:
    """The picker and the response; the launch's context in the buffer's Redis under a ticket
    (LTI_DEEP_LINK_TTL_S, used once)."""

    def __init__(self, r: AsyncBuffer, keys: ToolKeys, ttl_s: int) -> None:
        self.redis, self.keys, self.ttl_s = r, keys, ttl_s

    async def picker(self, launch: Launch, catalog: Catalog, action_url: str) -> Page:
        """The picker page of a verified deep-linking launch; DeepLinkRefused when the launch
        cannot deep link (see `context_of`)."""
        context = context_of(launch)
        ticket = secrets.token_urlsafe(32)
        value = json.dumps(asdict(context))
        if not await self.redis.set(lti_deep_link(ticket), value, ex=self.ttl_s, nx=True):
            raise Unavailable("could not keep the deep link's context; try again")
        return picker_page(ticket, catalog, context.accept_multiple, action_url)

    async def respond(
        self, form: Sequence[tuple[str, str]], catalog: Catalog, launch_url: str
    ) -> Page:
        """The picker's form post: the page that posts the signed response to the platform.
        DeepLinkRefused for an unknown or used ticket (410), for an id that is no video of the
        catalog, or for several when the platform accepts one (422, the ticket kept)."""
        ticket = next((v for k, v in form if k == "ticket"), "")
        stored = await self.redis.get(lti_deep_link(ticket)) if ticket else None
        if stored is None:
            raise DeepLinkRefused("this choice has expired or was sent already: add again", 410)
        context = DeepLinkContext(**json.loads(stored))
        picked = _picked(form, catalog)
        if len(picked) > 1 and not context.accept_multiple:
            raise DeepLinkRefused("this LMS takes one video at a time: pick one", 422)
        if not await self.redis.delete(lti_deep_link(ticket)):
            raise DeepLinkRefused("this choice was sent already", 410)
        items = [content_item(ref, launch_url) for ref in picked]
        claims = response_claims(context, items)
        token = await asyncio.to_thread(self.keys.sign, claims, self._lifetime())
        return return_page(context.return_url, token, len(items))

    def _lifetime(self) -> float:
        return min(RESPONSE_LIFETIME_S, self.keys.lifetime_s)


def _picked(form: Iterable[tuple[str, str]], catalog: Catalog) -> list[MaterialRef]:
    """The picked videos in the order posted, each once; 422 for an id that is not a video."""
    ids = list(dict.fromkeys(v for k, v in form if k == FIELD))
    refs = [catalog.material(i) for i in ids]
    unknown = [
        i for i, ref in zip(ids, refs, strict=True) if ref is None or ref.material.type != "video"
    ]
    if unknown:
        raise DeepLinkRefused(f"not a video of the catalog: {', '.join(unknown)}", 422)
    return [ref for ref in refs if ref is not None]


def picker_page(ticket: str, catalog: Catalog, accept_multiple: bool, action_url: str) -> Page:
    """A checkbox per video of the catalog labelled with its title, grouped by course (a
    fieldset named by the course's title), and one submit button whose name starts with
    "Add"."""
    esc = html.escape
    refs = videos(catalog)
    groups: dict[str, list[MaterialRef]] = {}
    for ref in refs:
        groups.setdefault(ref.course_id, []).append(ref)
    fieldsets = "".join(
        f"<fieldset><legend>{esc(catalog.courses[course_id].title)}</legend>"
        + "".join(
            f'<p><label><input type="checkbox" name="{FIELD}" '
            f'value="{esc(ref.material.material_id)}"> {esc(ref.material.title)}</label></p>'
            for ref in group
        )
        + "</fieldset>"
        for course_id, group in groups.items()
    )
    how = "Pick the videos to add." if accept_multiple else "Pick one video to add."
    if not refs:
        how = "The catalog has no videos yet."
    body = (
        f"<p>{how} Each becomes a link in your course and a gradebook column (0-100, the share "
        "of the video watched).</p>"
        f'<form method="post" action="{esc(action_url)}">'
        f'<input type="hidden" name="ticket" value="{esc(ticket)}">{fieldsets}'
        f'<p><button type="submit">Add {"the selected videos" if accept_multiple else "the video"}'
        "</button></p></form>"
    )
    return Page("Add videos to your course", body)


def return_page(return_url: str, token: str, count: int) -> Page:
    """The page that posts `JWT` to `deep_link_return_url` by itself (its one inline script,
    allowed by hash), with a button for a browser that runs no script."""
    esc = html.escape
    body = (
        f'<form id="return" method="post" action="{esc(return_url)}">'
        f'<input type="hidden" name="JWT" value="{esc(token)}">'
        f"<p>Sending {count} video{'' if count == 1 else 's'} to your course… "
        '<button type="submit">Continue</button></p></form>'
        f"<script>{AUTOSUBMIT_SCRIPT}</script>"
    )
    return Page("Returning to your course", body, script_hash=AUTOSUBMIT_HASH)
