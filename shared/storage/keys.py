"""The Redis key schema: every key the service uses is built here, and nowhere else.

Two Redis roles (README, "Scaling"): RQ's Redis (`REDIS_URL`: queues, scheduler, cron, and
`vp:stats`) and the buffer (`BUFFER_REDIS_URL`, a plain Redis or a Redis Cluster: every other
key below). On one Redis both roles are the same server and the layout is the same.

The buffer is split into `BUFFER_PARTITIONS` partitions. A student belongs to partition
`crc32(student id) mod N`; the partition's hash tag `{<tag>}` is in every key of the student and
of the partition, so every Lua script touches one cluster slot. The tags are chosen (see
`partition_tags`) so that each falls in the middle of its 1/N share of the 16,384 slots: with
`redis-cli --cluster create`'s equal slot ranges, every primary holds the same number of
partitions, and re-sharding moves whole slots, i.e. whole partitions. Below, `{p}` is the
student's partition tag. Changing N moves students between partitions: drain the buffer first.

Every key below that holds `{p}` is named by a `KeySchema` (N is its `partition_count`): each
process builds one from its settings (`KeySchema.from_settings`) where it builds its context and
passes it to whoever names those keys. Nothing else sets N: building a client changes nothing.

Per student, under `vp:{p}:s:<sid>`. For each key: its type; who writes it; when it goes.

- `vp:{p}:s:<sid>:hb:<mid>` list of pending heartbeats (JSON). Ingest appends; a fold trims
  them from the head, atomically with storing the state that holds them. Empty once folded;
  erasure.
- `vp:{p}:s:<sid>:ws:<mid>` hash, the hot state: `state` (WatchState JSON), `n` (heartbeats
  ever folded: the version, MongoDB's `v`), `cq` (completion job enqueued), `e` (epoch: new
  whenever the hash is created), `g` (the student budget granted to the key in this epoch).
  Folds write it (the flush, and ingest when a backlog builds up). Expires `HOT_STATE_TTL_S`
  after the key was last flushed clean; erasure leaves a tombstone `n` for
  `ERASURE_TOMBSTONE_TTL_S`.
- `vp:{p}:s:<sid>:enr` set of the student's course ids mirrored from MongoDB, plus the marker
  `*` once loaded. Rewritten on every enrollment change (admin_ops).
- `vp:{p}:s:<sid>:enr:v` string, bumped by every enrollment change (a mirror load
  compares-and-sets on it). Never goes (a few bytes per student).
- `vp:{p}:s:<sid>:stored` set of the materials MongoDB holds a state for. Finish adds, after
  the write; erasure removes.
- `vp:{p}:s:<sid>:budget` hash, the student's viewing budget (verified watching per student):
  `t` the latest receipt, `k` the seconds not yet granted. Ingest spends it and stamps each
  heartbeat with its key's cumulative grant, kept in the hot state's field `g`. Expires
  `HOT_STATE_TTL_S` after the student's last heartbeat; erasure of the student removes it.
- `vp:{p}:s:<sid>:rl:<window>` string, heartbeats of the student in this minute (ingest).
  Expires with the window.
- `vp:{p}:s:<sid>:rr:<window>` string, reads (status, course views, `/api/me/courses`,
  exports) of the user in this minute, any role (the read limit). Expires with the window.
- `vp:{p}:s:<sid>:keys` set of the materials the student has `hb`/`ws` keys for: the student's
  key index, so that an export or an erasure looks its keys up instead of scanning. Ingest adds
  (in the script that creates the keys), finish and setting a key aside add again (keys
  buffered before the index existed); erasure removes. A material whose clean hot state
  expired may stay listed (a few bytes per material the student ever watched).
- `vp:{p}:s:<sid>:erased` hash material id -> the tombstone version an erasure gave that key (a
  version beyond any fold or write in flight). Erasure writes it in the same step that erases
  the keys; finish reads it (a flush of erased heartbeats marks nothing). Expires
  `ERASURE_TOMBSTONE_TTL_S` after the last erasure.

Per partition (one of each per tag):

- `vp:{p}:dirty` zset of `<mid>|<sid>` scored by when the key is due; claim re-scores it with
  the lease expiry. Ingest adds; finish removes once MongoDB holds the latest version. At most
  `MAX_DIRTY_KEYS / N` members (ingest answers 503 past it).
- `vp:{p}:leases` hash member -> lease expiry. Claim writes; finish or release removes.
- `vp:{p}:pending` string, the partition's heartbeats buffered and not yet folded (ingest
  adds, folds subtract), at most `MAX_PENDING_HEARTBEATS / N`.
- `vp:{p}:poison` zset of keys set aside (`<mid>|<sid>` -> when): keys a flush cannot process
  or whose document MongoDB refuses, and `vp:{p}:poison:why` hash member -> JSON `{reason,
  error}`. The flush adds (shared/storage/set_aside.py; not a key erased since it read it);
  the flush that stores the key at last (finish) or its erasure removes. An operator lists
  them (`GET /api/admin/poison`, `videoprogress poison list`) and, once the cause is fixed,
  makes them due again (`videoprogress poison retry`).

Global, read-mostly:

- `vp:{catalog}` string, the whole catalog (JSON), and `vp:{catalog}:version`, incremented by
  each publish (a compare-and-set: both share the tag so the script is one slot). Replaced by
  every publish; the version never goes. On the buffer Redis (on a cluster, on the one primary
  holding the tag's slot): every process reads the version once a second and the catalog when it
  changed, never per heartbeat, so that primary serves a few reads a second per process.
- `vp:stats` hash of the workers' counters, read by /metrics. Never goes. On RQ's Redis (one
  pipelined write per flush job, not per heartbeat).

On RQ's Redis too (plain Redis; the workers and the API reach them through `REDIS_URL`), the
outboxes of connections to other systems (docs/interop.md):

- `vp:outbox:<outbox>` hash entry id -> entry JSON (student id, payload), the durable outbox of
  xAPI statements or webhook deliveries. The flush hook and the completion job add (bounded by
  `OUTBOX_MAX_ENTRIES`); delivery removes once the receiver answered 2xx, or moves the entry to
  `vp:outbox:<outbox>:dead` (a hash, same shape plus the reason: refused by the LRS, or a
  webhook past `WEBHOOK_MAX_AGE_S`), kept for an operator; erasure removes a student's.
- `vp:outbox:<outbox>:due` zset entry id -> when it is next due. A delivery job leases entries
  by re-scoring them to the lease's end (another job takes them after it), then removes them or
  re-scores them by the backoff. `vp:outbox:<outbox>:tries` hash entry id -> failed attempts.
- `vp:outbox:<outbox>:sent:<sid>` zset of entry ids delivered for a student, scored by when;
  delivery adds and trims it to `SENT_IDS_PER_STUDENT`. An id in it is never queued again;
  erasure reads and removes it (the LRS's copies are the school's to erase).
- `vp:outbox:<outbox>:of:<sid>` set of the ids of the student's entries, queued or set aside:
  the student's entry index (export and erasure read it instead of scanning the outbox). Push
  adds, atomically with the entry; delivery removes once sent; erasure removes.
- `vp:outbox:<outbox>:quota:<sid>` hash `t` (tokens left), `at` (when counted): the student's
  statement quota, a token bucket (`OUTBOX_STATEMENTS_PER_MINUTE`, `OUTBOX_STATEMENTS_BURST`).
  The push script reads and writes it (not for an entry an erasure refused); it expires once
  the bucket would be full again; erasure of the student removes it.
- `vp:outbox:<outbox>:sessions:<sid>` zset `<mid>|<session uuid>` -> when the session was first
  let through: the player sessions whose `initialized`/`terminated` may be queued
  (`OUTBOX_SESSIONS_PER_HOUR` new ones per video per hour). The push script adds (not for an
  entry an erasure refused) and trims it to a day; erasure removes it (or the material's
  members).
- `vp:xapi:sessions` zset `[<mid>, <sid>, <session>]` (JSON) -> last heartbeat's receive time:
  open player sessions, so that silence past `XAPI_SESSION_TIMEOUT_S` ends one with
  `terminated`. The flush hook adds; its final heartbeat or the timeout sweep removes.
- `vp:xapi:sessions:<sid>` set of the student's members of `vp:xapi:sessions` (the same
  writers, in the same steps): the student's session index, for erasure.
- `vp:erased:<sid>` hash material id -> tombstone version, as the buffer's `erased` hash: the
  outbox push and the session hook refuse what was made from a state at or below it (an
  erasure answered after that state was read). Erasure writes it before it clears the
  outboxes. Expires `ERASURE_TOMBSTONE_TTL_S` after the last erasure.
- `vp:outbox:grade` and its keys as above: AGS scores to post (shared/lti/grades.py; the flush
  adds, workers/grades.py delivers). Ids name a grade target and a score interval, so one
  interval queues one entry per target; no sent ids are kept (the target's document records
  what was sent).
- `vp:lti:token:<hash>` string, JSON `{access_token, expires_at}`: a platform's service token
  for one scope set (shared/lti/services.py), shared by every worker. Written on a fetch;
  expires with the token.
- `vp:lti:grade:lock:<target>` string: the worker posting that target's score holds it (SET NX
  PX, a lease), so two scores of one learner and line item are never on the wire at once.
  Deleted after the post or gone with the lease.
- `vp:lti:grade:lineitem:<hash>` string: the worker creating a resource link's line item holds
  it (SET NX PX), so that a column is created once. Deleted after, or gone with the lease.
- `vp:lti:grade:hold:<platform>` string: when a platform answered `429`, until its
  `Retry-After` ends no score goes to it (EX). Gone when it expires.

RQ's own keys (`rq:*`) live on RQ's Redis.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

if TYPE_CHECKING:
    from shared.settings import Settings

CATALOG = "vp:{catalog}"
CATALOG_VERSION = "vp:{catalog}:version"
STATS = "vp:stats"
XAPI_SESSIONS = "vp:xapi:sessions"
ENROLLMENT_LOADED = "*"  # marker member of the student's `enr` set: the set mirrors MongoDB


@lru_cache(maxsize=8)
def partition_tags(n: int) -> tuple[str, ...]:
    """One hash tag per partition, the i-th hashing into the middle half of the i-th of n equal
    slot ranges (found by trying suffixes; deterministic)."""
    width = REDIS_CLUSTER_HASH_SLOTS / n
    tags = []
    for i in range(n):
        low, high = (i + 0.25) * width, (i + 0.75) * width
        suffix = 0
        while True:
            tag = f"p{i}.{suffix}"
            if low <= key_slot(tag.encode()) < max(high, low + 1):
                break
            suffix += 1
        tags.append(tag)
    return tuple(tags)


def _hash_tag(count: int, index: int) -> str:
    return "vp:{" + partition_tags(count)[index] + "}"


@dataclass(frozen=True, slots=True)
class Partition:
    """One of the `count` partitions of the buffer, and its keys (all in one cluster slot)."""

    index: int
    count: int

    @property
    def tag(self) -> str:
        return _hash_tag(self.count, self.index)

    @property
    def dirty(self) -> str:
        return f"{self.tag}:dirty"

    @property
    def leases(self) -> str:
        return f"{self.tag}:leases"

    @property
    def pending(self) -> str:
        return f"{self.tag}:pending"

    @property
    def poison(self) -> str:
        return f"{self.tag}:poison"

    @property
    def poison_why(self) -> str:
        return f"{self.tag}:poison:why"


@dataclass(frozen=True, slots=True)
class KeySchema:
    """The names of the buffer's keys for `partition_count` partitions (`BUFFER_PARTITIONS`):
    every key of a student or of a partition. Immutable, and nothing global: schemas of
    different counts coexist, and each names its keys alone. Every process of a deployment
    must use the same count."""

    partition_count: int

    def __post_init__(self) -> None:
        if self.partition_count < 1:
            raise ValueError("BUFFER_PARTITIONS must be at least 1")

    @classmethod
    def from_settings(cls, settings: Settings) -> KeySchema:
        return cls(settings.buffer_partitions)

    def partition_of(self, student_id: str) -> int:
        """The student's partition: a stable hash (the same in every process), not `hash()`."""
        return zlib.crc32(student_id.encode()) % self.partition_count

    def partitions(self) -> list[Partition]:
        return [Partition(i, self.partition_count) for i in range(self.partition_count)]

    def partition_for(self, student_id: str) -> Partition:
        return Partition(self.partition_of(student_id), self.partition_count)

    def student_tag(self, student_id: str) -> str:
        # No Partition built: this runs several times per heartbeat.
        return f"{_hash_tag(self.partition_count, self.partition_of(student_id))}:s:{student_id}"

    def pending_prefix(self, student_id: str) -> str:
        """What every pending list of the student starts with (the material id follows)."""
        return f"{self.student_tag(student_id)}:hb:"

    def state_prefix(self, student_id: str) -> str:
        """What every hot state of the student starts with (the material id follows)."""
        return f"{self.student_tag(student_id)}:ws:"

    def stored_key(self, student_id: str) -> str:
        return f"{self.student_tag(student_id)}:stored"

    def enrollments_key(self, student_id: str) -> str:
        return f"{self.student_tag(student_id)}:enr"

    def enrollments_version_key(self, student_id: str) -> str:
        return f"{self.student_tag(student_id)}:enr:v"

    def budget_key(self, student_id: str) -> str:
        return f"{self.student_tag(student_id)}:budget"

    def rate_limit_key(self, student_id: str, window: int) -> str:
        return f"{self.student_tag(student_id)}:rl:{window}"

    def read_limit_key(self, user_id: str, window: int) -> str:
        return f"{self.student_tag(user_id)}:rr:{window}"

    def key_index(self, student_id: str) -> str:
        """The set of materials the student has buffer keys for (`pending` and `state`)."""
        return f"{self.student_tag(student_id)}:keys"

    def buffer_tombstones(self, student_id: str) -> str:
        return f"{self.student_tag(student_id)}:erased"

    def person_erased(self, student_id: str) -> str:
        """When the whole person was last erased (shared/ops/erasure.py): an LTI roster sync
        that read its roster before then writes nothing of them (shared/lti/classes.py)."""
        return f"{self.student_tag(student_id)}:erased:at"


@dataclass(frozen=True, slots=True)
class ProgressKey:
    """One student's progress on one material, and the Redis keys that hold it (as `schema`
    names them)."""

    student_id: str
    material_id: str
    schema: KeySchema

    @property
    def partition(self) -> Partition:
        return self.schema.partition_for(self.student_id)

    @property
    def pending(self) -> str:
        return f"{self.schema.student_tag(self.student_id)}:hb:{self.material_id}"

    @property
    def state(self) -> str:
        return f"{self.schema.student_tag(self.student_id)}:ws:{self.material_id}"

    @property
    def stored(self) -> str:
        """The student's set of materials that MongoDB holds a state for."""
        return self.schema.stored_key(self.student_id)

    @property
    def member(self) -> str:
        """The key's name in its partition's `dirty`, `leases` and `poison`."""
        return f"{self.material_id}|{self.student_id}"  # material ids never hold '|'

    @classmethod
    def from_member(cls, member: str | bytes, schema: KeySchema) -> ProgressKey:
        text = member.decode() if isinstance(member, bytes) else member
        material_id, _, student_id = text.partition("|")
        return cls(student_id, material_id, schema)


def lti_nonce(nonce: str) -> str:
    """On the buffer's Redis: a nonce an LTI login issued, holding its state, until the launch
    uses it (GETDEL) or its TTL ends (shared/lti/launch.py)."""
    return f"vp:lti:nonce:{nonce}"


def lti_service_token(digest: str) -> str:
    """On RQ's Redis: a cached service token (`digest` names platform, token URL, client id and
    scope set; shared/lti/services.py)."""
    return f"vp:lti:token:{digest}"


def lti_grade_lock(target_id: str) -> str:
    """On RQ's Redis: the lease of the worker posting this grade target's score."""
    return f"vp:lti:grade:lock:{target_id}"


def lti_line_item_lock(digest: str) -> str:
    """On RQ's Redis: the lease of the worker creating one resource link's line item."""
    return f"vp:lti:grade:lineitem:{digest}"


def lti_grade_hold(platform_id: str) -> str:
    """On RQ's Redis: a platform's `Retry-After` hold on scores."""
    return f"vp:lti:grade:hold:{platform_id}"


def lti_grade_repair_cursor() -> str:
    """On RQ's Redis: the last grade target the repair pass examined (where the next resumes;
    missing: from the first)."""
    return "vp:lti:grade:repair"


def lti_login(state: str) -> str:
    """On the buffer's Redis: string (JSON), how the login that issued `state` went (the state
    cookie or the platform's storage, its storage frame) and its parameters (a new-window
    login). The login writes it with the nonce's TTL (LTI_LOGIN_TTL_S); the launch reads it;
    it goes with its TTL (shared/lti/storage.py)."""
    return f"vp:lti:login:{state}"


def lti_deep_link(ticket: str) -> str:
    """On the buffer's Redis: a verified deep-linking launch's context (platform, deployment,
    return URL, `data`), named by the ticket its picker page carries, until the instructor's
    choice uses it or LTI_DEEP_LINK_TTL_S ends (shared/lti/deep_linking.py)."""
    return f"vp:lti:deeplink:{ticket}"


def lti_registration_invite(token: str) -> str:
    """On the buffer's Redis: an invitation to register a platform by LTI Dynamic
    Registration, until used or LTI_REGISTRATION_INVITE_TTL_S ends
    (shared/lti/dynamic_registration.py)."""
    return f"vp:lti:invite:{token}"


def lti_registration(ticket: str) -> str:
    """On the buffer's Redis: a platform's OpenID configuration, fetched and checked, waiting
    for the LMS admin to confirm the registration (LTI_LOGIN_TTL_S)."""
    return f"vp:lti:registration:{ticket}"


def outbox_tombstones(student_id: str) -> str:
    """On RQ's Redis: the student's erasure tombstones, for the outboxes."""
    return f"vp:erased:{student_id}"


def xapi_sessions_of(student_id: str) -> str:
    """On RQ's Redis: the student's members of `XAPI_SESSIONS`."""
    return f"{XAPI_SESSIONS}:{student_id}"


@dataclass(frozen=True, slots=True)
class OutboxKeys:
    """The keys of one outbox (`xapi`, `webhook` or `grade`), on RQ's Redis."""

    name: str

    @property
    def entries(self) -> str:
        return f"vp:outbox:{self.name}"

    @property
    def due(self) -> str:
        return f"vp:outbox:{self.name}:due"

    @property
    def tries(self) -> str:
        return f"vp:outbox:{self.name}:tries"

    @property
    def dead(self) -> str:
        return f"vp:outbox:{self.name}:dead"

    def sent(self, student_id: str) -> str:
        return f"vp:outbox:{self.name}:sent:{student_id}"

    def of(self, student_id: str) -> str:
        """The ids of the student's entries, queued or set aside."""
        return f"vp:outbox:{self.name}:of:{student_id}"

    def quota(self, student_id: str) -> str:
        return f"vp:outbox:{self.name}:quota:{student_id}"

    def sessions(self, student_id: str) -> str:
        return f"vp:outbox:{self.name}:sessions:{student_id}"

    @property
    def failing(self) -> str:
        """Receivers that failed, and until when they are left alone (workers/deliver.py)."""
        return f"vp:outbox:{self.name}:failing"
