"""The ``telepi`` command: parse arguments, build objects, map errors to exit codes."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from rich.console import Console

from telepi import __version__
from telepi.errors import UserFixableError

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
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(handler=_cmd_status)

    _add_optional_commands(commands)
    return parser


def _add_optional_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    try:
        sandbox_cli = importlib.import_module("telepi.sandbox.cli")
    except ImportError:  # the sandbox is being built; telepi works without it
        return
    add = getattr(sandbox_cli, "add_commands", None)
    if add is not None:
        add(commands)


def _cmd_run(args: argparse.Namespace) -> int:
    from telepi.checkpoint.sqlite import SqliteStore
    from telepi.config import load_settings
    from telepi.permissions import check_permissions
    from telepi.service.logs import setup_logging

    settings = load_settings(args.session_dir)
    setup_logging(settings.log_level, settings.log_file, secrets=[settings.api_hash])
    for warning in settings.warnings:
        log.warning(warning)
    for warning in check_permissions(settings, strict=args.strict):
        log.warning(warning)
    store = SqliteStore(settings.shared_db_path)
    try:
        log.info(
            "session %s: configuration valid (%s, mode %s); checkpoint %s",
            settings.session_name,
            settings.route_label,
            settings.mode,
            settings.shared_db_path,
        )
        log.error("the clone engine is not part of this build yet; nothing to copy")
    finally:
        store.close()
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from telepi.status import locate_checkpoint, read_report, render, report_json

    db_path = locate_checkpoint(args.path)
    report = read_report(db_path)
    if args.json:
        print(report_json(db_path, report))
    else:
        render(Console(), db_path, report)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.handler(args)
        return result
    except UserFixableError as exc:
        print(f"telepi: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
