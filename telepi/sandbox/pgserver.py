"""A real, throwaway PostgreSQL server for the tests and the benchmarks: ``initdb`` + ``pg_ctl`` in a
temporary directory, on a free loopback port, stopped at the end whatever happened.

It lives beside the local Telegram because it plays the same part (a local stand-in for what telepi talks to),
and because both ``tests/`` and ``bench/`` already import the sandbox while neither should import the other.

Debian's ``postgresql`` package provides the binaries (``scripts/setup.sh dev`` installs it). ``initdb``
and ``postgres`` refuse to run as root, so as root they run as the ``postgres`` system user. The server
asks for a password (scram-sha-256), as a real one does: tests see whether a password leaks anywhere.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import itertools
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

USER = "telepi"
_counter = itertools.count(1)


def binaries() -> Path | None:
    """The newest installed PostgreSQL's bin directory, or None when it is not installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name))
    if not found or (shutil.which("runuser") is None and os.geteuid() == 0):
        return None
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PgServer:
    def __init__(self, bindir: Path, *, durable: bool = False) -> None:
        self.bindir = bindir
        self.durable = durable
        self.password = secrets.token_urlsafe(16)
        self.base = Path(tempfile.mkdtemp(prefix="telepi-pg-"))
        self.data = self.base / "data"
        self.port = _free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.base, owner.pw_uid, owner.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        pwfile = self.base / "pw"
        pwfile.write_text(self.password + "\n")
        if self._as:
            os.chown(pwfile, pwd.getpwnam("postgres").pw_uid, -1)
        self._call(
            "initdb", "-D", str(self.data), "-U", USER, f"--pwfile={pwfile}", "-A", "scram-sha-256",
            "-E", "UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip
        pwfile.unlink()
        # fsync off for the tests: they kill clients, never this server, and it runs on a shared 2-core machine.
        # The benchmarks ask for PostgreSQL's durable defaults, as a production server runs (and SQLite's FULL).
        durability = "" if durable else "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.base} "
            f"{durability}-c max_connections=300"
        )
        self._call("pg_ctl", "-D", str(self.data), "-l", str(self.base / "log"), "-w", "-o", options, "start")
        self.running = True
        atexit.register(self.stop)

    def _call(self, tool: str, *args: str) -> None:
        done = subprocess.run([*self._as, str(self.bindir / tool), *args], capture_output=True, text=True)
        if done.returncode != 0:
            log = self.base / "log"
            raise RuntimeError(f"{tool} failed: {done.stderr or done.stdout}{log.read_text() if log.exists() else ''}")

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{USER}:{self.password}@127.0.0.1:{self.port}/{dbname}"

    def new_database(self) -> str:
        """A fresh empty database; returns its URL (with the password)."""
        import psycopg

        name = f"t{os.getpid()}_{next(_counter)}"
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name} TEMPLATE template0".encode())
        return self.url(name)

    def cpu_seconds(self) -> float:
        """CPU time the server has used so far (user + system): the postmaster's own, its exited children's
        (backends end when their client disconnects; the postmaster waits for them) and its live children's.
        Linux only (``/proc``); a benchmark reads it before and after a run."""
        ticks = os.sysconf("SC_CLK_TCK")
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])

        def fields(pid: int) -> list[str]:
            # after "(comm)": state is field 3, utime 14, stime 15, cutime 16, cstime 17 (proc(5))
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()

        own = fields(postmaster)
        total = sum(int(v) for v in own[11:15])
        for child in Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split():
            with contextlib.suppress(OSError):
                total += sum(int(v) for v in fields(int(child))[11:13])
        return total / ticks

    def stop(self) -> None:
        if getattr(self, "running", False):
            self.running = False
            with contextlib.suppress(RuntimeError):
                self._call("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.base, ignore_errors=True)


def start_server(*, durable: bool = False) -> PgServer | None:
    """A new server, or None when PostgreSQL (Debian's package) or psycopg is not installed here."""
    bindir = binaries()
    if bindir is None:
        return None
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return None
    return PgServer(bindir, durable=durable)
