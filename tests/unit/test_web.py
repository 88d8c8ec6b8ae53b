"""``telepi web`` as a process, asked over real HTTP: read-only, text from Telegram escaped, no password
of a PostgreSQL URL on the page, a checkpoint it cannot read shown as one sentence, a taken port refused
with one sentence (exit 78), a non-loopback address warned about. The browser test is tests/engine/test_web.py."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from telepi.checkpoint import NewItem, SqliteStore
from telepi.commands.web import is_loopback
from tests.cli import telepi


@contextmanager
def web(*args: str) -> Iterator[str]:
    """``telepi web ARGS --port 0`` running; its base URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "telepi", "web", *args, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        found = re.search(r"on (http://127\.0\.0\.1:\d+/) \(read-only", line)
        assert found, line + (process.stderr.read() if process.stderr and process.poll() is not None else "")
        yield found[1]
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        assert "Traceback" not in (process.stderr.read() if process.stderr else "")


def get(url: str, method: str = "GET", host: str | None = None) -> tuple[int, str, dict[str, str]]:
    request = urllib.request.Request(url, method=method, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read().decode(), dict(answer.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(), dict(error.headers)


def test_the_page_escapes_titles_refreshes_itself_and_takes_no_writes(tmp_path: Path) -> None:
    db = tmp_path / "sessions" / "shared" / "checkpoint.db"
    store = SqliteStore(db)
    route = store.route("-1001111", "-1002222", "<script>alert(1)</script> -> target")
    store.register_session("session1", "other-host", 4242)
    store.enqueue(route.id, [NewItem(i) for i in range(1, 11)])
    store.claim(route.id, "session1", 4, 600)
    store.complete(route.id, {1: 101, 2: 102}, "session1")
    store.fail(route.id, [3], "MEDIA_INVALID <b>", "session1", retryable=False, max_attempts=5)
    store.close()
    with web(str(db)) as url:
        code, html, headers = get(url)
        assert code == 200 and headers["Content-Type"].startswith("text/html")
        assert '<meta http-equiv="refresh" content="5">' in html
        assert "<script" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
        assert "MEDIA_INVALID &lt;b&gt;" in html
        assert "script-src" not in headers["Content-Security-Policy"]  # default-src 'none': no script runs
        assert re.search(r'data-key="routes\.0\.finished">2<', html) and re.search(
            r'data-key="routes\.0\.known">10<', html
        )

        code, body, _ = get(url + "status.json")
        assert code == 200
        expected = telepi("status", db, "--json", timeout=60, cwd=None).stdout
        mine, theirs = json.loads(body), json.loads(expected)
        for document in (mine, theirs):
            document.pop("generated_at")
            for route_data in document["routes"]:
                for lease in route_data["leases"]:
                    lease.pop("age_seconds"), lease.pop("expires_in")
            for session in document["sessions"]:
                session.pop("health"), session.pop("activity")  # "last seen 3s ago" ticks
        assert mine == theirs

        for method in ("POST", "PUT", "DELETE"):
            assert get(url, method)[0] == 405
        assert get(url + "retry")[0] == 404
        # a page elsewhere that rebinds its own name to 127.0.0.1 is not answered; ssh -L's names are
        port = url.rsplit(":", 1)[1].strip("/")
        assert get(url + "status.json", host=f"attacker.example:{port}")[0] == 421
        assert get(url, host=f"localhost:{port}")[0] == 200
    assert SqliteStore(db).report().routes[0].counts == {
        "pending": 6,
        "processing": 1,
        "done": 2,
        "failed": 1,
        "skipped": 0,
    }


def test_an_unreachable_postgresql_checkpoint_is_one_sentence_without_its_password(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql://telepi:s3cret-pass@127.0.0.1:{port}/telepi"
    with web(url) as base:
        code, html, _ = get(base)
        assert code == 503 and 'id="error"' in html and "s3cret-pass" not in html
        assert "Traceback" not in html
        code, body, _ = get(base + "status.json")
        assert code == 503 and "s3cret-pass" not in body and json.loads(body)["error"]


def test_a_taken_port_is_one_sentence_and_exit_78(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = telepi("web", tmp_path, "--port", str(port), timeout=60, cwd=None)
    assert result.returncode == 78
    assert result.stderr.strip() == f"telepi: port {port} on 127.0.0.1 is taken: choose another with --port."


def test_only_loopback_addresses_go_without_a_warning() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "127.0.0.2", "::1", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "192.0.2.1", "example.org"]))
