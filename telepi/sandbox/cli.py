"""``telepi sandbox serve | dump | post``: run a local Telegram, look into it, and act in it.

``add_commands(subparsers)`` adds the ``sandbox`` command to telepi's argparse parser; each leaf sets
``func(args) -> int`` (the exit code).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

from telepi.sandbox.control import ControlError, ControlServer, control_request
from telepi.sandbox.limits.flood import PRESETS
from telepi.sandbox.world.standing import STANDINGS

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_FAILED = 1


def add_commands(subparsers: Any) -> None:
    sandbox = subparsers.add_parser("sandbox", help="a local Telegram for tests and demos")
    commands = sandbox.add_subparsers(dest="sandbox_command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the sandbox until SIGINT/SIGTERM")
    serve.add_argument("--world", type=Path, help="world file (JSON) to load into a fresh state directory")
    serve.add_argument("--state", type=Path, required=True, help="state directory (created if missing)")
    serve.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (default: a free one)")
    serve.add_argument(
        "--limits",
        choices=sorted(PRESETS),
        default="off",
        help="flood limits: realistic (Telegram's quotas, from field reports), sliding (a window per send method)",
    )
    serve.add_argument(
        "--limits-scale",
        type=scale_factor,
        default=1.0,
        metavar="K",
        help="run the limits' clock K times faster (60: an hour of quotas and waits in a minute)",
    )
    serve.set_defaults(func=cmd_serve)

    dump = commands.add_parser("dump", help="print a chat's messages and topics (works while serve runs)")
    dump.add_argument("--state", type=Path, required=True)
    dump.add_argument("--chat", required=True, help="chat name, username or id")
    dump.add_argument("--as", dest="as_account", help="whose copy of a basic group's messages (default: owner)")
    dump.add_argument("--json", action="store_true", help="JSON instead of a table")
    dump.set_defaults(func=cmd_dump)

    post = commands.add_parser("post", help="post a message into a running sandbox's chat (live updates)")
    post.add_argument("--state", type=Path, required=True)
    post.add_argument("--chat", required=True)
    post.add_argument("--text", required=True)
    post.add_argument("--topic", type=int, help="forum topic id")
    post.add_argument("--as", dest="as_account", help="sender (default: the chat's owner)")
    post.set_defaults(func=cmd_post)

    account = commands.add_parser(
        "account", help="what Telegram does to an account from outside: revoke its logins, ban or freeze it"
    )
    account.add_argument("--state", type=Path, required=True)
    account.add_argument("--as", dest="as_account", required=True, help="the account (name, phone or id)")
    account.add_argument("--standing", required=True, choices=["revoked", "forgotten", *STANDINGS])
    account.set_defaults(func=cmd_account)


def scale_factor(text: str) -> float:
    """An argparse type: how many times faster the flood model's clock runs (any positive number)."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="telepi")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


# ---- serve -------------------------------------------------------------------------------------


def cmd_serve(args: argparse.Namespace) -> int:
    from telepi.sandbox.world.worldfile import WorldFileError

    if args.world is not None and not args.world.is_file():
        print(f"error: world file {args.world} does not exist; pass --world FILE with a JSON world", file=sys.stderr)
        return EXIT_USAGE
    try:
        return asyncio.run(_serve(args))
    except WorldFileError as exc:
        print(f"error: {args.world}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_OK


async def _serve(args: argparse.Namespace) -> int:
    from telepi.sandbox.limits.faults import Faults
    from telepi.sandbox.sandbox import API_HASH, API_ID, Sandbox

    reused = (args.state / "world.sqlite").is_file()
    faults = Faults()
    faults.use_limits(args.limits, scale=args.limits_scale)
    sb = Sandbox(world=args.world, state_dir=args.state, port=args.port, faults=faults)
    await sb.start()
    if reused and args.world is not None:
        print(f"note: {args.state} already holds a world; --world {args.world} was not loaded")
    control = ControlServer(sb)
    await control.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        print(f"sandbox listening on {sb.host}:{sb.port} (state: {sb.state_dir.resolve()})")
        ports = ", ".join(f"DC {dc} on {server.port}" for dc, server in sorted(sb.servers.items()))
        print(f"data centres: {ports} (accounts live on DC {sb.dc_id}; help.getConfig lists them all)")
        scaled = f", {args.limits_scale:g}x faster" if args.limits_scale != 1 else ""
        print(f"flood limits: {args.limits}{scaled}")
        for account in sb.world.accounts():
            print(f"\n# .env for {account.name} (phone {account.phone}; code and password: see the world file)")
            print(f"TG_API_ID={API_ID}")
            print(f"TG_API_HASH={API_HASH}")
            print(f"TG_DC={sb.host}:{sb.port}")
            print(f"TG_SERVER_KEY={sb.public_key_path.resolve()}")
        print("\nready; Ctrl-C stops", flush=True)
        await stop.wait()
    finally:
        await control.stop()
        await sb.stop()
    return EXIT_OK


# ---- dump --------------------------------------------------------------------------------------


def cmd_dump(args: argparse.Namespace) -> int:
    from telepi.sandbox.sandbox import message_data
    from telepi.sandbox.world.files import FileStore
    from telepi.sandbox.world.world import World

    db = args.state / "world.sqlite"
    if not db.is_file():
        print(
            f"error: no sandbox state in {args.state}; run `telepi sandbox serve --state {args.state}`", file=sys.stderr
        )
        return EXIT_USAGE
    world = World(db)
    files = FileStore(args.state)
    try:
        try:
            chat = world.find_chat_ref(args.chat)
        except KeyError:
            known = ", ".join(c.name for c in world.all_chats())
            print(f"error: no chat {args.chat!r} in {args.state} (chats: {known})", file=sys.stderr)
            return EXIT_USAGE
        box = (
            chat.id if chat.is_channel else (world.account(args.as_account).id if args.as_account else chat.creator_id)
        )
        msgs = world.all_messages(box, chat.id)
        names = {u.id: u.name for u in world.users({m.from_id for m in msgs if m.from_id is not None})}
        data = {
            "chat": {
                "id": chat.id,
                "name": chat.name,
                "kind": chat.kind,
                "title": chat.title,
                "username": chat.username,
                "forum": chat.forum,
                "noforwards": chat.noforwards,
            },
            "messages": [message_data(world, files, chat, m, names) for m in msgs],
            "topics": [
                {"id": t.id, "title": t.title, "closed": t.closed, "hidden": t.hidden, "icon_color": t.icon_color}
                for t in world.topics(chat.id)
            ],
        }
    finally:
        files.close()
        world.close()
    if args.json:
        json.dump(data, sys.stdout, ensure_ascii=False, indent=1)
        print()
    else:
        _print_table(data)
    return EXIT_OK


def _print_table(data: dict[str, Any]) -> None:
    chat = data["chat"]
    print(f"{chat['name']} ({chat['kind']}{', forum' if chat['forum'] else ''}): {len(data['messages'])} messages")
    for topic in data["topics"]:
        print(f"  topic {topic['id']}: {topic['title']}{' (closed)' if topic['closed'] else ''}")
    for m in data["messages"]:
        kind = m["service"] or (m["media"]["kind"] if m["media"] else "text")
        text = m["text"].replace("\n", " ")
        where = f" t{m['topic']}" if m["topic"] is not None else ""
        album = " album" if m["grouped_id"] else ""
        print(f"{m['id']:>7} {m['sender'] or '-':<12}{where:<5} {kind:<9}{album} {text[:60]}")


# ---- post --------------------------------------------------------------------------------------


def cmd_post(args: argparse.Namespace) -> int:
    request: dict[str, Any] = {"op": "post", "chat": args.chat, "text": args.text}
    if args.topic is not None:
        request["topic"] = args.topic
    if args.as_account:
        request["as"] = args.as_account
    try:
        answer = asyncio.run(control_request(args.state, request))
    except ControlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(answer["id"])
    return EXIT_OK


def cmd_account(args: argparse.Namespace) -> int:
    request = {"op": "account", "as": args.as_account, "standing": args.standing}
    try:
        asyncio.run(control_request(args.state, request))
    except ControlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"{args.as_account}: {args.standing}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
