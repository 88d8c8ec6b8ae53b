#!/usr/bin/env python3
"""Exit 1 naming each given file that a process on this machine has open; 0 when none is.

deploy.yml runs it before moving .session files (Telegram logins) to the host: a login used from two
places at once is revoked. Reads /proc (Linux); elsewhere asks lsof; says so when it cannot tell.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys


def open_files_proc() -> dict[str, str]:
    """Open file path -> pid of one process holding it (only processes this user may inspect)."""
    holders: dict[str, str] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        fd_dir = f"/proc/{pid}/fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                holders.setdefault(os.readlink(f"{fd_dir}/{fd}"), pid)
            except OSError:
                continue
    return holders


def open_files_lsof(paths: list[str]) -> dict[str, str]:
    result = subprocess.run(["lsof", "-F", "pn", "--", *paths], capture_output=True, text=True, check=False)
    holders: dict[str, str] = {}
    pid = "?"
    for line in result.stdout.splitlines():
        if line.startswith("p"):
            pid = line[1:]
        elif line.startswith("n"):
            holders.setdefault(line[1:], pid)
    return holders


def main(argv: list[str]) -> int:
    paths = [os.path.realpath(path) for path in argv]
    if os.path.isdir("/proc/self/fd"):
        holders = open_files_proc()
    elif shutil.which("lsof"):
        holders = open_files_lsof(paths)
    else:
        print("cannot tell whether these files are in use here (no /proc, no lsof):", *paths)
        return 0
    busy = [f"{path} (pid {holders[path]})" for path in paths if path in holders]
    if busy:
        print("in use on this machine; stop that telepi first:", ", ".join(busy), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
