"""The embedded default's demo data: a course file and the users that can sign in."""

from pathlib import Path

DEMO_CATALOG = Path(__file__).parent / "demo_catalog.json"
DEMO_COURSE = "demo-react"
DEMO_USERS: list[tuple[str, str]] = [
    ("student-1", "student"),
    ("student-2", "student"),
    ("teacher-1", "teacher"),
    ("admin-1", "admin"),
]
