"""FILTER_* and TRANSFORM_* keys: read into the route's Filters and Transforms, bad values refused with exit 78
in one sentence naming the key."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from telepi.config import load_settings
from telepi.rules import Filters, Transforms
from tests.unit.test_config import GOOD_ENV, problems_of, run_cli, write_session


def test_no_rule_keys_means_no_filters_and_no_transforms(tmp_path: Path) -> None:
    settings = load_settings(write_session(tmp_path, GOOD_ENV), {})
    assert settings.filters == Filters() and settings.transforms == Transforms()


def test_every_rule_key_is_read(tmp_path: Path) -> None:
    directory = write_session(tmp_path, GOOD_ENV)
    (directory / ".env").write_text(
        (directory / ".env").read_text()
        + "FILTER_KINDS=Photo, video\nFILTER_EXCLUDE_KINDS=sticker\nFILTER_INCLUDE_WORDS=a, b c\n"
        + "FILTER_EXCLUDE_WORDS=spam\nFILTER_INCLUDE_REGEX=^x\nFILTER_EXCLUDE_REGEX=(?i)ad\\b\n"
        + "FILTER_SINCE=2024-01-01\nFILTER_UNTIL=2024-01-31\nFILTER_IDS=10-\nFILTER_SENDERS=@Annie_B,42\n"
        + "FILTER_EXCLUDE_SENDERS=-1001\nFILTER_FORWARDED=exclude\nFILTER_MIN_SIZE=1KiB\nFILTER_MAX_SIZE=2MB\n"
        + 'TRANSFORM_REPLACE="(\\d+) EUR => \\1 €\\nspam => "\n'
        + "TRANSFORM_HEADER=From {author}\nTRANSFORM_FOOTER={source_link} {{x}}\nTRANSFORM_REMOVE=Links,hashtags\n"
        + "TRANSFORM_DROP_CAPTIONS=yes\n"
    )
    settings = load_settings(directory, {})
    f = settings.filters
    assert f.kinds == {"photo", "video"} and f.exclude_kinds == {"sticker"}
    assert f.include_words == ("a", "b c") and f.exclude_words == ("spam",)
    assert f.include_regex is not None and f.include_regex.pattern == "^x"
    assert f.exclude_regex is not None and f.exclude_regex.pattern == "(?i)ad\\b"
    assert f.since == datetime(2024, 1, 1, tzinfo=UTC) and f.until == datetime(2024, 2, 1, tzinfo=UTC)
    assert (f.min_id, f.max_id) == (10, None)
    assert f.senders == {"annie_b", "42"} and f.exclude_senders == {"-1001"}
    assert (f.forwarded, f.min_size, f.max_size) == ("exclude", 1024, 2_000_000)
    t = settings.transforms
    assert [(r.pattern.pattern, r.replacement) for r in t.replacements] == [("(\\d+) EUR", "\\1 €"), ("spam", "")]
    assert (t.header, t.footer) == ("From {author}", "{source_link} {{x}}")
    assert t.remove == {"links", "hashtags"} and t.drop_captions


@pytest.mark.parametrize(
    ("key", "value", "sentence"),
    [
        ("FILTER_KINDS", "photo,selfie", "names unknown kinds (selfie)"),
        ("FILTER_EXCLUDE_REGEX", "(unclosed", "is not a valid Python regular expression"),
        ("FILTER_SINCE", "yesterday", "is not a date or time"),
        ("FILTER_IDS", "20-10", "is not a range of ids"),
        ("FILTER_SENDERS", "a b", "neither a numeric id nor a @username"),
        ("FILTER_FORWARDED", "sometimes", "is not any, only or exclude"),
        ("FILTER_MAX_SIZE", "big", "is not a size"),
        ("TRANSFORM_REPLACE", "no arrow here", "line 1 is not 'pattern => replacement'"),
        ("TRANSFORM_REPLACE", "(a => \\2", "line 1 is not a valid regular expression"),
        ("TRANSFORM_REPLACE", "(a) => \\2", "line 1 has a replacement that does not fit its pattern"),
        ("TRANSFORM_HEADER", "by {user}", "names {user}"),
        ("TRANSFORM_FOOTER", "a } b", "has a lone brace"),
        ("TRANSFORM_REMOVE", "links,emoji", "names something it cannot remove"),
        ("TRANSFORM_DROP_CAPTIONS", "maybe", "is not a boolean"),
    ],
)
def test_bad_values_are_refused_naming_the_key(tmp_path: Path, key: str, value: str, sentence: str) -> None:
    message = problems_of(write_session(tmp_path, {**GOOD_ENV, key: value}))
    assert key in message and sentence in message


def test_transforms_need_a_mode_that_sends_the_text_again(tmp_path: Path) -> None:
    message = problems_of(write_session(tmp_path, {**GOOD_ENV, "MODE": "forward", "TRANSFORM_FOOTER": "x"}))
    assert "MODE=forward cannot apply the TRANSFORM_ keys" in message


def test_cli_refuses_a_bad_filter_with_exit_78_and_no_traceback(tmp_path: Path) -> None:
    directory = write_session(tmp_path, {**GOOD_ENV, "FILTER_INCLUDE_REGEX": "[", "FILTER_MIN_SIZE": "lots"})
    result = run_cli("run", str(directory))
    assert result.returncode == 78
    assert "Traceback" not in result.stderr
    assert re.search(r"FILTER_INCLUDE_REGEX=.*regular expression", result.stderr)
    assert "FILTER_MIN_SIZE='lots' is not a size" in result.stderr
