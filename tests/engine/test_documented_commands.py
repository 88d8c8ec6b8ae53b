"""Every command the README documents, run as a user types it: through the installed ``telepi`` entry point
(not ``python -m telepi``), against a local Telegram, each ending as the README says."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.cli import REPO
from tests.engine.test_clone import forum_world

README = (REPO / "README.md").read_text()
TELEPI = Path(sys.executable).with_name("telepi")  # what `pip install` put beside the venv's python


def documented() -> dict[str, str]:
    """The README's command table: verb -> its synopsis (`telepi run SESSION_DIR [--strict]`)."""
    rows = re.findall(r"^\| `telepi (\w+)([^`]*)` \|", README, flags=re.MULTILINE)
    return {verb: synopsis for verb, synopsis in rows}


def telepi(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TELEPI), *args], input=stdin, capture_output=True, text=True, timeout=180, cwd=REPO, check=False
    )


def test_the_entry_point_is_installed() -> None:
    result = telepi("--version")
    assert result.returncode == 0 and result.stdout.startswith("telepi "), result.stderr


def test_the_readme_and_the_help_list_the_same_commands() -> None:
    listed = telepi("--help").stdout
    verbs = set(re.findall(r"^    (\w+)\s{2,}", listed, flags=re.MULTILINE))
    assert verbs == set(documented())


@pytest.mark.parametrize("verb", sorted(documented()))
def test_each_documented_option_is_in_the_commands_help(verb: str) -> None:
    result = telepi(verb, "--help")
    assert result.returncode == 0 and "Traceback" not in result.stderr
    for option in re.findall(r"--[a-z][a-z-]*", documented()[verb]):
        assert option in result.stdout, f"README documents `telepi {verb} {option}`; its --help does not"


def test_a_newcomer_follows_the_readme_from_sandbox_to_clone(tmp_path: Path) -> None:
    """The README's path with a local Telegram: serve it, write a session's .env, log in, check, clone, look,
    verify, retry, post, take the login away. Each command as documented, through the entry point."""
    ran: set[str] = set()

    def run(*args: str, code: int = 0, stdin: str | None = None) -> str:
        result = telepi(*args, stdin=stdin)
        assert result.returncode == code, f"telepi {' '.join(args)}: {result.stdout[-1500:]}{result.stderr[-1500:]}"
        assert "Traceback" not in result.stderr
        ran.add(args[0])
        return result.stdout + result.stderr

    world, state, root = tmp_path / "world.json", tmp_path / "state", tmp_path / "sessions"
    world.write_text(json.dumps(forum_world(12)))
    server = subprocess.Popen(
        [str(TELEPI), "sandbox", "serve", "--world", str(world), "--state", str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        printed = []
        while not printed or printed[-1] != "ready; Ctrl-C stops":
            line = server.stdout.readline()
            assert line, server.stderr.read() if server.stderr else ""
            printed.append(line.strip())
        ran.add("sandbox")
        snippet = "\n".join(printed)
        bob = snippet[snippet.index("# .env for bob") :].split("\n\n")[0].splitlines()[1:]
        chats = {
            name: json.loads(run("sandbox", "dump", "--state", str(state), "--chat", name, "--json"))
            for name in ("source", "target")
        }
        directory = root / "session1"
        directory.mkdir(parents=True)
        env = [*bob, f"SOURCE_CHAT={chats['source']['chat']['id']}", f"TARGET_CHAT={chats['target']['chat']['id']}"]
        (directory / ".env").write_text("\n".join([*env, "LIVE=false", "SEND_INTERVAL=0", "READ_INTERVAL=0"]) + "\n")
        (directory / ".env").chmod(0o600)

        assert "logged in as" in run("login", str(directory), "--phone", "+15550000002", stdin="12345\n")
        assert "PROBLEM" not in run("doctor", str(directory))
        run("run", str(directory), "--strict")  # LIVE=false: exits 0 once everything is copied
        status = json.loads(run("status", str(root), "--json"))
        [route] = status["routes"]
        assert route["counts"]["done"] > 0
        assert all(count == 0 for status, count in route["counts"].items() if status not in ("done", "skipped"))
        assert "done" in run("status", str(directory))
        assert "telepi_" in run("status", str(root), "--prometheus")
        run("status", str(root), "--textfile", str(tmp_path / "telepi.prom"))
        names = re.compile(r"^(telepi_\w+)", re.MULTILINE)  # the same series (values move with time)
        exposed = run("status", str(root), "--prometheus")
        assert set(names.findall((tmp_path / "telepi.prom").read_text())) == set(names.findall(exposed))
        verified = json.loads(run("verify", str(directory), "--json"))
        assert verified["findings"] == [] and verified["source_messages"] == route["counts"]["done"]
        assert "nothing to fix" in run("verify", str(directory)).lower()
        listed = run("routes", str(directory))  # the .env's one route, with its state in the checkpoint
        assert f"{route['counts']['done']} done" in listed and "0 failed" in listed, listed
        assert "no routes file" in run("routes", "check", str(directory))
        run("retry", str(root))  # nothing failed: requeues nothing
        run("retry", str(root), "--skipped")
        moved = run("checkpoint", "copy", str(root / "shared" / "checkpoint.db"), str(tmp_path / "moved.db"))
        assert "verified row for row" in moved
        web = subprocess.Popen([str(TELEPI), "web", str(root), "--port", "0"], stdout=subprocess.PIPE, text=True)
        try:
            assert web.stdout is not None
            url = re.search(r"(http://127\.0\.0\.1:\d+/)", web.stdout.readline())
            assert url, "telepi web did not say where it serves"
            with urllib.request.urlopen(url[1] + "status.json", timeout=30) as page:
                assert json.loads(page.read())["routes"][0]["counts"] == route["counts"]
        finally:
            web.send_signal(signal.SIGTERM)
            assert web.wait(timeout=30) == 0
        ran.add("web")

        run("sandbox", "post", "--state", str(state), "--chat", "source", "--text", "after the history")
        run("run", str(directory))
        target = json.loads(run("sandbox", "dump", "--state", str(state), "--chat", "target", "--json"))
        assert [m["text"] for m in target["messages"]].count("after the history") == 1

        run("sandbox", "account", "--state", str(state), "--as", "bob", "--standing", "revoked")
        assert f"telepi login {directory}" in run("run", str(directory), code=78)
    finally:
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=30) == 0
    ran.add("demo")  # tests/engine/test_demo.py runs it through the same entry point
    assert ran == set(documented())
