"""`videoprogress`: the embedded default, tokens for local use, catalog loading."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated

import redis
import typer
from pydantic import ValidationError
from rich.console import Console

from shared.clock import SystemClock
from shared.devtools.demo import DEMO_CATALOG, DEMO_USERS
from shared.devtools.services import (
    Service,
    child_env,
    mongo_standin_service,
    procfile_commands,
    redis_service,
    start_procfile_process,
    wait_for_port,
)
from shared.domain import analytics
from shared.domain.catalog import ID_PATTERN, Catalog
from shared.errors import DuplicatePlatform
from shared.integrations.outbox import OUTBOXES, Outbox
from shared.lti.keys import RotationRefused, ToolKeys
from shared.lti.registry import PlatformBody, PlatformRegistry
from shared.ops import admin_ops, rollups, teacher_views
from shared.settings import Settings
from shared.storage import set_aside
from shared.storage.clients import buffer_client
from shared.storage.keys import KeySchema, ProgressKey
from shared.storage.live_rollups import LiveRollups
from shared.storage.mongo_store import MongoStore
from shared.tokens import mint_token

app = typer.Typer(help="Video progress tracking for online courses.", no_args_is_help=True)
poison = typer.Typer(help="Keys a flush set aside (docs/operations.md, 'A non-empty poison set').")
app.add_typer(poison, name="poison")
lti = typer.Typer(help="LTI 1.3: platforms and the tool's keys (docs/lti.md).")
app.add_typer(lti, name="lti")
console = Console()


@app.command()
def token(
    user_id: Annotated[str, typer.Argument(help="the token's sub")],
    role: Annotated[str, typer.Option(help="student, teacher or admin")] = "student",
    ttl: Annotated[int, typer.Option(help="lifetime in seconds")] = 8 * 3600,
) -> None:
    """Print an HS256 token signed with JWT_SECRET (for local use and scripts)."""
    if role not in {"student", "teacher", "admin"}:
        raise typer.BadParameter("role must be student, teacher or admin")
    typer.echo(mint_token(Settings(), user_id, role, ttl))  # type: ignore[arg-type]


@app.command("load-catalog")
def load_catalog(path: Annotated[Path, typer.Argument(exists=True, dir_okay=False)]) -> None:
    """Load courses and enrollments from a JSON file ({"courses": [...], "enrollments": [...]})."""
    settings = Settings()
    mongo = MongoStore(settings.mongo_url, settings.mongo_timeout_ms)
    mongo.ensure_indexes()
    try:
        data = admin_ops.load_catalog_file(
            mongo, buffer_client(settings), KeySchema.from_settings(settings), path
        )
    except ValidationError as exc:  # the whole file is checked before anything is stored
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"]) or "file"
            console.print(f"{path}: {field}: {error['msg']}", highlight=False)
        raise typer.Exit(2) from None
    console.print(f"loaded {len(data.courses)} courses, {len(data.enrollments)} enrollments")


@app.command("outbox-requeue")
def outbox_requeue(
    outbox: Annotated[str, typer.Argument(help="xapi, webhook or grade")],
    ids: Annotated[list[str] | None, typer.Argument(help="entry ids (default: all)")] = None,
) -> None:
    """Send set-aside (dead-letter) outbox entries again, once their cause is fixed."""
    if outbox not in {box.name for box in OUTBOXES}:
        raise typer.BadParameter("outbox must be xapi, webhook or grade")
    box = next(b for b in OUTBOXES if b.name == outbox)
    client = redis.Redis.from_url(Settings().redis_url)
    moved = Outbox(client, box).requeue_dead(ids or None, time.time())
    console.print(f"requeued {moved} entries of the {outbox} outbox")


@app.command("rebuild-stored")
def rebuild_stored() -> None:
    """Rebuild the buffer's per-student sets of materials MongoDB holds a state for (after the
    0.7.0 key change, or a lost buffer), so replies merge stored progress from the start."""
    settings = Settings()
    mongo = MongoStore(settings.mongo_url, settings.mongo_timeout_ms)
    added = admin_ops.rebuild_stored_sets(
        mongo, buffer_client(settings), KeySchema.from_settings(settings)
    )
    console.print(f"{added} (student, material) pairs listed")


@app.command("migrate-states")
def migrate_states() -> None:
    """Rewrite stored states of the shape before 0.8.0 (readings keyed by session id) in the
    current one. Idempotent; safe while workers run (the maintenance job does the same daily)."""
    settings = Settings()
    mongo = MongoStore(settings.mongo_url, settings.mongo_timeout_ms)
    console.print(f"{mongo.migrate_readings()} stored states rewritten")


@poison.command("list")
def poison_list() -> None:
    """Every key set aside, with why (the same as GET /api/admin/poison)."""
    settings = Settings()
    for k in set_aside.listed(buffer_client(settings), KeySchema.from_settings(settings)):
        console.print(
            f"{k.key.member}\t{k.why.reason}\t{k.why.error}", highlight=False, soft_wrap=True
        )


@poison.command("retry")
def poison_retry(
    key: Annotated[
        list[str] | None, typer.Option(help="<material_id>|<student_id>, as listed; repeatable")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="every key set aside")] = False,
) -> None:
    """Make keys set aside due again, once the cause is fixed: the next flush stores them (and
    takes them off the list) or sets them aside again with the new error."""
    if all_ == bool(key):
        raise typer.BadParameter("give --all or at least one --key")
    settings = Settings()
    schema = KeySchema.from_settings(settings)
    wanted = None if all_ else [ProgressKey.from_member(k, schema) for k in key or []]
    retried = set_aside.retry(buffer_client(settings), schema, wanted, time.time())
    for k in set(wanted or []) - set(retried):
        console.print(f"not set aside: {k.member}", highlight=False)
    console.print(f"{len(retried)} keys due again; they leave the list once stored")


def _mongo(settings: Settings) -> MongoStore:
    return MongoStore(settings.mongo_url, settings.mongo_timeout_ms)


@lti.command("add-platform")
def lti_add_platform(
    platform_id: Annotated[str, typer.Argument(help="an id of your choice: A-Z a-z 0-9 _ . : -")],
    name: Annotated[str, typer.Option(help="shown to admins")],
    issuer: Annotated[str, typer.Option(help="the platform's iss (https URL)")],
    client_id: Annotated[str, typer.Option(help="the tool's client id on that platform")],
    auth_login_url: Annotated[str, typer.Option(help="the platform's OIDC auth URL")],
    auth_token_url: Annotated[str, typer.Option(help="the platform's OAuth 2 token URL")],
    jwks_url: Annotated[str, typer.Option(help="the platform's key set URL")],
    deployment_id: Annotated[
        list[str] | None, typer.Option(help="a deployment accepted; repeatable; none: any")
    ] = None,
    frame_origin: Annotated[
        list[str] | None, typer.Option(help="an origin framing the tool; repeatable")
    ] = None,
) -> None:
    """Register or replace a platform (the same as PUT /api/admin/lti/platforms/{id})."""
    if re.fullmatch(ID_PATTERN, platform_id) is None:
        raise typer.BadParameter("1-128 of A-Z a-z 0-9 _ . : -", param_hint="PLATFORM_ID")
    try:
        body = PlatformBody(
            name=name,
            issuer=issuer,
            client_id=client_id,
            auth_login_url=auth_login_url,
            auth_token_url=auth_token_url,
            jwks_url=jwks_url,
            deployment_ids=deployment_id or [],
            frame_origins=frame_origin or [],
        )
    except ValidationError as exc:
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            console.print(f"{field}: {error['msg']}", highlight=False)
        raise typer.Exit(2) from None
    settings = Settings()
    try:
        created = PlatformRegistry(_mongo(settings).db).save(platform_id, body, time.time())
    except DuplicatePlatform as exc:
        console.print(exc.message, highlight=False)
        raise typer.Exit(2) from None
    console.print(f"{'registered' if created else 'replaced'} platform {platform_id}")


@lti.command("list-platforms")
def lti_list_platforms() -> None:
    """Every platform, one JSON object a line (the rows of GET /api/admin/lti/platforms)."""
    for platform in PlatformRegistry(_mongo(Settings()).db).all():
        typer.echo(platform.model_dump_json())


@lti.command("remove-platform")
def lti_remove_platform(platform_id: Annotated[str, typer.Argument()]) -> None:
    """Remove a registration: its launches are refused from then on."""
    if not PlatformRegistry(_mongo(Settings()).db).remove(platform_id):
        console.print(f"no platform {platform_id}", highlight=False)
        raise typer.Exit(1)
    console.print(f"removed platform {platform_id}", highlight=False)


@lti.command("rotate-key")
def lti_rotate_key() -> None:
    """Publish a new key at /lti/jwks now; it signs after LTI_KEY_GRACE_S, and the old key is
    published until nothing it signed can still be in use (docs/lti.md, "Tool keys")."""
    settings = Settings()
    keys = ToolKeys(settings, _mongo(settings).db, SystemClock())
    try:
        key = keys.rotate()
    except RotationRefused as exc:
        console.print(str(exc), highlight=False)
        raise typer.Exit(2) from None
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(key.signs_from))
    console.print(f"published key {key.kid}; it signs from {when}", highlight=False)


@lti.command("keys")
def lti_keys() -> None:
    """The published keys: kid, signs from, leaves the key set (epoch seconds; - for never)."""
    settings = Settings()
    for key in ToolKeys(settings, _mongo(settings).db, SystemClock()).published():
        until = "-" if key.unpublish_at is None else f"{key.unpublish_at:.0f}"
        typer.echo(f"{key.kid}\t{key.signs_from:.0f}\t{until}")


@app.command("class-csv")
def class_csv(
    course_id: Annotated[str, typer.Argument(help="the course")],
    output: Annotated[Path | None, typer.Option(help="file to write (default: stdout)")] = None,
    sort: Annotated[
        str, typer.Option(help="student_id, progress, last_active, ...")
    ] = "student_id",
) -> None:
    """Write the class table of a course (one row per enrolled student) as CSV."""
    settings = Settings()
    mongo = MongoStore(settings.mongo_url, settings.mongo_timeout_ms)
    course = next((c for c in mongo.all_courses() if c.course_id == course_id), None)
    if course is None:
        raise typer.BadParameter(f"unknown course {course_id}")
    live = LiveRollups(buffer_client(settings), settings.rollup_persist_s)
    rows = teacher_views.class_table(mongo, course, live=live)
    ordered, _ = analytics.page(rows, sort, max(len(rows), 1), None)
    with output.open("w", newline="") if output else nullcontext(sys.stdout) as out:
        out.writelines(teacher_views.csv_lines(ordered))
    if output:
        console.print(f"wrote {len(ordered)} rows to {output}", highlight=False)


@app.command("rebuild-rollups")
def rebuild_rollups(
    every: Annotated[
        bool, typer.Option("--all", help="every enrollment (after the buffer lost its data)")
    ] = False,
) -> None:
    """Build the enrollment rollups the teacher views read, from watch_progress, for
    enrollments that have none (data stored before rollups existed) or whose course changed,
    or with --all for every enrollment. Idempotent; safe while workers run (the maintenance
    job does the former every 10 minutes)."""
    settings = Settings()
    mongo = MongoStore(settings.mongo_url, settings.mongo_timeout_ms)
    catalog = Catalog(mongo.all_courses())
    buffer = buffer_client(settings)
    if every:
        changed = rollups.rebuild_all(mongo, catalog, buffer)
    else:
        changed = rollups.rebuild_missing(mongo, catalog, buffer)
    console.print(f"rebuilt {changed} enrollment rollups")


@app.command()
def dev(
    port: Annotated[int, typer.Option(help="HTTP port")] = 8000,
    data_dir: Annotated[Path, typer.Option(help="where embedded services keep data")] = Path(
        "var/dev"
    ),
) -> None:
    """Run everything on this machine: Redis and the MongoDB stand-in (unless REDIS_URL /
    MONGO_URL are set), the API, a worker and the clock, with a demo course. Ctrl-C stops all."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop children as on Ctrl-C
    env = {"APP_ENV": "development", "PORT": str(port)}
    env["JWT_SECRET"] = os.environ.get("JWT_SECRET") or secrets.token_urlsafe(32)
    services: list[Service] = []
    children: list[subprocess.Popen[bytes]] = []
    try:
        _run_dev(env, services, children, data_dir, port)
    except KeyboardInterrupt:
        console.print("stopping…")
    finally:
        # A second Ctrl-C or SIGTERM must not cut the clean-up short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for child in children:
            child.terminate()
        for child in children:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
        for service in services:
            service.stop()


def _run_dev(
    env: dict[str, str],
    services: list[Service],
    children: list[subprocess.Popen[bytes]],
    data_dir: Path,
    port: int,
) -> None:
    if not os.environ.get("REDIS_URL"):
        services.append(redis_service(data_dir / "redis", appendonly=True).start())
        env["REDIS_URL"] = f"redis://127.0.0.1:{services[-1].port}/0"
    if not os.environ.get("MONGO_URL"):
        services.append(mongo_standin_service(data_dir / "mongo").start())
        env["MONGO_URL"] = f"mongodb://127.0.0.1:{services[-1].port}/videoprogress"
    os.environ.update(env)
    settings = Settings()
    if not settings.frontend_dist.is_dir():
        _build_pages(settings.frontend_dist.parent)
    mongo = MongoStore(settings.mongo_url, settings.mongo_timeout_ms)
    mongo.ensure_indexes()
    admin_ops.load_catalog_file(
        mongo, buffer_client(settings), KeySchema.from_settings(settings), DEMO_CATALOG
    )
    env = child_env(HOST="127.0.0.1")
    children.extend(start_procfile_process(cmd, env) for cmd in procfile_commands().values())
    wait_for_port(port, timeout_s=30, proc=children[0])
    _print_welcome(settings, port)
    while all(child.poll() is None for child in children):
        time.sleep(0.5)
    console.print("[red]a process exited; stopping everything[/red]")


def _build_pages(frontend: Path) -> None:
    """Build the browser pages once (needs Node.js and npm); without them, serve the API only."""
    npm = shutil.which("npm")
    if npm is None or not (frontend / "package.json").exists():
        console.print("[yellow]npm not found: serving the API only (no pages at /)[/yellow]")
        return
    console.print("building the browser pages (npm ci && npm run build)…")
    for step in (["ci", "--no-audit", "--no-fund", "--loglevel=error"], ["run", "build"]):
        subprocess.run([npm, *step], cwd=frontend, check=True)


def _print_welcome(settings: Settings, port: int) -> None:
    url = f"http://127.0.0.1:{port}"
    console.print(f"\n[bold green]Video progress tracking is running at {url}")
    if settings.frontend_dist.is_dir():
        console.print(f"Open {url}/ and pick a demo student or teacher.")
    console.print(f"API docs: {url}/docs  (Ctrl-C stops everything)\n")
    for user_id, role in DEMO_USERS:
        token = mint_token(settings, user_id, role)  # type: ignore[arg-type]
        console.print(f"{role} {user_id}: {token}", soft_wrap=True, highlight=False)
    console.print(
        "\nTry: curl -X POST -H 'Authorization: Bearer <student token>' "
        "-H 'Content-Type: application/json' -d '{\"watch_time\": 5, \"total_duration\": 20}' "
        f"http://127.0.0.1:{port}/api/progress/video/demo-video-1/watch-time",
        soft_wrap=True,
    )


if __name__ == "__main__":
    app()
