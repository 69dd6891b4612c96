"""LMS contexts and their classes (API.md, "LTI 1.3 Advantage", Classes; Core 1.3 §5.4.1, the
context claim), in MongoDB's `lti_contexts` and `lti_members`.

- A context (`lti_contexts`, `_id` its class id): what a launch's context claim names (`id`,
  `title`), per platform and deployment (a context id is unique within its deployment only,
  Core 1.3 §5.4.1: two deployments of one registration may both send "101"), with
  `course_id`, the course of the materials it links (the latest resource-link launch's), and
  `memberships_url`, its NRPS roster (NRPS 2.0 §3.6.1).
- A class is a context's learners inside that course. A member (`lti_members`, `_id`
  "<class id>|<user id>") keeps the platform's `sub` (the identity mapping), the names for
  display (`name`, `given_name`, `family_name`, from the launch or the roster), whether
  the roster counts them active, and when they last launched (`launched_at`: a roster read
  before that does not make them inactive).
- An active member is enrolled in the course, with the class id in the enrollment's `classes`
  array (indexed with each sort total, so a class page reads one page of documents) and the
  display name in its `name`. A member who is active in no class of that course any more is
  unenrolled: the teacher views list them nowhere, their stored progress stays, and it counts
  again if they come back (admin_ops.set_enrollment rebuilds the rollup).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pymongo import ASCENDING, UpdateOne
from pymongo.database import Database
from pymongo.errors import OperationFailure

from shared.lti.launch import CONTEXT
from shared.lti.registry import service_url
from shared.ops import admin_ops
from shared.ops.rollups import settle
from shared.storage.clients import Buffer
from shared.storage.keys import KeySchema
from shared.storage.mongo_store import MongoStore, enrollment_id, unavailable_on_outage
from shared.tokens import CLASS_CLAIM

CONTEXTS, MEMBERS = "lti_contexts", "lti_members"
NRPS_CLAIM = "https://purl.imsglobal.org/spec/lti-nrps/claim/namesroleservice"
MAX_TITLE = 300
# The contexts' unique index while a class id was made of (platform, context id) only.
OLD_CONTEXT_INDEX = [("platform_id", ASCENDING), ("context_id", ASCENDING)]
INDEX_NOT_FOUND = 27  # MongoDB's IndexNotFound


def class_id_of(platform_id: str, deployment_id: str, context_id: str) -> str:
    """`ltic-` + 32 base32 characters of SHA-256 of the length-prefixed triple: one id per
    (platform, deployment, context), never shared by two, within the ids' 128 characters. The
    deployment is part of it because a context id is unique within its deployment only (Core
    1.3 §5.4.1)."""
    text = f"{len(platform_id)}:{platform_id}:{len(deployment_id)}:{deployment_id}:{context_id}"
    digest = hashlib.sha256(text.encode()).digest()
    return "ltic-" + base64.b32encode(digest).decode().rstrip("=").lower()[:32]


def display_name(claims: Mapping[str, Any]) -> str | None:
    """`name`, else `given_name family_name` (OIDC standard claims, Core 1.3 §5.3.6.1), or None."""
    name = claims.get("name")
    if isinstance(name, str) and name.strip():
        return name.strip()[:MAX_TITLE]
    parts = [claims.get(k) for k in ("given_name", "family_name")]
    joined = " ".join(p.strip() for p in parts if isinstance(p, str) and p.strip())
    return joined[:MAX_TITLE] or None


@dataclass(frozen=True)
class Context:
    platform_id: str
    deployment_id: str  # the launch's (checked) deployment: a context id is unique within it
    context_id: str
    title: str | None
    course_id: str | None
    memberships_url: str | None

    @property
    def class_id(self) -> str:
        return class_id_of(self.platform_id, self.deployment_id, self.context_id)


def context_of(platform_id: str, deployment_id: str, claims: Mapping[str, Any]) -> Context | None:
    """The launch's context in its deployment (None when the claim is absent or has no id);
    the NRPS claim's `context_memberships_url` when the launch carries one."""
    claim = claims.get(CONTEXT)
    if not isinstance(claim, Mapping):
        return None
    context_id, title = claim.get("id"), claim.get("title")
    if not isinstance(context_id, str) or not 0 < len(context_id) <= 255:
        return None
    nrps = claims.get(NRPS_CLAIM)
    url = nrps.get("context_memberships_url") if isinstance(nrps, Mapping) else None
    return Context(
        platform_id,
        deployment_id,
        context_id,
        title[:MAX_TITLE] if isinstance(title, str) else None,
        None,
        service_url(url),  # one the tool may not call (not https...) is as good as none
    )


@dataclass(frozen=True)
class Member:
    """A learner of a class, as a launch or the roster names them."""

    user_id: str
    sub: str
    name: str | None
    given_name: str | None = None
    family_name: str | None = None


def member_of(user_id: str, sub: str, claims: Mapping[str, Any]) -> Member:
    given, family = claims.get("given_name"), claims.get("family_name")
    return Member(
        user_id,
        sub,
        display_name(claims),
        given[:MAX_TITLE] if isinstance(given, str) else None,
        family[:MAX_TITLE] if isinstance(family, str) else None,
    )


def session_claims(context: Context | None, course_id: str) -> dict[str, Any]:
    """What a teacher's tool session carries to see their class only (none without a
    context: then no class, and the teacher routes refuse a teacher of no course). The
    deployment marks a class id made of it: a session without one (launched by an older build)
    is refused (shared/tokens.py)."""
    if context is None:
        return {}
    claim = {"id": context.class_id, "course_id": course_id, "deployment_id": context.deployment_id}
    return {CLASS_CLAIM: claim}


class ClassStore:
    """Contexts, members and the enrollments they make. Every method is blocking and raises
    Unavailable when MongoDB is unreachable."""

    def __init__(self, mongo: MongoStore, r: Buffer, schema: KeySchema) -> None:
        self.mongo, self.redis, self.schema = mongo, r, schema
        db: Database[dict[str, Any]] = mongo.db
        self.contexts, self.members = db[CONTEXTS], db[MEMBERS]

    @unavailable_on_outage
    def ensure_indexes(self) -> None:
        """Idempotent. Contexts by (platform, deployment, context id), unique; members by class
        and status (a sync's read of who was active) and by user (erasure, export). (The
        enrollments' `classes` indexes are MongoStore's, with the other enrollment indexes.)
        The unique (platform, context id) index of the builds before class ids named the
        deployment is dropped: it would refuse a second deployment's context of the same id."""
        self._drop_index(OLD_CONTEXT_INDEX)
        self.contexts.create_index(
            [("platform_id", ASCENDING), ("deployment_id", ASCENDING), ("context_id", ASCENDING)],
            unique=True,
        )
        self.members.create_index([("class_id", ASCENDING), ("active", ASCENDING)])
        self.members.create_index([("user_id", ASCENDING)])

    def _drop_index(self, key: list[tuple[str, int]]) -> None:
        """Drop the contexts' index on `key`, if there is one: found by its key, since the
        tests' MongoDB stand-in names indexes its own way."""
        for name, info in self.contexts.index_information().items():
            if [(k, int(v)) for k, v in info["key"]] == key:
                try:
                    self.contexts.drop_index(name)
                except OperationFailure as exc:
                    if exc.code != INDEX_NOT_FOUND:  # not: another process dropped it first
                        raise

    @unavailable_on_outage
    def record_context(self, context: Context, course_id: str | None, now: float) -> None:
        """Keep the context seen at a launch (idempotent): its title, the roster URL when the
        launch offered one, and `course_id` when the launch linked a material."""
        fields: dict[str, Any] = {"last_launch_at": now}
        if context.title is not None:
            fields["title"] = context.title
        if course_id is not None:
            fields["course_id"] = course_id
        if context.memberships_url is not None:
            fields["memberships_url"] = context.memberships_url
        insert = {"platform_id": context.platform_id, "deployment_id": context.deployment_id,
                  "context_id": context.context_id, "first_seen_at": now}  # fmt: skip
        if course_id is None:
            insert["course_id"] = None
        self.contexts.update_one(
            {"_id": context.class_id}, {"$set": fields, "$setOnInsert": insert}, upsert=True
        )

    @unavailable_on_outage
    def all_contexts(self) -> list[dict[str, Any]]:
        """Every context seen, by (platform id, deployment id, context id), with its roster's
        health (`deployment_id` None: a context kept before class ids named the deployment,
        no class any more)."""
        fields = {"_id": 0, "platform_id": 1, "deployment_id": 1, "context_id": 1, "title": 1,
                  "course_id": 1, "roster_synced_at": 1, "roster_error": 1}  # fmt: skip
        order = [("platform_id", 1), ("deployment_id", 1), ("context_id", 1)]
        docs = self.contexts.find({}, fields).sort(order)
        return [{"deployment_id": None, "title": None, "course_id": None, **d} for d in docs]

    @unavailable_on_outage
    def context(self, class_id: str) -> dict[str, Any] | None:
        return self.contexts.find_one({"_id": class_id})

    @unavailable_on_outage
    def due_for_sync(self, before: float) -> list[str]:
        """Class ids with a roster URL and a course, never synced or last synced before
        `before`; not the contexts kept before class ids named the deployment, which have none
        (their class mixed every deployment's context of that id)."""
        fields = {"deployment_id": 1, "memberships_url": 1, "course_id": 1, "roster_synced_at": 1}
        return [
            d["_id"]
            for d in self.contexts.find({}, fields)  # a context per LMS course: few
            if d.get("deployment_id")
            and d.get("memberships_url")
            and d.get("course_id")
            and (d.get("roster_synced_at") or float("-inf")) < before
        ]

    @unavailable_on_outage
    def mark_synced(self, class_id: str, now: float, error: str | None) -> None:
        """A sync's outcome: the time of the last complete one, or the last error."""
        fields: dict[str, Any] = {"roster_error": error, "roster_tried_at": now}
        if error is None:
            fields["roster_synced_at"] = now
        self.contexts.update_one({"_id": class_id}, {"$set": fields})

    @unavailable_on_outage
    def launched(
        self, context: Context | None, course_id: str, student: Member | None, now: float
    ) -> None:
        """A resource-link launch into `course_id` passed: the context is kept with that
        course; a learner (`student`) is enrolled before the launch answers, and with a
        context becomes an active member of its class."""
        if context is not None:
            self.record_context(context, course_id, now)
        if student is None:
            return
        if context is None:
            admin_ops.set_enrollment(
                self.mongo, self.redis, self.schema, student.user_id, course_id, True
            )
        else:
            self.join(context, course_id, student, now)

    @unavailable_on_outage
    def join(self, context: Context, course_id: str, member: Member, now: float) -> None:
        """A learner's launch: they are an active member of the class, enrolled in the course
        (before the launch answers), shown by their name. The entry records when
        (`launched_at`): a roster sync that began reading before then does not undo it."""
        self._keep_members(context, [member], now, launched=True)
        self._activate(context.class_id, course_id, [member])

    @unavailable_on_outage
    def sync(
        self, context: Context, course_id: str, learners: Iterable[Member], now: float
    ) -> tuple[int, int]:
        """Apply a complete roster read from `now` on: every listed learner an active member,
        enrolled, but those erased since; every other active member inactive (unenrolled where
        no class of the course holds them, progress kept), but those who launched since (the
        LMS launched them after this roster was read: the next sync's roster decides).
        Idempotent. Returns (active learners, members made inactive)."""
        listed = {m.user_id: m for m in learners}
        # `now` is when this sync began to read the roster: who was erased since is left out,
        # and whoever an erasure takes while it writes is forgotten again (erasure.py); who
        # launched since is newer than this roster and stays (`_deactivate_absent`, `_release`).
        erased = self._erased_since(list(listed), now)
        kept = [m for user_id, m in listed.items() if user_id not in erased]
        self._keep_members(context, kept, now)
        self._activate(context.class_id, course_id, kept)
        late = self._erased_since([m.user_id for m in kept], now)
        for user_id in late:
            forget_member(self.mongo, self.redis, user_id)
        gone = self._deactivate_absent(context.class_id, set(listed), now)
        self._release(context.class_id, set(listed), now)
        return len(kept) - len(late), len(gone)

    def _erased_since(self, user_ids: list[str], since: float) -> set[str]:
        """The users erased as a whole person at or after `since` (the time erasure.py keeps
        in the buffer, while its tombstones live): one pipeline over their keys."""
        if not user_ids:
            return set()
        pipe = self.redis.pipeline(transaction=False)
        for user_id in user_ids:
            pipe.get(self.schema.person_erased(user_id))
        return {user_id for user_id, at in zip(user_ids, pipe.execute(), strict=True)
                if at is not None and float(at) >= since}  # fmt: skip

    def _keep_members(
        self, context: Context, members: list[Member], now: float, launched: bool = False
    ) -> None:
        """Upsert the member entries that are new or changed; a launch's (`launched`) always,
        with `launched_at` (it writes its own entry, reading none)."""
        held = {} if launched else self._held_members(context.class_id, members)
        ops = []
        for m in members:
            fields = {
                "class_id": context.class_id,
                "user_id": m.user_id,
                "platform_id": context.platform_id,
                "sub": m.sub,
                "name": m.name,
                "given_name": m.given_name,
                "family_name": m.family_name,
                "active": True,
            }
            if launched or held.get(m.user_id) != fields:
                key = {"_id": f"{context.class_id}|{m.user_id}"}
                when = {"updated_at": now} | ({"launched_at": now} if launched else {})
                ops.append(UpdateOne(key, {"$set": {**fields, **when}}, upsert=True))
        for i in range(0, len(ops), 1000):
            self.members.bulk_write(ops[i : i + 1000], ordered=False)

    def _held_members(self, class_id: str, members: list[Member]) -> dict[str, dict[str, Any]]:
        """The stored entries of these members, by user id, as `_keep_members` compares them
        (without their times)."""
        held: dict[str, dict[str, Any]] = {}
        skip = {"_id": 0, "updated_at": 0, "launched_at": 0}
        for i in range(0, len(members), 1000):
            ids = [f"{class_id}|{m.user_id}" for m in members[i : i + 1000]]
            held |= {d["user_id"]: d for d in self.members.find({"_id": {"$in": ids}}, skip)}
        return held

    def _activate(self, class_id: str, course_id: str, members: list[Member]) -> None:
        """Enroll who is not yet enrolled, in the class and named (admin_ops.enroll_many: the
        Redis mirror and the rollups go with them), then put the class id and the name on every
        other enrollment that lacks them."""
        held: dict[str, dict[str, Any]] = {}
        for i in range(0, len(members), 1000):
            ids = [enrollment_id(m.user_id, course_id) for m in members[i : i + 1000]]
            found = self.mongo.enrollments.find(
                {"_id": {"$in": ids}}, {"student_id": 1, "classes": 1, "name": 1}
            )
            held |= {d["student_id"]: d for d in found}
        extra = {m.user_id: {"classes": [class_id], "name": m.name}
                 for m in members if m.user_id not in held}  # fmt: skip
        new = admin_ops.enroll_many(
            self.mongo, self.redis, self.schema, list(extra), course_id, extra
        )
        held |= {s: {"student_id": s, **extra[s]} for s in new}
        stale = [
            m for m in members
            if class_id not in (held.get(m.user_id, {}).get("classes") or [])
            or held[m.user_id].get("name") != m.name
        ]  # fmt: skip
        ids = [enrollment_id(m.user_id, course_id) for m in stale]
        # The array first: the tests' MongoDB stand-in adds to an existing array only
        # (test_mongo_conformance pins both steps).
        for i in range(0, len(ids), 1000):
            self.mongo.enrollments.update_many(
                {"_id": {"$in": ids[i : i + 1000]}, "classes": {"$exists": False}},
                {"$set": {"classes": []}},
            )
        ops = [
            UpdateOne(
                {"_id": enrollment_id(m.user_id, course_id)},
                {"$addToSet": {"classes": class_id}, "$set": {"name": m.name}},
            )
            for m in stale
        ]
        for i in range(0, len(ops), 1000):
            self.mongo.enrollments.bulk_write(ops[i : i + 1000], ordered=False)
        self._settle(course_id, [m.user_id for m in stale])

    def _settle(self, course_id: str, students: list[str]) -> None:
        """Live rollup records (the class pages' rows in Redis) take the new class and name."""
        if students and (course := self.mongo.course(course_id)) is not None:
            settle(self.redis, self.mongo, course, students)

    def _deactivate_absent(self, class_id: str, listed: set[str], now: float) -> list[str]:
        """Make inactive the active members the roster (read from `now` on) does not list, but
        those who launched at or after `now`. A launch landing between the read and the write
        is found again after it and made active again."""
        active = self.members.find(
            {"class_id": class_id, "active": True}, {"user_id": 1, "launched_at": 1}
        )
        gone = [
            d["user_id"] for d in active
            if d["user_id"] not in listed and not _entry_launched_since(d, now)
        ]  # fmt: skip
        if gone:
            self.members.update_many(
                {"class_id": class_id, "user_id": {"$in": gone}},
                {"$set": {"active": False, "updated_at": now}},
            )
            again = self._launched_since(class_id, gone, now)
            if again:
                self.members.update_many(
                    {"class_id": class_id, "user_id": {"$in": sorted(again)}},
                    {"$set": {"active": True}},
                )
                gone = [u for u in gone if u not in again]
        return gone

    def _launched_since(self, class_id: str, user_ids: list[str], since: float) -> set[str]:
        """Those of `user_ids` whose member entry in the class says they launched at or after
        `since`."""
        ids = [f"{class_id}|{u}" for u in user_ids]
        found = self.members.find({"_id": {"$in": ids}}, {"user_id": 1, "launched_at": 1})
        return {d["user_id"] for d in found if _entry_launched_since(d, since)}

    def _release(self, class_id: str, listed: set[str], now: float) -> None:
        """Take the class off the enrollments that hold it of everyone the roster (read from
        `now` on) no longer lists, in every course (an LMS course can link videos of several of
        ours), whether or not they still have a member entry (an erasure takes it, keeping
        their row while the LMS lists them); unenroll those left in no class (their progress
        is kept: it is theirs, the enrollment only lists them). Not those who launched at or
        after `now`, checked for each just before its enrollment changes (a launch writes its
        member entry before it reads its enrollment: one after the change finds the class gone
        and puts it back; one landing in the instant between the check and the change can
        still lose it, until their next launch or the next sync)."""
        held = self.mongo.enrollments.find(
            {"classes": class_id}, {"_id": 0, "student_id": 1, "course_id": 1}
        )
        for doc in [d for d in held if d["student_id"] not in listed]:
            user_id, course_id = doc["student_id"], doc["course_id"]
            if self._launched_since(class_id, [user_id], now):
                continue
            key = {"_id": enrollment_id(user_id, course_id)}
            self.mongo.enrollments.update_one(key, {"$pull": {"classes": class_id}})
            left = self.mongo.enrollments.find_one(key, {"classes": 1})
            if left is not None and not left.get("classes"):
                admin_ops.set_enrollment(
                    self.mongo, self.redis, self.schema, user_id, course_id, False
                )
            else:
                self._settle(course_id, [user_id])


def _entry_launched_since(member: Mapping[str, Any], since: float) -> bool:
    """Whether a member entry says its learner launched at or after `since`."""
    at = member.get("launched_at")
    return isinstance(at, int | float) and at >= since


def memberships(mongo: MongoStore, user_id: str) -> list[dict[str, Any]]:
    """A user's member entries (their export): class, platform, `sub` (the identity
    mapping), names, whether active; with each class's deployment, context id and title."""
    found = list(mongo.db[MEMBERS].find({"user_id": user_id}, {"_id": 0}))
    ids = [d["class_id"] for d in found]
    contexts = {d["_id"]: d for d in mongo.db[CONTEXTS].find({"_id": {"$in": ids}})}
    for d in found:
        context = contexts.get(d["class_id"], {})
        d |= {
            "deployment_id": context.get("deployment_id"),
            "context_id": context.get("context_id"),
            "context_title": context.get("title"),
        }
    return sorted(found, key=lambda d: str(d["class_id"]))


def forget_member(mongo: MongoStore, r: Buffer, user_id: str) -> int:
    """Erase a user's member entries (the identity mapping and the names) and the names on
    their enrollments and in their live rollup records (`r`, the buffer). Returns how many
    entries went. Idempotent. (Their classes stay on their enrollments while the LMS lists
    them; a roster sync takes a class off when it no longer does, from the enrollments: see
    `ClassStore.sync`.)"""
    mongo.enrollments.update_many({"student_id": user_id}, {"$unset": {"name": ""}})
    for course_id in mongo.enrolled_courses(user_id):
        if (course := mongo.course(course_id)) is not None:
            settle(r, mongo, course, [user_id])
    return int(mongo.db[MEMBERS].delete_many({"user_id": user_id}).deleted_count)
