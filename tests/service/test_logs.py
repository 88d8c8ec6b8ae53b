"""Logging destinations: console, clone.log, the journal handler's fields, the stderr fallback; secrets out."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from telepi.service.logs import journal_priority, setup_logging, structured_fields, under_systemd
from tests.cli import REPO

SECRET = "0123456789abcdef0123456789abcdef"


@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_structured_fields_come_from_extra_over_the_defaults() -> None:
    log = logging.getLogger("telepi.test")
    record = log.makeRecord(
        "telepi.test", logging.INFO, __file__, 1, "m", (), None, extra={"event": "flood_wait", "msg_id": 5}
    )
    assert structured_fields(record, {"TELEPI_SESSION": "s1", "TELEPI_ROUTE": "a -> b"}) == {
        "TELEPI_SESSION": "s1",
        "TELEPI_ROUTE": "a -> b",
        "TELEPI_MSG_ID": "5",
        "TELEPI_EVENT": "flood_wait",
    }
    other = log.makeRecord("telepi.test", logging.INFO, __file__, 1, "m", (), None, extra={"session": "s2"})
    assert structured_fields(other, {"TELEPI_SESSION": "s1"}) == {"TELEPI_SESSION": "s2"}


@pytest.mark.parametrize(
    ("level", "priority"),
    [(logging.DEBUG, 7), (logging.INFO, 6), (25, 4), (logging.WARNING, 4), (logging.ERROR, 3), (logging.CRITICAL, 2)],
)
def test_levels_map_to_syslog_priorities(level: int, priority: int) -> None:
    assert journal_priority(level) == priority


def test_under_systemd_detection() -> None:
    assert not under_systemd({})
    assert under_systemd({"INVOCATION_ID": "4d1c"})
    assert under_systemd({"NOTIFY_SOCKET": "/run/systemd/notify"})
    assert not under_systemd({"JOURNAL_STREAM": "1:2"})  # inherited from a parent, not our stderr


def test_journal_stream_naming_our_stderr_means_systemd(tmp_path: Path) -> None:
    # A child whose stderr is a file, told that this very file is the journal stream.
    err = tmp_path / "stderr"
    with err.open("w") as handle:
        stat = os.fstat(handle.fileno())
        code = "from telepi.service.logs import under_systemd; print(under_systemd())"
        env = {"PATH": os.environ["PATH"], "JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino}"}
        result = subprocess.run(
            [sys.executable, "-c", code], stderr=handle, capture_output=False, stdout=subprocess.PIPE, env=env
        )
    assert result.stdout.decode().strip() == "True"


def test_console_and_clone_log_redact_secrets_in_tracebacks_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log_file = tmp_path / "clone.log"
    setup_logging("INFO", log_file, secrets=[SECRET], journal=False)
    log = logging.getLogger("telepi.test")
    log.info("hash is %s", SECRET, extra={"event": "x"})
    try:
        raise RuntimeError(f"server rejected {SECRET}")
    except RuntimeError:
        log.exception("failed")
    logging.getLogger("telethon.network").info("telethon chatter")
    err = capsys.readouterr().err
    text = log_file.read_text()
    for output in (err, text):
        assert SECRET not in output
        assert "hash is [redacted]" in output
        assert "RuntimeError: server rejected [redacted]" in output
        assert "telethon chatter" not in output
    assert " INFO    telepi.test: hash is [redacted]" in text


def test_under_systemd_records_go_to_the_journal_with_only_the_fields_they_should() -> None:
    pytest.importorskip("systemd.journal", reason="systemd-python (telepi[journald]) is not installed")
    setup_logging("DEBUG", secrets=[SECRET], session="session1", journal=True)
    [handler] = logging.getLogger().handlers
    sent: list[dict[str, Any]] = []

    def sender(message: str, **fields: Any) -> None:
        sent.append({"MESSAGE": message, **fields})

    # systemd-python's own hook (JournalHandler(sender_function=...)): capture instead of sending to journald.
    handler.send = sender
    log = logging.getLogger("telepi.engine")
    log.warning("flood wait %d s for %s", 42, SECRET, extra={"event": "flood_wait", "msg_id": 7, "phone": "+1555"})
    log.debug("plain", extra={"session": "other", "route": "a -> b"})
    first, second = sent
    assert {k: v for k, v in first.items() if k not in {"CODE_FILE", "CODE_LINE", "THREAD_NAME"}} == {
        "MESSAGE": "flood wait 42 s for [redacted]",
        "PRIORITY": "4",
        "LOGGER": "telepi.engine",
        "CODE_FUNC": "test_under_systemd_records_go_to_the_journal_with_only_the_fields_they_should",
        "SYSLOG_IDENTIFIER": "telepi",
        "TELEPI_SESSION": "session1",
        "TELEPI_MSG_ID": "7",
        "TELEPI_EVENT": "flood_wait",
    }
    assert first["CODE_FILE"] == __file__
    assert SECRET not in repr(first) and "+1555" not in repr(first)  # no raw args, no stray extras
    assert (second["PRIORITY"], second["TELEPI_SESSION"], second["TELEPI_ROUTE"]) == ("7", "other", "a -> b")


def test_without_systemd_python_lines_go_to_stderr_with_a_priority_prefix(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['systemd'] = None\n"  # as if systemd-python were not installed
        "import logging\n"
        "from telepi.service.logs import setup_logging\n"
        f"setup_logging('INFO', secrets=['{SECRET}'], journal=True)\n"
        f"logging.getLogger('telepi').warning('careful with %s', '{SECRET}')\n"
        "logging.getLogger('telepi').info('two\\nlines')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert result.stderr.splitlines() == [
        "<4>WARNING telepi: careful with [redacted]",
        "<6>INFO telepi: two",
        "<6>lines",
    ]


async def test_an_unreachable_telegram_logs_a_failed_connection_about_once_a_minute(tmp_path: Path) -> None:
    """Real Telethon against a closed port: its line per failed attempt (every 2 s in an outage) is kept for
    the first attempt and every 30th, so an hour's outage is some 60 lines, not 1,800."""
    import socket

    from telethon import TelegramClient
    from telethon.sessions import StringSession

    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    log_file = tmp_path / "clone.log"
    setup_logging("INFO", log_file, journal=False)
    client = TelegramClient(StringSession(), 1, "0" * 32, connection_retries=65, retry_delay=0)
    client.session.set_dc(2, "127.0.0.1", port)
    with pytest.raises(ConnectionError):
        await client.connect()
    attempts = [line for line in log_file.read_text().splitlines() if "at connecting failed" in line]
    assert [line.split("Attempt ")[1].split(" ")[0] for line in attempts] == ["1", "30", "60"]
