"""The sandbox's content rules as Telegram has them: UTF-16 lengths, the app config's caption limits,
quizzes that hide their answer from accounts that have not voted, mentions by id, custom emoji (premium
senders only), replies into another chat, and media that can only be forwarded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from telethon.tl import functions, types

from telepi.sandbox.world.worldfile import UNSENDABLE_KINDS
from tests.sandbox.test_rpc import history, rpc_error, send
from tests.sandbox.worldkit import Harness, base_world

QUIZ = {
    "kind": "poll",
    "quiz": True,
    "question": "2 + 2?",
    "answers": ["3", "4"],
    "correct": [1],
    "solution": "count",
    "votes": {"bob": [0]},
}


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    spec = base_world()
    chan = spec["chats"][1]
    chan["messages"] += [
        {"media": QUIZ},
        {"text": "see there", "reply_to": {"chat": "group", "id": 1}},
        {"text": "hi Eve", "entities": [{"type": "mention_name", "offset": 3, "length": 3, "user": "eve"}]},
        *({"media": {"kind": kind, "peer": "chan"}} for kind in sorted(UNSENDABLE_KINDS)),
    ]
    harness = Harness(tmp_path, spec)
    yield harness
    harness.close()


async def chan_messages(h: Harness, who: str) -> list[Any]:
    return list(reversed((await history(h, who, "chan")).messages))


async def test_app_config_publishes_the_caption_limits(h: Harness) -> None:
    config = await h.call("alice", functions.help.GetAppConfigRequest(hash=0))
    numbers = {e.key: e.value.value for e in config.config.value}
    assert numbers["caption_length_limit_default"] == 1024
    assert numbers["caption_length_limit_premium"] == 4096


@pytest.mark.parametrize(("text", "ok"), [("😀" * 512, True), ("😀" * 512 + "a", False), ("é" * 1024, True)])
async def test_caption_length_counts_utf16_units(h: Harness, text: str, ok: bool) -> None:
    request = functions.messages.SendMediaRequest(h.input_peer("forum"), types.InputMediaDice("🎲"), text, random_id=9)
    if ok:
        await h.call("alice", request)
    else:
        assert (await rpc_error(h.call("alice", request))).message == "MEDIA_CAPTION_TOO_LONG"


async def test_a_quiz_shows_its_answer_only_to_a_voter(h: Harness) -> None:
    by_bob = next(m for m in await chan_messages(h, "bob") if isinstance(m.media, types.MessageMediaPoll))
    by_dave = next(m for m in await chan_messages(h, "dave") if isinstance(m.media, types.MessageMediaPoll))
    assert [r.correct for r in by_bob.media.results.results] == [None, True]
    assert [r.chosen for r in by_bob.media.results.results] == [True, None]
    assert by_bob.media.results.solution == "count"
    assert not any(r.correct for r in by_dave.media.results.results)
    assert by_dave.media.results.solution is None


async def test_a_quiz_is_refused_without_its_correct_answer(h: Harness) -> None:
    poll = types.Poll(
        id=0,
        question=types.TextWithEntities("?", []),
        answers=[types.PollAnswer(types.TextWithEntities(t, []), bytes([i])) for i, t in enumerate("ab")],
        hash=0,
        quiz=True,
    )
    refused = functions.messages.SendMediaRequest(h.input_peer("forum"), types.InputMediaPoll(poll), "", random_id=1)
    assert (await rpc_error(h.call("alice", refused))).message == "QUIZ_CORRECT_ANSWERS_EMPTY"
    media = types.InputMediaPoll(poll, correct_answers=[1], solution="b it is")
    await h.call("alice", functions.messages.SendMediaRequest(h.input_peer("forum"), media, "", random_id=2))


async def test_a_reply_into_another_chat_names_that_chat(h: Harness) -> None:
    reply = next(m for m in await chan_messages(h, "bob") if m.message == "see there").reply_to
    group = h.world.find_chat_ref("group")
    assert reply.reply_to_peer_id == types.PeerChat(group.raw_id) and reply.reply_to_msg_id == 1


async def test_a_mention_by_id_must_be_sent_in_its_input_form(h: Harness) -> None:
    mention = next(m for m in await chan_messages(h, "bob") if m.message == "hi Eve").entities[0]
    eve = h.world.user_by_name("eve")
    assert eve is not None and mention == types.MessageEntityMentionName(3, 3, eve.id)

    async def sent(entity: Any, random_id: int) -> list[Any]:
        result = await h.call("alice", send(h, "forum", "hi Eve", entities=[entity], random_id=random_id))
        return next(u.message for u in result.updates if hasattr(u, "message")).entities or []

    assert await sent(mention, 1) == []  # the received form is dropped: plain text, as Telegram does
    kept = await sent(types.InputMessageEntityMentionName(3, 3, types.InputUser(eve.id, eve.access_hash)), 2)
    assert kept == [mention]
    forged = types.InputMessageEntityMentionName(3, 3, types.InputUser(eve.id, eve.access_hash + 1))
    err = await rpc_error(h.call("alice", send(h, "forum", "hi Eve", entities=[forged], random_id=3)))
    assert err.message == "ENTITY_MENTION_USER_INVALID"


async def test_media_that_can_only_be_forwarded_renders_and_is_refused_as_input(h: Harness) -> None:
    kinds = {type(m.media).__name__ for m in await chan_messages(h, "bob") if m.media is not None}
    assert {
        "MessageMediaStory",
        "MessageMediaGiveaway",
        "MessageMediaGiveawayResults",
        "MessageMediaPaidMedia",
        "MessageMediaGame",
        "MessageMediaInvoice",
        "MessageMediaToDo",
        "MessageMediaUnsupported",
    } <= kinds
    game = types.InputMediaGame(types.InputGameShortName(types.InputUserSelf(), "game"))
    request = functions.messages.SendMediaRequest(h.input_peer("forum"), game, "", random_id=4)
    assert (await rpc_error(h.call("alice", request))).message == "MEDIA_INVALID"


def emoji(offset: int, length: int = 2, document_id: int = 5_368_324_170_671_202_286) -> Any:
    return types.MessageEntityCustomEmoji(offset, length, document_id)


async def sent_entities(h: Harness, who: str, text: str, entities: list[Any], random_id: int, peer: Any = None) -> Any:
    peer = peer or h.input_peer("target")
    request = functions.messages.SendMessageRequest(peer, text, entities=entities, random_id=random_id)
    result = await h.call(who, request)
    message = next(u.message for u in result.updates if hasattr(u, "message"))
    assert message.message == text  # the plain emoji stays in the text whatever happens to its entity
    return message.entities or []


async def test_custom_emoji_from_a_non_premium_sender_become_their_plain_emoji(h: Harness) -> None:
    text, bold = "👍 ok 🔥", types.MessageEntityBold(3, 2)
    assert not h.world.account("bob").premium and h.world.account("carol").premium
    assert await sent_entities(h, "bob", text, [emoji(0), bold, emoji(6)], 1) == [bold]
    assert await sent_entities(h, "carol", text, [emoji(0), bold, emoji(6)], 2) == [emoji(0), bold, emoji(6)]
    # Saved Messages: everyone may use them there
    saved = await sent_entities(h, "bob", text, [emoji(0)], 3, peer=types.InputPeerSelf())
    assert saved == [emoji(0)]


async def test_custom_emoji_from_a_non_premium_editor_are_dropped_too(h: Harness) -> None:
    first = await h.call("bob", send(h, "target", "👍 v1", random_id=4))
    msg_id = next(u.message for u in first.updates if hasattr(u, "message")).id
    edit = functions.messages.EditMessageRequest(h.input_peer("target"), msg_id, message="👍 v2", entities=[emoji(0)])
    edited = await h.call("bob", edit)
    assert next(u.message for u in edited.updates if hasattr(u, "message")).entities in (None, [])


async def test_a_custom_emoji_must_wrap_an_emoji_and_at_most_100_count(h: Harness) -> None:
    assert await sent_entities(h, "carol", "ab 👍", [emoji(0), emoji(3)], 5) == [emoji(3)]  # "ab" is no emoji
    keycap = "1\ufe0f\u20e3"
    assert await sent_entities(h, "carol", keycap, [emoji(0, 3)], 6) == [emoji(0, 3)]
    many = "👍" * 101
    kept = await sent_entities(h, "carol", many, [emoji(2 * i) for i in range(101)], 7)
    assert kept == [emoji(2 * i) for i in range(100)]  # the 101st shows as its plain emoji
    config = await h.call("carol", functions.help.GetAppConfigRequest(hash=0))
    assert {e.key: e.value.value for e in config.config.value}["message_animated_emoji_max"] == 100
