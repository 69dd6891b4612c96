"""Who an LTI user is here (API.md, "LTI 1.3 Advantage", Who is who).

- The user id: the platform's `sub` (Core 1.3 §5.3.6, stable per platform) namespaced by the
  platform id through a hash, so two platforms never collide (a platform id may itself hold
  `:`) and the id stays within the 128 printable characters ids have here.
- The role, from the context roles (Core 1.3 §5.3.7, role vocabularies A.2): `Learner` is a
  student; `Instructor`, `TeachingAssistant`, `ContentDeveloper` (and sub-roles of Instructor)
  a teacher. Institution and system roles (`Administrator` among them) make no one an admin.
  URIs are compared without case; short names (`Instructor`) are accepted.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable

from shared.tokens import Role

MEMBERSHIP = "http://purl.imsglobal.org/vocab/lis/v2/membership"
TEACHER_ROLES = frozenset({"instructor", "teachingassistant", "contentdeveloper"})


def user_id_of(platform_id: str, sub: str) -> str:
    """`lti-` + 32 base32 characters (160 bits) of SHA-256 of the length-prefixed platform id
    and the sub: the same person always maps to the same id, and different (platform, sub)
    pairs hash different strings, whatever characters they hold."""
    digest = hashlib.sha256(f"{len(platform_id)}:{platform_id}:{sub}".encode()).digest()
    return "lti-" + base64.b32encode(digest).decode().rstrip("=").lower()[:32]


def _context_role(uri: str) -> str | None:
    """The context role a URI or short name names (lower case), or None for other roles."""
    lowered = uri.strip().lower()
    if lowered.startswith(MEMBERSHIP + "#"):
        return lowered.removeprefix(MEMBERSHIP + "#")
    if lowered.startswith(MEMBERSHIP + "/"):  # a sub-role: .../membership/Instructor#Grader
        return lowered.removeprefix(MEMBERSHIP + "/").partition("#")[0]
    if "/" in lowered or "#" in lowered or ":" in lowered:
        return None  # institution or system roles, other vocabularies
    return lowered


def role_of(roles: Iterable[object]) -> Role | None:
    """teacher, student, or None when no context role here grants either."""
    names = {_context_role(r) for r in roles if isinstance(r, str)}
    if names & TEACHER_ROLES:
        return "teacher"
    if "learner" in names:
        return "student"
    return None
