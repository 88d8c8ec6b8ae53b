"""One-shot ``python -m telepi VERB ...`` for tests: the child runs to its end, its output captured."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def telepi(
    *args: str | Path,
    timeout: float | None = 120,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    cwd: Path | None = REPO,
) -> subprocess.CompletedProcess[str]:
    """``telepi ARGS`` through this interpreter; ``env`` given is the whole environment, as in subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "telepi", *map(str, args)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env,
    )


async def telepi_async(
    *args: str | Path,
    timeout: float | None = 120,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    cwd: Path | None = REPO,
) -> subprocess.CompletedProcess[str]:
    """:func:`telepi` in a thread, so the test's event loop (and its sandbox) keeps serving the child."""
    return await asyncio.to_thread(telepi, *args, timeout=timeout, env=env, stdin=stdin, cwd=cwd)
