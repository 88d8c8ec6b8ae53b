"""Entities through text edits, in UTF-16 units as Telegram counts them: property tests with astral characters.

The oracle is independent of the arithmetic in telepi/rules/entities.py: it builds the new text unit by unit,
tagging each UTF-16 unit with where it came from, and reads each entity's expected place off the tags.
"""

from __future__ import annotations

import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from telethon.tl import types

from telepi.rules.entities import TEXT_DEFINED, Span, apply_spans, utf16_length, utf16_offsets, utf16_slice
from telepi.rules.transforms import Context, Replacement, Transforms, replace

# ASCII, whitespace, BMP letters, astral emoji and symbols (2 UTF-16 units each), a skin tone, a joiner.
ALPHABET = ["a", "b", "x", " ", "\n", "é", "ж", "中", "😀", "👍", "\U0001f3fd", "\u200d", "𝕏", "🇺", "#", "@", "."]
chars = st.sampled_from(ALPHABET)
texts = st.text(alphabet=chars, max_size=40)
ENTITY_TYPES = [
    types.MessageEntityBold,
    types.MessageEntityItalic,
    types.MessageEntitySpoiler,
    types.MessageEntityUrl,
    types.MessageEntityMention,
    types.MessageEntityHashtag,
]


def make_entity(kind: type, offset: int, length: int) -> Any:
    if kind is types.MessageEntityTextUrl:
        return kind(offset, length, url="https://example.org")
    if kind is types.MessageEntityCustomEmoji:
        return kind(offset, length, document_id=1)
    return kind(offset, length)


@st.composite
def edits(draw: st.DrawFn) -> tuple[str, list[Any], list[Span]]:
    text = draw(texts)
    offsets = utf16_offsets(text)  # code point boundaries: where Telegram's entities and regex matches fall
    count = len(text)
    entities = []
    for _ in range(draw(st.integers(0, 5))):
        a = draw(st.integers(0, count))
        b = draw(st.integers(a, count))
        kind = draw(st.sampled_from([*ENTITY_TYPES, types.MessageEntityTextUrl, types.MessageEntityCustomEmoji]))
        if b > a:
            entities.append(make_entity(kind, offsets[a], offsets[b] - offsets[a]))
    cuts = sorted(draw(st.lists(st.integers(0, count), max_size=6)))
    spans = []
    for start, end in zip(cuts[::2], cuts[1::2], strict=False):
        spans.append(Span(offsets[start], offsets[end], draw(st.text(alphabet=chars, max_size=4))))
    return text, entities, spans


def tagged(text: str, spans: list[Span]) -> list[tuple[int, object]]:
    """The new text's UTF-16 units, each tagged with its old position (or the span that wrote it)."""
    units = [int.from_bytes(text.encode("utf-16-le")[i : i + 2], "little") for i in range(0, 2 * utf16_length(text), 2)]
    out: list[tuple[int, object]] = []
    position = 0
    for k, span in enumerate(sorted(spans, key=lambda s: (s.start, s.end))):
        out.extend((units[i], i) for i in range(position, span.start))
        new = span.text.encode("utf-16-le")
        out.extend((int.from_bytes(new[i : i + 2], "little"), ("span", k)) for i in range(0, len(new), 2))
        position = span.end
    out.extend((units[i], i) for i in range(position, len(units)))
    return out


def touched(entity: Any, spans: list[Span]) -> bool:
    a, b = entity.offset, entity.offset + entity.length
    return any((s.start < b and s.end > a) or (s.start == s.end and a < s.start < b) for s in spans)


def expected_after(text: str, entities: list[Any], spans: list[Span]) -> list[tuple[Any, int, int]]:
    """Each entity that survives ``spans``, with the new start and end the tags say it covers."""
    where = {origin: index for index, (_, origin) in enumerate(tagged(text, spans)) if isinstance(origin, int)}
    expected = []
    for entity in entities:
        a, b = entity.offset, entity.offset + entity.length
        survivors = [i for i in range(a, b) if i in where]
        if not survivors or (isinstance(entity, TEXT_DEFINED) and touched(entity, spans)):
            continue  # dropped: all its characters replaced, or a text-defined entity cut
        expected.append((entity, where[survivors[0]], where[survivors[-1]] + 1))
    return expected


def check_carried(text: str, entities: list[Any], spans: list[Span], new_text: str, carried: list[Any]) -> None:
    units = tagged(text, spans)
    assert new_text.encode("utf-16-le") == b"".join(u.to_bytes(2, "little") for u, _ in units)
    expected = expected_after(text, entities, spans)
    assert len(carried) == len(expected)
    for got, (entity, start, end) in zip(carried, expected, strict=True):
        assert type(got) is type(entity)
        assert (got.offset, got.length) == (start, end - start)
        assert got.offset >= 0 and got.offset + got.length <= utf16_length(new_text)
        if not touched(entity, spans):  # untouched: the very same characters
            assert utf16_slice(new_text, got.offset, got.length) == utf16_slice(text, entity.offset, entity.length)


@settings(max_examples=1000, deadline=None)
@given(edits())
def test_every_surviving_entity_covers_exactly_what_the_rules_say(case: tuple[str, list[Any], list[Span]]) -> None:
    text, entities, spans = case
    before = [(e.offset, e.length) for e in entities]
    new_text, carried = apply_spans(text, entities, spans)
    check_carried(text, entities, spans, new_text, carried)
    assert [(e.offset, e.length) for e in entities] == before  # the given entities are never changed


PATTERNS = ["😀", "a+", "x|b", r"\s+", "中.", "👍\U0001f3fd?", "(a)(b)?", "^", "$", "𝕏+"]


@st.composite
def replaced(draw: st.DrawFn) -> tuple[str, list[Any], Replacement]:
    text, entities, _ = draw(edits())
    pattern = draw(st.sampled_from(PATTERNS))
    replacement = draw(st.sampled_from(["", "-", "🙂🙂", r"<\g<0>>", "ж"]))
    return text, entities, Replacement.parse(pattern, replacement)


@settings(max_examples=1000, deadline=None)
@given(replaced())
def test_a_replacement_is_re_sub_and_keeps_untouched_entities_on_their_characters(
    case: tuple[str, list[Any], Replacement],
) -> None:
    text, entities, replacement = case
    new_text, carried = replace(text, entities, replacement)
    assert new_text == replacement.pattern.sub(replacement.replacement, text)
    offsets = utf16_offsets(text)
    spans = [
        Span(offsets[m.start()], offsets[m.end()], m.expand(replacement.replacement))
        for m in replacement.pattern.finditer(text)
    ]
    check_carried(text, entities, spans, new_text, carried)


@settings(max_examples=1000, deadline=None)
@given(edits(), st.text(alphabet=chars, max_size=6), st.text(alphabet=chars, max_size=6))
def test_header_and_footer_move_every_entity_by_the_header_only(
    case: tuple[str, list[Any], list[Span]], header: str, footer: str
) -> None:
    text, entities, _ = case
    text = text.strip()
    entities = [e for e in entities if e.offset + e.length <= utf16_length(text)]
    transforms = Transforms(header=header.replace("{", "").replace("}", ""), footer=footer.replace("{", ""))
    transforms = Transforms(header=transforms.header, footer=transforms.footer.replace("}", ""))
    new_text, carried = transforms.apply(text, entities, has_media=False)
    head = transforms.header + ("\n" if transforms.header and text else "")
    assert new_text.startswith(head) and new_text[len(head) :].startswith(text)
    assert len(carried) == len(entities)
    for got, entity in zip(carried, entities, strict=True):
        assert got.offset == entity.offset + utf16_length(head) and got.length == entity.length
        assert utf16_slice(new_text, got.offset, got.length) == utf16_slice(text, entity.offset, entity.length)


def test_the_documented_cases() -> None:
    text = "Buy 😀 now at https://shop.example #ad"
    bold = types.MessageEntityBold(0, utf16_length("Buy 😀 now"))
    url = types.MessageEntityUrl(utf16_length("Buy 😀 now at "), utf16_length("https://shop.example"))
    tag = types.MessageEntityHashtag(utf16_length("Buy 😀 now at https://shop.example "), 3)
    emoji_only = types.MessageEntityItalic(4, 2)  # the 😀: two UTF-16 units
    entities = [bold, url, tag, emoji_only]
    # a replacement inside bold text stays bold; the emoji's own italic is dropped with it
    out, kept = Transforms(replacements=(Replacement.parse("😀", "🙂🙂"),)).apply(text, entities, has_media=False)
    assert out == "Buy 🙂🙂 now at https://shop.example #ad"
    assert [(type(e).__name__, utf16_slice(out, e.offset, e.length)) for e in kept] == [
        ("MessageEntityBold", "Buy 🙂🙂 now"),
        ("MessageEntityUrl", "https://shop.example"),
        ("MessageEntityHashtag", "#ad"),
    ]
    # a replacement cutting an entity's edge shrinks it to what survives; a cut URL is dropped
    out, kept = Transforms(replacements=(Replacement.parse(r"now at https", "then"),)).apply(
        text, entities, has_media=False
    )
    assert [(type(e).__name__, utf16_slice(out, e.offset, e.length)) for e in kept] == [
        ("MessageEntityBold", "Buy 😀 "),
        ("MessageEntityHashtag", "#ad"),
        ("MessageEntityItalic", "😀"),
    ]
    # removals, then the trim Telegram does, then header and footer that carry no entities
    transforms = Transforms(remove=frozenset({"links", "hashtags"}), header="[{author}]", footer="{source_link}")
    out, kept = transforms.apply(text, entities, has_media=False, context=Context(author="Ann", source_link="L"))
    assert out == "[Ann]\nBuy 😀 now at\nL"
    assert [(type(e).__name__, utf16_slice(out, e.offset, e.length)) for e in kept] == [
        ("MessageEntityBold", "Buy 😀 now"),
        ("MessageEntityItalic", "😀"),
    ]


def test_removing_links_and_mentions_unlinks_text_links_and_mentions_by_id() -> None:
    text = "see docs, ask @ann or Bob"
    link = types.MessageEntityTextUrl(4, 4, url="https://x.example")
    mention = types.MessageEntityMention(14, 4)
    by_id = types.MessageEntityMentionName(22, 3, user_id=7)
    out, kept = Transforms(remove=frozenset({"links", "mentions"})).apply(text, [link, mention, by_id], has_media=False)
    assert out == "see docs, ask  or Bob" and kept == []


def test_dropping_captions_keeps_the_text_of_text_messages() -> None:
    transforms = Transforms(drop_captions=True, footer="via {topic}")
    assert transforms.apply("caption", [], has_media=True, context=Context(topic="T"))[0] == "via T"
    assert transforms.apply("text", [], has_media=False, context=Context(topic="T"))[0] == "text\nvia T"


def test_bad_patterns_and_templates_are_refused_with_a_reason() -> None:
    for pattern, replacement in [("(", "x"), ("a", r"\1"), ("(?P<n>a)", r"\g<m>"), ("a", "\\q")]:
        try:
            Replacement.parse(pattern, replacement)
        except ValueError as exc:
            assert re.match(r"(is not a valid regular expression|has a replacement that does not fit)", str(exc))
        else:
            raise AssertionError(f"{pattern!r} => {replacement!r} accepted")
