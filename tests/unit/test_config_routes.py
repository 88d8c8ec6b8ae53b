"""The routes file: a good one becomes one Settings per route; each kind of mistake is one sentence naming
the route and the key, all at once, exit 78 through the CLI."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from telepi.config import load_settings
from telepi.errors import EX_CONFIG, ConfigError
from tests.unit.test_config import API_HASH, run_cli, write_session

ACCOUNT = {"TG_API_ID": "12345", "TG_API_HASH": API_HASH, "MODE": "copy", "ORDERED": "topic"}
GOOD = """
[[routes]]
name = "forum"
source = -1001111111111
target = "@forum_copy"

[[routes]]
name = "photos"
source = "@newsroom"
target = "@photos_copy"
sessions = ["session2"]
ordered = false
live = false
[routes.filters]
kinds = ["photo"]
since = 2024-01-01
exclude_regex = "(?i)advert"

[[routes]]
name = "group"
source = "@newsroom"
target = "-1002222222222"
mode = "auto"
[routes.transforms]
replace = ["colour => color", "foo =>"]
header = "from {source_link}"
footer = "-- end"
"""


def deployment(tmp_path: Path, routes: str, env: dict[str, str] | None = None) -> Path:
    directory = write_session(tmp_path, env if env is not None else ACCOUNT)
    (tmp_path / "shared").mkdir(exist_ok=True)
    (tmp_path / "shared" / "routes.toml").write_text(routes)
    return directory


def problems(directory: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(directory, {})
    return [problem.sentence() for problem in caught.value.problems]


def test_a_good_file_gives_one_settings_per_route(tmp_path: Path) -> None:
    settings = load_settings(deployment(tmp_path, GOOD), {})
    forum, photos, group = settings.all_routes
    assert [r.route_name for r in settings.all_routes] == ["forum", "photos", "group"]
    assert settings.route_name == "forum" and settings.routes_file == (tmp_path / "shared" / "routes.toml")
    assert forum.source_chat.value == -1001111111111 and forum.target_chat.value == "forum_copy"
    # The .env's mode and order are defaults; a route's own keys win.
    assert (forum.mode, forum.ordered_by_topic, group.mode) == ("copy", True, "auto")
    assert (photos.ordered, photos.live, photos.route_sessions) == (False, False, frozenset({"session2"}))
    assert photos.filters.kinds == frozenset({"photo"})
    assert photos.filters.since == dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    assert photos.filters.exclude_regex is not None and photos.filters.exclude_regex.pattern == "(?i)advert"
    assert [(r.pattern.pattern, r.replacement) for r in group.transforms.replacements] == [
        ("colour", "color"),
        ("foo", ""),
    ]
    assert (group.transforms.header, group.transforms.footer) == ("from {source_link}", "-- end")
    assert not forum.filters.active and not forum.transforms.active
    # Who works what: a route naming sessions is worked only by them.
    assert [settings.works(r) for r in settings.all_routes] == [True, False, True]


def test_without_a_routes_file_the_env_is_the_one_route(tmp_path: Path) -> None:
    env = {**ACCOUNT, "SOURCE_CHAT": "@alpha", "TARGET_CHAT": "@bravo"}
    settings = load_settings(write_session(tmp_path, env), {})
    assert settings.routes == () and settings.all_routes == (settings,) and settings.route_name == ""


def test_routes_file_key_names_another_file(tmp_path: Path) -> None:
    (tmp_path / "elsewhere.toml").write_text(GOOD)
    directory = write_session(tmp_path, {**ACCOUNT, "ROUTES_FILE": "../elsewhere.toml"})
    assert len(load_settings(directory, {}).all_routes) == 3
    directory = write_session(tmp_path, {**ACCOUNT, "ROUTES_FILE": "../missing.toml"}, name="session2")
    [sentence] = problems(directory)
    assert sentence.startswith("ROUTES_FILE='../missing.toml' names no file") and "remove ROUTES_FILE" in sentence


def test_an_env_route_beside_a_routes_file_is_refused(tmp_path: Path) -> None:
    directory = deployment(tmp_path, GOOD, {**ACCOUNT, "SOURCE_CHAT": "@alpha", "TARGET_CHAT": "@bravo"})
    [sentence] = problems(directory)
    assert "sets SOURCE_CHAT, TARGET_CHAT while the routes file" in sentence
    assert "remove SOURCE_CHAT, TARGET_CHAT from the .env" in sentence


ROUTE = "[[routes]]\nname = 'r'\nsource = '@alpha'\ntarget = '@bravo'\n"
BAD = [
    ("not toml [", "is not valid TOML"),
    ("other = 1\n[[routes]]\nname = 'r'\nsource = '@alpha'\ntarget = '@bravo'", "other is not a telepi setting"),
    ("", "holds no [[routes]] tables"),
    ("[[routes]]\nsource = '@alpha'\ntarget = '@bravo'", "route '#1': name is missing"),
    ("[[routes]]\nname = 'a b'\nsource = '@alpha'\ntarget = '@bravo'", "route '#1': name = 'a b' cannot name a route"),
    ("[[routes]]\nname = 'r'\ntarget = '@bravo'", "route 'r': source is missing"),
    (
        ROUTE + "sorce = 1",
        "route 'r': sorce is not a route key: did you mean source",
    ),
    (
        ROUTE + "[routes.filters]\nkind = ['photo']",
        "route 'r': filters.kind is not a filter key: did you mean kinds",
    ),
    (ROUTE + "filters = 3", "route 'r': filters is not a table"),
    (
        ROUTE + "live = {a = 1}",
        "route 'r': live = {'a': 1} has the wrong type",
    ),
    (
        ROUTE + "sessions = 'session1'",
        "route 'r': sessions is not a list of session names",
    ),
    (
        ROUTE + "[[routes]]\nname = 'r'\nsource = '@charlie'\ntarget = '@delta'",
        "route 'r': name is used by an earlier route",
    ),
    # What the .env's validator finds is told in the file's names.
    (
        ROUTE + "mode = 'fast'",
        "route 'r': mode='fast' is not a transfer mode: set mode to auto, forward, copy or reupload",
    ),
    ("[[routes]]\nname = 'r'\nsource = 'not a chat!'\ntarget = '@bravo'", "route 'r': source='not a chat!'"),
    ("[[routes]]\nname = 'r'\nsource = '@alpha'\ntarget = '@alpha'", "route 'r': source and target are the same chat"),
    (
        ROUTE + "[routes.filters]\nkinds = ['photo', 'hologram']",
        "route 'r': filters.kinds='photo,hologram' names unknown kinds (hologram)",
    ),
    (
        ROUTE + "[routes.filters]\nexclude_regex = '(unclosed'",
        "route 'r': filters.exclude_regex='(unclosed' is not a valid Python regular expression",
    ),
    (
        ROUTE + "mode = 'forward'\n[routes.transforms]\nheader = 'x'",
        "route 'r': mode=forward cannot apply the TRANSFORM_ keys",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD, ids=[expected for _, expected in BAD])
def test_each_mistake_is_one_sentence_naming_route_and_key(tmp_path: Path, text: str, expected: str) -> None:
    found = problems(deployment(tmp_path, text))
    assert len(found) == 1, found
    assert expected in found[0], found[0]
    assert found[0].startswith(str(tmp_path / "shared" / "routes.toml")) or found[0].startswith("routes")


def test_every_route_is_judged_and_account_problems_are_told_once(tmp_path: Path) -> None:
    text = "\n".join(
        f"[[routes]]\nname = 'r{n}'\nsource = '@source{n}'\ntarget = '@target{n}'\nmode = 'fast{n}'" for n in range(3)
    )
    found = problems(deployment(tmp_path, text, {"TG_API_HASH": API_HASH}))
    assert sum("TG_API_ID is missing" in p for p in found) == 1
    assert [re.search(r"route '(r\d)': mode", p).group(1) for p in found if "mode=" in p] == ["r0", "r1", "r2"]  # type: ignore[union-attr]


def test_routes_check_exits_78_with_the_sentences(tmp_path: Path) -> None:
    directory = deployment(tmp_path, ROUTE + "mode = 'fast'")
    result = run_cli("routes", "check", str(directory))
    assert result.returncode == EX_CONFIG, result
    assert "route 'r': mode='fast' is not a transfer mode" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    (tmp_path / "shared" / "routes.toml").write_text(GOOD)
    result = run_cli("routes", "check", str(directory))
    assert result.returncode == 0, result.stderr
    assert "3 routes" in result.stdout and "photos" in result.stdout
