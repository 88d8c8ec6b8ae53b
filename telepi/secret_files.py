"""Secrets on disk (``.env``, ``.session`` files) must not be readable by group or others."""

from __future__ import annotations

import stat

from telepi.config import Settings
from telepi.errors import ConfigError, Problem


def exposed_secret_files(settings: Settings) -> list[Problem]:
    """One problem per secret file that group or others can read or write."""
    directory = settings.session_dir
    candidates = [directory / ".env", *sorted(directory.glob("*.session"))]
    problems = []
    for path in candidates:
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            continue
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            problems.append(
                Problem(
                    path.name,
                    f"{path} is readable by other users (mode {stat.S_IMODE(mode):o})",
                    f"run: chmod 600 {path}",
                )
            )
    return problems


def check_permissions(settings: Settings, *, strict: bool) -> list[str]:
    """Warnings for exposed secret files; with ``strict`` they are a ConfigError instead."""
    problems = exposed_secret_files(settings)
    if strict and problems:
        raise ConfigError(problems)
    return [problem.sentence() for problem in problems]
