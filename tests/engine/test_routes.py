"""One deployment, two accounts, three routes from one routes file, against the local Telegram.

forum -> forum (everything), channel -> channel filtered (photos only, since a date, excluding a regular
expression), channel -> group transformed (a replacement, a header, a footer; only carol's session may work it).
Each target is checked from the target itself: exactly the expected messages, in order, once each; what the
filters left out is in the checkpoint by reason; live posts follow all three; ``telepi routes`` shows them.
"""

from __future__ import annotations

import asyncio
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from telepi.checkpoint import open_checkpoint
from telepi.commands.doctor import Check, diagnose
from telepi.commands.retry import route_id
from telepi.commands.routes import listing
from telepi.commands.verify import Options, verify
from telepi.config import load_settings
from telepi.errors import EX_CONFIG, ConfigError
from telepi.sandbox.sandbox import Sandbox
from tests.cli import telepi
from tests.engine.clonecheck import assert_clone_equal, content, topic_titles
from tests.engine.test_clone import forum_world, wait_for
from tests.engine.test_rules import PHOTO, SINCE, STICKER, covered, run, source_messages, transformed

ACCOUNTS = ["bob", "carol"]


def world() -> dict[str, Any]:
    spec = forum_world(60, seed=3)  # chats "source" and "target": the forum route
    spec["chats"] += [
        {
            "name": "channel",
            "kind": "channel",
            "title": "Source",
            "username": "rules_src",
            "owner": "alice",
            "members": ACCOUNTS,
            "messages": source_messages(),
        },
        {"name": "photos", "kind": "channel", "owner": "alice", "admins": {a: ["post_messages"] for a in ACCOUNTS}},
        {"name": "group", "kind": "supergroup", "owner": "alice", "members": ACCOUNTS},
    ]
    return spec


def routes_file(sb: Sandbox) -> str:
    since = datetime.fromtimestamp(SINCE, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"""
[[routes]]
name = "forum"
source = {sb.chat("source").id}
target = {sb.chat("target").id}
mode = "copy"

[[routes]]
name = "photos"
source = {sb.chat("channel").id}
target = {sb.chat("photos").id}
[routes.filters]
kinds = ["photo"]
since = {since}
exclude_regex = '#ad\\b'

[[routes]]
name = "group"
source = {sb.chat("channel").id}
target = {sb.chat("group").id}
sessions = ["carol"]
[routes.transforms]
replace = ['(?i)fo(o) => bar🙂\\1', 'never matches 🦄 => x']
header = "{{author}} · {{date}}"
footer = "— {{source_link}}"
"""


async def test_three_routes_two_accounts_one_deployment(tmp_path: Path) -> None:
    async with Sandbox(world=world(), state_dir=tmp_path / "state") as sb:
        root = tmp_path / "sessions"
        (root / "shared").mkdir(parents=True)
        (root / "shared" / "routes.toml").write_text(routes_file(sb))
        env = {"SEND_INTERVAL": "0", "READ_INTERVAL": "0", "LEASE_SECONDS": "20"}
        directories = [await sb.session_dir(root / account, account, **env) for account in ACCOUNTS]
        assert [r.route_name for r in load_settings(directories[0], {}).all_routes] == ["forum", "photos", "group"]
        stop = asyncio.Event()
        tasks = [asyncio.create_task(run(directory, stop)) for directory in directories]
        src = {m["text"] or "sticker": m for m in content(sb.messages("channel"))}
        forum_count = len(content(sb.messages("source")))
        try:
            await wait_for(lambda: len(content(sb.messages("target"))) == forum_count, timeout=120)
            await wait_for(lambda: len(content(sb.messages("photos"))) == 2, timeout=60)
            await wait_for(lambda: len(content(sb.messages("group"))) == 8, timeout=60)
            # ---- live: a post into the forum and one of each kind into the channel follow all three routes
            news = next(t["id"] for t in sb.topics("source") if t["title"] == "News")
            await sb.post("source", "live in the forum", topic=news)
            photo_id = await sb.post("channel", "live photo", media=PHOTO)
            await sb.post("channel", "", media=STICKER)
            text_id = await sb.post("channel", "live foo")
            await wait_for(lambda: len(content(sb.messages("target"))) == forum_count + 1, timeout=30)
            await wait_for(lambda: len(content(sb.messages("photos"))) == 3, timeout=30)
            await wait_for(lambda: len(content(sb.messages("group"))) == 11, timeout=30)
            await asyncio.sleep(1.0)  # nothing more arrives: no duplicate is on its way
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 30)

        # ---- forum -> forum: everything, in order, once, in the same topics
        assert_clone_equal(sb, "source", "target")
        assert topic_titles(sb, "target") == topic_titles(sb, "source")
        assert content(sb.messages("target"))[-1]["text"] == "live in the forum"

        # ---- channel -> channel, filtered: the two photos that pass, then the live one
        copies = content(sb.messages("photos"))
        assert [c["text"] for c in copies] == ["photo one 🇺🇦", "photo two", "live photo"]
        assert all(c["media"]["kind"] == "photo" for c in copies)
        live = {m["id"]: m for m in content(sb.messages("channel")) if m["id"] >= photo_id}
        sticker_live = next(i for i, m in live.items() if m["media"] and m["media"]["kind"] == "sticker")
        ids = {text: m["id"] for text, m in src.items()}
        service = [m["id"] for m in sb.messages("channel") if m["service"]]
        store = open_checkpoint(root / "shared" / "checkpoint.db")
        try:
            routes = {r.label.partition(":")[0]: r for r in store.routes()}
            assert sorted(routes) == ["forum", "group", "photos"]
            report = {r.route.id: r for r in store.report(skipped_ids=100).routes}
            reasons = {s.reason: sorted(s.latest) for s in report[routes["photos"].id].skipped}
            assert report[routes["forum"].id].counts.get("done") == forum_count + 1
        finally:
            store.close()
        assert reasons == {
            "filtered: kind=service": service,
            "filtered: date": [ids["old photo"], ids["old text foo"]],
            "filtered: kind=text": sorted([ids["Foo is 😀 great"], ids["foo 𝕏 end"], text_id]),
            "filtered: kind=sticker": [ids["sticker"], sticker_live],
            "filtered: exclude_regex=#ad\\b": [ids["buy now #ad"]],
        }

        # ---- channel -> group, transformed: every message, in order, once, with header and footer
        copies = content(sb.messages("group"))
        expected = [
            (src["old photo"], "old photo"),
            (src["old text foo"], "old text bar🙂o"),
            (src["photo one 🇺🇦"], "photo one 🇺🇦"),
            (src["Foo is 😀 great"], "bar🙂o is 😀 great"),
            (src["sticker"], ""),
            (src["buy now #ad"], "buy now #ad"),
            (src["photo two"], "photo two"),
            (src["foo 𝕏 end"], "bar🙂o 𝕏 end"),
            (live[photo_id], "live photo"),
            (live[sticker_live], ""),
            (live[text_id], "live bar🙂o"),
        ]
        assert [c["text"] for c in copies] == [transformed(original, body) for original, body in expected]
        assert covered(copies[2]) == [("italic", "🇺🇦")]
        assert [(c["media"] or {}).get("kind") for c in copies] == [
            (original["media"] or {}).get("kind") for original, _ in expected
        ]
        # only carol's session may work the group route: its copies are all carol's
        carol = sb.account("carol").id
        assert {c["sender_id"] for c in copies} == {carol}

        # ---- telepi routes: each route with its state
        shown = listing(str(directories[0]))
        assert "forum: " in shown and "photos: " in shown and "group: " in shown
        assert f"{forum_count + 1} done" in shown and "sessions carol (not for bob)" in shown
        assert "not started" not in shown

        # ---- telepi verify: one route at a time, by name or id; several routes and none named: a sentence
        settings = load_settings(directories[1], {})
        with pytest.raises(ConfigError, match=r"lists 3 routes: pass --route with one of their names \(forum, "):
            await verify(settings, Options())
        checked = await verify(settings, Options(route_name="photos"))
        assert checked.result.problems() == [] and checked.exit_code == 0
        assert checked.filtered["filtered: kind=sticker"] == [ids["sticker"], sticker_live]
        checked = await verify(settings, Options(route=routes["group"].id))
        assert (checked.route.id, checked.result.problems(), checked.exit_code) == (routes["group"].id, [], 0)

        # ---- telepi retry --route takes a route's name too
        assert route_id(str(directories[0]), "photos") == routes["photos"].id
        with pytest.raises(ConfigError, match=r"names no route in the checkpoint: .*forum, group, photos"):
            route_id(str(directories[0]), "nope")

        # ---- telepi doctor: each route the session may work, checked (bob is not on the group route)
        found: list[Check] = []
        await diagnose(load_settings(directories[0], {}), found.append)
        lines = [f"{c.verdict} {c.what}" for c in found]
        assert [line for line in lines if line.startswith("note route ")] == [
            f"note route forum: {sb.chat('source').id} -> {sb.chat('target').id}",
            f"note route photos: {sb.chat('channel').id} -> {sb.chat('photos').id}",
        ]
        assert sum(line.startswith("ok target ") and "is writable" in line for line in lines) == 2, lines


async def test_routes_the_account_cannot_open_or_post_in_are_skipped_with_a_warning(tmp_path: Path) -> None:
    spec = forum_world(20)
    spec["chats"].append({"name": "broadcast", "kind": "channel", "owner": "alice", "members": ["bob"]})
    async with Sandbox(world=spec, state_dir=tmp_path / "state") as sb:
        root = tmp_path / "sessions"
        (root / "shared").mkdir(parents=True)
        source, target, broadcast = (sb.chat(name).id for name in ("source", "target", "broadcast"))
        (root / "shared" / "routes.toml").write_text(
            f'[[routes]]\nname = "good"\nsource = {source}\ntarget = {target}\nmode = "copy"\n'
            f'[[routes]]\nname = "unseen"\nsource = "@nosuchchat"\ntarget = {target}\n'
            f'[[routes]]\nname = "readonly"\nsource = {source}\ntarget = {broadcast}\n'
        )
        directory = await sb.session_dir(root / "bob", "bob", LIVE="false", SEND_INTERVAL="0", READ_INTERVAL="0")
        result = await asyncio.to_thread(run_cli, directory)
        assert result.returncode == 0, result.stderr
        assert "route unseen skipped: route 'unseen' of " in result.stderr
        assert "SOURCE_CHAT='@nosuchchat' cannot be found by this account" in result.stderr
        assert "route readonly skipped: route 'readonly' of " in result.stderr
        assert f"this account cannot post in the target '{broadcast}'" in result.stderr
        assert "Traceback" not in result.stderr
        assert_clone_equal(sb, "source", "target")  # the route it can work, whole
        assert content(sb.messages("broadcast")) == []

        # no route left: the first reason, exit 78
        (root / "shared" / "routes.toml").write_text(
            f'[[routes]]\nname = "readonly"\nsource = {source}\ntarget = {broadcast}\n'
            f'[[routes]]\nname = "unseen"\nsource = "@nosuchchat"\ntarget = {target}\n'
        )
        result = await asyncio.to_thread(run_cli, directory)
        assert result.returncode == EX_CONFIG, result.stderr
        last = result.stderr.strip().splitlines()[-1]
        assert "route 'readonly' of" in last and "cannot post in the target" in last, result.stderr


def run_cli(directory: Path) -> subprocess.CompletedProcess[str]:
    return telepi("run", directory, cwd=None)


async def test_a_chat_refusing_one_route_mid_run_stops_that_route_only(tmp_path: Path) -> None:
    spec = forum_world(40)
    spec["chats"].append(
        {"name": "second", "kind": "supergroup", "owner": "alice", "admins": {"bob": ["post_messages"]}}
    )
    async with Sandbox(world=spec, state_dir=tmp_path / "state") as sb:
        root = tmp_path / "sessions"
        (root / "shared").mkdir(parents=True)
        source, target, second = (sb.chat(name).id for name in ("source", "target", "second"))
        (root / "shared" / "routes.toml").write_text(
            f'[[routes]]\nname = "one"\nsource = {source}\ntarget = {target}\nmode = "copy"\n'
            f'[[routes]]\nname = "two"\nsource = {source}\ntarget = {second}\nmode = "copy"\n'
        )
        directory = await sb.session_dir(root / "bob", "bob", LIVE="false", SEND_INTERVAL="0", READ_INTERVAL="0")
        sb.faults.inject_error("SendMessageRequest", "CHAT_WRITE_FORBIDDEN", 403, nth=5)  # the rights taken away
        result = await asyncio.to_thread(run_cli, directory)
        assert result.returncode == EX_CONFIG, result.stderr
        assert "Traceback" not in result.stderr
        [stopped] = [name for name in ("one", "two") if f"route '{name}' of " in result.stderr]
        assert "stopped: TARGET_CHAT: Telegram answered CHAT_WRITE_FORBIDDEN" in result.stderr
        assert "the other routes go on" in result.stderr
        went_on = {"one": "target", "two": "second"}["two" if stopped == "one" else "one"]
        assert_clone_equal(sb, "source", went_on)  # the other route, whole, after the refusal
        store = open_checkpoint(root / "shared" / "checkpoint.db")
        try:
            [session] = store.report().sessions
        finally:
            store.close()
        assert (session.state, f"route '{stopped}'" in session.detail) == ("blocked", True)
