"""The routes file (``routes.toml``): many routes from one deployment, read with the standard ``tomllib``.

Each ``[[routes]]`` table becomes the route keys a session's ``.env`` would hold (``source`` ->
``SOURCE_CHAT``, ``filters.kinds`` -> ``FILTER_KINDS``, ``transforms.header`` -> ``TRANSFORM_HEADER``, ...),
so one validator (``telepi/config.py``) judges both forms. Only the file's shape is judged here: unknown
keys, wrong types, names missing or used twice; every problem is one sentence naming the route and the key.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from telepi.errors import ConfigError, Problem

# The file's route keys -> the .env keys they stand for.
ROUTE_KEYS: dict[str, str] = {
    "source": "SOURCE_CHAT",
    "source_topic": "SOURCE_TOPIC",
    "target": "TARGET_CHAT",
    "target_topic": "TARGET_TOPIC",
    "mode": "MODE",
    "ordered": "ORDERED",
    "live": "LIVE",
    "sync_edits": "SYNC_EDITS",
    "sync_deletes": "SYNC_DELETES",
    "from_id": "FROM_ID",
    "to_id": "TO_ID",
    "auto_create_topics": "AUTO_CREATE_TOPICS",
}
FILTER_KEYS = [
    "kinds",
    "exclude_kinds",
    "include_words",
    "exclude_words",
    "include_regex",
    "exclude_regex",
    "since",
    "until",
    "ids",
    "senders",
    "exclude_senders",
    "forwarded",
    "min_size",
    "max_size",
]
TRANSFORM_KEYS = ["replace", "header", "footer", "remove", "drop_captions"]
# Every .env key a route may set -> its name in the file (how a problem names it).
FILE_NAME: dict[str, str] = {
    **{env: key for key, env in ROUTE_KEYS.items()},
    **{f"FILTER_{key.upper()}": f"filters.{key}" for key in FILTER_KEYS},
    **{f"TRANSFORM_{key.upper()}": f"transforms.{key}" for key in TRANSFORM_KEYS},
}
# Route keys the .env may hold as defaults for every route of the file; the others are each route's own.
DEFAULTABLE = frozenset({"MODE", "ORDERED", "LIVE", "SYNC_EDITS", "SYNC_DELETES", "AUTO_CREATE_TOPICS"})
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_OTHER_KEYS = ("name", "sessions", "filters", "transforms")


@dataclass(frozen=True)
class RouteEntry:
    """One ``[[routes]]`` table: its name, the sessions allowed on it (None: every session) and its keys
    as ``.env`` text."""

    name: str
    sessions: frozenset[str] | None
    values: dict[str, str]


def read_routes_file(path: Path) -> tuple[tuple[RouteEntry, ...], list[Problem]]:
    """The routes of ``path`` and every problem of its shape; raises :class:`ConfigError` if unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(
            [Problem("ROUTES_FILE", f"{path} cannot be read ({reason})", "make it a readable file")]
        ) from None
    return parse_routes(text, str(path))


def parse_routes(text: str, where: str) -> tuple[tuple[RouteEntry, ...], list[Problem]]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return (), [Problem("ROUTES_FILE", f"{where} is not valid TOML ({exc})", "fix the line it names")]
    problems: list[Problem] = []
    for key in data:
        if key != "routes":
            problems.append(_problem(where, None, key, "is not a telepi setting", _hint(key, ["routes"])))
    tables = data.get("routes")
    if not isinstance(tables, list) or not tables or not all(isinstance(t, dict) for t in tables):
        fix = "add one [[routes]] table per route, each with name, source and target"
        problems.append(Problem("routes", f"{where} holds no [[routes]] tables", fix))
        return (), problems
    entries: list[RouteEntry] = []
    seen: set[str] = set()
    for number, table in enumerate(tables, start=1):
        entry = _entry(where, number, table, problems)
        if entry is None:
            continue
        if entry.name in seen:
            problems.append(
                _problem(where, entry.name, "name", "is used by an earlier route", "give every route its own name")
            )
        seen.add(entry.name)
        entries.append(entry)
    return tuple(entries), problems


def _entry(where: str, number: int, table: dict[str, object], problems: list[Problem]) -> RouteEntry | None:
    name = table.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        label = f"#{number}"
        what = "is missing" if name is None else f"= {_shown(name)} cannot name a route"
        problems.append(_problem(where, label, "name", what, "use letters, digits, '.', '_' or '-'"))
        return None
    values: dict[str, str] = {}
    for key, value in table.items():
        if key in ("name", "filters", "transforms", "sessions"):
            continue
        if key not in ROUTE_KEYS:
            known = [*ROUTE_KEYS, *_OTHER_KEYS]
            problems.append(_problem(where, name, key, "is not a route key", _hint(key, known)))
            continue
        _put(where, name, key, ROUTE_KEYS[key], value, values, problems)
    for section, keys, prefix in (("filters", FILTER_KEYS, "FILTER_"), ("transforms", TRANSFORM_KEYS, "TRANSFORM_")):
        sub = table.get(section, {})
        if not isinstance(sub, dict):
            problems.append(_problem(where, name, section, "is not a table", f"write it as [routes.{section}]"))
            continue
        for key, value in sub.items():
            if key not in keys:
                fix = _hint(key, keys)
                problems.append(_problem(where, name, f"{section}.{key}", f"is not a {section[:-1]} key", fix))
                continue
            _put(where, name, f"{section}.{key}", prefix + key.upper(), value, values, problems)
    # A missing source or target is told by the .env's validator (config.py), in the file's names.
    return RouteEntry(name, _sessions(where, name, table.get("sessions"), problems), values)


def _put(
    where: str, route: str, key: str, env: str, value: object, values: dict[str, str], problems: list[Problem]
) -> None:
    """A TOML value as the .env text the shared validator reads."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int | str):
        text = str(value)
    elif isinstance(value, dt.datetime | dt.date):
        text = value.isoformat()
    elif isinstance(value, list) and all(isinstance(item, str | int) for item in value):
        text = ("\n" if env == "TRANSFORM_REPLACE" else ",").join(str(item) for item in value)
    else:
        fix = "write text, a number, true/false, a date or a list of texts"
        problems.append(_problem(where, route, key, f"= {_shown(value)} has the wrong type", fix))
        return
    values[env] = text


def _sessions(where: str, route: str, value: object, problems: list[Problem]) -> frozenset[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(s, str) and _NAME.fullmatch(s) for s in value):
        fix = 'list the SESSION_NAMEs allowed on the route, e.g. sessions = ["session1"], or remove the key'
        problems.append(_problem(where, route, "sessions", "is not a list of session names", fix))
        return None
    return frozenset(value)  # every item is a checked name


def route_problem(where: str, route: str, problem: Problem) -> Problem:
    """A problem the .env validator found in a route's keys, told in the file's names."""
    what, fix = problem.what, problem.fix
    for env in sorted(FILE_NAME, key=len, reverse=True):
        what, fix = what.replace(env, FILE_NAME[env]), fix.replace(env, FILE_NAME[env])
    return Problem(
        f"routes.{route}.{FILE_NAME.get(problem.key, problem.key)}", f"{where}: route {route!r}: {what}", fix
    )


def _problem(where: str, route: str | None, key: str, what: str, fix: str) -> Problem:
    place = f"route {route!r}: " if route is not None else ""
    return Problem(f"routes.{route}.{key}", f"{where}: {place}{key} {what}", fix)


def _hint(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    return f"did you mean {close[0]}" if close else f"use one of {', '.join(known)}"


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:80]}…"
