"""Grades back to the LMS (AGS 2.0; API.md, "LTI 1.3 Advantage", Grades back): what a launch
records to grade, and the scores made from the credited progress.

A grade target (MongoDB `lti_grade_targets`) is one learner on one line item: recorded by a
learner's resource-link launch that carries the AGS claim (AGS 2.0 §3.1: `lineitem`,
`lineitems`, `scope`), never for an instructor or Canvas's `TestUser`. Its `_id` hashes the
platform, the line item (or, when the launch named none, the `lineitems` URL and the resource
link, whose line item the workers create once) and the user's platform `sub`. A launch that
names the line item the workers created (AGS 2.0 §3.2: a platform names it once the link has
one) records into the target that created it, and one naming none into the target of that
resource link that holds its line item: the key is how the first launch named it, not the
latest. Two targets of one learner on one line item (made before builds that did this) are
merged into the older when they are read (`_merge`). The document also
holds what the workers learn: the created line item, the score last sent (`sent`), the latest
timestamp used (`last_ts`, so timestamps strictly rise per line item and learner, AGS 2.0
§3.4.1), and a refusal (`refused`: the platform will not grade this user), shown to admins.

Scores (AGS 2.0 §3.4): `{userId, scoreGiven, scoreMaximum: 100, activityProgress,
gradingProgress: "FullyGraded", timestamp}` posted to `<line item>/scores` as
`application/vnd.ims.lis.v1.score+json`. `scoreGiven` is the credited percentage (never
lower than a score already sent), `activityProgress` `Completed` once the material completed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pymongo import ASCENDING, UpdateOne
from pymongo.database import Database

from shared.lti.launch import CLAIM, CONTEXT, ROLES, Launch
from shared.lti.registry import service_url
from shared.storage.mongo_store import unavailable_on_outage

COLLECTION = "lti_grade_targets"
AGS_CLAIM = "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint"
SCOPE = "https://purl.imsglobal.org/spec/lti-ags/scope/"
LINEITEM, LINEITEM_READ, SCORE = SCOPE + "lineitem", SCOPE + "lineitem.readonly", SCOPE + "score"
USED_SCOPES = frozenset({LINEITEM, SCORE})  # what the tool ever asks a token for
TEST_USER = "http://purl.imsglobal.org/vocab/lti/system/person#testuser"
SCORE_TYPE = "application/vnd.ims.lis.v1.score+json"
LINEITEM_TYPE = "application/vnd.ims.lis.v2.lineitem+json"
LINEITEMS_TYPE = "application/vnd.ims.lis.v2.lineitemcontainer+json"
TAG = "videoprogress"  # the `tag` of the line items the tool creates
SCORE_MAXIMUM = 100


def is_test_user(roles: Iterable[object]) -> bool:
    """Canvas's student view (Core 1.3 §A.2.4, system role `TestUser`), compared without case."""
    return any(isinstance(r, str) and r.strip().lower() == TEST_USER for r in roles)


def target_id(platform_id: str, line_item_key: str, sub: str) -> str:
    parts = (platform_id, line_item_key, sub)
    text = "".join(f"{len(p)}:{p}" for p in parts)
    return "g" + hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class GradeTarget:
    """One learner on one line item, as the workers read it."""

    id: str
    platform_id: str
    sub: str
    user_id: str
    material_id: str
    lineitem: str | None
    lineitems: str | None
    resource_link_id: str
    scopes: tuple[str, ...]
    label: str
    sent_score: float | None = None
    sent_completed: bool = False
    last_ts: float = 0.0
    refused: bool = False
    sent_at: float | None = None

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> GradeTarget:
        sent = doc.get("sent") or {}
        return cls(
            doc["_id"],
            doc["platform_id"],
            doc["sub"],
            doc["user_id"],
            doc["material_id"],
            doc.get("lineitem"),
            doc.get("lineitems"),
            doc.get("resource_link_id", ""),
            tuple(doc.get("scopes", [])),
            doc.get("label", ""),
            sent.get("score"),
            bool(sent.get("completed", False)),
            float(doc.get("last_ts", 0.0)),
            doc.get("refused") is not None,
            sent.get("at"),
        )


def target_of(launch: Launch, user_id: str, material_id: str, label: str) -> dict[str, Any] | None:
    """The grade target a learner's launch records (its fields), or None: no AGS claim, no
    line item to post to nor a `lineitems` URL to create one in, no score scope offered, or
    not a learner to grade (the caller checked the role; `TestUser` is checked here)."""
    roles = launch.claims.get(ROLES)
    if is_test_user(roles if isinstance(roles, list) else []):
        return None
    claim = launch.claims.get(AGS_CLAIM)
    if not isinstance(claim, Mapping):
        return None
    # A URL the tool may not call (not https, credentials, too long) is as good as none.
    lineitem, lineitems = service_url(claim.get("lineitem")), service_url(claim.get("lineitems"))
    scopes = claim.get("scope")
    offered = sorted({s for s in scopes if isinstance(s, str)}) if isinstance(scopes, list) else []
    link = launch.claims.get(CLAIM + "resource_link") or {}
    context = launch.claims.get(CONTEXT) or {}
    link_id = str(link.get("id", ""))
    if isinstance(lineitem, str) and lineitem:
        key, lineitems = lineitem, lineitems if isinstance(lineitems, str) else None
    elif isinstance(lineitems, str) and lineitems and LINEITEM in offered:
        key, lineitem = f"{lineitems}#{link_id}", None
    else:
        return None
    if SCORE not in offered:
        return None
    platform_id, sub = launch.platform.platform_id, str(launch.claims["sub"])
    return {
        "_id": target_id(platform_id, key, sub),
        "platform_id": platform_id,
        "sub": sub,
        "user_id": user_id,
        "material_id": material_id,
        "lineitem": lineitem,
        "lineitems": lineitems,
        "resource_link_id": link_id,
        "context_id": str(context.get("id", "")) if isinstance(context, Mapping) else "",
        "scopes": offered,
        "label": label,
    }


def score_body(sub: str, score: float, completed: bool, timestamp: float) -> dict[str, Any]:
    """The score of AGS 2.0 §3.4 (`FullyGraded`: Canvas ignores a score with anything else)."""
    return {
        "userId": sub,
        "scoreGiven": score,
        "scoreMaximum": SCORE_MAXIMUM,
        "activityProgress": "Completed" if completed else "InProgress",
        "gradingProgress": "FullyGraded",
        "timestamp": iso(timestamp),
    }


def iso(ts: float) -> str:
    """ISO 8601 with milliseconds and a zone (`+00:00`)."""
    ms = round(ts * 1000)
    moment = datetime.fromtimestamp(ms // 1000, UTC) + timedelta(milliseconds=ms % 1000)
    return moment.isoformat(timespec="milliseconds")


def next_timestamp(now: float, last: float) -> float:
    """A score's timestamp: now, but at least a millisecond after the last one used for the
    same line item and learner (their order must strictly rise, AGS 2.0 §3.4.1, even when a
    worker's clock is behind another's)."""
    return max(round(now * 1000), round(last * 1000) + 1) / 1000


def scores_url(lineitem: str) -> str:
    """`<line item>/scores`: `/scores` appended to the path, any query kept (AGS 2.0 §3.4)."""
    parts = urlsplit(lineitem)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/scores"))


def line_item_body(target: GradeTarget) -> dict[str, Any]:
    """The line item the tool creates when the launch named none (AGS 2.0 §3.2.8)."""
    return {
        "scoreMaximum": SCORE_MAXIMUM,
        "label": target.label or target.material_id,
        "resourceLinkId": target.resource_link_id,
        "resourceId": target.material_id,
        "tag": TAG,
    }


class GradeTargets:
    """The `lti_grade_targets` collection; every method raises Unavailable when MongoDB is
    unreachable."""

    def __init__(self, db: Database[dict[str, Any]]) -> None:
        self.targets = db[COLLECTION]
        self._indexed = False

    @unavailable_on_outage
    def ensure_indexes(self) -> None:
        """(user_id, material_id) serves the flush's lookup, erasure and export; (platform_id)
        the admin's view. Idempotent."""
        self.targets.create_index([("user_id", ASCENDING), ("material_id", ASCENDING)])
        self.targets.create_index([("platform_id", ASCENDING)])
        self._indexed = True

    @unavailable_on_outage
    def record(self, fields: Mapping[str, Any], now: float) -> None:
        """Upsert a launch's target: the learner's target on the same line item when there is
        one, whatever its key (see the module doc), else a new one. A new launch clears a
        refusal (the platform may grade the user now); what the workers learnt (line item
        created, score sent) is kept."""
        if not self._indexed:
            self.ensure_indexes()
        held = self._merge(list(self.targets.find({"user_id": fields["user_id"]})))
        same = [d for d in held if _same_line_item(d, fields)]
        ids = [d["_id"] for d in same]
        target = fields["_id"] if fields["_id"] in ids or not ids else ids[0]
        values = {k: v for k, v in fields.items() if k != "_id"}
        update: dict[str, Any] = {
            "$set": {**values, "launched_at": now, "refused": None},
            "$setOnInsert": {"created_at": now},
        }
        if fields.get("lineitem") is None:  # keep a line item the workers created
            del update["$set"]["lineitem"]
            update["$setOnInsert"]["lineitem"] = None
        self.targets.update_one({"_id": target}, update, upsert=True)

    @unavailable_on_outage
    def of_keys(self, pairs: Iterable[tuple[str, str]]) -> list[GradeTarget]:
        """The targets of these (user id, material id) pairs that are not refused."""
        wanted = set(pairs)
        if not wanted:
            return []
        users = sorted({u for u, _ in wanted})
        docs = self._merge(list(self.targets.find({"user_id": {"$in": users}})))
        found = [GradeTarget.from_doc(d) for d in docs]
        return [t for t in found if (t.user_id, t.material_id) in wanted and not t.refused]

    @unavailable_on_outage
    def page_after(self, after: str, limit: int) -> list[GradeTarget]:
        """Up to `limit` targets by `_id` after `after` ("": from the first), refused ones
        included (the caller skips them; the page still moves on)."""
        docs = self.targets.find({"_id": {"$gt": after}}).sort("_id", ASCENDING).limit(limit)
        return [GradeTarget.from_doc(d) for d in docs]

    @unavailable_on_outage
    def get(self, ids: Iterable[str]) -> dict[str, GradeTarget]:
        """These targets, as merged (a target merged into another is absent: its entries
        have nothing to send)."""
        wanted = set(ids)
        docs = self.targets.find({"_id": {"$in": sorted(wanted)}}, {"user_id": 1})
        users = sorted({d["user_id"] for d in docs})
        kept = self._merge(list(self.targets.find({"user_id": {"$in": users}}))) if users else []
        return {d["_id"]: GradeTarget.from_doc(d) for d in kept if d["_id"] in wanted}

    @unavailable_on_outage
    def merge_duplicates(self, user_ids: Iterable[str]) -> set[str]:
        """Merge these users' targets that are one learner on one line item (`_merge`); the
        ids of those merged away."""
        users = sorted(set(user_ids))
        if not users:
            return set()
        docs = list(self.targets.find({"user_id": {"$in": users}}))
        kept = {d["_id"] for d in self._merge(docs)}
        return {d["_id"] for d in docs} - kept

    def _merge(self, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """`docs` (every target of their users) with one target per learner and line item:
        where two name the same line item (a build before this one made a second target when
        a launch named the line item the tool created), the older one (`created_at`, then
        `_id`) takes the latest score sent and timestamp used, and the others are deleted, so
        their queued entries send nothing. Idempotent; two processes merging at once pick the
        same one."""
        groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        for d in docs:
            if d.get("lineitem"):
                groups.setdefault((d["platform_id"], d["sub"], d["lineitem"]), []).append(d)
        gone: set[str] = set()
        for group in (g for g in groups.values() if len(g) > 1):
            keep, *others = sorted(group, key=lambda d: (float(d.get("created_at", 0)), d["_id"]))
            sent = [d["sent"] for d in group if isinstance(d.get("sent"), Mapping)]
            latest = max(sent, key=lambda x: float(x.get("at") or 0), default=None)
            last_ts = max(float(d.get("last_ts", 0.0)) for d in group)
            update: dict[str, Any] = {"$max": {"last_ts": last_ts}}
            if latest is not None:
                update["$set"] = {"sent": latest}
            self.targets.update_one({"_id": keep["_id"]}, update)
            self.targets.delete_many({"_id": {"$in": [d["_id"] for d in others]}})
            keep |= {"last_ts": last_ts, "sent": latest}
            gone.update(d["_id"] for d in others)
        return [d for d in docs if d["_id"] not in gone]

    @unavailable_on_outage
    def use_timestamps(self, stamps: Mapping[str, float]) -> None:
        """Record the timestamps about to be posted (before the posts: a retry takes a later
        one even when an answer was lost). One unordered bulk write."""
        if stamps:
            ops = [UpdateOne({"_id": t}, {"$max": {"last_ts": ts}}) for t, ts in stamps.items()]
            self.targets.bulk_write(ops, ordered=False)

    @unavailable_on_outage
    def record_sent(self, rows: Iterable[tuple[str, float, bool, float]]) -> None:
        """(target, score, completed, timestamp) of scores the platform accepted; a target
        erased meanwhile stays erased (no upsert). One unordered bulk write."""
        ops = [
            UpdateOne(
                {"_id": target},
                {
                    "$set": {
                        "sent": {"score": score, "completed": done, "timestamp": iso(ts), "at": ts},
                        "last_error": None,
                    }
                },
            )
            for target, score, done, ts in rows
        ]
        if ops:
            self.targets.bulk_write(ops, ordered=False)

    @unavailable_on_outage
    def record_error(self, target: str, error: str, now: float) -> None:
        last_error = {"at": now, "error": error[:300]}
        self.targets.update_one({"_id": target}, {"$set": {"last_error": last_error}})

    @unavailable_on_outage
    def record_refused(self, target: str, status: int | None, detail: str, now: float) -> None:
        refused = {"status": status, "detail": detail[:300], "at": now}
        self.targets.update_one({"_id": target}, {"$set": {"refused": refused}})

    @unavailable_on_outage
    def set_line_item(self, target: GradeTarget, url: str) -> None:
        """The created line item, for every learner of that resource link."""
        self.targets.update_many(
            {
                "platform_id": target.platform_id,
                "lineitems": target.lineitems,
                "resource_link_id": target.resource_link_id,
                "lineitem": None,
            },
            {"$set": {"lineitem": url}},
        )

    @unavailable_on_outage
    def of_student(self, user_id: str) -> list[dict[str, Any]]:
        """The student's targets as stored (export)."""
        return list(self.targets.find({"user_id": user_id}).sort("_id", ASCENDING))

    @unavailable_on_outage
    def erase(self, user_id: str, material_id: str | None) -> int:
        """Delete the student's targets (of one material, or all). Returns how many."""
        flt: dict[str, Any] = {"user_id": user_id}
        if material_id is not None:
            flt["material_id"] = material_id
        return int(self.targets.delete_many(flt).deleted_count)

    @unavailable_on_outage
    def health(self, platform_id: str) -> dict[str, Any]:
        """A platform's grades for the admin: targets, learners refused (with why), the latest
        error."""
        docs = list(self.targets.find({"platform_id": platform_id}))
        refused = [
            {"user_id": d["user_id"], "material_id": d["material_id"], **d["refused"]}
            for d in docs
            if d.get("refused")
        ]
        errors = [d["last_error"] for d in docs if d.get("last_error")]
        last = max(errors, key=lambda e: e["at"]) if errors else None
        return {"targets": len(docs), "refused": refused, "last_error": last}


def _same_line_item(held: Mapping[str, Any], fields: Mapping[str, Any]) -> bool:
    """Whether a stored target is the learner's target that a launch's `fields` mean: on the
    line item the launch names, or (naming none) for the same resource link in the same
    container."""
    if held["platform_id"] != fields["platform_id"] or held["sub"] != fields["sub"]:
        return False
    if fields.get("lineitem"):
        return bool(held.get("lineitem") == fields["lineitem"])
    return bool(
        held.get("lineitems") == fields["lineitems"]
        and held.get("resource_link_id") == fields["resource_link_id"]
    )


def record_launch(
    targets: GradeTargets, launch: Launch, user_id: str, material_id: str, label: str, now: float
) -> bool:
    """What a learner's launch records to grade (see `target_of`); True when it recorded a
    target. The caller calls it for learners only."""
    fields = target_of(launch, user_id, material_id, label)
    if fields is None:
        return False
    targets.record(fields, now)
    return True
