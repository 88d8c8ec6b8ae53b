"""Session configuration: a session directory's ``.env`` (overridden by the process environment),
validated once into a frozen :class:`Settings`.

Every problem is collected, so one run tells the user everything that is wrong, and each problem is
one sentence naming the key and the fix. Secret values are never echoed.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, TypeVar

from dotenv import dotenv_values

from telepi.chatref import ChatRef, parse_chat
from telepi.errors import ConfigError, Problem
from telepi.routes import DEFAULTABLE, FILE_NAME, read_routes_file, route_problem
from telepi.rules import Filters, Transforms
from telepi.rules.read import read_filters, read_transforms

Mode = Literal["auto", "forward", "copy", "reupload"]
MODES: tuple[Mode, ...] = ("auto", "forward", "copy", "reupload")

# Pacing with nothing learned, in seconds per message (README, *Rate limits*): 1.9 s is 1,895 messages an
# hour, 5% under the shortest run reported before a long FLOOD_WAIT (2,000 in a row; tginfo/Telegram-Limits#289).
SEND_INTERVAL_DEFAULT = 1.9
# About 3,000 messages (30 reads of 100) per 30 s are reported before FLOOD_WAIT (Telethon#565): 30 reads take 31.5 s.
READ_INTERVAL_DEFAULT = 1.05
SECRET_KEYS = frozenset({"TG_API_HASH", "TG_PHONE", "TG_PASSWORD", "SHARED_DB_URL"})
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
_SESSION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_API_HASH = re.compile(r"[0-9a-fA-F]{32}")

# key -> (default as written in .env, one-line meaning); the README table and .env.example follow this.
KEYS: dict[str, tuple[str | None, str]] = {
    "TG_API_ID": (None, "API id from https://my.telegram.org (required)"),
    "TG_API_HASH": (None, "API hash from https://my.telegram.org (required, secret)"),
    "SESSION_NAME": ("<directory name>", "names the .session file and owns this session's leases"),
    "SOURCE_CHAT": (None, "chat to copy from: -100… id, @username or t.me link (required without a routes file)"),
    "SOURCE_TOPIC": ("", "clone only this forum topic id"),
    "TARGET_CHAT": (None, "chat to copy into: -100… id, @username or t.me link (required without a routes file)"),
    "TARGET_TOPIC": ("", "put everything into this topic id of the target"),
    "AUTO_CREATE_TOPICS": ("true", "mirror source topics into the target by title"),
    "SHARED_DB_PATH": ("../shared/checkpoint.db", "shared checkpoint, relative to the session directory"),
    "SHARED_DB_URL": ("", "postgresql://… checkpoint shared across hosts instead of the file (secret)"),
    "ROUTES_FILE": ("", "routes file (TOML) listing many routes; default routes.toml beside SHARED_DB_PATH's file"),
    "MODE": ("auto", "auto | forward | copy | reupload"),
    "ORDERED": ("true", "true: source order across the chat | topic: within each forum topic | false"),
    "LIVE": ("true", "keep following new messages after the history is copied"),
    "SYNC_EDITS": ("true", "apply source edits to the copies"),
    "SYNC_DELETES": ("false", "delete copies when the source message is deleted"),
    "FROM_ID": ("", "first source message id to copy"),
    "TO_ID": ("", "last source message id to copy"),
    "LEASE_SECONDS": ("120", "how long a claimed message stays leased without a heartbeat"),
    "MAX_ATTEMPTS": ("5", "attempts before a message is marked failed"),
    "SEND_INTERVAL": (
        str(SEND_INTERVAL_DEFAULT),
        "least seconds per message sent or forwarded by this account until a refusal teaches a slower pace",
    ),
    "READ_INTERVAL": (
        str(READ_INTERVAL_DEFAULT),
        "least seconds between two history reads of this account until a refusal teaches",
    ),
    "LOG_LEVEL": ("INFO", "DEBUG | INFO | WARNING | ERROR"),
    "WEB_PORT": ("", "serve the read-only status page on 127.0.0.1:PORT while this session runs (one session a host)"),
    "FILTER_KINDS": ("", "copy only these kinds: text,photo,video,document,audio,voice,round,sticker,…"),
    "FILTER_EXCLUDE_KINDS": ("", "never copy these kinds (same names as FILTER_KINDS)"),
    "FILTER_INCLUDE_WORDS": ("", "copy only messages whose text or caption holds one of these words (comma-separated)"),
    "FILTER_EXCLUDE_WORDS": ("", "never copy messages whose text or caption holds one of these words"),
    "FILTER_INCLUDE_REGEX": ("", "copy only messages whose text or caption matches this Python regular expression"),
    "FILTER_EXCLUDE_REGEX": ("", "never copy messages whose text or caption matches this Python regular expression"),
    "FILTER_SINCE": ("", "copy only messages sent at or after this UTC date or time (2024-01-01 or 2024-01-01T08:00)"),
    "FILTER_UNTIL": ("", "copy only messages sent before this UTC time (a date: up to the end of that day)"),
    "FILTER_IDS": ("", "copy only source ids in this range, e.g. 100-250 (the others are recorded as filtered)"),
    "FILTER_SENDERS": ("", "copy only messages from these senders: numeric ids or @usernames, comma-separated"),
    "FILTER_EXCLUDE_SENDERS": ("", "never copy messages from these senders"),
    "FILTER_FORWARDED": ("any", "any | only (forwarded messages only) | exclude (no forwarded messages)"),
    "FILTER_MIN_SIZE": ("", "copy files only from this size, e.g. 100KB (messages without a file pass)"),
    "FILTER_MAX_SIZE": ("", "copy files only up to this size, e.g. 50MiB (messages without a file pass)"),
    "TRANSFORM_REPLACE": ("", "regular expression replacements, one 'pattern => replacement' per line"),
    "TRANSFORM_HEADER": ("", "text put above every copy: {source_link} {date} {topic} {author}"),
    "TRANSFORM_FOOTER": ("", "text put below every copy: {source_link} {date} {topic} {author}"),
    "TRANSFORM_REMOVE": ("", "remove from texts: links, mentions, hashtags (comma-separated)"),
    "TRANSFORM_DROP_CAPTIONS": ("false", "send media without the source's caption"),
    "TG_DC": ("", "test only: host:port of a local Telegram (the sandbox)"),
    "TG_SERVER_KEY": ("", "test only: PEM public key of that server"),
}

T = TypeVar("T")


@dataclass(frozen=True)
class Settings:
    session_dir: Path
    api_id: int
    api_hash: str = field(repr=False)
    session_name: str
    source_chat: ChatRef
    source_topic: int | None
    target_chat: ChatRef
    target_topic: int | None
    auto_create_topics: bool
    shared_db_path: Path
    mode: Mode
    ordered: bool
    live: bool
    sync_edits: bool
    sync_deletes: bool
    from_id: int | None
    to_id: int | None
    lease_seconds: int
    max_attempts: int
    send_interval: float
    read_interval: float
    log_level: str
    dc_address: tuple[str, int] | None
    server_key_path: Path | None
    warnings: tuple[str, ...] = ()
    ordered_by_topic: bool = False  # ORDERED=topic: order kept within each source topic, topics run side by side
    shared_db_url: str = field(default="", repr=False)  # may hold a password: never shown
    filters: Filters = field(default_factory=Filters)
    transforms: Transforms = field(default_factory=Transforms)
    web_port: int | None = None  # WEB_PORT: the status page beside the clone, on the loopback
    route_name: str = ""  # the route's name in the routes file ("" for the .env's one route)
    route_sessions: frozenset[str] | None = None  # the sessions the routes file allows on it (None: all)
    routes: tuple[Settings, ...] = ()  # every route of the routes file, this one first; () for the .env form
    routes_file: Path | None = None

    @property
    def all_routes(self) -> tuple[Settings, ...]:
        return self.routes or (self,)

    def works(self, route: Settings) -> bool:
        return route.route_sessions is None or self.session_name in route.route_sessions

    @property
    def session_file(self) -> Path:
        return self.session_dir / f"{self.session_name}.session"

    @property
    def log_file(self) -> Path:
        return self.session_dir / "clone.log"

    @property
    def route_label(self) -> str:
        source = f"{self.source_chat}" + (f"#{self.source_topic}" if self.source_topic else "")
        target = f"{self.target_chat}" + (f"#{self.target_topic}" if self.target_topic else "")
        return f"{source} -> {target}"


SHOWN_CHARACTERS = 80  # a pasted file or a runaway value must not flood the terminal or the journal


def shown_value(value: str) -> str:
    """A value quoted for a message, cut to its first characters when long."""
    if len(value) <= SHOWN_CHARACTERS:
        return repr(value)
    return f"{value[:SHOWN_CHARACTERS]!r}… ({len(value):,} characters)"


class _Reader:
    """Reads typed values from the merged key/value map, collecting problems instead of raising."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self.values = values
        self.problems: list[Problem] = []

    def raw(self, key: str) -> str:
        return (self.values.get(key) or "").strip()

    def problem(self, key: str, what: str, fix: str) -> None:
        shown = "(value hidden)" if self._may_hold_a_secret(key) else shown_value(self.raw(key))
        self.problems.append(Problem(key, f"{key}={shown} {what}", fix))

    def _may_hold_a_secret(self, key: str) -> bool:
        """A secret key's value, or one that holds a secret: another key's secret value, a pasted file's secret
        line (a .env joined into one line by a literal backslash-n), an API hash pasted under the wrong key."""
        value = self.raw(key)
        secrets = [self.raw(name) for name in SECRET_KEYS if len(self.raw(name)) >= 4]
        return (
            key in SECRET_KEYS
            or any(secret in value for secret in secrets)
            or re.search(r"(?:^|\W)(?:" + "|".join(sorted(SECRET_KEYS)) + r")\s*=", value) is not None
            or re.search(r"[0-9a-fA-F]{32}", value) is not None
        )

    def required(self, key: str, fix: str) -> str | None:
        value = self.raw(key)
        if not value:
            self.problems.append(Problem(key, f"{key} is missing or empty", fix))
            return None
        return value

    def parsed(self, key: str, parse: Callable[[str], T], fix: str) -> T | None:
        value = self.raw(key)
        if not value:
            return None
        try:
            return parse(value)
        except ValueError as exc:
            self.problem(key, str(exc), fix)
            return None

    def boolean(self, key: str, default: bool) -> bool:
        value = self.raw(key).lower()
        if not value:
            return default
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        self.problem(key, "is not a boolean", f"set {key} to true or false")
        return default

    def order(self, key: str) -> bool | Literal["topic"]:
        """True/False like a boolean, or ``topic``; the default is true."""
        value = self.raw(key).lower()
        if value == "topic":
            return "topic"
        if not value or value in _TRUE or value in _FALSE:
            return self.boolean(key, True)
        self.problem(
            key,
            "is not true, false or topic",
            f"set {key} to true (source order across the chat), topic (order within each forum topic) or false",
        )
        return True

    def seconds(self, key: str, default: float, low: float, high: float) -> float:
        def parse(text: str) -> float:
            try:
                number = float(text)
            except ValueError:
                raise ValueError("is not a number of seconds") from None
            if not low <= number <= high:
                raise ValueError(f"is out of range (must be between {low:g} and {high:g})")
            return number

        result = self.parsed(key, parse, f"set {key} to a number of seconds such as 0.5")
        return default if result is None else result

    def integer(self, key: str, default: int | None, low: int, high: int | None = None) -> int | None:
        def parse(text: str) -> int:
            if not re.fullmatch(r"[+-]?\d+", text):
                raise ValueError("is not a whole number")
            number = int(text)
            if number < low or (high is not None and number > high):
                bound = f"between {low} and {high}" if high is not None else f"at least {low}"
                raise ValueError(f"is out of range (must be {bound})")
            return number

        result = self.parsed(key, parse, f"set {key} to a whole number" + (f" ≥ {low}" if high is None else ""))
        return default if result is None and not self.raw(key) else result


def _read_env_file(path: Path) -> dict[str, str]:
    try:
        with path.open(encoding="utf-8") as handle:
            # dotenv_values(stream=...) so a permission error surfaces here, not as an empty dict.
            loaded = dotenv_values(stream=handle, interpolate=False)
    except PermissionError as exc:
        raise ConfigError(
            [
                Problem(
                    "", f"{path} cannot be read ({exc.strerror})", f"make it readable by this user: chown/chmod {path}"
                )
            ]
        ) from None
    except UnicodeDecodeError:
        raise ConfigError([Problem("", f"{path} is not UTF-8 text", f"rewrite {path} as plain UTF-8 text")]) from None
    return {key: value or "" for key, value in loaded.items()}


def load_settings(session_dir: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Settings:
    """Load and validate a session directory; raises :class:`ConfigError` listing every problem."""
    directory = Path(session_dir).expanduser().absolute()
    environ = os.environ if environ is None else environ
    env_path = directory / ".env"
    try:
        if not directory.is_dir():
            what = "is not a directory" if directory.exists() else "does not exist"
            fix = "create it from sessions/session1 or pass the right path"
            raise ConfigError([Problem("", f"session directory {directory} {what}", fix)])
        if not env_path.is_file():
            fix = f"copy sessions/session1/.env.example to {env_path} and fill it in"
            raise ConfigError([Problem("", f"{env_path} is missing", fix)])
    except PermissionError as exc:
        what = f"session directory {directory} cannot be accessed ({exc.strerror})"
        fix = "run telepi as the user that owns the sessions tree, or fix its permissions"
        raise ConfigError([Problem("", what, fix)]) from None
    from_file = _read_env_file(env_path)
    warnings = _unknown_key_warnings(from_file, env_path)
    merged = {**from_file, **{key: environ[key] for key in KEYS if key in environ}}
    routes_file = _routes_file(directory, merged)
    if routes_file is not None:
        return _validate_routes(directory, merged, routes_file, tuple(warnings), str(env_path))
    return _validate(directory, _Reader(merged), tuple(warnings), str(env_path))


def _routes_file(directory: Path, values: Mapping[str, str]) -> Path | None:
    """ROUTES_FILE (must exist), else routes.toml beside the checkpoint file when it exists."""
    named = (values.get("ROUTES_FILE") or "").strip()
    if named:
        path = (directory / named).resolve()
        if not path.is_file():
            what = f"ROUTES_FILE={shown_value(named)} names no file ({path})"
            raise ConfigError([Problem("ROUTES_FILE", what, "create it or remove ROUTES_FILE")])
        return path
    checkpoint = directory / ((values.get("SHARED_DB_PATH") or "").strip() or "../shared/checkpoint.db")
    path = checkpoint.resolve().parent / "routes.toml"
    return path if path.is_file() else None


def _validate_routes(
    directory: Path, values: Mapping[str, str], path: Path, warnings: tuple[str, ...], where: str
) -> Settings:
    """One Settings per route of the file: the .env's account keys (and its defaults for mode, order, live,
    sync) with the route's own keys, judged by the same validator as the .env form."""
    own = sorted(key for key in FILE_NAME if key not in DEFAULTABLE and (values.get(key) or "").strip())
    if own:
        keys = ", ".join(own)
        raise ConfigError(
            [
                Problem(
                    own[0],
                    f"{where} sets {keys} while the routes file {path} exists",
                    f"move that route into {path} and remove {keys} from the .env, or remove the routes file",
                )
            ],
            list(warnings),
            where,
        )
    entries, problems = read_routes_file(path)
    found: list[Settings] = []
    for entry in entries:
        merged = {key: value for key, value in values.items() if key not in FILE_NAME or key in DEFAULTABLE}
        try:
            settings = _validate(directory, _Reader({**merged, **entry.values}), warnings, where)
        except ConfigError as error:
            for problem in error.problems:
                told = route_problem(str(path), entry.name, problem) if problem.key in FILE_NAME else problem
                if told not in problems:  # an account key's problem is told once, not once per route
                    problems.append(told)
            continue
        found.append(replace(settings, route_name=entry.name, route_sessions=entry.sessions, routes_file=path))
    if problems:
        raise ConfigError(problems, list(warnings), f"{where} and {path}")
    return replace(found[0], routes=tuple(found))


def _unknown_key_warnings(values: Mapping[str, str], env_path: Path) -> list[str]:
    warnings = []
    for key in values:
        if key in KEYS:
            continue
        close = difflib.get_close_matches(key, KEYS, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        warnings.append(f"{env_path}: {key} is not a telepi setting and is ignored{hint}")
    return warnings


def _validate(directory: Path, read: _Reader, warnings: tuple[str, ...], where: str) -> Settings:
    api_id = read.integer("TG_API_ID", None, 1) if read.required("TG_API_ID", _api_fix("TG_API_ID")) else None
    api_hash = read.required("TG_API_HASH", _api_fix("TG_API_HASH"))
    if api_hash and not _API_HASH.fullmatch(api_hash):
        read.problem("TG_API_HASH", "is not 32 hexadecimal characters", _api_fix("TG_API_HASH"))

    session_name = read.raw("SESSION_NAME") or directory.name
    if not _SESSION_NAME.fullmatch(session_name):
        read.problems.append(
            Problem(
                "SESSION_NAME",
                f"SESSION_NAME={shown_value(session_name)} cannot name a session file",
                "use letters, digits, '.', '_' or '-' (at most 64 characters)",
            )
        )

    chat_fix = "set it to a -100… chat id, an @username or a https://t.me/… link"
    source = read.parsed("SOURCE_CHAT", parse_chat, chat_fix) if read.required("SOURCE_CHAT", chat_fix) else None
    target = read.parsed("TARGET_CHAT", parse_chat, chat_fix) if read.required("TARGET_CHAT", chat_fix) else None
    source_topic = read.integer("SOURCE_TOPIC", None, 1)
    target_topic = read.integer("TARGET_TOPIC", None, 1)
    if source and target and source.key == target.key and (source_topic is None or source_topic == target_topic):
        read.problems.append(
            Problem(
                "TARGET_CHAT",
                f"SOURCE_CHAT and TARGET_CHAT are the same chat ({source.key}) with no topic difference",
                "point TARGET_CHAT at another chat, or set SOURCE_TOPIC and TARGET_TOPIC to two different topics",
            )
        )

    ordered = read.order("ORDERED")
    mode_text = read.raw("MODE").lower() or "auto"
    mode: Mode = "auto"
    if mode_text in MODES:
        mode = mode_text
    else:
        read.problem("MODE", "is not a transfer mode", "set MODE to auto, forward, copy or reupload")

    from_id = read.integer("FROM_ID", None, 1)
    to_id = read.integer("TO_ID", None, 1)
    if from_id is not None and to_id is not None and from_id > to_id:
        read.problems.append(
            Problem("FROM_ID", f"FROM_ID={from_id} is greater than TO_ID={to_id}", "swap them or widen the range")
        )

    log_level = read.raw("LOG_LEVEL").upper() or "INFO"
    if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        read.problem("LOG_LEVEL", "is not a log level", "set LOG_LEVEL to DEBUG, INFO, WARNING or ERROR")
        log_level = "INFO"

    filters = read_filters(read.raw, read.problem)
    transforms = read_transforms(read.raw, read.problem)
    if transforms.active and mode == "forward":
        read.problems.append(
            Problem(
                "MODE",
                "MODE=forward cannot apply the TRANSFORM_ keys: Telegram forwards a message as it is",
                "set MODE to auto or copy, or remove the TRANSFORM_ keys",
            )
        )

    settings = Settings(
        session_dir=directory,
        api_id=api_id or 0,
        api_hash=api_hash or "",
        session_name=session_name,
        source_chat=source or ChatRef("id", -1, ""),
        source_topic=source_topic,
        target_chat=target or ChatRef("id", -1, ""),
        target_topic=target_topic,
        auto_create_topics=read.boolean("AUTO_CREATE_TOPICS", True),
        shared_db_path=(directory / (read.raw("SHARED_DB_PATH") or "../shared/checkpoint.db")).resolve(),
        mode=mode,
        ordered=ordered is not False,
        ordered_by_topic=ordered == "topic",
        live=read.boolean("LIVE", True),
        sync_edits=read.boolean("SYNC_EDITS", True),
        sync_deletes=read.boolean("SYNC_DELETES", False),
        from_id=from_id,
        to_id=to_id,
        lease_seconds=read.integer("LEASE_SECONDS", 120, 10, 86400) or 120,
        max_attempts=read.integer("MAX_ATTEMPTS", 5, 1, 100) or 5,
        send_interval=read.seconds("SEND_INTERVAL", SEND_INTERVAL_DEFAULT, 0.0, 60.0),
        read_interval=read.seconds("READ_INTERVAL", READ_INTERVAL_DEFAULT, 0.0, 60.0),
        log_level=log_level,
        dc_address=read.parsed("TG_DC", _parse_address, "set TG_DC to host:port, or remove it to use Telegram"),
        server_key_path=_server_key(directory, read),
        warnings=warnings,
        shared_db_url=_shared_db_url(read),
        filters=filters,
        transforms=transforms,
        web_port=read.integer("WEB_PORT", None, 1, 65535),
    )
    if read.problems:
        raise ConfigError(read.problems, list(warnings), where)
    return settings


def _api_fix(key: str) -> str:
    return f"set {key} to the value shown at https://my.telegram.org under 'API development tools'"


def _parse_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("is not host:port")
    return host, int(port)


def _server_key(directory: Path, read: _Reader) -> Path | None:
    text = read.raw("TG_SERVER_KEY")
    if not text:
        return None
    path = (directory / text).resolve()
    if not path.is_file():
        read.problem("TG_SERVER_KEY", "does not name a readable file", "point TG_SERVER_KEY at the sandbox's key PEM")
        return None
    return path


def _shared_db_url(read: _Reader) -> str:
    url = read.raw("SHARED_DB_URL")
    if url and not url.startswith(("postgresql://", "postgres://")):
        read.problem(
            "SHARED_DB_URL",
            "is not a PostgreSQL URL",
            "set SHARED_DB_URL to postgresql://user@host/dbname, or remove it to use SHARED_DB_PATH",
        )
        return ""
    return url
