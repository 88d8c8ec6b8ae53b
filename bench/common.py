"""What the engine benchmarks share: a sandbox world of small messages, session directories, sessions
run as ``python -m telepi run DIR`` processes, the sandbox's rate rule, and a plain-text table."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import sqlite3
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from telepi.sandbox.world.photos import media_key

ROOT = Path(__file__).resolve().parents[1]
OWNER = "alice"
ACCOUNTS = ("bob", "carol", "dave", "erin")  # the cloners, one per session
SOURCE = "source"
SMALL_MIX = {"text": 70, "photo": 30}  # "small messages": text and photos of 1-8 KiB
SEND_METHODS = ("SendMessageRequest", "SendMediaRequest", "SendMultiMediaRequest", "ForwardMessagesRequest")


def print_table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        cells = (cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True)))
        print("  " + "  ".join(cells))
        if n == 0:
            print("  " + "  ".join("-" * w for w in widths))


def world(count: int, targets: Sequence[str], *, seed: int = 1, mix: Mapping[str, int] | None = None) -> dict[str, Any]:
    """A plain channel of ``count`` generated messages, one empty target channel per name, and the
    cloner accounts: members of the source, admins allowed to post in every target."""
    from telepi.sandbox.world.worldfile import generate_history

    source: dict[str, Any] = {
        "name": SOURCE,
        "kind": "channel",
        "title": "Bench source",
        "owner": OWNER,
        "members": list(ACCOUNTS),
    }
    source["messages"] = generate_history(source, count, seed=seed, mix=dict(mix or SMALL_MIX), max_size=8 * 1024)
    chats = [source] + [
        {
            "name": name,
            "kind": "channel",
            "title": f"Bench target {name}",
            "owner": OWNER,
            "admins": {account: ["post_messages"] for account in ACCOUNTS},
        }
        for name in targets
    ]
    people = (OWNER, *ACCOUNTS)
    return {
        "accounts": [{"name": n, "phone": f"+1555010000{i}", "code": "12345"} for i, n in enumerate(people)],
        "chats": chats,
    }


def contents(sb: Any, chat: str) -> list[dict[str, Any]]:
    return [m for m in sb.messages(chat) if not m["service"]]


def copy_key(message: Mapping[str, Any]) -> tuple[str, str]:
    media = message["media"]
    return (message["text"] or "", media_key(media))  # a photo by its sizes: Telegram re-encodes it


def verify_copies(sb: Any, target: str, expected: int) -> dict[str, Any]:
    """The target holds exactly ``expected`` copies of the source's messages: none lost, none twice."""
    source = contents(sb, SOURCE)[:expected]
    copies = contents(sb, target)
    wanted = sorted(map(copy_key, source))
    got = sorted(map(copy_key, copies))
    return {
        "copies": len(copies),
        "expected": expected,
        "duplicates": max(0, len(copies) - len(set(map(copy_key, copies))) - (len(wanted) - len(set(wanted)))),
        "identical_content": got == wanted,
        "ok": len(copies) == expected and got == wanted,
    }


@contextmanager
def checkpoint_server(backend: str) -> Iterator[Any]:
    """For ``--backend postgres``: a throwaway PostgreSQL server with the durable defaults, stopped on leaving,
    whose ``new_database()`` gives each run its own checkpoint; None for ``sqlite``."""
    from telepi.sandbox.pgserver import start_server

    if backend != "postgres":
        yield None
        return
    server = start_server(durable=True)
    if server is None:
        raise SystemExit("--backend postgres: PostgreSQL is not installed here (scripts/setup.sh dev installs it)")
    try:
        yield server
    finally:
        server.stop()


async def session_dirs(
    sb: Any, root: Path, count: int, target: str, checkpoint: Path | str, *, source: str = SOURCE, **env: str
) -> list[Path]:
    """``count`` logged-in session directories (one account each) on the route source → ``target``, sharing
    the SQLite file ``checkpoint`` or, for a ``postgresql://`` URL, that database (``SHARED_DB_URL``).

    The checkpoint is created here, before any session starts: sessions that create a new checkpoint
    at the same moment can fail with "database is locked" (see the bench report)."""
    from telepi.checkpoint import is_url, open_checkpoint

    open_checkpoint(checkpoint).close()
    where = {"SHARED_DB_URL": checkpoint} if is_url(checkpoint) else {"SHARED_DB_PATH": str(checkpoint)}
    return [
        await sb.session_dir(
            root / f"session{i + 1}",
            ACCOUNTS[i],
            SOURCE_CHAT=str(sb.chat(source).id),
            TARGET_CHAT=str(sb.chat(target).id),
            **{**where, "LIVE": "false", "SEND_INTERVAL": "0", "READ_INTERVAL": "0", "LOG_LEVEL": "WARNING", **env},
        )
        for i in range(count)
    ]


@dataclass
class SessionsRun:
    seconds: float  # first start to last exit
    started_at: float  # time.time() of the first start
    ended_at: float  # time.time() of the last exit
    cpu_seconds: float  # user + system CPU of the session processes (RUSAGE_CHILDREN)
    exit_codes: list[int]
    stopped: bool = False  # stopped with SIGTERM after ``stop_after`` seconds, before the work was done


async def start_sessions(directories: Sequence[Path]) -> list[asyncio.subprocess.Process]:
    """``python -m telepi run DIR`` for every directory, its stderr in ``DIR/bench-stderr.log``."""
    return [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "telepi",
            "run",
            str(directory),
            cwd=ROOT,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=(directory / "bench-stderr.log").open("wb"),
        )
        for directory in directories
    ]


async def run_sessions(directories: Sequence[Path], timeout: float, *, stop_after: float | None = None) -> SessionsRun:
    """Start ``python -m telepi run DIR`` for every directory at once; wait for all to exit.

    With ``stop_after``, sessions still running after that many seconds get SIGTERM (a clean stop:
    leases released) and the run counts as ``stopped``."""
    before = _children_cpu()
    started_at, started = time.time(), time.perf_counter()
    processes = await start_sessions(directories)
    stopped = False
    try:
        waiting = asyncio.gather(*(p.wait() for p in processes))
        if stop_after is not None:
            done, _ = await asyncio.wait([waiting], timeout=stop_after)
            if not done:
                stopped = True
                for process in processes:
                    if process.returncode is None:
                        process.send_signal(signal.SIGTERM)
        codes = list(await asyncio.wait_for(waiting, timeout))
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
                await process.wait()
    seconds = time.perf_counter() - started
    if any(codes):
        tails = [(d / "bench-stderr.log").read_text(errors="replace")[-2000:] for d in directories]
        raise RuntimeError(f"telepi run exited with {codes}: {tails}")
    return SessionsRun(seconds, started_at, started_at + seconds, _children_cpu() - before, codes, stopped)


def done_span(checkpoint: Path | str) -> tuple[int, float | None, float | None]:
    """How many messages the checkpoint marks done, and when the first and the last were recorded."""
    query = "SELECT COUNT(*), MIN(processed_at), MAX(processed_at) FROM messages WHERE status = 'done'"
    if isinstance(checkpoint, str):
        import psycopg

        with psycopg.connect(checkpoint) as pg:
            found = pg.execute(query.encode()).fetchone()
        assert found is not None
        count, first, last = found
        return int(count), first, last
    db = sqlite3.connect(f"file:{checkpoint}?mode=ro", uri=True)
    try:
        count, first, last = db.execute(query).fetchone()
    finally:
        db.close()
    return int(count), first, last


def phases(run: SessionsRun, checkpoint: Path | str) -> dict[str, float | None]:
    """Where a run's wall time went: start-up until the first copy was recorded, the copying, and the
    tail from the last copy to the last exit; and the throughput of the copying alone."""
    count, first, last = done_span(checkpoint)
    if first is None or last is None:
        return {"startup_seconds": None, "copying_seconds": None, "tail_seconds": None, "copying_per_min": None}
    copying = last - first
    return {
        "startup_seconds": first - run.started_at,
        "copying_seconds": copying,
        "tail_seconds": run.ended_at - last,
        "copying_per_min": (count - 1) / copying * 60 if copying > 0 else None,
    }


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@contextmanager
def send_rate_rules(faults: Any, per_minute: int, window: float) -> Iterator[list[Any]]:
    """Each send method at most ``per_minute`` calls per minute per account, as a sliding window of
    ``window`` seconds (answered with FLOOD_WAIT like Telegram). Fresh windows for every run."""
    from telepi.sandbox.limits.faults import RateRule

    limit = max(1, round(per_minute * window / 60))
    rules = [faults.add_rate_rule(RateRule(limit=limit, window=window, method=m)) for m in SEND_METHODS]
    try:
        yield rules
    finally:
        for rule in rules:
            faults.remove_rate_rule(rule)


def bench_tmp() -> str | None:
    """Where runs keep their checkpoints and session directories (``TELEPI_BENCH_TMP``, else /tmp)."""
    return os.environ.get("TELEPI_BENCH_TMP") or None
