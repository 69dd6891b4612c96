"""What the tool's LTI steps answer a browser: a page, built by the route (ingest/routes_lti.py)."""

from __future__ import annotations

from dataclasses import dataclass


class StepRefused(Exception):
    """An LTI step this tool does not go on with; the message says why (shown on the page),
    `status` is the page's."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Page:
    """An HTML page to answer: its title, its body (HTML), its status; `script_hash` is the CSP
    source of the one inline script it runs, if any (the route adds it to the page's policy)."""

    title: str
    body: str
    status: int = 200
    script_hash: str | None = None
