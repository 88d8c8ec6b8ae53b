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


def older_python() -> str | None:
    """A real Python older than 3.11 on this machine, to play a host's (Debian 11, Ubuntu 22.04)."""
    candidates = [shutil.which(f"python3.{minor}") for minor in range(10, 5, -1)]
    candidates += sorted(str(path) for path in Path("/root/.pyenv/versions").glob("3.*/bin/python3"))
    for candidate in filter(None, candidates):
        version = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info >= (3, 6) and sys.version_info < (3, 11))"],
            capture_output=True,
            text=True,
            check=False,
        )
        if version.stdout.strip() == "True":
            return candidate
    return None


def test_a_host_python_older_than_311_is_refused_before_anything_changes(tmp_path: Path) -> None:
    """The playbook against this machine (connection local, --check): told the host's Python is a real 3.10 or
    older, it stops at its Python check with one sentence; with this Python, the same check passes."""
    old = older_python()
    if old is None:
        pytest.skip("no Python older than 3.11 on this machine to play the host's")
    for name in ("session1", "session2"):
        (tmp_path / name).mkdir()
        (tmp_path / name / ".env").write_text("TG_API_ID=1\n")
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(f"[telepi]\nthis ansible_connection=local ansible_python_interpreter={sys.executable}\n")

    def playbook(host_python: str) -> subprocess.CompletedProcess[str]:
        return run(
            tool("ansible-playbook"),
            "--check",
            "-i",
            str(inventory),
            "-e",
            f"telepi_local_sessions_dir={tmp_path} telepi_host_python={host_python} telepi_build_wheels=false",
            "deploy.yml",
        )

    refused = playbook(old)
    output = refused.stdout + refused.stderr
    assert refused.returncode != 0, output
    version = subprocess.run([old, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True)
    assert (
        f"{old} is Python {version.stdout.decode().strip()} on the host and telepi needs Python 3.11 or newer: "
        "install one the distribution's way (Ubuntu 22.04: sudo apt install python3.11-venv) and run again with "
        "-e telepi_host_python=/usr/bin/python3.11, or use Debian 12 or Ubuntu 24.04." in output
    ), output
    # Nothing after the check ran: the tasks that change the host come later.
    assert "TASK [Check the host is Debian or Ubuntu running systemd]" not in output, output

    missing = playbook("/usr/bin/python3.99")
    assert "/usr/bin/python3.99 does not run on the host and telepi needs Python 3.11" in missing.stdout, missing.stdout

    accepted = playbook(sys.executable)
    assert "TASK [Check the host is Debian or Ubuntu running systemd]" in accepted.stdout, accepted.stdout
