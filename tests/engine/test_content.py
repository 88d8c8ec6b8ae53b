"""Content as Telegram counts and allows it: UTF-16 caption limits from the app config, captions Telegram
refuses, mentions by id, replies into other chats, media that can only be forwarded, quizzes, custom emoji
(premium senders only) and photos Telegram re-encodes."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from telethon.tl import types

from telepi.engine.content import text_entities
from telepi.sandbox.sandbox import Sandbox
from tests.engine.clonecheck import as_plain_emoji, assert_clone_equal, content
from tests.engine.test_clone import make_sessions, run_all

UNSENDABLE = ["story", "giveaway", "giveaway_results", "paid_media", "game", "invoice", "todo", "unsupported"]


def world(messages: list[dict[str, Any]], *, noforwards: bool = False, bob_premium: bool = False) -> dict[str, Any]:
    return {
        "accounts": [
            {"name": "alice", "phone": "+15550000001", "code": "12345"},
            {"name": "bob", "phone": "+15550000002", "code": "12345", "premium": bob_premium},
        ],
        "users": [{"name": "eve", "first_name": "Eve"}],
        "chats": [
            {
                "name": "other",
                "kind": "channel",
                "owner": "alice",
                "members": ["bob"],
                "messages": [{"text": f"elsewhere {i}"} for i in range(5)],
            },
            {
                "name": "source",
                "kind": "supergroup",
                "owner": "alice",
                "noforwards": noforwards,
                "members": ["bob", "eve"],
                "messages": messages,
            },
            {"name": "target", "kind": "supergroup", "owner": "alice", "admins": {"bob": ["post_messages"]}},
        ],
    }


async def clone(sb: Sandbox, tmp_path: Path, mode: str) -> None:
    directories = await make_sessions(sb, tmp_path / "sessions", ["bob"], LIVE="false", MODE=mode)
    await run_all(directories)


def outcomes(tmp_path: Path) -> dict[int, tuple[str, str | None]]:
    """source id → (status, skip reason) from the checkpoint."""
    with sqlite3.connect(tmp_path / "sessions" / "shared" / "checkpoint.db") as db:
        rows = db.execute("SELECT source_msg_id, status, skip_reason FROM messages").fetchall()
    return {int(r[0]): (str(r[1]), r[2]) for r in rows}


# ---- lengths as Telegram counts them --------------------------------------------------------------


async def test_caption_is_measured_in_utf16_units(tmp_path: Path) -> None:
    caption = "a" * 960 + "😀" * 40  # 1000 characters, 1040 UTF-16 units: over the 1024 a caption may have
    async with Sandbox(world=world([{"text": caption, "media": {"kind": "photo", "size": 3000}}])) as sb:
        await clone(sb, tmp_path, "copy")
        photo, follow_up = content(sb.messages("target"))
        assert photo["media"]["kind"] == "photo" and photo["text"] == ""
        assert follow_up["text"] == caption and follow_up["reply_to"] == photo["id"]


async def test_premium_caption_limit_comes_from_the_app_config(tmp_path: Path) -> None:
    caption = "b" * 2000  # over the default 1024, within a premium account's 4096
    async with Sandbox(world=world([{"text": caption, "media": {"kind": "photo"}}], bob_premium=True)) as sb:
        await clone(sb, tmp_path, "copy")
        [photo] = content(sb.messages("target"))
        assert photo["media"]["kind"] == "photo" and photo["text"] == caption


@pytest.mark.parametrize("refusal", ["MEDIA_CAPTION_TOO_LONG", "MESSAGE_TOO_LONG"])
async def test_a_caption_telegram_refuses_follows_the_media(tmp_path: Path, refusal: str) -> None:
    # Telegram's count or limit can differ from the one read (premium ended since the app config was
    # read): the refusal is answered like a caption known to be too long, never by skipping the photo.
    caption = "c" * 1500
    async with Sandbox(world=world([{"text": caption, "media": {"kind": "photo"}}], bob_premium=True)) as sb:
        sb.faults.inject_error("SendMediaRequest", refusal, nth=1)
        await clone(sb, tmp_path, "copy")
        photo, follow_up = content(sb.messages("target"))
        assert photo["media"]["kind"] == "photo" and photo["text"] == ""
        assert follow_up["text"] == caption and follow_up["reply_to"] == photo["id"]
        assert {status for status, _ in outcomes(tmp_path).values()} <= {"done", "skipped"}


# ---- mentions and replies -------------------------------------------------------------------------


async def test_mention_by_id_is_kept_with_the_users_access_hash(tmp_path: Path) -> None:
    mention = {"type": "mention_name", "offset": 6, "length": 3, "user": "eve"}
    messages = [
        {"text": "hello Eve", "entities": [mention]},
        {"text": "photo of Eve", "entities": [{**mention, "offset": 9}], "media": {"kind": "photo"}},
    ]
    async with Sandbox(world=world(messages)) as sb:
        await clone(sb, tmp_path, "copy")
        assert_clone_equal(sb, "source", "target")  # entities compared exactly: the mention is there
        eve = sb.world.user_by_name("eve")
        assert eve is not None
        assert [m["entities"][0]["user_id"] for m in content(sb.messages("target"))] == [eve.id, eve.id]


def test_a_mention_of_a_user_who_cannot_be_resolved_stays_plain_text() -> None:
    message = types.Message(
        id=1,
        peer_id=types.PeerChannel(1),
        date=None,
        message="hi Eve",
        entities=[types.MessageEntityBold(0, 2), types.MessageEntityMentionName(3, 3, user_id=42)],
    )
    assert text_entities(message, {}) == [types.MessageEntityBold(0, 2)]
    user = types.InputUser(42, 99)
    assert text_entities(message, {42: user})[1] == types.InputMessageEntityMentionName(3, 3, user)


async def test_a_reply_into_another_chat_is_not_mapped_onto_a_local_message(tmp_path: Path) -> None:
    messages = [
        {"text": "first"},  # id 2 (1 is the chat's creation)
        {"text": "second"},  # id 3, copied: the other chat's message 3 must not be mistaken for it
        {"text": "answers elsewhere", "reply_to": {"chat": "other", "id": 3}},
        {"text": "answers here", "reply_to": 3},
    ]
    async with Sandbox(world=world(messages)) as sb:
        await clone(sb, tmp_path, "copy")
        copies = content(sb.messages("target"))
        assert [m["text"] for m in copies] == ["first", "second", "answers elsewhere", "answers here"]
        assert copies[2]["reply_to"] is None
        assert copies[3]["reply_to"] == copies[1]["id"]


# ---- media that can only be forwarded -------------------------------------------------------------


def unsendable_messages() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"text": "before"}]
    out += [{"media": {"kind": kind, "peer": "other"}} for kind in UNSENDABLE]
    return [*out, {"text": "after"}]


@pytest.mark.parametrize(("mode", "noforwards"), [("copy", False), ("reupload", False), ("auto", True)])
async def test_media_that_cannot_be_resent_is_skipped_at_once(tmp_path: Path, mode: str, noforwards: bool) -> None:
    async with Sandbox(world=world(unsendable_messages(), noforwards=noforwards)) as sb:
        started = time.monotonic()
        await clone(sb, tmp_path, mode)
        elapsed = time.monotonic() - started
        assert [m["text"] for m in content(sb.messages("target"))] == ["before", "after"]
        source = content(sb.messages("source"))
        reasons = {outcomes(tmp_path)[m["id"]][1] for m in source if m["media"] is not None}
        assert reasons == {f"unsupported:{kind}" for kind in UNSENDABLE}
        assert elapsed < 10, f"the route was held {elapsed:.1f}s"  # no retries with backoff


@pytest.mark.parametrize("mode", ["forward", "auto"])
async def test_media_that_cannot_be_resent_is_forwarded_where_allowed(tmp_path: Path, mode: str) -> None:
    async with Sandbox(world=world(unsendable_messages())) as sb:
        await clone(sb, tmp_path, mode)
        kinds = [m["media"]["kind"] if m["media"] else m["text"] for m in content(sb.messages("target"))]
        assert kinds == ["before", *UNSENDABLE, "after"]


# ---- quizzes --------------------------------------------------------------------------------------


def quiz(votes: dict[str, list[int]]) -> dict[str, Any]:
    return {
        "kind": "poll",
        "quiz": True,
        "question": "2 + 2?",
        "answers": ["3", "4", "5"],
        "correct": [1],
        "solution": "count them",
        "votes": votes,
    }


async def test_a_quiz_the_account_answered_is_copied_with_its_answer(tmp_path: Path) -> None:
    async with Sandbox(world=world([{"media": quiz({"bob": [0], "alice": [1]})}])) as sb:
        await clone(sb, tmp_path, "copy")
        [copy] = content(sb.messages("target"))
        assert copy["media"]["quiz"] and copy["media"]["correct"] == [1]
        assert copy["media"]["solution"] == "count them"
        assert copy["media"].get("votes") is None  # a new poll: nobody has voted yet


async def test_a_quiz_whose_answer_the_account_cannot_see_is_skipped_not_degraded(tmp_path: Path) -> None:
    async with Sandbox(world=world([{"text": "quiz next"}, {"media": quiz({"alice": [1]})}])) as sb:
        await clone(sb, tmp_path, "copy")
        assert [m["text"] for m in content(sb.messages("target"))] == ["quiz next"]
        quiz_id = content(sb.messages("source"))[1]["id"]
        assert outcomes(tmp_path)[quiz_id] == ("skipped", "quiz_answer_unknown")


async def test_a_quiz_is_forwarded_with_its_answer_where_forwarding_is_allowed(tmp_path: Path) -> None:
    async with Sandbox(world=world([{"media": quiz({"alice": [1]})}])) as sb:
        await clone(sb, tmp_path, "auto")
        [copy] = content(sb.messages("target"))
        assert copy["media"]["quiz"] and copy["media"]["correct"] == [1]


# ---- premium: custom emoji, re-encoded photos ------------------------------------------------------

EMOJI = {"type": "custom_emoji", "offset": 0, "length": 2, "document_id": 5_368_324_170_671_202_286}
FANCY = [
    {"text": "👍 fancy", "entities": [EMOJI, {"type": "bold", "offset": 3, "length": 5}]},
    {"text": "👍 on a photo", "entities": [EMOJI], "media": {"kind": "photo", "size": 9000, "w": 1600, "h": 900}},
    {"text": "a file", "media": {"kind": "document", "size": 70_000}},
]


@pytest.mark.parametrize(("mode", "premium"), [("copy", False), ("copy", True), ("forward", False)])
async def test_custom_emoji_reach_the_target_as_telegram_allows_the_sender(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, mode: str, premium: bool
) -> None:
    async with Sandbox(world=world(FANCY, bob_premium=premium)) as sb:
        await clone(sb, tmp_path, mode)
        # A non-premium account's copies show the plain emoji; a premium one's and forwards keep them.
        plain = mode == "copy" and not premium
        assert_clone_equal(sb, "source", "target", plain_emoji=plain)
        text, photo, _file = content(sb.messages("target"))
        expected = [{"type": "bold", "offset": 3, "length": 5}] if plain else FANCY[0]["entities"]
        assert text["text"] == "👍 fancy" and text["entities"] == expected
        assert photo["entities"] == ([] if plain else [EMOJI])
        noted = [r for r in caplog.records if "custom emoji arrive in the target" in r.getMessage()]
        assert len(noted) == (1 if plain else 0)  # said once, and only when it happens
    assert as_plain_emoji(FANCY[0]["entities"]) != FANCY[0]["entities"]  # the comparison can fail


async def test_a_copied_photo_keeps_its_sizes_and_a_file_its_bytes(tmp_path: Path) -> None:
    async with Sandbox(world=world(FANCY, noforwards=True)) as sb:  # protected: every file uploaded again
        await clone(sb, tmp_path, "auto")
        source, target = content(sb.messages("source")), content(sb.messages("target"))
        pairs = [(s["media"], d["media"]) for s, d in zip(source, target, strict=True)]
        (src_photo, dst_photo), (src_file, dst_file) = pairs[1:]
        assert dst_photo["sha256"] != src_photo["sha256"]  # Telegram re-encoded the upload
        shapes = [(s["type"], s["w"], s["h"]) for s in dst_photo["sizes"]]
        assert shapes == [(s["type"], s["w"], s["h"]) for s in src_photo["sizes"]]
        assert shapes[1:] == [("s", 100, 56), ("m", 320, 180), ("x", 800, 450), ("y", 1280, 720), ("w", 1600, 900)]
        assert dst_file["sha256"] == src_file["sha256"] and dst_file["size"] == 70_000
