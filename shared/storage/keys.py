"""The Redis key schema: every key the service uses is built here, and nowhere else.

Per student, hash-tagged `{sid}` so that one student's keys share a cluster slot. For each key:
its type; who writes it; when it goes.

- `vp:{sid}:hb:<mid>` list of pending heartbeats (JSON). Ingest appends; a fold trims them from
  the head, atomically with storing the state that holds them. Empty once folded; erasure.
- `vp:{sid}:ws:<mid>` hash, the hot state: `state` (WatchState JSON), `n` (heartbeats ever
  folded: the version, MongoDB's `v`), `cq` (completion job enqueued). Folds write it (the
  flush, and ingest when a backlog builds up). Expires `HOT_STATE_TTL_S` after the key was last
  flushed clean; erasure leaves a tombstone `n` for 7 days.
- `vp:{sid}:enr` set of the student's course ids mirrored from MongoDB, plus the marker `*` once
  loaded. Rewritten on every enrollment change (admin_ops).
- `vp:{sid}:enr:v` string, bumped by every enrollment change (a mirror load compares-and-sets
  on it). Never goes (a few bytes per student).
- `vp:{sid}:stored` set of the materials MongoDB holds a state for. Finish adds, after the
  write; erasure removes.
- `vp:{sid}:rl:<window>` string, heartbeats of the student in this minute (ingest). Expires
  with the window.
- `vp:{sid}:sent:<outbox>` zset of entry ids delivered from that outbox (`xapi`, `webhook`)
  scored by when; delivery adds and trims it to `SENT_IDS_PER_STUDENT`. An id in it is never
  queued again (deterministic ids make a repeated fold or completion a no-op); erasure reads
  and removes it (the LRS's copies are the school's to erase).

Global:

- `vp:dirty` zset of `<mid>|<sid>` scored by when the key is due; claim re-scores it with the
  lease expiry. Ingest adds; finish removes once MongoDB holds the latest version.
- `vp:leases` hash member -> lease expiry. Claim writes; finish or release removes.
- `vp:pending` string, heartbeats buffered and not yet folded (ingest adds, folds subtract).
- `vp:poison` zset of keys a flush cannot process, kept for an operator (README, "When the
  backlog grows"), who puts them back in `vp:dirty`.
- `vp:catalog` string, the whole catalog (JSON), and `vp:catalog:version`, incremented by each
  publish (a compare-and-set). Replaced by every publish; the version never goes.
- `vp:stats` hash of the workers' counters, read by /metrics. Never goes.
- `vp:outbox:<outbox>` hash entry id -> entry JSON (student id, payload), the durable outbox of
  xAPI statements or webhook deliveries. The flush hook and the completion job add (bounded by
  `OUTBOX_MAX_ENTRIES`); delivery removes once the receiver answered 2xx, or moves the entry to
  `vp:outbox:<outbox>:dead` (a hash, same shape plus the reason: refused by the LRS, or a
  webhook past `WEBHOOK_MAX_AGE_S`), kept for an operator; erasure removes a student's.
- `vp:outbox:<outbox>:due` zset entry id -> when it is next due. A delivery job leases entries by
  re-scoring them to the lease's end (another job takes them after it), then removes them or
  re-scores them by the backoff. `vp:outbox:<outbox>:tries` hash entry id -> failed attempts.
- `vp:xapi:sessions` zset `<mid>|<sid>|<session>` -> last heartbeat's receive time: open player
  sessions, so that silence past `XAPI_SESSION_TIMEOUT_S` ends one with `terminated`. The flush
  hook adds; its final heartbeat or the timeout sweep removes.

RQ's own keys (`rq:*`) live beside these, in the same Redis.
"""

from __future__ import annotations

from dataclasses import dataclass

DIRTY = "vp:dirty"
LEASES = "vp:leases"
PENDING = "vp:pending"
POISON = "vp:poison"
CATALOG = "vp:catalog"
CATALOG_VERSION = "vp:catalog:version"
STATS = "vp:stats"
XAPI_SESSIONS = "vp:xapi:sessions"
ENROLLMENT_LOADED = "*"  # marker member of `vp:{sid}:enr`: the set mirrors MongoDB


def student_tag(student_id: str) -> str:
    return "vp:{" + student_id + "}"


@dataclass(frozen=True, slots=True)
class ProgressKey:
    """One student's progress on one material, and the Redis keys that hold it."""

    student_id: str
    material_id: str

    @property
    def pending(self) -> str:
        return f"{student_tag(self.student_id)}:hb:{self.material_id}"

    @property
    def state(self) -> str:
        return f"{student_tag(self.student_id)}:ws:{self.material_id}"

    @property
    def stored(self) -> str:
        """The student's set of materials that MongoDB holds a state for."""
        return stored_key(self.student_id)

    @property
    def member(self) -> str:
        """The key's name in `vp:dirty`, `vp:leases` and `vp:poison`."""
        return f"{self.material_id}|{self.student_id}"  # material ids never hold '|'

    @classmethod
    def from_member(cls, member: str | bytes) -> ProgressKey:
        text = member.decode() if isinstance(member, bytes) else member
        material_id, _, student_id = text.partition("|")
        return cls(student_id, material_id)


def pending_prefix(student_id: str) -> str:
    """What every pending list of the student starts with (the material id follows)."""
    return f"{student_tag(student_id)}:hb:"


def state_prefix(student_id: str) -> str:
    """What every hot state of the student starts with (the material id follows)."""
    return f"{student_tag(student_id)}:ws:"


def stored_key(student_id: str) -> str:
    return f"{student_tag(student_id)}:stored"


def enrollments_key(student_id: str) -> str:
    return f"{student_tag(student_id)}:enr"


def enrollments_version_key(student_id: str) -> str:
    return f"{student_tag(student_id)}:enr:v"


def rate_limit_key(student_id: str, window: int) -> str:
    return f"{student_tag(student_id)}:rl:{window}"


@dataclass(frozen=True, slots=True)
class OutboxKeys:
    """The Redis keys of one outbox (`xapi` or `webhook`)."""

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
        return f"{student_tag(student_id)}:sent:{self.name}"
