"""deploy/ansible: the playbook parses and is ansible-lint clean (production profile)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ANSIBLE_DIR = Path(__file__).resolve().parents[2] / "deploy" / "ansible"


def tool(name: str) -> str:
    # The project's venv first: ansible-core and ansible-lint are dev dependencies.
    path = shutil.which(name, path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    if path is None:
        pytest.skip(f"{name} is not installed (pip install ansible-core ansible-lint)")
    return path


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ANSIBLE_NOCOLOR": "1",
        "NO_COLOR": "1",
        "PATH": f"{Path(argv[0]).parent}:{os.environ['PATH']}",
    }
    return subprocess.run(argv, cwd=ANSIBLE_DIR, capture_output=True, text=True, env=env, check=False, timeout=300)


def test_playbook_syntax_check() -> None:
    result = run(tool("ansible-playbook"), "--syntax-check", "-i", "inventory.example.ini", "deploy.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stderr, result.stderr


def test_ansible_lint_production_profile() -> None:
    result = run(tool("ansible-lint"), "--offline", "--profile", "production", "--nocolor")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Profile 'production' was required, and it passed" in result.stdout + result.stderr
