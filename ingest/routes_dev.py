"""Sign-in for the embedded default only: demo users and tokens minted by the dev server.

Included only when APP_ENV=development; under production settings these routes do not exist.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel

from shared.devtools.demo import DEMO_COURSE, DEMO_USERS
from shared.errors import NotFound
from shared.tokens import Role, mint_token

router = APIRouter(prefix="/dev", tags=["development only"])


class DemoUser(BaseModel):
    user_id: str
    role: Role
    course_id: str | None


class TokenRequest(BaseModel):
    user_id: str
    role: Role


def _users(request: Request) -> list[DemoUser]:
    courses = request.app.state.ctx.catalog.current.courses
    course = DEMO_COURSE if DEMO_COURSE in courses else next(iter(courses), None)
    return [DemoUser(user_id=u, role=r, course_id=course) for u, r in DEMO_USERS]


@router.get("/users", response_model=list[DemoUser])
async def demo_users(request: Request) -> list[DemoUser]:
    return _users(request)


@router.post("/token")
async def demo_token(body: TokenRequest, request: Request) -> dict[str, str]:
    if (body.user_id, body.role) not in DEMO_USERS:
        raise NotFound("not a demo user")
    return {"token": mint_token(request.app.state.ctx.settings, body.user_id, body.role)}
