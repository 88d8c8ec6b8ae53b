"""Exactly once where it hurts (issue 13, point 7): three `telepi run` processes on one route and two on a
second route into the same forum target, SIGKILLed right after a send executed on the server (before its
answer reached them) and right before one executes, one SIGSTOPped longer than its lease, sources edited
and deleted while the copies' author is down, messages deleted just before the forward that carries them.
Judged from the target itself: every source message exactly once, in order, every recorded mapping the
right copy, every edit and delete applied, and no route waiting longer than one lease.

One run covers the seeds in TELEPI_CRASH_SEEDS (default "1,2"; "1-20" for a range), e.g.
    TELEPI_CRASH_SEEDS=1-20 scripts/test.sh tests/engine/test_crash_routes.py
CRASH_LOG_LEVEL=DEBUG gives the sessions' clone.log every claim and call (kept with pytest's --basetemp).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from telepi.sandbox.rpc.dispatch import RpcError
from telepi.sandbox.sandbox import Sandbox
from telepi.sandbox.world.worldfile import generate_history
from tests.cli import REPO
from tests.engine.clonecheck import _media, assert_copies, content, titles

LEASE = 10.0
ROUTES = {"source": ["bob", "carol", "dave"], "source2": ["erin", "frank"]}
MODES = {"source": "copy", "source2": "forward"}  # copy: captions over the limit follow as replies
SENDS = ("SendMessageRequest", "SendMediaRequest", "SendMultiMediaRequest", "ForwardMessagesRequest")
LONG = 1024  # a caption longer than this follows its media as a reply (the account's limit)


def seeds() -> list[int]:
    found: list[int] = []
    for part in os.environ.get("TELEPI_CRASH_SEEDS", "1,2").split(","):
        first, _, last = part.partition("-")
        found += range(int(first), int(last or first) + 1)
    return found


def source_messages(name: str, topics: list[str], seed: int) -> list[dict[str, Any]]:
    """A generated history (albums, replies, files) with look-alikes and long captions put in between."""
    chat = {"name": name, "kind": "supergroup", "forum": True, "topics": [{"title": t, "ref": t} for t in topics]}
    history = generate_history(chat, 30, seed=seed, max_size=16 * 1024)
    rng = random.Random(f"{seed}:{name}")
    extras: list[list[dict[str, Any]]] = [
        [{"text": "same", "topic": topics[0]} for _ in range(3)],  # look-alike texts, one after another
        [{"text": "same", "topic": topics[0]}],  # and one further on
        [  # look-alike photos: the same caption and size, different pictures. Telegram re-encodes photos, so
            # the check tells them apart by their dimensions (the takeover's signature does not look at them)
            {
                "text": "same photo",
                "topic": topics[1],
                "media": {"kind": "photo", "size": 4000, "seed": f"{name}{i}", "w": 1280 + 8 * i, "h": 720},
            }
            for i in range(3)
        ],
        [  # long captions, two of them alike
            {
                "text": f"{caption} " * 130,
                "topic": topics[-1],
                "media": {"kind": "photo", "size": 5000, "seed": f"{name}long{i}"},
            }
            for i, caption in enumerate(["long caption", "long caption", "another caption"])
        ],
        [{"text": "same photo", "media": {"kind": "photo", "size": 4000, "seed": f"{name}general"}}],
    ]
    for extra in extras:
        at = rng.randrange(len(history) + 1)
        while at < len(history) and "album" in history[at] and at > 0 and history[at - 1].get("album"):
            at += 1  # never inside an album
        history[at:at] = extra
    return history


def world(seed: int) -> dict[str, Any]:
    accounts = ["alice", *ROUTES["source"], *ROUTES["source2"]]
    writers = [a for names in ROUTES.values() for a in names]
    sources = [
        {
            "name": name,
            "kind": "supergroup",
            "forum": True,
            "title": name,
            "owner": "alice",
            "members": writers,
            "topics": [{"title": t, "ref": t} for t in topics],
            "messages": source_messages(name, topics, seed),
        }
        for name, topics in (("source", ["News", "Chat", "Files"]), ("source2", ["Ops", "Logs"]))
    ]
    target = {
        "name": "target",
        "kind": "supergroup",
        "forum": True,
        "title": "Target forum",
        "owner": "alice",
        "admins": {name: ["post_messages", "manage_topics"] for name in writers},
    }
    return {
        "accounts": [
            {"name": name, "phone": f"+1555000001{i}", "code": "12345"} for i, name in enumerate(accounts, start=1)
        ],
        "chats": [*sources, target],
    }


@dataclass
class Session:
    name: str
    account: str
    source: str
    directory: Path
    process: asyncio.subprocess.Process | None = None
    starts: int = 0
    codes: list[int] = field(default_factory=list)

    async def start(self) -> None:
        self.starts += 1
        log = open(self.directory / f"stderr.{self.starts}", "wb")  # noqa: SIM115  # kept for a failure's reading
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "telepi", "run", str(self.directory), cwd=REPO, stdout=log, stderr=log
        )
        log.close()

    def last_words(self) -> str:
        lines = (self.directory / f"stderr.{self.starts}").read_text(errors="replace").splitlines()
        return " | ".join(lines[-2:])

    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None


class Checkpoint:
    """The test's read-only look at the shared checkpoint: only to decide when to act and stop, and to
    compare the recorded mappings with the target."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def query(self, sql: str, *args: object) -> list[tuple[Any, ...]]:
        if not self.path.exists():
            return []
        db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
        try:
            return db.execute(sql, args).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # not created yet
                return []
            raise
        finally:
            db.close()

    def write_lock_held(self) -> bool:
        """Whether some process holds the checkpoint's write lock for more than a second (a transaction
        takes milliseconds: only a process stopped inside one holds it that long)."""
        if not self.path.exists():  # no session has opened it yet (a slow start on a loaded machine)
            return False
        db = sqlite3.connect(self.path, timeout=1.0)
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute("ROLLBACK")
            return False
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc):
                raise
            return True
        finally:
            db.close()

    def route_of(self, chat_id: int) -> int | None:
        rows = self.query("SELECT id FROM routes WHERE source_chat = ?", str(chat_id))
        return int(rows[0][0]) if rows else None


class Stalls:
    """The longest time a route had open work while nothing of it got done or skipped."""

    def __init__(self) -> None:
        self.last: dict[int, tuple[int, float]] = {}
        self.worst: dict[int, float] = {}
        self.spans: dict[int, tuple[float, float]] = {}  # the worst wait's start and end

    def look(self, checkpoint: Checkpoint) -> None:
        now = time.monotonic()
        rows = checkpoint.query(
            "SELECT route_id, SUM(status IN ('done', 'skipped')), SUM(status IN ('pending', 'processing')) "
            "FROM messages GROUP BY route_id"
        )
        for route_id, settled, open_rows in rows:
            before = self.last.get(route_id)
            if before is None or settled != before[0] or not open_rows:
                self.last[route_id] = (settled, now)
            elif now - before[1] > self.worst.get(route_id, 0.0):
                self.worst[route_id] = now - before[1]
                self.spans[route_id] = (before[1], now)

    async def moved_since(self, when: float, sessions: list[Session], timeout: float = 30.0) -> None:
        """Wait until every route has got something done since ``when`` (or has nothing to do): one incident
        at a time, so that a route's wait is that of one incident (two at once may rightly add up)."""
        deadline = time.monotonic() + timeout
        while any(stamp < when for _settled, stamp in self.last.values()):
            if time.monotonic() >= deadline:
                where = await task_dumps(sessions)
                raise AssertionError(f"a route did not move for {timeout:.0f}s after an incident; tasks:\n{where}")
            await asyncio.sleep(0.1)


async def task_dumps(sessions: list[Session]) -> str:
    """What every task of every live session waits on (telepi's SIGUSR1 dump, from its clone.log)."""
    for session in sessions:
        if session.alive():
            assert session.process is not None
            session.process.send_signal(signal.SIGUSR1)
    await asyncio.sleep(1.0)
    dumps = []
    for session in sessions:
        log = session.directory / "clone.log"
        lines = log.read_text(errors="replace").splitlines() if log.exists() else []
        starts = [i for i, line in enumerate(lines) if "(SIGUSR1)" in line]
        if starts:
            dumps.append(f"{session.name}:\n" + "\n".join(lines[starts[-1] :]))
    return "\n".join(dumps)


async def make_session(sb: Sandbox, root: Path, index: int, account: str, source: str) -> Session:
    name = f"session{index}"
    directory = await sb.session_dir(
        root / name,
        account,
        SOURCE_CHAT=str(sb.chat(source).id),
        TARGET_CHAT=str(sb.chat("target").id),
        MODE=MODES[source],
        LEASE_SECONDS=str(int(LEASE)),
        SEND_INTERVAL="0.3",
        READ_INTERVAL="0",
        SYNC_DELETES="true",
        LOG_LEVEL=os.environ.get("CRASH_LOG_LEVEL", "INFO"),
    )
    return Session(name, account, source, directory)


def arm(sb: Sandbox, victim: Session, when: str, nth: int) -> list[bool]:
    """SIGKILL the victim's process right after its ``nth`` send of a kind executed on the server, before
    the answer goes out (``after``), or right before one executes, which then never does (``before``)."""
    fired = [False]
    process = victim.process
    assert process is not None

    def kill(_request: object) -> object:
        if fired[0] or process.returncode is not None:
            return None
        fired[0] = True
        os.kill(process.pid, signal.SIGKILL)
        return RpcError(500, "INTERNAL") if when == "before" else None  # before: the send never executes

    user_id = sb.account(victim.account).id
    for method in SENDS:
        if when == "after":
            sb.faults.after_call(method, kill, nth=nth, user_id=user_id)
        else:
            sb.faults.before_call(method, kill, nth=nth, user_id=user_id)
    return fired


def delete_before_forward(sb: Sandbox, source: str, rng: random.Random) -> list[int]:
    """Delete one of the messages a forward is about to carry, just before it executes."""
    doomed: list[int] = []

    def delete_one(request: Any) -> None:
        if len(doomed) < 2 and len(request.id) > 1:
            doomed.append(request.id[-1])
            sb.delete_now(source, request.id[-1])

    for nth in rng.sample(range(1, 12), 4):
        sb.faults.before_call("ForwardMessagesRequest", delete_one, nth=nth)
    return doomed


async def change_copies_of(
    sb: Sandbox, checkpoint: Checkpoint, victim: Session, rng: random.Random, changed: list[str]
) -> None:
    """While the victim is down: edit and delete source messages whose copies its account made."""
    route_id = checkpoint.route_of(sb.chat(victim.source).id)
    rows = checkpoint.query(
        "SELECT source_msg_id FROM messages WHERE route_id = ? AND status = 'done' AND session = ? "
        "AND target_msg_id IS NOT NULL",
        route_id,
        victim.name,
    )
    present = {m["id"]: m for m in content(sb.messages(victim.source))}
    mine = [int(r[0]) for r in rows if int(r[0]) in present]
    rng.shuffle(mine)
    for msg_id in mine[:2]:
        old = present[msg_id]["text"]
        new = f"edited while {victim.account} was down: {old[:40]}"
        if len(old) > LONG and rng.random() < 0.5:
            new = f"still long, edited. {old}"  # the follow-up is edited
        await sb.edit(victim.source, msg_id, new)
        changed.append(f"edit {victim.source}:{msg_id}")
    for msg_id in mine[2:3]:
        if present[msg_id]["grouped_id"] is None:
            await sb.delete(victim.source, msg_id)
            changed.append(f"delete {victim.source}:{msg_id}")


async def feed(sb: Sandbox, source: str, rng: random.Random) -> None:
    """Live traffic while sessions die: look-alikes, albums, long captions, replies, in every topic."""
    topics = [t["id"] for t in sb.topics(source)]
    earlier: dict[int, list[int]] = {}
    for m in content(sb.messages(source)):
        earlier.setdefault(m["topic"], []).append(m["id"])
    n = 0
    while True:
        n += 1
        topic = rng.choice(topics)
        roll = rng.random()
        photo = {"kind": "photo", "size": 4000, "seed": f"{source}live{n}"}
        if roll < 0.12:
            album = [{**photo, "seed": f"{source}live{n}.{i}"} for i in range(3)]
            ids = await sb.post_album(source, album, topic=topic)
        elif roll < 0.3:
            ids = [await sb.post(source, "same", topic=topic)]
        elif roll < 0.4:
            ids = [await sb.post(source, "same photo", topic=topic, media=photo)]
        elif roll < 0.47:
            ids = [await sb.post(source, "long caption " * 130, topic=topic, media=photo)]
        elif roll < 0.7 and earlier.get(topic):
            replied = rng.choice(earlier[topic])
            ids = [await sb.post(source, f"reply {n} to {replied}", topic=topic, reply_to=replied)]
        else:
            ids = [await sb.post(source, f"live {n}", topic=topic)]
        earlier.setdefault(topic, []).extend(ids)
        await asyncio.sleep(rng.uniform(0.2, 0.6))


async def wait_dead(session: Session, timeout: float) -> bool:
    assert session.process is not None
    try:
        await asyncio.wait_for(session.process.wait(), timeout)
    except TimeoutError:
        return False
    return True


def unsettled(sb: Sandbox, checkpoint: Checkpoint) -> str:
    """What is still to do, from the checkpoint ("" once every route and every change is settled)."""
    for source in ROUTES:
        route_id = checkpoint.route_of(sb.chat(source).id)
        newest = max(m["id"] for m in sb.messages(source))
        [(open_rows, planned)] = checkpoint.query(
            "SELECT COALESCE(SUM(status NOT IN ('done', 'skipped')), 0), COALESCE(MAX(source_msg_id), 0) "
            "FROM messages WHERE route_id = ?",
            route_id,
        ) or [(0, 0)]
        if route_id is None or open_rows or planned < newest:
            return f"{source}: route {route_id}, {open_rows} open, planned up to {planned} of {newest}"
    changes = checkpoint.query(
        "SELECT route_id, source_msg_id, kind, status, author_user_id, attempts, last_error "
        "FROM changes WHERE status != 'done'"
    )
    return f"changes not done: {changes}" if changes else ""


def open_rows(checkpoint: Checkpoint) -> list[tuple[Any, ...]]:
    """The rows still to do, with what a person would look at first: who holds them, their attempts, the error,
    and in how many seconds a retry's backoff lets them be claimed."""
    return checkpoint.query(
        "SELECT route_id, source_msg_id, status, session, attempts, last_error, send_session, "
        "ROUND(not_before - ?, 1) FROM messages WHERE status NOT IN ('done', 'skipped') "
        "ORDER BY route_id, source_msg_id",
        time.time(),
    )


def fold_follow_ups(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Put a caption that follows its media as a reply (over the caption limit) back on the media."""
    by_id = {m["id"]: m for m in messages}
    folded = {m["id"]: dict(m) for m in messages}
    for m in messages:
        media = by_id.get(m["reply_to"]) if m["reply_to"] is not None else None
        if (
            m["media"] is None
            and len(m["text"]) > LONG
            and media is not None
            and media["media"] is not None
            and not folded[media["id"]]["text"]
            and media["sender_id"] == m["sender_id"]
        ):
            folded[media["id"]].update(text=m["text"], entities=m["entities"])
            del folded[m["id"]]
    return [folded[m["id"]] for m in messages if m["id"] in folded]


def check_target(sb: Sandbox, checkpoint: Checkpoint, seed: int) -> str:
    """Judge the target against the sources, message by message; the checkpoint's mappings against it."""
    target = content(sb.messages("target"))
    dst_titles = titles(sb, "target")
    summary = []
    for source, accounts in ROUTES.items():
        user_ids = {sb.account(a).id for a in accounts}
        src = content(sb.messages(source))
        dst = fold_follow_ups([m for m in target if m["sender_id"] in user_ids])
        key = lambda m: (m["text"], str(_media(m)))  # noqa: E731
        have, want = Counter(map(key, dst)), Counter(map(key, src))
        duplicates, lost = sum((have - want).values()), sum((want - have).values())
        assert (duplicates, lost) == (0, 0), f"seed {seed}, {source}: {duplicates} duplicated, {lost} lost"
        assert_copies(src, dst, titles(sb, source), dst_titles)  # in order, replies and albums right
        route_id = checkpoint.route_of(sb.chat(source).id)
        recorded = dict(
            checkpoint.query("SELECT source_msg_id, target_msg_id FROM messages WHERE route_id = ?", route_id)
        )
        pairs = zip(src, dst, strict=True)
        wrong = {s["id"]: (recorded.get(s["id"]), d["id"]) for s, d in pairs if recorded.get(s["id"]) != d["id"]}
        assert not wrong, f"seed {seed}, {source}: recorded mappings (recorded, right): {wrong}"
        summary.append(f"{source}: {len(src)} messages once")
    failed = checkpoint.query(
        "SELECT route_id, source_msg_id, kind, status, last_error FROM changes WHERE status != 'done'"
    )
    assert not failed, f"seed {seed}: changes not applied: {failed}"
    return ", ".join(summary)


@pytest.mark.parametrize("seed", seeds())
async def test_sessions_killed_where_it_hurts_still_copy_exactly_once(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    async with Sandbox(world=world(seed), state_dir=tmp_path / "state") as sb:
        sessions = [
            await make_session(sb, tmp_path / "sessions", i, account, source)
            for i, (source, account) in enumerate(((s, a) for s, accounts in ROUTES.items() for a in accounts), start=1)
        ]
        checkpoint = Checkpoint(tmp_path / "sessions" / "shared" / "checkpoint.db")
        deleted_in_flight = delete_before_forward(sb, "source2", rng)
        stalls = Stalls()
        lock_held: tuple[float, float] | None = None  # when a stopped session held the checkpoint's write lock
        changed: list[str] = []
        events: list[str] = []
        for session in sessions:
            await session.start()

        async def watch() -> None:
            while True:
                stalls.look(checkpoint)
                await asyncio.sleep(0.1)

        watcher = asyncio.create_task(watch())
        feeders = [asyncio.create_task(feed(sb, source, random.Random(f"{seed}{source}"))) for source in ROUTES]
        try:
            incidents: list[tuple[str, Callable[[Session], bool]]] = [
                ("after", lambda s: True),
                ("before", lambda s: True),
                ("after", lambda s: s.source == "source2"),
                ("stop", lambda s: True),
                ("after", lambda s: s.source == "source"),
            ]
            rng.shuffle(incidents)
            for kind, eligible in incidents:
                await asyncio.sleep(rng.uniform(0.3, 1.5))
                ended = [f"{s.name}: {s.last_words()}" for s in sessions if not s.alive()]
                assert not ended, f"seed {seed}: a session ended by itself: {ended}"
                victim = rng.choice([s for s in sessions if eligible(s) and s.alive()])
                if kind == "stop":  # a frozen VM: heartbeats stop, its leases run out, others take over
                    assert victim.process is not None
                    victim.process.send_signal(signal.SIGSTOP)
                    stopped_at = time.monotonic()
                    await asyncio.sleep(LEASE / 2)
                    if await asyncio.to_thread(checkpoint.write_lock_held):
                        events.append(f"{victim.name} stopped holding the checkpoint's write lock")
                        lock_held = (stopped_at, 0.0)
                    await change_copies_of(sb, checkpoint, victim, rng, changed)
                    await asyncio.sleep(LEASE / 2 + 2)
                    victim.process.send_signal(signal.SIGCONT)
                    if lock_held is not None:
                        lock_held = (lock_held[0], time.monotonic())
                    events.append(f"SIGSTOP {victim.name} for {LEASE + 2:.0f}s")
                    await stalls.moved_since(time.monotonic(), sessions)
                    continue
                fired = arm(sb, victim, kind, nth=rng.randint(1, 4))
                if not await wait_dead(victim, 15) or not fired[0]:
                    fired[0] = True  # no send came: disarm
                    events.append(f"{victim.name}: no send to kill {kind}")
                    continue
                events.append(f"SIGKILL {victim.name} {kind} a send")
                await change_copies_of(sb, checkpoint, victim, rng, changed)
                await asyncio.sleep(rng.uniform(0.5, 2.5))
                await victim.start()
                await stalls.moved_since(time.monotonic(), sessions)
            for feeder in feeders:
                feeder.cancel()
            deadline = time.monotonic() + 150
            while left := unsettled(sb, checkpoint):
                assert time.monotonic() < deadline, (
                    f"seed {seed}: not settled: {left}; {events}; open: {open_rows(checkpoint)}"
                )
                ended = [f"{s.name}: {s.last_words()}" for s in sessions if not s.alive()]
                assert not ended, f"seed {seed}: a session ended by itself: {ended}"
                await asyncio.sleep(0.5)
        finally:
            for task in (watcher, *feeders):
                task.cancel()
            for session in sessions:
                if session.alive():
                    assert session.process is not None
                    session.process.send_signal(signal.SIGCONT)
                    session.process.send_signal(signal.SIGTERM)
            for session in sessions:
                if session.process is not None:
                    try:
                        await asyncio.wait_for(session.process.wait(), 30)
                    except TimeoutError:
                        session.process.kill()
                        await session.process.wait()
        codes = {s.name: s.process.returncode for s in sessions if s.process is not None}
        assert set(codes.values()) == {0}, f"seed {seed}: exit codes {codes}; {events}"
        summary = check_target(sb, checkpoint, seed)
        worst = max(stalls.worst.values(), default=0.0)
        print(
            f"crash routes: seed {seed}: {summary}; {'; '.join(events)}; {len(changed)} changes while down; "
            f"{len(deleted_in_flight)} deleted before their forward; longest wait {worst:.1f}s"
        )
        too_long = {route: span for route, span in stalls.spans.items() if stalls.worst[route] > LEASE + 1.0}
        if (
            too_long
            and lock_held is not None
            and all(lock_held[0] - 2.0 <= start and end <= lock_held[1] + 2.0 for start, end in too_long.values())
        ):
            # Known, not fixed: SQLite's write lock has no lease. A session stopped inside a checkpoint
            # transaction (SIGSTOP, `systemctl freeze`) holds it, and every session of every route waits
            # until it resumes (30 s at most, then exit 75). Needs a checkpoint whose locks time out.
            pytest.xfail(f"seed {seed}: every route waited {worst:.1f}s for a stopped session's checkpoint lock")
        assert worst <= LEASE + 1.0, f"seed {seed}: a route waited {worst:.1f}s (lease {LEASE:.0f}s); {events}"
