"""``telepi demo``: a full clone with no Telegram account, against the built-in local Telegram.

Starts the sandbox in-process with a forum of several topics (albums, replies, edited messages, a
large video), runs two sessions (two accounts) in ordered mode, and reports source vs target per topic
and the number of duplicates.
"""

from __future__ import annotations

import asyncio
import collections
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from telepi.checkpoint import open_store
from telepi.config import load_settings
from telepi.engine.session import Hooks, run_session

ACCOUNTS = ("alice", "bob", "carol")
# The sandbox's realistic flood limits (Telegram's quotas from field reports) with their clock this many times
# faster (`telepi demo --limits-scale`): an hour of quotas and waits plays in a minute, so the demo ends in seconds.
LIMITS_SCALE = 60.0
TOPICS = ("Announcements", "Photos", "Files", "Chat")


def demo_world(messages: int, *, protected: bool, video_mib: int) -> dict[str, Any]:
    from telepi.sandbox.world.worldfile import generate_history

    source: dict[str, Any] = {
        "name": "source",
        "kind": "supergroup",
        "forum": True,
        "title": "Demo source",
        "owner": "alice",
        "noforwards": protected,
        "members": ["bob", "carol"],
        "topics": [{"title": title, "ref": title.lower()} for title in TOPICS],
    }
    history = generate_history(source, messages, seed=2026, max_size=256 * 1024)
    history.append(
        {
            "text": "the big one",
            "topic": "files",
            "media": {
                "kind": "video",
                "size": video_mib * 1024 * 1024,
                "duration": 600,
                "w": 1920,
                "h": 1080,
                "supports_streaming": True,
                "filename": "big.mp4",
                "thumb": {"size": 4000, "w": 320, "h": 180},
            },
        }
    )
    history.append({"text": "edited after posting", "topic": "chat", "edit_date": int(time.time())})
    source["messages"] = history
    target = {
        "name": "target",
        "kind": "supergroup",
        "forum": True,
        "title": "Demo target",
        "owner": "alice",
        "admins": {name: ["post_messages", "manage_topics"] for name in ("bob", "carol")},
    }
    return {
        "accounts": [
            {"name": name, "phone": f"+1555010000{i}", "code": "12345"} for i, name in enumerate(ACCOUNTS, start=1)
        ],
        "chats": [source, target],
    }


async def run_demo(
    console: Console, *, messages: int, video_mib: int, keep: Path | None, limits_scale: float = LIMITS_SCALE
) -> int:
    from telepi.sandbox.limits.faults import Faults
    from telepi.sandbox.sandbox import Sandbox

    protected = True  # the hard case: nothing can be forwarded, every file is streamed again
    root = keep or Path(tempfile.mkdtemp(prefix="telepi-demo-"))
    world = demo_world(messages, protected=protected, video_mib=video_mib)
    console.print(
        f"Local Telegram with a {'protected ' if protected else ''}forum: {messages + 2} messages in "
        f"{len(TOPICS)} topics, albums, replies, a {video_mib} MiB video; two accounts copy it in order, under "
        f"Telegram's flood limits played {limits_scale:g}x faster."
    )
    faults = Faults()
    faults.use_limits("realistic", scale=limits_scale)
    started = time.monotonic()
    async with Sandbox(world=world, state_dir=root / "state", faults=faults) as sb:
        source, target = sb.chat("source"), sb.chat("target")
        directories = [
            await sb.session_dir(
                root / "sessions" / f"session{i}",
                account,
                SOURCE_CHAT=str(source.id),
                TARGET_CHAT=str(target.id),
                LIVE="false",
                ORDERED="true",
                SEND_INTERVAL="0",
                READ_INTERVAL="0",
            )
            for i, account in enumerate(("bob", "carol"), start=1)
        ]
        lines: dict[str, str] = {}

        async def session(directory: Path) -> None:
            settings = load_settings(directory, {})
            store = open_store(settings)

            def show(line: str, name: str = settings.session_name) -> None:
                lines[name] = line

            hooks = Hooks(status=show)
            try:
                await run_session(settings, store, asyncio.Event(), hooks=hooks)
            finally:
                store.close()

        with console.status("cloning…") as status:
            tasks = [asyncio.create_task(session(d)) for d in directories]
            while not all(t.done() for t in tasks):
                status.update(" | ".join(f"{name}: {line}" for name, line in sorted(lines.items())) or "starting…")
                await asyncio.wait(tasks, timeout=0.5)
            for task in tasks:
                task.result()
        return report(console, sb, time.monotonic() - started)


def report(console: Console, sb: Any, seconds: float) -> int:
    from telepi.sandbox.world.photos import media_key

    source = [m for m in sb.messages("source") if not m["service"]]
    target = [m for m in sb.messages("target") if not m["service"]]
    source_titles = {t["id"]: t["title"] for t in sb.topics("source")}
    target_titles = {t["id"]: t["title"] for t in sb.topics("target")}
    per_source = collections.Counter(source_titles.get(m["topic"], "General") for m in source)
    per_target = collections.Counter(target_titles.get(m["topic"], "General") for m in target)
    table = Table(title=f"Source vs target after {seconds:.1f}s")
    for column in ("topic", "source", "target", "match"):
        table.add_column(column)
    all_matched = True
    for title in sorted(set(per_source) | set(per_target)):
        matched = per_source[title] == per_target[title]
        all_matched &= matched
        table.add_row(title, str(per_source[title]), str(per_target[title]), "yes" if matched else "NO")
    console.print(table)
    keys = [(m["text"], media_key(m["media"]), target_titles.get(m["topic"])) for m in target]
    duplicates = len(keys) - len(set(keys)) - _repeats_in(source, source_titles)
    # Telegram re-encodes every uploaded photo: a photo's copy keeps its sizes, a file's copy its bytes.
    source_files, source_photos = _files(source)
    target_files, target_photos = _files(target)
    identical = sum((collections.Counter(source_files) & collections.Counter(target_files)).values())
    photos = sum((collections.Counter(source_photos) & collections.Counter(target_photos)).values())
    biggest = max(((m["media"] or {}).get("size") or 0 for m in target), default=0)
    console.print(
        f"duplicates: {max(duplicates, 0)}   topics matched: {'all' if all_matched else 'NOT all'}   "
        f"files byte-identical (sha256): {identical}/{len(source_files)}, largest {biggest / 2**20:.0f} MiB   "
        f"photos with their sizes (re-encoded): {photos}/{len(source_photos)}"
    )
    spread = ", ".join(f"DC {dc}: {n}" for dc, n in sb.file_dcs("source").items())
    exports = "; ".join(
        f"{name} {', '.join(f'DC {dc}: {n}' for dc, n in sorted(sb.exports(name).items())) or 'none'}"
        for name in ("bob", "carol")
    )
    console.print(f"source files by data centre (the accounts live on DC 2): {spread}")
    console.print(f"authorizations exported to other DCs: {exports}")
    flood = sb.faults.flood
    if flood is not None and flood.refusals:
        refusals = ", ".join(f"{count} {kind}" for kind, count in sorted(flood.refusals.items()))
        penalties = sum(penalty for _group, penalty in flood.penalties)
        console.print(
            f"flood limits: Telegram refused {refusals}; penalties {penalties:.0f}s of Telegram's time, "
            f"{penalties / flood.scale:.1f}s here"
        )
    whole = identical == len(source_files) and photos == len(source_photos)
    return 0 if all_matched and duplicates <= 0 and whole else 1


def _files(messages: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """The sha256 of each file-backed medium but photos, and each photo's sizes."""
    from telepi.sandbox.world.photos import media_key

    media = [m["media"] for m in messages if (m["media"] or {}).get("sha256")]
    files = sorted(m["sha256"] for m in media if m["kind"] != "photo")
    return files, sorted(media_key(m) for m in media if m["kind"] == "photo")


def _repeats_in(messages: list[dict[str, Any]], titles: dict[int, str]) -> int:
    from telepi.sandbox.world.photos import media_key

    # Identical messages in the source (two bare "ok"s) are not duplicates of the clone.
    keys = [(m["text"], media_key(m["media"]), titles.get(m["topic"])) for m in messages]
    return len(keys) - len(set(keys))
