"""The sandbox's state on disk private to its user whatever the umask: its private key and every auth key
live there (keystore.sqlite), as do the world and uploaded files."""

from __future__ import annotations

import os
from pathlib import Path


def private_dir(path: Path) -> Path:
    """``path`` and any parents it creates, 0700 (an existing directory is left as it is: it may be shared)."""
    missing = [parent for parent in (path, *path.parents) if not parent.exists()]
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)
        os.chmod(directory, 0o700)
    return path


def private_file(path: Path) -> Path:
    """``path`` created empty 0600 if missing (SQLite then gives its -wal and -shm the same mode)."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    os.chmod(path, 0o600)
    return path
