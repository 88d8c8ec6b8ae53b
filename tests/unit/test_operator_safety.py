"""What an operator sees and what telepi leaves on disk: one sentence and a distinct exit code instead of a
traceback, titles shown as plain text, private files whatever the umask, foreign files never written."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from telepi.checkpoint import SqliteStore
from telepi.errors import EX_CONFIG, CheckpointError
from tests.unit.test_config import GOOD_ENV, run_cli, write_session


def cli(*args: str, umask: int | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "telepi", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
        preexec_fn=None if umask is None else (lambda: os.umask(umask)),
    )


@contextlib.contextmanager
def small_disk(where: Path, size: str = "1m") -> Iterator[Path]:
    """A real, separate file system (tmpfs) that can fill up or turn read-only; needs root."""
    where.mkdir(parents=True, exist_ok=True)
    if (
        os.geteuid() != 0
        or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)]).returncode
    ):
        pytest.skip("mounting a tmpfs needs root")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_status_shows_titles_as_plain_text_not_markup(tmp_path: Path) -> None:
    db = tmp_path / "checkpoint.db"
    store = SqliteStore(db)
    store.route("a", "b", "[bold]Loud[/bold] [/x] \x1b[2Jwiped -> target")
    store.close()
    result = cli("status", str(db))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "[bold]Loud[/bold] [/x] \\x1b[2Jwiped" in result.stdout  # shown as written, escape made visible
    assert "\x1b[2J" not in result.stdout


def test_status_on_a_read_only_checkpoint_reports(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk") as disk:
        store = SqliteStore(disk / "shared" / "checkpoint.db")
        store.route("a", "b", "source -> target")
        store.close()
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        result = cli("status", str(disk / "shared" / "checkpoint.db"))
        assert result.returncode == 0, result.stderr
        assert "source -> target" in result.stdout and "Traceback" not in result.stderr


def test_run_on_a_read_only_checkpoint_exits_78_naming_shared_db_path(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk") as disk:
        SqliteStore(disk / "checkpoint.db").close()
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        directory = write_session(tmp_path / "sessions", {**GOOD_ENV, "SHARED_DB_PATH": str(disk / "checkpoint.db")})
        result = run_cli("run", str(directory))
        assert result.returncode == EX_CONFIG, result.stderr
        assert "Traceback" not in result.stderr
        assert f"the checkpoint {disk / 'checkpoint.db'} cannot be written: its directory {disk} is read-only" in (
            result.stderr
        )
        assert "point SHARED_DB_PATH at a writable place" in result.stderr


def test_a_directory_in_place_of_the_checkpoint_exits_78(tmp_path: Path) -> None:
    (tmp_path / "sessions" / "shared" / "checkpoint.db").mkdir(parents=True)
    directory = write_session(tmp_path / "sessions", GOOD_ENV)
    for result in (run_cli("run", str(directory)), cli("status", str(tmp_path / "sessions"))):
        assert result.returncode == EX_CONFIG, result.stderr
        assert "Traceback" not in result.stderr
        assert "checkpoint.db is a directory, not a file: remove it, or point SHARED_DB_PATH at a file" in (
            result.stderr
        )


def test_a_full_disk_under_the_checkpoint_is_one_sentence(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", size="256k") as disk:
        store = SqliteStore(disk / "checkpoint.db")
        store.route("a", "b")
        with contextlib.suppress(OSError), (disk / "filler").open("wb") as filler:
            filler.write(b"\0" * 1024 * 1024)
        with pytest.raises(CheckpointError) as caught:
            for number in range(100):
                store.route(f"source {number} " + "x" * 4000, "target")
        store.close()
        assert caught.value.exit_code == EX_CONFIG
        assert str(caught.value).startswith(f"the disk holding the checkpoint {disk / 'checkpoint.db'} is full")
        assert str(caught.value).endswith("free space there, then start again.")


def test_a_foreign_sqlite_file_is_not_touched_at_all(tmp_path: Path) -> None:
    foreign = tmp_path / "other.db"
    db = sqlite3.connect(foreign)
    db.execute("CREATE TABLE notes (text TEXT)")
    db.commit()
    db.close()
    before = foreign.read_bytes()
    result = cli("retry", str(foreign))
    assert result.returncode == EX_CONFIG and "Traceback" not in result.stderr
    assert "is an SQLite database but not a telepi checkpoint; it was left untouched" in result.stderr
    assert foreign.read_bytes() == before  # still in rollback-journal mode: not switched to WAL
    assert not Path(f"{foreign}-wal").exists()


def test_checkpoint_and_its_directory_are_private_whatever_the_umask(tmp_path: Path) -> None:
    db = tmp_path / "sessions" / "shared" / "checkpoint.db"
    result = subprocess.run(
        [sys.executable, "-c", f"from telepi.checkpoint import SqliteStore; SqliteStore({str(db)!r}).close()"],
        preexec_fn=lambda: os.umask(0o022),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700


def test_clone_log_is_private_whatever_the_umask(tmp_path: Path) -> None:
    directory = write_session(tmp_path / "sessions", GOOD_ENV)
    result = cli("run", str(directory), umask=0o022)
    assert result.returncode == EX_CONFIG  # not logged in: what matters here is the log it wrote on the way
    assert "not logged in" in result.stderr and "Traceback" not in result.stderr
    assert stat.S_IMODE((directory / "clone.log").stat().st_mode) == 0o600
    assert not (directory / "session1.session").exists()


def test_a_huge_env_value_is_cut_in_the_message(tmp_path: Path) -> None:
    directory = write_session(tmp_path / "sessions", {**GOOD_ENV, "MODE": "y" * 2_000_000})
    result = run_cli("doctor", str(directory))
    assert result.returncode == EX_CONFIG and "Traceback" not in result.stderr
    assert "MODE='" + "y" * 80 + "'… (2,000,000 characters)" in result.stderr
    assert len(result.stderr) < 2000
