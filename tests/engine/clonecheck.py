"""Compare a source chat with its clone in the sandbox, message by message."""

from __future__ import annotations

from typing import Any

from telepi.sandbox.sandbox import Sandbox
from telepi.sandbox.world.photos import media_key


def content(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if not m["service"]]


def _reply(message: dict[str, Any]) -> int | None:
    reply = message["reply_to"]
    return None if reply in (None, message["topic"]) else reply


def _media(message: dict[str, Any]) -> tuple[Any, ...] | None:
    media = message["media"]
    if media is None:
        return None
    if media["kind"] == "webpage":  # Telegram builds the preview itself from the URL
        return ("webpage", media["url"])
    if media["kind"] == "dice":  # Telegram rolls a sent dice itself: the value cannot be copied
        return ("dice", media["emoticon"])
    if media["kind"] == "photo":  # Telegram re-encodes every uploaded photo: its sizes survive, not its bytes
        return ("photo", media_key(media), ("spoiler", media["spoiler"]))
    keys = sorted(k for k in media if k not in ("sizes", "thumb", "thumbs", "id", "attributes"))
    attributes = sorted(
        str(sorted((key, value) for key, value in attribute.items() if value not in (False, None)))
        for attribute in media.get("attributes") or []
    )
    thumbs = sorted((t.get("sha256"), t.get("w"), t.get("h")) for t in media.get("thumbs") or [])
    return (*((k, str(media[k])) for k in keys), ("attributes", tuple(attributes)), ("thumbs", tuple(thumbs)))


def titles(sb: Sandbox, chat: str) -> dict[int, str]:
    return {t["id"]: t["title"] for t in sb.topics(chat)} if sb.topics(chat) else {}


def as_plain_emoji(entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entities as Telegram keeps them in a message a non-premium account sent (not forwarded): custom emoji
    dropped, their plain emoji left in the text."""
    return [e for e in entities if e.get("type") != "custom_emoji"]


def assert_clone_equal(
    sb: Sandbox, source: str, target: str, *, ordered: bool = True, plain_emoji: bool = False
) -> None:
    """``plain_emoji``: the copies were sent by non-premium accounts, so custom emoji are expected plain."""
    src = content(sb.messages(source))
    if plain_emoji:
        src = [{**m, "entities": as_plain_emoji(m["entities"])} for m in src]
    dst = content(sb.messages(target))
    assert len(dst) == len(src), f"{len(src)} source messages, {len(dst)} in the target"
    if not ordered:
        key = lambda m: (m["text"], str(_media(m)))  # noqa: E731
        assert sorted(map(key, src)) == sorted(map(key, dst))
        return
    assert_copies(src, dst, titles(sb, source), titles(sb, target))


def same_copy(s: dict[str, Any], d: dict[str, Any]) -> bool:
    """Whether ``d`` shows what ``s`` shows: text, entities, media (replies, topics and albums aside)."""
    return d["text"] == s["text"] and d["entities"] == s["entities"] and _media(d) == _media(s)


def assert_copies(
    src: list[dict[str, Any]], dst: list[dict[str, Any]], src_titles: dict[int, str], dst_titles: dict[int, str]
) -> None:
    """``dst`` is ``src`` copied one by one in order: content, topic titles, replies within, albums."""
    assert len(dst) == len(src), f"{len(src)} source messages, {len(dst)} copies"
    src_index = {m["id"]: i for i, m in enumerate(src)}
    dst_index = {m["id"]: i for i, m in enumerate(dst)}
    src_groups: dict[int, int] = {}
    dst_groups: dict[int, int] = {}
    for i, (s, d) in enumerate(zip(src, dst, strict=True)):
        where = f"message #{i} (source id {s['id']}, target id {d['id']})"
        assert d["text"] == s["text"], where
        assert d["entities"] == s["entities"], where
        assert _media(d) == _media(s), where
        if src_titles and dst_titles:
            assert dst_titles.get(d["topic"]) == src_titles.get(s["topic"]), where
        source_reply = _reply(s)
        expected = src_index.get(source_reply) if source_reply is not None else None
        target_reply = _reply(d)
        assert (dst_index.get(target_reply) if target_reply is not None else None) == expected, where
        if s["grouped_id"] is not None:
            first = src_groups.setdefault(s["grouped_id"], i)
            assert d["grouped_id"] is not None, where
            assert dst_groups.setdefault(d["grouped_id"], i) == first, where
        else:
            assert d["grouped_id"] is None, where


def topic_titles(sb: Sandbox, chat: str) -> list[str]:
    return sorted(t["title"] for t in sb.topics(chat))


def assert_clone_per_topic(sb: Sandbox, source: str, target: str) -> None:
    """ORDERED=topic: each source topic's messages are in its target topic exactly once and in order
    (content, albums), and every reply points at the copy of what its original answers, in any topic.
    The order across topics is free."""
    src, dst = content(sb.messages(source)), content(sb.messages(target))
    assert len(dst) == len(src), f"{len(src)} source messages, {len(dst)} in the target"
    src_titles, dst_titles = titles(sb, source), titles(sb, target)
    by_topic: dict[str | None, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {}
    for m in src:
        by_topic.setdefault(src_titles.get(m["topic"]), ([], []))[0].append(m)
    for m in dst:
        by_topic.setdefault(dst_titles.get(m["topic"]), ([], []))[1].append(m)
    copy_of: dict[int, int] = {}
    for title, (originals, copies) in by_topic.items():
        assert [m["id"] for m in copies] == sorted(m["id"] for m in copies)  # the target's own order
        assert len(copies) == len(originals), f"topic {title!r}: {len(originals)} messages, {len(copies)} copies"
        albums: dict[int, int] = {}
        for position, (s, d) in enumerate(zip(originals, copies, strict=True)):
            where = f"topic {title!r} message #{position} (source id {s['id']}, target id {d['id']})"
            assert same_copy(s, d), where
            if s["grouped_id"] is not None:
                assert (
                    d["grouped_id"] is not None
                    and albums.setdefault(s["grouped_id"], d["grouped_id"]) == d["grouped_id"]
                ), where
            else:
                assert d["grouped_id"] is None, where
            copy_of[s["id"]] = d["id"]
    dst_by_id = {m["id"]: m for m in dst}
    for s in src:
        replied = _reply(s)
        expected = copy_of.get(replied) if replied is not None else None
        assert _reply(dst_by_id[copy_of[s["id"]]]) == expected, f"source {s['id']} replies to {replied}"


def media_dcs(sb: Sandbox, chat: str) -> set[int]:
    """The data centres the files of ``chat`` live on."""
    return set(sb.file_dcs(chat))


def assert_one_export_per_foreign_dc(sb: Sandbox, accounts: list[str]) -> None:
    """Each account exported its authorization at most once to each DC (one ``telepi run`` each)."""
    for account in accounts:
        exports = sb.exports(account)
        assert all(count == 1 for count in exports.values()), (account, exports)
        assert sb.account(account).dc not in exports
