"""Basic groups number messages per account: a route through one is cloned by one account only."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from telepi.checkpoint import open_store
from telepi.config import load_settings
from telepi.engine.progress import Progress
from telepi.engine.session import RouteOfAnotherAccount, run_session
from telepi.sandbox.sandbox import Sandbox
from tests.cli import telepi
from tests.engine.clonecheck import assert_clone_equal, content

WORLD: dict[str, Any] = {
    "accounts": [
        {"name": name, "phone": f"+1555000300{i}", "code": "12345"}
        for i, name in enumerate(["alice", "bob", "carol"], start=1)
    ],
    "chats": [
        # Carol's own box fills first, so the same group message has another id for her than for Bob.
        {"name": "carols", "kind": "group", "owner": "alice", "members": ["carol"], "messages": [{"text": "x"}] * 5},
        {
            "name": "source",
            "kind": "group",
            "owner": "alice",
            "members": ["bob", "carol"],
            "messages": [{"text": f"group message {i}"} for i in range(12)],
        },
        {
            "name": "target",
            "kind": "supergroup",
            "owner": "alice",
            "admins": {"bob": ["post_messages"], "carol": ["post_messages"]},
        },
    ],
}


async def make_session(sb: Sandbox, root: Path, account: str, env: dict[str, str] | None = None) -> Path:
    directory = await sb.session_dir(
        root / account,
        account,
        SOURCE_CHAT=str(sb.chat("source").id),
        TARGET_CHAT=str(sb.chat("target").id),
        SEND_INTERVAL="0",
        READ_INTERVAL="0",
        LIVE="false",
        MODE="copy",
        **(env or {}),
    )
    os.chmod(directory / ".env", 0o600)
    os.chmod(directory / f"{account}.session", 0o600)
    return directory


def doctor(directory: Path) -> subprocess.CompletedProcess[str]:
    return telepi("doctor", directory, cwd=None)


async def run(directory: Path) -> Progress:
    settings = load_settings(directory, {})
    store = open_store(settings)
    try:
        return await asyncio.wait_for(run_session(settings, store, asyncio.Event()), 60)
    finally:
        store.close()


async def test_two_accounts_see_other_ids_in_a_basic_group(tmp_path: Path) -> None:
    async with Sandbox(world=WORLD, state_dir=tmp_path / "state") as sb:
        seen: dict[str, list[tuple[int, str]]] = {}
        for account in ("bob", "carol"):
            client = await sb.client(account)
            await client.get_dialogs()
            messages = await client.get_messages(sb.chat("source").id, limit=100)
            seen[account] = sorted((m.id, m.message) for m in messages if m.message)
        bob_ids, carol_ids = ({text: i for i, text in seen[a]} for a in ("bob", "carol"))
        assert bob_ids.keys() == carol_ids.keys() and len(bob_ids) == 12
        assert all(bob_ids[text] != carol_ids[text] for text in bob_ids)  # same messages, other ids


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_a_second_account_is_refused_on_a_basic_group_route(
    tmp_path: Path, backend: str, shared_db_env: dict[str, str]
) -> None:
    """On either checkpoint: the run refuses Carol, and so does doctor, reading the binding from the file or
    from the PostgreSQL database (both sessions share one, SHARED_DB_URL)."""
    async with Sandbox(world=WORLD, state_dir=tmp_path / "state") as sb:
        bob = await make_session(sb, tmp_path / "sessions", "bob", shared_db_env)
        carol = await make_session(sb, tmp_path / "sessions", "carol", shared_db_env)
        await run(bob)
        assert_clone_equal(sb, "source", "target")
        with pytest.raises(RouteOfAnotherAccount, match=r"per account.*session bob.*supergroup") as refused:
            await run(carol)  # a takeover would continue ids Bob planned, which mean other messages to Carol
        assert refused.value.exit_code == 78
        assert_clone_equal(sb, "source", "target")  # nothing doubled, nothing skipped
        refused_doctor = await asyncio.to_thread(doctor, carol)
        assert "PROBLEM SOURCE_CHAT is a basic group" in refused_doctor.stdout, refused_doctor.stdout
        owner_doctor = await asyncio.to_thread(doctor, bob)
        assert "note    SOURCE_CHAT is a basic group" in owner_doctor.stdout, owner_doctor.stdout


async def test_two_live_sessions_on_a_basic_group_one_is_refused(tmp_path: Path) -> None:
    async with Sandbox(world=WORLD, state_dir=tmp_path / "state") as sb:
        directories = [await make_session(sb, tmp_path / "sessions", name) for name in ("bob", "carol")]
        results = await asyncio.gather(*(run(d) for d in directories), return_exceptions=True)
        refused = [r for r in results if isinstance(r, BaseException)]
        assert len(refused) == 1 and isinstance(refused[0], RouteOfAnotherAccount), results
        assert_clone_equal(sb, "source", "target")
        assert len(content(sb.messages("target"))) == 12
