"""The buffer's Lua scripts (`lua/`) as Redis runs them, and how to run one many times.

Every script call touches the keys of one partition (one hash tag), so the buffer may be a
Redis Cluster. The scripts that answer with a view of a key (`WITH_VIEW`) are loaded with
`lua/view.lua` in front: one copy of the view check and the reply for all of them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import redis
from redis.cluster import RedisCluster

from shared.storage.clients import Buffer

WITH_VIEW = ("ingest", "read")  # the scripts view.lua is prepended to


def _lua(name: str) -> str:
    return (Path(__file__).parent / "lua" / f"{name}.lua").read_text()


def _script(name: str) -> str:
    return _lua("view") + _lua(name) if name in WITH_VIEW else _lua(name)


SCRIPTS = {
    name: _script(name)
    for name in (
        "ingest", "read", "claim", "commit_fold", "finish", "erase", "publish", "mirror",
        "spend_reads", "set_aside",
    )
}  # fmt: skip
SHAS = {name: hashlib.sha1(text.encode()).hexdigest() for name, text in SCRIPTS.items()}

ScriptCall = tuple[list[str], list[Any]]  # (KEYS, ARGV), the keys all in one slot


NODE_DOWN = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ClusterError,
    redis.exceptions.SlotNotCoveredError,
)


def as_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else value


def by_node(client: Buffer, keys: list[str]) -> list[tuple[redis.Redis, list[int]]]:
    """The indexes of `keys` grouped by the server that holds each key's slot, with that
    server's own connection; on one Redis, one group of all of them on `client`."""
    if not isinstance(client, RedisCluster):
        return [(client, list(range(len(keys))))]
    groups: dict[str, tuple[redis.Redis, list[int]]] = {}
    for i, key in enumerate(keys):
        node = client.get_node_from_key(key)  # type: ignore[no-untyped-call]  # redis-py
        groups.setdefault(node.name, (node.redis_connection, []))[1].append(i)
    return list(groups.values())


def _pipelined_scripts(conn: redis.Redis, name: str, calls: list[ScriptCall]) -> list[Any]:
    """One script many times in one round trip to one server (two if it lost its scripts);
    errors of single calls are returned in their place."""
    for attempt in range(2):
        pipe = conn.pipeline(transaction=False)
        for keys, args in calls:
            pipe.execute_command("EVALSHA", SHAS[name], len(keys), *keys, *args)  # type: ignore[no-untyped-call]  # redis-py
        replies = pipe.execute(raise_on_error=False)
        if not any(isinstance(r, redis.exceptions.NoScriptError) for r in replies):
            break
        if attempt == 0:  # Redis restarted without its scripts: load, then the calls again
            conn.script_load(SCRIPTS[name])
    return list(replies)


def _redirected(reply: Any) -> bool:
    return isinstance(reply, redis.exceptions.ResponseError) and str(reply).startswith(
        ("MOVED", "ASK")
    )


def run_scripts_per_node(client: Buffer, name: str, calls: list[ScriptCall]) -> list[Any]:
    """Run one script many times, one pipeline per server. Each call's keys share a hash tag
    (one slot); errors of single calls are returned in their place, and on a cluster a primary
    that is down fails only its own calls (its replies are the error).

    On a cluster the calls are grouped by the node holding their slot and sent over that node's
    own connection: redis-py's cluster pipeline asks a server `COMMAND GETKEYS` for every
    EVALSHA in it (one more round trip per call, to one node). A call whose slot moved meanwhile
    (MOVED) is sent again after the client learns the slots anew."""
    if not isinstance(client, RedisCluster):
        return _pipelined_scripts(client, name, calls)
    replies: list[Any] = [None] * len(calls)
    todo = list(range(len(calls)))
    for attempt in range(2):
        for conn, group in by_node(client, [calls[i][0][0] for i in todo]):
            indexes = [todo[j] for j in group]
            try:
                answers = _pipelined_scripts(conn, name, [calls[i] for i in indexes])
            except NODE_DOWN as exc:
                answers = [exc] * len(indexes)
            for i, reply in zip(indexes, answers, strict=True):
                replies[i] = reply
        todo = [i for i in todo if _redirected(replies[i])]
        if not todo or attempt == 1:
            break
        client.nodes_manager.initialize()
    return replies


def run_scripts(client: Buffer, name: str, calls: list[ScriptCall]) -> list[Any]:
    """`run_scripts_per_node`, raising the first error."""
    replies = run_scripts_per_node(client, name, calls)
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies
