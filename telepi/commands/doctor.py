"""``telepi doctor``: check everything a session needs, one line per check with the fix."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from telethon import utils
from telethon.tl import types

from telepi.checkpoint import open_checkpoint, open_store
from telepi.commands.run import running_pid
from telepi.config import Settings
from telepi.engine.session import ChatNotFound, per_account_key, resolve_chat
from telepi.errors import UserFixableError
from telepi.secret_files import exposed_secret_files
from telepi.telegram.client import make_client
from telepi.telegram.errors import error_name
from telepi.telegram.rights import may_post

Verdict = Literal["ok", "problem", "note"]
UNIT_PATHS = (Path("/etc/systemd/system/telepi@.service"), Path("/usr/lib/systemd/system/telepi@.service"))


@dataclass(frozen=True)
class Check:
    verdict: Verdict
    what: str
    fix: str = ""

    def line(self) -> str:
        label = {"ok": "ok     ", "problem": "PROBLEM", "note": "note   "}[self.verdict]
        return f"{label} {self.what}" + (f" — {self.fix}" if self.fix else "")


async def diagnose(settings: Settings, report: Callable[[Check], None]) -> bool:
    """Run every check, reporting each as it finishes; True when nothing is a problem."""
    checks: list[Check] = []

    def add(check: Check) -> None:
        checks.append(check)
        report(check)

    add(Check("ok", f"configuration {settings.session_dir / '.env'} is valid ({settings.route_label})"))
    exposed = exposed_secret_files(settings)
    for problem in exposed:
        add(Check("problem", problem.what, problem.fix))
    if not exposed:
        add(Check("ok", "secret files are private to this user"))
    add(_database(settings.shared_db_url) if settings.shared_db_url else _checkpoint(settings.shared_db_path))
    add(_unit(settings.session_name))
    if not settings.session_file.exists():
        add(Check("problem", f"no session file {settings.session_file}", f"run: telepi login {settings.session_dir}"))
        return False
    running = _running(settings)
    if running is not None:
        add(running)
    for check in await _telegram(settings, read_only=running is not None):
        add(check)
    return all(check.verdict != "problem" for check in checks)


def _database(url: str) -> Check:
    """The PostgreSQL checkpoint answers and holds a telepi schema (or an empty one a session fills)."""
    try:
        store = open_checkpoint(url, create=False, read_only=True)
    except UserFixableError as exc:
        from telepi.checkpoint.postgres import redact  # psycopg is there: the store got that far

        if "holds no telepi checkpoint yet" in str(exc):
            return Check("ok", f"checkpoint {redact(url)} is empty: the first session that runs creates it")
        return Check("problem", str(exc))  # the sentence names its fix
    store.close()
    return Check("ok", f"checkpoint {store.path} answers")


def _checkpoint(path: Path) -> Check:
    if not path.exists():  # connecting would create it: judge the directory instead
        existing = next(parent for parent in path.parents if parent.exists())
        if os.access(existing, os.W_OK | os.X_OK):
            return Check("ok", f"checkpoint {path} will be created by the first session that runs")
        return Check(
            "problem", f"checkpoint {path} cannot be created ({existing} is not writable)", "fix its permissions"
        )
    try:
        db = sqlite3.connect(path, timeout=10, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")  # proves the file and its directory are writable, changes nothing
            db.execute("ROLLBACK")
        finally:
            db.close()
    except sqlite3.Error as exc:
        return Check(
            "problem", f"checkpoint {path} is not writable ({exc})", "fix the permissions of the shared directory"
        )
    return Check("ok", f"checkpoint {path} is writable")


def _unit(session: str) -> Check:
    if not any(path.exists() for path in UNIT_PATHS):
        return Check(
            "note", "the systemd unit telepi@.service is not installed", "fine with run.sh; see the deploy section"
        )
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        return Check("note", "telepi@.service is installed but systemctl is not available here")
    enabled = subprocess.run(
        [systemctl, "is-enabled", f"telepi@{session}"], capture_output=True, text=True, timeout=10
    ).stdout.strip()
    if enabled == "enabled":
        return Check("ok", f"telepi@{session} is installed and enabled")
    return Check(
        "note", f"telepi@{session} is installed but {enabled or 'not enabled'}", f"systemctl enable telepi@{session}"
    )


def _running(settings: Settings) -> Check | None:
    """A note when the session runs now: then the checks read its login without touching its files."""
    if not settings.shared_db_url and not settings.shared_db_path.is_file():
        return None
    try:
        store = open_store(settings, create=False, read_only=True)
    except UserFixableError:
        return None  # the checkpoint check above said what is wrong with it
    try:
        pid = running_pid(store, settings.session_name)
    finally:
        store.close()
    if pid is None:
        return None
    return Check("note", f"session {settings.session_name} is running (pid {pid}): checked beside it, read-only")


async def _telegram(settings: Settings, *, read_only: bool = False) -> list[Check]:
    client = make_client(settings, receive_updates=False, read_only=read_only)
    checks: list[Check] = []
    try:
        await client.connect()
        if not await client.is_user_authorized():
            return [Check("problem", "the session is not logged in", f"run: telepi login {settings.session_dir}")]
        me = await client.get_me()
        checks.append(Check("ok", f"logged in as user id {me.id}"))
        for route in settings.all_routes:  # with a routes file, each route this session may work
            if not settings.works(route):
                continue
            named = [] if not route.route_name else [Check("note", f"route {route.route_name}: {route.route_label}")]
            checks.extend(named + await _route_checks(client, route, me.id))
    except Exception as exc:  # an unreachable Telegram is a finding, not a crash
        checks.append(Check("problem", f"Telegram could not be reached ({error_name(exc)})", "check the network"))
    finally:
        await client.disconnect()
    return checks


async def _route_checks(client: Any, settings: Settings, user_id: int) -> list[Check]:
    checks: list[Check] = []
    try:
        source = await resolve_chat(client, "SOURCE_CHAT", settings.source_chat)
        await client.get_messages(source, limit=1)
    except ChatNotFound as exc:
        return [Check("problem", str(exc).rstrip("."))]
    checks.append(_source(source, settings))
    try:
        target = await resolve_chat(client, "TARGET_CHAT", settings.target_chat)
    except ChatNotFound as exc:
        return [*checks, Check("problem", str(exc).rstrip("."))]
    checks.append(_writable(target))
    checks.extend(_topics(source, target, settings))
    checks.extend(_per_account(source, target, settings, user_id))
    return checks


def _source(source: Any, settings: Settings) -> Check:
    protected = bool(getattr(source, "noforwards", False))
    mode = settings.mode
    if mode == "auto":
        mode_text = "MODE=auto will reupload (protected content)" if protected else "MODE=auto will forward"
    elif mode == "forward" and protected:
        return Check(
            "problem",
            f"source {_title(source)} is protected: forwarding is refused",
            "set MODE=auto or MODE=reupload",
        )
    else:
        mode_text = f"MODE={mode}"
    return Check("ok", f"source {_title(source)} is readable; {mode_text}")


def _writable(target: Any) -> Check:
    name = _title(target)
    if isinstance(target, types.Channel):
        if not may_post(target):
            fix = "make it an admin with 'post messages'"
            return Check("problem", f"this account cannot post in target {name}", fix)
        rights = target.admin_rights
        if target.creator or (rights is not None and rights.post_messages) or (target.megagroup and rights is not None):
            return Check("ok", f"target {name} is writable")
        return Check("ok", f"target {name} is writable (member)")
    if isinstance(target, types.Chat):
        return Check("ok", f"target {name} is writable (basic group)")
    return Check("ok", f"target {name} ({type(target).__name__})")


def _topics(source: Any, target: Any, settings: Settings) -> list[Check]:
    if not getattr(source, "forum", False) or settings.target_topic is not None or not settings.auto_create_topics:
        return []
    if not getattr(target, "forum", False):
        return [Check("note", "the source has topics but the target is not a forum: everything lands in one chat")]
    rights = getattr(target, "admin_rights", None)
    if getattr(target, "creator", False) or (rights is not None and rights.manage_topics):
        return [Check("ok", "the account may create topics in the target")]
    return [
        Check(
            "problem",
            "the source has topics but this account may not create them in the target",
            "give it the admin right 'manage topics', or set TARGET_TOPIC",
        )
    ]


def _per_account(source: Any, target: Any, settings: Settings, user_id: int) -> list[Check]:
    """A basic group or private chat numbers messages per account: its route belongs to one account."""
    key = per_account_key(source, target)
    if key is None:
        return []
    owner = _route_owner(settings, str(utils.get_peer_id(source)), str(utils.get_peer_id(target)))
    if owner is not None and owner != user_id:
        return [
            Check(
                "problem",
                f"{key} is a basic group or private chat (message ids per account) and this route belongs to "
                f"user id {owner}",
                "only that account's session may clone it; migrate the group to a supergroup to share the work",
            )
        ]
    return [
        Check(
            "note",
            f"{key} is a basic group or private chat: its message ids are per account, so only one session "
            "(this account) may clone this route",
            "migrate the group to a supergroup to share the work between sessions",
        )
    ]


def _route_owner(settings: Settings, source: str, target: str) -> int | None:
    """The account a per-account route is bound to in the session's checkpoint, the SQLite file or the
    PostgreSQL database alike (opened read-only; None when nothing is bound or the checkpoint cannot tell:
    its own check above names why)."""
    try:
        store = open_store(settings, create=False, read_only=True)
    except UserFixableError:  # no checkpoint yet, an older schema, a server that does not answer
        return None
    try:
        route = next((r for r in store.routes() if (r.source_chat, r.target_chat) == (source, target)), None)
    except UserFixableError:
        return None
    finally:
        store.close()
    return None if route is None else route.bound_user_id


def _title(entity: Any) -> str:
    return f"{getattr(entity, 'title', None) or utils.get_display_name(entity)!r} ({utils.get_peer_id(entity)})"
