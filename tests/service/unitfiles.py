"""Helpers to check systemd units offline with systemd-analyze, without systemd running (see
/work/shared/notes/systemd-e2e.md): a unit is checked inside a --root holding a copy of the system units
and a stub of its ExecStart binary; a template is checked as an instance."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.cli import REPO

UNIT = REPO / "deploy" / "systemd" / "telepi@.service"
TEMPLATE = REPO / "deploy" / "ansible" / "templates" / "telepi@.service.j2"
GROUP_VARS = REPO / "deploy" / "ansible" / "group_vars" / "all.yml"
INSTANCE = "telepi@session1.service"


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    return path


def directives(text: str) -> dict[str, list[str]]:
    """Key -> values in order (keys like SystemCallFilter may repeat)."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and line[0] not in "#;[" and "=" in line:
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def make_root(base: Path, unit_text: str, name: str = "telepi@.service") -> Path:
    """A root for systemd-analyze --root: system units, our unit, a stub of each binary it runs (ExecStart,
    and ExecReload's /bin/kill, which every Debian has)."""
    root = base / "root"
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "etc/systemd/system" / name).write_text(unit_text)
    unit = directives(unit_text)
    for command in unit.get("ExecStart", []) + unit.get("ExecReload", []):
        binary = root / command.split()[0].lstrip("-@:+!").lstrip("/")
        binary.parent.mkdir(parents=True, exist_ok=True)
        binary.write_text("#!/bin/sh\n")
        binary.chmod(0o755)
    return root


def verify(root: Path, unit: str = INSTANCE) -> str:
    """Everything systemd-analyze verify says about the unit; a clean unit says nothing."""
    result = subprocess.run(
        [systemd_analyze(), "verify", f"--root={root}", unit], capture_output=True, text=True, check=False
    )
    return (result.stdout + result.stderr + ("" if result.returncode == 0 else f"exit {result.returncode}")).strip()


def exposure(root: Path, unit: str = INSTANCE) -> tuple[float, str]:
    """systemd-analyze security's overall exposure (0 = locked down, 10 = exposed) and its full table."""
    result = subprocess.run(
        [systemd_analyze(), "security", "--offline=true", f"--root={root}", "--no-pager", unit],
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    return float(match.group(1)), result.stdout
