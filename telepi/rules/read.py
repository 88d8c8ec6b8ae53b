"""Filters and transforms from ``FILTER_*`` / ``TRANSFORM_*`` keys (a session's ``.env`` today).

``raw(key)`` gives a key's text ("" when unset); ``problem(key, what, fix)`` records one sentence naming the
key, and reading goes on so that every problem is reported at once.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from telepi.rules.filters import FORWARDED, KINDS, Filters, Forwarded, parse_sender, parse_size
from telepi.rules.transforms import REMOVABLE, Replacement, Transforms, check_template

Raw = Callable[[str], str]
Report = Callable[[str, str, str], None]
ARROW = "=>"


def read_filters(raw: Raw, problem: Report) -> Filters:
    low_id, high_id = _ids(raw, problem)
    return Filters(
        kinds=_kinds(raw, problem, "FILTER_KINDS") or None,
        exclude_kinds=_kinds(raw, problem, "FILTER_EXCLUDE_KINDS"),
        include_words=_words(raw("FILTER_INCLUDE_WORDS")),
        exclude_words=_words(raw("FILTER_EXCLUDE_WORDS")),
        include_regex=_regex(raw, problem, "FILTER_INCLUDE_REGEX"),
        exclude_regex=_regex(raw, problem, "FILTER_EXCLUDE_REGEX"),
        since=_time(raw, problem, "FILTER_SINCE", end_of_day=False),
        until=_time(raw, problem, "FILTER_UNTIL", end_of_day=True),
        min_id=low_id,
        max_id=high_id,
        senders=_senders(raw, problem, "FILTER_SENDERS"),
        exclude_senders=_senders(raw, problem, "FILTER_EXCLUDE_SENDERS"),
        forwarded=_forwarded(raw, problem),
        min_size=_size(raw, problem, "FILTER_MIN_SIZE"),
        max_size=_size(raw, problem, "FILTER_MAX_SIZE"),
    )


def read_transforms(raw: Raw, problem: Report) -> Transforms:
    header, footer = _template(raw, problem, "TRANSFORM_HEADER"), _template(raw, problem, "TRANSFORM_FOOTER")
    remove = frozenset(_words(raw("TRANSFORM_REMOVE").lower()))
    if remove - set(REMOVABLE):
        problem("TRANSFORM_REMOVE", "names something it cannot remove", "list links, mentions and/or hashtags")
        remove &= set(REMOVABLE)
    drop = raw("TRANSFORM_DROP_CAPTIONS").lower()
    if drop not in ("", "true", "false", "1", "0", "yes", "no", "on", "off"):
        problem("TRANSFORM_DROP_CAPTIONS", "is not a boolean", "set TRANSFORM_DROP_CAPTIONS to true or false")
    return Transforms(
        replacements=_replacements(raw, problem),
        header=header,
        footer=footer,
        remove=remove,
        drop_captions=drop in ("true", "1", "yes", "on"),
    )


def _words(text: str) -> tuple[str, ...]:
    return tuple(word.strip() for word in text.split(",") if word.strip())


def _kinds(raw: Raw, problem: Report, key: str) -> frozenset[str]:
    kinds = frozenset(word.lower() for word in _words(raw(key)))
    unknown = sorted(kinds - set(KINDS))
    if unknown:
        problem(key, f"names unknown kinds ({', '.join(unknown)})", f"use only {', '.join(KINDS)}")
    return kinds & set(KINDS)


def _regex(raw: Raw, problem: Report, key: str) -> re.Pattern[str] | None:
    text = raw(key)
    if not text:
        return None
    try:
        return re.compile(text)
    except re.error as exc:
        problem(key, f"is not a valid Python regular expression ({exc})", f"fix the pattern in {key}")
        return None


def _time(raw: Raw, problem: Report, key: str, *, end_of_day: bool) -> datetime | None:
    text = raw(key)
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        problem(key, "is not a date or time", f"write {key} as 2024-01-01 or 2024-01-01T08:00 (UTC)")
        return None
    if end_of_day and len(text) == 10:  # a date alone: up to the end of that day
        moment += timedelta(days=1)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _ids(raw: Raw, problem: Report) -> tuple[int | None, int | None]:
    text = raw("FILTER_IDS")
    if not text:
        return None, None
    match = re.fullmatch(r"\s*(\d*)\s*-\s*(\d*)\s*", text)
    low = int(match.group(1)) if match and match.group(1) else None
    high = int(match.group(2)) if match and match.group(2) else None
    if match is None or (low is None and high is None) or (low is not None and high is not None and low > high):
        problem("FILTER_IDS", "is not a range of ids", "write FILTER_IDS as 100-250, 100- or -250")
        return None, None
    return low, high


def _senders(raw: Raw, problem: Report, key: str) -> frozenset[str]:
    found = set()
    for word in _words(raw(key)):
        try:
            found.add(parse_sender(word))
        except ValueError as exc:
            problem(key, str(exc), f"list numeric ids or @usernames in {key}, comma-separated")
    return frozenset(found)


def _forwarded(raw: Raw, problem: Report) -> Forwarded:
    text = raw("FILTER_FORWARDED").lower() or "any"
    for choice in FORWARDED:
        if text == choice:
            return choice
    problem("FILTER_FORWARDED", "is not any, only or exclude", "set FILTER_FORWARDED to any, only or exclude")
    return "any"


def _size(raw: Raw, problem: Report, key: str) -> int | None:
    text = raw(key)
    if not text:
        return None
    try:
        return parse_size(text)
    except ValueError as exc:
        problem(key, str(exc), f"set {key} to a size such as 100KB or 50MiB")
        return None


def _template(raw: Raw, problem: Report, key: str) -> str:
    try:
        return check_template(raw(key))
    except ValueError as exc:
        problem(key, str(exc), f"use only {{source_link}}, {{date}}, {{topic}} and {{author}} in {key}")
        return ""


def _replacements(raw: Raw, problem: Report) -> tuple[Replacement, ...]:
    """One ``pattern => replacement`` per line; the pattern ends at the first ``=>`` (write ``=\\>`` for a
    literal one), one space on each side of it is part of the syntax, and an empty replacement deletes."""
    found = []
    for number, line in enumerate(raw("TRANSFORM_REPLACE").splitlines(), start=1):
        if not line.strip():
            continue
        pattern, arrow, replacement = line.partition(ARROW)
        pattern = pattern.removesuffix(" ")
        replacement = replacement.removeprefix(" ")
        if not arrow or not pattern:
            problem("TRANSFORM_REPLACE", f"line {number} is not 'pattern => replacement'", "write one rule per line")
            continue
        try:
            found.append(Replacement.parse(pattern, replacement))
        except ValueError as exc:
            problem("TRANSFORM_REPLACE", f"line {number} {exc}", f"fix line {number} of TRANSFORM_REPLACE")
    return tuple(found)
