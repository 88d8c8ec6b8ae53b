"""What the e2e modules share: their prerequisites (a machine that can host containers, ansible-playbook), their
progress lines, a snapshot of the code to deploy, and the target's contents as the checks compare them."""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from telepi.sandbox.world.photos import media_key
from tests.cli import REPO
from tests.e2e.container import missing_requirement


def prerequisites(request: pytest.FixtureRequest, label: str) -> tuple[str, Callable[[str], None]]:
    """ansible-playbook's path and a ``say(line)`` that prints past pytest's capture; skips the module with one
    sentence when this machine cannot run it."""
    reason = missing_requirement()
    if reason:
        pytest.skip(f"e2e container: {reason}")
    bin_dir = Path(sys.executable).parent
    ansible_playbook = shutil.which("ansible-playbook", path=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    if ansible_playbook is None:
        pytest.skip("e2e container: ansible-playbook is not installed (pip install ansible-core)")
    capture = request.config.pluginmanager.getplugin("capturemanager")

    def say(line: str) -> None:
        with capture.global_and_fixture_disabled():
            print(f"\n[{label}] {line}", end="", flush=True)

    return ansible_playbook, say


def snapshot_source(destination: Path) -> Path:
    """The code the playbook deploys, copied: edits made meanwhile do not count as changes."""
    shutil.copytree(REPO / "telepi", destination / "telepi", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, destination / name)
    return destination


def copy_key(message: dict[str, Any]) -> tuple[str, str]:
    """A message as a copy must match it: its text and its media's kind and content (a photo's sizes: Telegram
    re-encodes it)."""
    return (message["text"] or "", media_key(message["media"]))


def wait_for(what: str, condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)
