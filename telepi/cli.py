"""The ``telepi`` command: parse arguments, build objects, map errors to exit codes."""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from telepi import __version__
from telepi.errors import UserFixableError
from telepi.sandbox.cli import add_commands as add_sandbox_commands
from telepi.sandbox.cli import scale_factor

log = logging.getLogger("telepi")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="telepi", description="Clone Telegram chats with several accounts.")
    parser.add_argument("--version", action="version", version=f"telepi {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="copy the session's source chat into its target")
    run.add_argument("session_dir", help="session directory holding .env (e.g. sessions/session1)")
    run.add_argument("--strict", action="store_true", help="refuse to start when secret files are readable by others")
    run.set_defaults(handler=_cmd_run)

    status = commands.add_parser("status", help="progress, leases, sessions and failures from the checkpoint")
    status.add_argument(
        "path",
        nargs="?",
        default="sessions",
        help="sessions root, session directory or checkpoint.db (default ./sessions)",
    )
    output = status.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="machine-readable output")
    output.add_argument("--prometheus", action="store_true", help="Prometheus metrics (text format) on stdout")
    output.add_argument(
        "--textfile", metavar="FILE", help="write the Prometheus metrics to FILE atomically (node_exporter textfile)"
    )
    status.add_argument(
        "--watch",
        nargs="?",
        const="2",
        metavar="SECONDS",
        help="show it again every SECONDS (default 2) until Ctrl-C: rates, ETA, flood waits with their method and "
        "end; redrawn on a terminal, plain lines otherwise, one JSON document a line with --json",
    )
    status.set_defaults(handler=_cmd_status)

    web = commands.add_parser("web", help="serve the status as a read-only page that refreshes itself (127.0.0.1)")
    web.add_argument(
        "path", nargs="?", default="sessions", help="sessions root, session directory or checkpoint.db (as status)"
    )
    web.add_argument("--port", type=int, default=8765, help="port to listen on (default 8765; 0: any free port)")
    web.add_argument(
        "--host",
        help="address to listen on (default 127.0.0.1). The page has no authentication: reach it through "
        "ssh -L; another address is used only when named here, with a warning",
    )
    web.set_defaults(handler=_cmd_web)

    login = commands.add_parser("login", help="log a session's account in (creates its .session file, mode 600)")
    login.add_argument("session_dir")
    login.add_argument(
        "--phone", help="phone number; with stdin not a terminal, the code (then the 2FA password) is read from stdin"
    )
    login.add_argument(
        "--qr",
        action="store_true",
        help="log in by scanning a QR code with the Telegram app of a logged-in device (no code sent)",
    )
    login.set_defaults(handler=_cmd_login)

    doctor = commands.add_parser("doctor", help="check everything a session needs, one line per check")
    doctor.add_argument("session_dir")
    doctor.set_defaults(handler=_cmd_doctor)

    retry = commands.add_parser(
        "retry", help="requeue failed messages, or skipped ones (all, one route's, given ids, given reasons)"
    )
    retry.add_argument("path", nargs="?", default="sessions", help="sessions root, session directory or checkpoint.db")
    retry.add_argument("--route", help="route id (see telepi status --json) or a route's name in the routes file")
    retry.add_argument("--ids", help="comma-separated source message ids")
    retry.add_argument(
        "--skipped",
        nargs="?",
        const="",
        metavar="REASON",
        help="requeue skipped messages instead of failed ones: those with REASON (comma-separated reasons "
        "as telepi status shows them), or without REASON every reason but service_message, deleted and filtered",
    )
    retry.add_argument(
        "--filtered",
        nargs="?",
        const="",
        metavar="ROUTE",
        help="requeue the messages the filters left out (of route ROUTE, else of --route or every route); "
        "running sessions judge them again by their current filters and copy what passes",
    )
    retry.set_defaults(handler=_cmd_retry)

    verify = commands.add_parser(
        "verify", help="compare the source with the target: missing, duplicated, out-of-order, wrongly mapped"
    )
    verify.add_argument("path", help="session directory whose account reads both chats (e.g. sessions/session1)")
    verify.add_argument(
        "--route",
        help="route id (see telepi status --json) or a route's name in the routes file; checked against the session",
    )
    verify.add_argument(
        "--adopt", action="store_true", help="record the copies the target holds in a new or restored checkpoint"
    )
    verify.add_argument("--requeue", action="store_true", help="queue the missing messages again")
    verify.add_argument("--json", action="store_true", help="machine-readable output")
    verify.set_defaults(handler=_cmd_verify)

    routes = commands.add_parser(
        "routes", help="the routes a session works (routes file or .env) with their state; 'check' validates the file"
    )
    routes.add_argument("words", nargs="*", metavar="[check] [SESSION_DIR]", help="default SESSION_DIR: .")
    routes.set_defaults(handler=_cmd_routes)

    checkpoint = commands.add_parser("checkpoint", help="move the shared checkpoint (SQLite <-> PostgreSQL)")
    checkpoint_verbs = checkpoint.add_subparsers(dest="verb", required=True, metavar="VERB")
    copy = checkpoint_verbs.add_parser(
        "copy", help="copy SRC into an empty DST while no session runs, verified row for row"
    )
    copy.add_argument("src", help="checkpoint.db path or postgresql:// URL to copy from")
    copy.add_argument("dst", help="new or empty checkpoint.db path or postgresql:// URL to copy into")
    copy.set_defaults(handler=_cmd_checkpoint_copy)

    demo = commands.add_parser("demo", help="watch a full clone against the built-in local Telegram (no account)")
    demo.add_argument("--messages", type=int, default=300, help="history size (default 300)")
    demo.add_argument("--video-mib", type=int, default=64, help="size of the large video (default 64 MiB)")
    demo.add_argument("--keep", type=Path, help="keep the sandbox state and sessions in this directory")
    demo.add_argument(
        "--limits-scale",
        type=scale_factor,
        default=60.0,
        metavar="K",
        help="play Telegram's flood limits K times faster (default 60: an hour in a minute; 1: real time)",
    )
    demo.set_defaults(handler=_cmd_demo)

    add_sandbox_commands(commands)
    return parser


def _cmd_run(args: argparse.Namespace) -> int:
    from telepi.commands.run import run

    return run(args.session_dir, strict=args.strict)


def _cmd_login(args: argparse.Namespace) -> int:
    from telepi.commands.login import Answers, login
    from telepi.config import load_settings

    settings = load_settings(args.session_dir)
    answers = Answers(args.phone, sys.stdin, interactive=sys.stdin.isatty(), qr=args.qr)
    # Flushed line by line: a QR code piped to a log or through ssh must show while it is valid (30 s).
    return asyncio.run(login(settings, answers, functools.partial(print, flush=True)))


def _cmd_doctor(args: argparse.Namespace) -> int:
    from telepi.commands.doctor import diagnose
    from telepi.config import load_settings

    settings = load_settings(args.session_dir)
    healthy = asyncio.run(diagnose(settings, lambda check: print(check.line(), flush=True)))
    return 0 if healthy else 1


def _cmd_demo(args: argparse.Namespace) -> int:
    from telepi.commands.demo import run_demo
    from telepi.service.logs import setup_logging

    setup_logging("WARNING")
    return asyncio.run(
        run_demo(
            Console(), messages=args.messages, video_mib=args.video_mib, keep=args.keep, limits_scale=args.limits_scale
        )
    )


def _watch_seconds(args: argparse.Namespace) -> float | None:
    """``--watch``'s optional SECONDS; a word that is no number is the PATH written after it
    (``telepi status --watch sessions``), so the order of the two does not matter."""
    try:
        seconds = float(args.watch)
    except ValueError:
        if args.path != "sessions":  # PATH given as well: the word was meant as SECONDS
            return None
        args.path, seconds = args.watch, 2.0
    return seconds if seconds > 0 else None


def _cmd_status(args: argparse.Namespace) -> int:
    from telepi.commands.status import locate_checkpoint, read_report, render, report_json, shown

    if args.watch is not None:
        from telepi.commands.watch import watch

        seconds = _watch_seconds(args)  # first: it may take the PATH from --watch
        if seconds is None:
            print("telepi: --watch takes a number of seconds above 0, e.g. --watch 5.", file=sys.stderr)
            return 2
        if args.prometheus or args.textfile:
            print(
                "telepi: --watch shows the status or its --json; for metrics run --textfile from a timer.",
                file=sys.stderr,
            )
            return 2
        db_path = locate_checkpoint(args.path)
        return watch(db_path, shown(db_path), seconds, as_json=args.json)
    db_path = locate_checkpoint(args.path)
    report = read_report(db_path)
    if args.prometheus or args.textfile:
        from telepi.commands.metrics import exposition, write_textfile

        if args.textfile:
            write_textfile(report, Path(args.textfile))
        else:
            print(exposition(report), end="")
    elif args.json:
        print(report_json(shown(db_path), report))
    else:
        render(Console(), shown(db_path), report)
    return 0


def _cmd_web(args: argparse.Namespace) -> int:
    from telepi.commands.status import locate_checkpoint
    from telepi.commands.web import LOOPBACK, is_loopback, serve

    host = args.host or LOOPBACK
    if not is_loopback(host):
        print(
            f"telepi: warning: listening on {host}: the page has no authentication, so anyone who reaches this "
            "port reads the status; prefer 127.0.0.1 and ssh -L 8765:127.0.0.1:8765 user@host.",
            file=sys.stderr,
        )
    if not 0 <= args.port <= 65535:
        print("telepi: --port takes a number from 0 to 65535.", file=sys.stderr)
        return 2
    return serve(locate_checkpoint(args.path), host, args.port, functools.partial(print, flush=True))


def _cmd_retry(args: argparse.Namespace) -> int:
    from telepi.commands.retry import retry, route_id

    if args.filtered is not None:
        route = route_id(args.path, args.filtered or args.route)
        print(retry(args.path, route=route, ids=args.ids, filtered=True))
        return 0
    print(retry(args.path, route=route_id(args.path, args.route), ids=args.ids, skipped=args.skipped))
    return 0


def _cmd_checkpoint_copy(args: argparse.Namespace) -> int:
    from telepi.commands.copy import copy

    for line in copy(args.src, args.dst):
        print(line)
    return 0


def _cmd_routes(args: argparse.Namespace) -> int:
    from telepi.commands.routes import check, listing

    words = list(args.words)
    checking = bool(words) and words[0] == "check"
    if checking:
        words.pop(0)
    if len(words) > 1:
        print("telepi: usage: telepi routes [check] [SESSION_DIR]", file=sys.stderr)
        return 2
    session_dir = words[0] if words else "."
    print(check(session_dir) if checking else listing(session_dir))
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from telepi.commands.verify import Options, run_verify
    from telepi.config import load_settings

    settings = load_settings(args.path)
    route = str(args.route) if args.route is not None else None
    number, name = (int(route), None) if route is not None and route.isdigit() else (None, route)
    options = Options(route=number, route_name=name, adopt=args.adopt, requeue=args.requeue)
    return run_verify(settings, options, as_json_output=args.json)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        handler = getattr(args, "handler", None) or args.func  # the sandbox's verbs set func
        result: int = handler(args)
        return result
    except UserFixableError as exc:
        if logging.getLogger().handlers:  # a running session: the journal and clone.log need it too
            log.error("%s", exc)
        else:
            print(f"telepi: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
