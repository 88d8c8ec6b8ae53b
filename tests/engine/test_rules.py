"""A route's filters and transforms against the local Telegram, judged from the targets themselves.

One source channel feeds two routes of one account at once: channel -> channel filtered (photos only, since a
date, excluding a regular expression) and channel -> group transformed (a replacement, a header, a footer).
Each target must hold exactly the expected messages, in order, once each, with entities covering exactly the
expected characters in UTF-16 units; what the filters left out is in the checkpoint with its reason and in
``telepi verify``; live posts and edits follow through the same rules; widening a filter and ``telepi retry
--filtered`` copies what it now lets through (appended after the later copies, which verify reports).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from telepi.checkpoint import open_checkpoint
from telepi.commands.retry import retry
from telepi.commands.verify import Options, verify
from telepi.config import load_settings
from telepi.engine.session import run_session
from telepi.sandbox.sandbox import Sandbox
from tests.engine.clonecheck import content
from tests.engine.test_clone import wait_for

SINCE = 1_700_000_000
PHOTO = {"kind": "photo", "size": 3000}
FLAG = {"type": "italic", "offset": 10, "length": 4}  # 🇺🇦 in "photo one 🇺🇦": two astral characters
STICKER = {"kind": "sticker", "size": 2000, "alt": "😀"}


def u16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def source_messages() -> list[dict[str, Any]]:
    old, new = SINCE - 86_400, SINCE + 600
    bold_great = {"type": "bold", "offset": u16("Foo is 😀 "), "length": u16("great")}
    return [
        {"text": "old photo", "media": PHOTO, "date": old},  # filtered: date
        {"text": "old text foo", "date": old + 60},  # filtered: date
        {
            "text": "photo one 🇺🇦",
            "media": PHOTO,
            "date": new,
            "entities": [FLAG],
        },
        {"text": "Foo is 😀 great", "date": new + 60, "entities": [bold_great]},  # filtered: kind=text
        {"text": "", "media": STICKER, "date": new + 120},  # filtered: kind=sticker
        {"text": "buy now #ad", "media": PHOTO, "date": new + 180},  # filtered: exclude_regex
        {"text": "photo two", "media": PHOTO, "date": new + 240},
        # the replacement cuts the bold at its edge: it shrinks to "o 𝕏" (what survives)
        {"text": "foo 𝕏 end", "date": new + 300, "entities": [{"type": "bold", "offset": 2, "length": u16("o 𝕏")}]},
    ]


def world() -> dict[str, Any]:
    return {
        "accounts": [
            {"name": "alice", "phone": "+15550000001", "code": "12345"},
            {"name": "bob", "phone": "+15550000002", "code": "12345"},
        ],
        "chats": [
            {
                "name": "source",
                "kind": "channel",
                "title": "Source",
                "username": "rules_src",
                "owner": "alice",
                "members": ["bob"],
                "messages": source_messages(),
            },
            {"name": "target", "kind": "channel", "owner": "alice", "admins": {"bob": ["post_messages"]}},
            {"name": "group", "kind": "supergroup", "owner": "alice", "members": ["bob"]},
        ],
    }


FILTERED_ENV = {
    "FILTER_KINDS": "photo",
    "FILTER_SINCE": datetime.fromtimestamp(SINCE, UTC).strftime("%Y-%m-%dT%H:%M:%S"),
    "FILTER_EXCLUDE_REGEX": r"#ad\b",
}
TRANSFORMED_ENV = {
    "TRANSFORM_REPLACE": '"(?i)fo(o) => bar🙂\\1\\nnever matches 🦄 => x"',
    "TRANSFORM_HEADER": "{author} · {date}",
    "TRANSFORM_FOOTER": "— {source_link}",
}


def covered(message: dict[str, Any]) -> list[tuple[str, str]]:
    """Each entity of a target message with the characters it covers, cut in UTF-16 units as Telegram does."""
    units = message["text"].encode("utf-16-le")
    return [
        (e["type"], units[2 * e["offset"] : 2 * (e["offset"] + e["length"])].decode("utf-16-le"))
        for e in message["entities"]
    ]


def transformed(source: dict[str, Any], body: str) -> str:
    date = datetime.fromtimestamp(source["date"], UTC).strftime("%Y-%m-%d %H:%M")
    return "\n".join(part for part in (f"Source · {date}", body, f"— https://t.me/rules_src/{source['id']}") if part)


async def test_a_filtered_and_a_transformed_route_from_one_channel(tmp_path: Path) -> None:
    async with Sandbox(world=world(), state_dir=tmp_path / "state") as sb:
        source, target, group = sb.chat("source"), sb.chat("target"), sb.chat("group")
        common = {"SOURCE_CHAT": str(source.id), "SEND_INTERVAL": "0", "LEASE_SECONDS": "20"}
        filtered_dir = await sb.session_dir(
            tmp_path / "sessions" / "filtered", "bob", TARGET_CHAT=str(target.id), **common, **FILTERED_ENV
        )
        transformed_dir = await sb.session_dir(
            tmp_path / "sessions" / "transformed", "bob", TARGET_CHAT=str(group.id), **common, **TRANSFORMED_ENV
        )
        stop = asyncio.Event()
        runs = [run(directory, stop) for directory in (filtered_dir, transformed_dir)]
        tasks = [asyncio.create_task(r) for r in runs]
        src = {m["text"] or "sticker": m for m in content(sb.messages("source"))}
        try:
            await wait_for(lambda: len(content(sb.messages("target"))) == 2, timeout=60)
            await wait_for(lambda: len(content(sb.messages("group"))) == 8, timeout=60)

            # ---- live: a post of each kind, then an edit, through the same rules
            photo_id = await sb.post("source", "live photo", media=PHOTO)
            await sb.post("source", "", media=STICKER)
            text_id = await sb.post("source", "live foo 👍🏽", entities=[{"type": "italic", "offset": 5, "length": 3}])
            await wait_for(lambda: len(content(sb.messages("target"))) == 3, timeout=30)
            await wait_for(lambda: len(content(sb.messages("group"))) == 11, timeout=30)
            whole = [{"type": "underline", "offset": 0, "length": u16("edited FOO 😀")}]
            await sb.edit("source", text_id, "edited FOO 😀", entities=whole)
            await wait_for(lambda: "edited bar🙂O 😀" in content(sb.messages("group"))[-1]["text"], timeout=30)
            # the edit made after the copy's own text was read is applied once, with the same transforms
            await asyncio.sleep(1.0)
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 30)

        live = {m["id"]: m for m in content(sb.messages("source")) if m["id"] >= photo_id}

        # ---- channel -> channel, filtered: exactly the two old photos that pass, then the live one, once each
        copies = content(sb.messages("target"))
        assert [(c["text"], c["entities"]) for c in copies] == [
            ("photo one 🇺🇦", [FLAG]),
            ("photo two", []),
            ("live photo", []),
        ]
        assert all(c["media"]["kind"] == "photo" for c in copies)
        assert covered(copies[0]) == [("italic", "🇺🇦")]
        store = open_checkpoint(tmp_path / "sessions" / "shared" / "checkpoint.db")
        try:
            [route_a] = [r for r in store.routes() if r.target_chat == str(target.id)]
            reasons = {
                s.reason: sorted(s.latest)
                for r in store.report(skipped_ids=100).routes
                if r.route.id == route_a.id
                for s in r.skipped
            }
        finally:
            store.close()
        ids = {text: m["id"] for text, m in src.items()}
        sticker_live = next(i for i, m in live.items() if m["media"] and m["media"]["kind"] == "sticker")
        service = [m["id"] for m in sb.messages("source") if m["service"]]
        assert reasons == {
            "filtered: kind=service": service,  # the channel's creation: every kind is judged, service too
            "filtered: date": [ids["old photo"], ids["old text foo"]],
            "filtered: kind=text": sorted([ids["Foo is 😀 great"], ids["foo 𝕏 end"], text_id]),
            "filtered: kind=sticker": [ids["sticker"], sticker_live],
            "filtered: exclude_regex=#ad\\b": [ids["buy now #ad"]],
        }
        checked = await verify(load_settings(filtered_dir, {}), Options())
        assert checked.result.problems() == [] and checked.exit_code == 0  # filtered is not missing
        assert checked.filtered["filtered: kind=sticker"] == [ids["sticker"], sticker_live]

        # ---- channel -> group, transformed: every message, in order, each once, entities on their characters
        copies = content(sb.messages("group"))
        expected = [
            (src["old photo"], "old photo", []),
            (src["old text foo"], "old text bar🙂o", []),
            (src["photo one 🇺🇦"], "photo one 🇺🇦", [("italic", "🇺🇦")]),
            (src["Foo is 😀 great"], "bar🙂o is 😀 great", [("bold", "great")]),
            (src["sticker"], "", []),
            (src["buy now #ad"], "buy now #ad", [("hashtag", "#ad")] if src["buy now #ad"]["entities"] else []),
            (src["photo two"], "photo two", []),
            (src["foo 𝕏 end"], "bar🙂o 𝕏 end", [("bold", " 𝕏")]),
            (live[photo_id], "live photo", []),
            (live[sticker_live], "", []),
            (live[text_id], "edited bar🙂O 😀", [("underline", "edited bar🙂O 😀")]),  # a match inside: covered
        ]
        assert len(copies) == len(expected)
        for copy, (original, body, entities) in zip(copies, expected, strict=True):
            assert copy["text"] == transformed(original, body), original["id"]
            assert covered(copy) == entities, original["id"]
            assert (copy["media"] or {}).get("kind") == (original["media"] or {}).get("kind")

        # ---- widen the filter, requeue what it left out: what now passes is appended
        env = (filtered_dir / ".env").read_text().replace("FILTER_EXCLUDE_REGEX=#ad\\b\n", "")
        (filtered_dir / ".env").write_text(env)
        line = retry(str(filtered_dir), route=route_a.id, ids=None, filtered=True)
        assert line.startswith(f"requeued {8 + len(service)} filtered messages")
        settings = load_settings(filtered_dir, {"LIVE": "false"})
        store = open_checkpoint(settings.shared_db_path)
        try:
            await asyncio.wait_for(run_session(settings, store, asyncio.Event()), 60)
        finally:
            store.close()
        copies = content(sb.messages("target"))
        assert [c["text"] for c in copies] == ["photo one 🇺🇦", "photo two", "live photo", "buy now #ad"]
        checked = await verify(load_settings(filtered_dir, {}), Options())
        # Telegram cannot insert a message between two sent ones: the later copies now stand before it
        assert [(f.kind, f.source_id) for f in checked.result.problems()] == [
            ("out_of_order", ids["photo two"]),
            ("out_of_order", photo_id),
        ]
        assert "filtered: exclude_regex=#ad\\b" not in checked.filtered
        assert len(checked.filtered["filtered: kind=text"]) == 3  # judged again: still filtered


async def run(directory: Path, stop: asyncio.Event) -> None:
    settings = load_settings(directory, {})
    store = open_checkpoint(settings.shared_db_path)
    try:
        await run_session(settings, store, stop)
    finally:
        store.close()
