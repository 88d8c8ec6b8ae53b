"""Every Telegram answer at its scope: an account Telegram refuses (revoked, forgotten, banned, frozen)
stops its session at once with the fix named and loses nothing; a flood wait on any call is waited
out; an unknown refusal never skips the rest of a route."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from telepi.checkpoint import SqliteStore
from telepi.config import load_settings
from telepi.engine.session import run_session
from telepi.errors import EX_CONFIG, SessionStopped
from telepi.sandbox.sandbox import Sandbox
from tests.cli import REPO
from tests.engine.clonecheck import assert_clone_equal, content
from tests.engine.test_clone import forum_world, make_sessions, run_all


def counts(directory: Path) -> dict[str, int]:
    store = SqliteStore(load_settings(directory, {}).shared_db_path, create=False)
    try:
        return dict(store.report().routes[0].counts)
    finally:
        store.close()


def sessions(directory: Path) -> dict[str, tuple[str, str]]:
    store = SqliteStore(load_settings(directory, {}).shared_db_path, create=False)
    try:
        return {s.name: (s.state, s.detail) for s in store.report().sessions}
    finally:
        store.close()


def service_count(sb: Sandbox) -> int:
    return len([m for m in sb.messages("source") if m["service"]])


async def start(directory: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "telepi", "run", str(directory), cwd=REPO, stderr=asyncio.subprocess.PIPE
    )


async def test_a_revoked_account_stops_at_once_and_the_other_finishes_with_nothing_lost(tmp_path: Path) -> None:
    async with Sandbox(world=forum_world(200), state_dir=tmp_path / "state") as sb:
        revoked_dir, healthy_dir = await make_sessions(
            sb,
            tmp_path / "sessions",
            ["bob", "carol"],
            LIVE="false",
            MODE="copy",
            SEND_INTERVAL="0.03",
            READ_INTERVAL="0",
        )
        revoked, healthy = await start(revoked_dir), await start(healthy_dir)
        try:
            while len(content(sb.messages("target"))) < 30:  # both are copying
                await asyncio.sleep(0.05)
            sb.revoke("bob")  # "terminate other sessions" on bob's phone
            revoked_at = time.monotonic()
            await asyncio.wait_for(revoked.wait(), 30)
            stopped_after = time.monotonic() - revoked_at
            assert revoked.returncode == EX_CONFIG
            assert revoked.stderr is not None
            said = (await revoked.stderr.read()).decode()
            assert "SESSION_REVOKED" in said and f"telepi login {revoked_dir}" in said, said
            assert "Traceback" not in said
            assert await asyncio.wait_for(healthy.wait(), 120) == 0
        finally:
            for process in (revoked, healthy):
                if process.returncode is None:
                    process.kill()
        print(f"revoked session exited 78 {stopped_after:.2f} s after the revocation")
        assert stopped_after < 10
        assert_clone_equal(sb, "source", "target")
        route = counts(healthy_dir)
        assert route.get("skipped", 0) == service_count(sb) and route.get("failed", 0) == 0, route
        state, detail = sessions(revoked_dir)["session1"]
        assert state == "revoked" and "telepi login" in detail


@pytest.mark.parametrize(
    ("standing", "state", "error"),
    [
        ("revoked", "revoked", "SESSION_REVOKED"),
        ("forgotten", "revoked", "AuthKeyNotFound"),
        ("banned", "banned", "USER_DEACTIVATED_BAN"),
        ("frozen", "frozen", "FROZEN_METHOD_INVALID"),
    ],
)
async def test_an_account_telegram_refuses_loses_nothing(tmp_path: Path, standing: str, state: str, error: str) -> None:
    async with Sandbox(world=forum_world(120), state_dir=tmp_path / "state") as sb:
        [directory] = await make_sessions(sb, tmp_path / "sessions", ["bob"], LIVE="false", MODE="copy")
        settings = load_settings(directory, {})
        store = SqliteStore(settings.shared_db_path)
        running = asyncio.create_task(run_session(settings, store, asyncio.Event()))
        while len(content(sb.messages("target"))) < 10:
            await asyncio.sleep(0.02)
        if standing == "revoked":
            sb.revoke("bob")
        elif standing == "forgotten":
            sb.forget_auth_keys("bob")
        else:
            sb.set_standing("bob", standing)  # type: ignore[arg-type]
        with pytest.raises(SessionStopped) as stopped:
            await asyncio.wait_for(running, 30)
        assert error in str(stopped.value) and "Traceback" not in str(stopped.value)
        report = store.report()
        assert report.routes[0].counts.get("skipped", 0) == service_count(sb)  # only service messages
        assert report.routes[0].counts.get("failed", 0) == 0
        assert report.routes[0].counts.get("processing", 0) == 0  # every lease given back
        assert [(s.state, error in s.detail) for s in report.sessions] == [(state, True)]
        # Started again while still refused: a sentence and exit 78 (SessionStopped), never a traceback.
        with pytest.raises(SessionStopped):
            await asyncio.wait_for(run_session(settings, store, asyncio.Event()), 30)
        store.close()


async def test_a_flood_wait_on_any_call_is_waited_out_and_fails_nothing(tmp_path: Path) -> None:
    world = forum_world(60, noforwards=True)  # protected: album members go through messages.uploadMedia
    world["chats"][0]["username"] = "sourceforum"
    async with Sandbox(world=world, state_dir=tmp_path / "state") as sb:
        directory = await sb.session_dir(
            tmp_path / "sessions" / "session1",
            "bob",
            SOURCE_CHAT="@sourceforum",
            TARGET_CHAT=str(sb.chat("target").id),
            SEND_INTERVAL="0",
            READ_INTERVAL="0",
            LIVE="false",
            MODE="auto",
        )
        methods = [
            "CreateForumTopicRequest",
            "GetForumTopicsRequest",
            "UploadMediaRequest",
            "GetMessagesRequest",
            "ResolveUsernameRequest",
            "GetHistoryRequest",
        ]
        for method in methods:
            sb.faults.inject_error(method, "FLOOD_WAIT_1", 420, nth=1)
        await run_all([directory])
        assert_clone_equal(sb, "source", "target")
        route = counts(directory)
        assert route.get("skipped", 0) == service_count(sb) and route.get("failed", 0) == 0, route
        members = [m for m in content(sb.messages("source")) if m["grouped_id"] and m["media"]]
        # Each album member uploaded once, plus the one refused call: nothing transferred twice.
        assert sb.faults.calls["UploadMediaRequest"] == len(members) + 1, (sb.faults.calls, len(members))
        for method in methods:
            assert sb.faults.calls[method] >= 2, method  # refused once, then made again


async def test_an_unknown_refusal_on_every_message_stops_the_route_and_skips_nothing(tmp_path: Path) -> None:
    async with Sandbox(world=forum_world(40), state_dir=tmp_path / "state") as sb:
        [directory] = await make_sessions(sb, tmp_path / "sessions", ["bob"], LIVE="false", MODE="copy")
        for method in ("SendMessageRequest", "SendMediaRequest", "SendMultiMediaRequest"):
            sb.faults.inject_error(method, "SOMETHING_NEW_FORBIDDEN", 400)
        with pytest.raises(SessionStopped) as stopped:
            await run_all([directory])
        assert "SOMETHING_NEW_FORBIDDEN" in str(stopped.value) and "TARGET_CHAT" in str(stopped.value)
        route = counts(directory)
        assert route.get("skipped", 0) == service_count(sb) and route.get("failed", 0) == 0, route
        assert sessions(directory)["session1"][0] == "blocked"


async def test_a_flood_wait_on_a_live_edit_or_delete_is_waited_out(tmp_path: Path) -> None:
    async with Sandbox(world=forum_world(10), state_dir=tmp_path / "state") as sb:
        [directory] = await make_sessions(sb, tmp_path / "sessions", ["bob"], MODE="copy", SYNC_DELETES="true")
        settings = load_settings(directory, {})
        store = SqliteStore(settings.shared_db_path)
        stop = asyncio.Event()
        running = asyncio.create_task(run_session(settings, store, stop))

        async def until(condition: Callable[[], bool]) -> None:
            async with asyncio.timeout(60):
                while not condition():
                    await asyncio.sleep(0.05)

        try:
            await until(lambda: len(content(sb.messages("target"))) == len(content(sb.messages("source"))))
            sb.faults.inject_error("EditMessageRequest", "FLOOD_WAIT_1", 420, nth=1)
            sb.faults.inject_error("DeleteMessagesRequest", "FLOOD_WAIT_1", 420, nth=1)
            new_id = await sb.post("source", "to be corrected", as_account="alice")
            await until(lambda: any(m["text"] == "to be corrected" for m in sb.messages("target")))
            await sb.edit("source", new_id, "corrected", as_account="alice")
            await until(lambda: any(m["text"] == "corrected" for m in sb.messages("target")))
            await sb.delete("source", new_id, as_account="alice")
            await until(lambda: all(m["text"] != "corrected" for m in sb.messages("target")))
            # Each refused once with FLOOD_WAIT, then made again after the wait.
            assert sb.faults.calls["EditMessageRequest"] >= 2 and sb.faults.calls["DeleteMessagesRequest"] >= 2
        finally:
            stop.set()
            await asyncio.wait_for(running, 30)
            store.close()
