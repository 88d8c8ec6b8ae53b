"""A route's filters: each check, its reason, and the order in which they are asked."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from telepi.rules.filters import Facts, Filters, parse_sender, parse_size

DAY = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def facts(**overrides: object) -> Facts:
    values: dict[str, object] = {"id": 10, "kind": "photo", "text": "Hello World 😀", "date": DAY}
    values.update(overrides)
    return Facts(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("filters", "message", "reason"),
    [
        (Filters(), facts(), None),
        (Filters(kinds=frozenset({"photo"})), facts(kind="sticker"), "filtered: kind=sticker"),
        (Filters(exclude_kinds=frozenset({"service"})), facts(kind="service"), "filtered: kind=service"),
        (Filters(since=datetime(2024, 6, 2, tzinfo=UTC)), facts(), "filtered: date"),
        (Filters(until=DAY), facts(), "filtered: date"),  # until is exclusive
        (Filters(since=DAY), facts(), None),  # since is inclusive
        (Filters(min_id=11), facts(), "filtered: id"),
        (Filters(max_id=9), facts(), "filtered: id"),
        (Filters(senders=frozenset({"ann"})), facts(sender_username="Ann"), None),
        (Filters(senders=frozenset({"42"})), facts(sender_id=7), "filtered: sender"),
        (Filters(exclude_senders=frozenset({"7"})), facts(sender_id=7), "filtered: sender"),
        (Filters(forwarded="exclude"), facts(forwarded=True), "filtered: forwarded"),
        (Filters(forwarded="only"), facts(), "filtered: not_forwarded"),
        (Filters(max_size=100), facts(size=101), "filtered: size"),
        (Filters(min_size=100), facts(size=None), None),  # no file: the size range does not apply
        (Filters(exclude_words=("world",)), facts(), "filtered: exclude_word=world"),
        (Filters(exclude_regex=re.compile(r"😀$")), facts(), "filtered: exclude_regex=😀$"),
        (Filters(include_words=("nope",)), facts(), "filtered: include"),
        (Filters(include_words=("nope",), include_regex=re.compile("Hel+o")), facts(), None),
        (Filters(include_regex=re.compile("x")), facts(text=""), "filtered: include"),
        # the first failing check names the reason: date before kind before text
        (
            Filters(kinds=frozenset({"video"}), since=datetime(2025, 1, 1, tzinfo=UTC), exclude_words=("hello",)),
            facts(),
            "filtered: date",
        ),
    ],
)
def test_each_check_names_its_reason(filters: Filters, message: Facts, reason: str | None) -> None:
    assert filters.reason(message) == reason


def test_active_only_when_something_is_set() -> None:
    assert not Filters().active
    assert Filters(forwarded="only").active


def test_sizes_and_senders_parse_or_say_why_not() -> None:
    assert parse_size("10MB") == 10_000_000 and parse_size("512KiB") == 524_288 and parse_size("2000") == 2000
    assert parse_sender("@Some_Name") == "some_name" and parse_sender("-1001234") == "-1001234"
    for bad in ("ten", "5 parsecs"):
        with pytest.raises(ValueError, match="is not a size"):
            parse_size(bad)
    with pytest.raises(ValueError, match="neither a numeric id nor a @username"):
        parse_sender("a b")
