"""A route's text transforms: what a copy's text or caption becomes, entities carried by ``entities.py``.

Steps, in this order: drop the caption (media only), remove links / mentions / hashtags, the regular
expression replacements one after another (Python ``re``; each sees the previous one's result), trim the
whitespace Telegram would trim, then add the header and footer (plain text: they carry no entities and
no replacement touches them). Removing ``links`` deletes a URL written out in the text and takes the link off
a text link (its words stay); ``mentions`` deletes an @username and takes the user link off a mention by id
(the name stays); ``hashtags`` deletes each #hashtag.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from telethon.tl import types

from telepi.rules.entities import Span, apply_spans, utf16_length, utf16_offsets

REMOVABLE = ("links", "mentions", "hashtags")
PLACEHOLDERS = ("source_link", "date", "topic", "author")
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")

# What each removal deletes from the text, and which entities it only unlinks (their words stay).
_DELETED: Mapping[str, tuple[type, ...]] = {
    "links": (types.MessageEntityUrl,),
    "mentions": (types.MessageEntityMention,),
    "hashtags": (types.MessageEntityHashtag,),
}
_UNLINKED: Mapping[str, tuple[type, ...]] = {
    "links": (types.MessageEntityTextUrl,),
    "mentions": (types.MessageEntityMentionName, types.InputMessageEntityMentionName),
    "hashtags": (),
}


@dataclass(frozen=True)
class Replacement:
    pattern: re.Pattern[str]
    replacement: str  # a re template: \1 and \g<name> name the match's groups

    @classmethod
    def parse(cls, pattern: str, replacement: str) -> Replacement:
        """Raises ValueError with a short reason when the pattern or its template is not valid."""
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"is not a valid regular expression ({exc})") from None
        try:  # re checks the template against the pattern's groups before it looks for a match
            compiled.sub(replacement, "")
        except (re.error, IndexError) as exc:
            raise ValueError(f"has a replacement that does not fit its pattern ({exc})") from None
        return cls(compiled, replacement)


@dataclass(frozen=True)
class Context:
    """What a header or footer template may name about the source message."""

    source_link: str = ""
    date: str = ""
    topic: str = ""
    author: str = ""


def check_template(template: str) -> str:
    """``template`` when it names only known placeholders (``{{`` and ``}}`` are literal braces)."""
    for match in _PLACEHOLDER.finditer(template):
        if match.group(0) in ("{{", "}}"):
            continue
        name = match.group(1)
        if name is None:
            raise ValueError("has a lone brace (write {{ or }} for a literal one)")
        if name not in PLACEHOLDERS:
            raise ValueError(f"names {{{name}}}, which is not one of {', '.join('{' + p + '}' for p in PLACEHOLDERS)}")
    return template


def render(template: str, context: Context) -> str:
    def one(match: re.Match[str]) -> str:
        token = match.group(0)
        if token in ("{{", "}}"):
            return token[0]
        name = match.group(1)
        return str(getattr(context, name)) if name in PLACEHOLDERS else token

    return _PLACEHOLDER.sub(one, template)


@dataclass(frozen=True)
class Transforms:
    replacements: tuple[Replacement, ...] = ()
    header: str = ""
    footer: str = ""
    remove: frozenset[str] = frozenset()
    drop_captions: bool = False

    @property
    def active(self) -> bool:
        return bool(self.replacements or self.header or self.footer or self.remove or self.drop_captions)

    def apply(
        self, text: str, entities: Sequence[Any] | None, *, has_media: bool, context: Context = Context()
    ) -> tuple[str, list[Any]]:
        """The copy's text and entities; the given entities are never changed."""
        current = list(entities or [])
        if not self.active:
            return text, current
        if has_media and self.drop_captions:
            text, current = "", []
        for what in sorted(self.remove):
            text, current = _remove(text, current, what)
        for replacement in self.replacements:
            text, current = replace(text, current, replacement)
        text, current = trim(text, current)
        header = render(self.header, context)
        footer = render(self.footer, context)
        spans = []
        if header:
            spans.append(Span(0, 0, header + ("\n" if text else "")))
        if footer:
            end = utf16_length(text)
            spans.append(Span(end, end, ("\n" if text or header else "") + footer))
        return apply_spans(text, current, spans) if spans else (text, current)


def replace(text: str, entities: Sequence[Any], replacement: Replacement) -> tuple[str, list[Any]]:
    """Every match of the pattern replaced (as ``re.sub`` does), entities carried over."""
    offsets = utf16_offsets(text)
    spans = [
        Span(offsets[m.start()], offsets[m.end()], m.expand(replacement.replacement))
        for m in replacement.pattern.finditer(text)
    ]
    return apply_spans(text, entities, spans)


def trim(text: str, entities: Sequence[Any]) -> tuple[str, list[Any]]:
    """Leading and trailing whitespace removed, as Telegram removes it from a sent message."""
    total = utf16_length(text)
    if not text.strip():
        return ("", []) if text else (text, list(entities))
    lead, tail = total - utf16_length(text.lstrip()), utf16_length(text.rstrip())
    spans = [span for span in (Span(0, lead, ""), Span(tail, total, "")) if span.end > span.start]
    return apply_spans(text, entities, spans) if spans else (text, list(entities))


def _remove(text: str, entities: list[Any], what: str) -> tuple[str, list[Any]]:
    kept = [e for e in entities if not isinstance(e, _UNLINKED[what])]
    spans: list[Span] = []
    deleted: list[Any] = [e for e in kept if isinstance(e, _DELETED[what])]
    for entity in sorted(deleted, key=lambda e: int(e.offset)):
        start, end = int(entity.offset), int(entity.offset) + int(entity.length)
        if spans and start < spans[-1].end:  # overlapping entities of one kind: one span
            spans[-1] = Span(spans[-1].start, max(end, spans[-1].end), "")
        else:
            spans.append(Span(start, end, ""))
    return apply_spans(text, kept, spans) if spans else (text, kept)
