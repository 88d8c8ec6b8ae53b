"""The status page in a real browser: headless Chromium (Debian's package) loads the page that ``telepi run``
serves beside a real clone (``WEB_PORT``) and the one ``telepi web`` serves, and every number marked on it
(``data-key``: its path in ``telepi status --json``) says what ``telepi status --json`` says. The clone sits in
a flood wait with one message failed and some skipped, so waits, failures and skips are on the page.

``TELEPI_SCREENSHOT=docs/status-page.png`` keeps the browser's screenshot there: the README's picture."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from telepi.commands.live import eta_text
from telepi.sandbox.sandbox import Sandbox
from tests.engine.clonecheck import content
from tests.engine.test_clone import make_sessions
from tests.engine.test_ordered_sharing import channel_world
from tests.engine.test_watch import argv, status_json, wait_until

CHROMIUM = shutil.which("chromium")
WINDOW = (1280, 900)

needs_chromium = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),  # CI must run it: scripts/setup.sh dev installs chromium
    reason="Debian's chromium is not installed here: scripts/setup.sh dev installs it (apt-get install chromium)",
)


def browser(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM, "chromium is missing: scripts/setup.sh dev installs it (apt-get install chromium)"
    command = [
        CHROMIUM,
        "--headless=new",
        "--no-sandbox",  # root in CI: Chromium's sandbox refuses to run as root
        "--disable-gpu",
        f"--user-data-dir={profile}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        *args,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


class Marked(HTMLParser):
    """The text of every element carrying ``data-key`` (they do not nest), and each table's row count."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, str] = {}
        self.rows: dict[str, int] = {}
        self._key: str | None = None
        self._depth = 0
        self._text: list[str] = []
        self._table: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "table":
            self._table = found.get("id") or ""
            self.rows[self._table] = -1  # the header row
        if tag == "tr" and self._table is not None:
            self.rows[self._table] += 1
        if self._key is not None:
            self._depth += 1
        elif found.get("data-key"):
            self._key, self._depth, self._text = found["data-key"], 1, []

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table = None
        if self._key is not None:
            self._depth -= 1
            if self._depth == 0:
                self.values[self._key] = "".join(self._text).strip()
                self._key = None

    def handle_data(self, data: str) -> None:
        if self._key is not None:
            self._text.append(data)


def marked(dom: str) -> Marked:
    parser = Marked()
    parser.feed(dom)
    return parser


def expected(data: dict[str, Any], key: str) -> str:
    """What the page must show for ``key`` of ``telepi status --json``, formatted as the page formats it."""
    value: Any = data
    for part in key.split("."):
        if isinstance(value, list):
            value = value[int(part)]
        elif ".counts." in key and part not in value:
            value = 0  # the checkpoint lists only the statuses it holds
        else:
            value = value[part]
    last = key.rsplit(".", 1)[-1]
    if last in ("rate_per_minute", "per_minute"):
        return "—" if value is None else f"{value:.1f}"
    if last == "eta_seconds":
        return eta_text(value)
    if last == "low_water" and value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


def ticking(text: str) -> str:
    """A wait's time left goes down between two reads: compared without its seconds."""
    return re.sub(r"flood-wait \d+s", "flood-wait …s", re.sub(r"\(\d+m \d\ds left\)", "(… left)", text))


def clock_seconds(text: str) -> int | None:
    found = re.fullmatch(r"(?:(\d+)h )?(?:(\d+)m ?)?(?:(\d+)s)?", text)
    if found is None or not text:
        return None
    hours, minutes, seconds = (int(part or 0) for part in found.groups())
    return hours * 3600 + minutes * 60 + seconds


def same(key: str, shown: str, wanted: str) -> bool:
    if key.endswith("eta_seconds") and shown != wanted:
        # During a flood wait of every account the ETA starts after the wait, and ticks down with it.
        apart = [clock_seconds(shown), clock_seconds(wanted)]
        return None not in apart and abs(apart[0] - apart[1]) <= 5  # type: ignore[operator]
    return ticking(shown) == ticking(wanted)


def assert_page_says_what_status_json_says(dom: str, data: dict[str, Any]) -> set[str]:
    page = marked(dom)
    assert page.values, dom[:2000]
    wrong = {
        key: (shown, expected(data, key))
        for key, shown in page.values.items()
        if not same(key, shown, expected(data, key))
    }
    assert not wrong, wrong
    # a row for every route, session, skip reason and failure the JSON lists
    assert page.rows["routes"] == len(data["routes"])
    assert page.rows["accounts"] == len(data["sessions"])
    assert page.rows["skipped"] == sum(len(route["skipped"]) for route in data["routes"])
    assert page.rows["failures"] == len(data["failures"])
    return set(page.values)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@needs_chromium
async def test_the_page_in_a_browser_shows_the_numbers_of_status_json(tmp_path: Path) -> None:
    port = free_port()
    async with Sandbox(world=channel_world(12, {"text": 100}), state_dir=tmp_path / "state") as sb:
        [directory] = await make_sessions(
            sb, tmp_path / "sessions", ["bob"], MODE="copy", LIVE="false", MAX_ATTEMPTS="1", WEB_PORT=str(port)
        )
        # counted per rule from now: the 2nd send can never be sent (skipped with its reason), the 3rd meets a
        # refusal nobody listed (one attempt allowed: failed), the 6th a flood wait longer than the test
        sb.faults.inject_error("SendMessageRequest", "MESSAGE_EMPTY", 400, nth=2)
        sb.faults.inject_error("SendMessageRequest", "SEND_REFUSED_FOR_TEST", 400, nth=3)
        sb.faults.inject_error("SendMessageRequest", "FLOOD_WAIT_900", 420, nth=6)
        root = tmp_path / "sessions"
        log = (tmp_path / "run.log").open("w")
        run = await asyncio.create_subprocess_exec(
            *argv("run", str(directory)), stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
        web = await asyncio.create_subprocess_exec(
            *argv("web", str(root), "--port", "0"), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            assert web.stdout is not None
            said = (await asyncio.wait_for(web.stdout.readline(), 30)).decode()
            served = re.search(r"on (http://127\.0\.0\.1:\d+/) \(read-only", said)
            assert served, said
            await wait_until(lambda: (status_json(root)["sessions"][:1] or [{}])[0].get("wait_method"))
            assert len(content(sb.messages("target"))) < 12  # the flood wait holds the rest back

            screenshot = tmp_path / "status-page.png"
            for url in (f"http://127.0.0.1:{port}/", served[1]):  # telepi run's page, then telepi web's
                dom = (await asyncio.to_thread(browser, "--dump-dom", url, profile=tmp_path / "profile")).stdout
                data = status_json(root)
                keys = assert_page_says_what_status_json_says(dom, data)
                assert {
                    "routes.0.finished",
                    "routes.0.known",
                    "routes.0.counts.failed",
                    "routes.0.filtered",
                    "routes.0.rate_per_minute",
                    "routes.0.eta_seconds",
                    "sessions.0.activity",
                    "sessions.0.done_total",
                    "sessions.0.leases_held",
                    "routes.0.skipped.0.reason",
                    "routes.0.skipped.0.count",
                    "failures.0.error",
                } <= keys
                [route], [session] = data["routes"], data["sessions"]
                assert route["counts"]["failed"] == 1 and data["failures"][0]["error"].startswith("SEND_REFUSED")
                assert "MESSAGE_EMPTY" in {entry["reason"] for entry in route["skipped"]}
                assert "waiting on FLOOD_WAIT for SendMessage until" in session["activity"]
                assert "Traceback" not in dom and sb_secret(directory) not in dom
            await asyncio.to_thread(browser, f"--screenshot={screenshot}", served[1], profile=tmp_path / "profile")
            header = screenshot.read_bytes()[:24]
            assert header[:8] == b"\x89PNG\r\n\x1a\n"
            assert (int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")) == WINDOW
            if os.environ.get("TELEPI_SCREENSHOT"):
                shutil.copyfile(screenshot, os.environ["TELEPI_SCREENSHOT"])
        finally:
            for process in (run, web):
                if process.returncode is None:
                    process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(web.wait(), 60) == 0
            assert await asyncio.wait_for(run.wait(), 60) == 0
            log.close()
    assert "status page on http://127.0.0.1:" in (directory / "clone.log").read_text()


def sb_secret(directory: Path) -> str:
    """The session's API hash, which no page may show."""
    [value] = re.findall(r"^TG_API_HASH=(.+)$", (directory / ".env").read_text(), flags=re.MULTILINE)
    return value


async def test_a_second_session_finds_the_port_taken_and_clones_on(tmp_path: Path) -> None:
    """Only one session a host serves the page: another with the same WEB_PORT warns once and copies all."""
    async with Sandbox(world=channel_world(8, {"text": 100}), state_dir=tmp_path / "state") as sb:
        taken = socket.socket()
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        [directory] = await make_sessions(
            sb, tmp_path / "sessions", ["bob"], MODE="copy", LIVE="false", WEB_PORT=str(port)
        )
        try:
            run = await asyncio.create_subprocess_exec(
                *argv("run", str(directory)),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            _, err = await asyncio.wait_for(run.communicate(), 120)
        finally:
            taken.close()
        assert run.returncode == 0, err.decode()
        assert len(content(sb.messages("target"))) == 8
    log = (directory / "clone.log").read_text()
    assert f"status page not served: port {port} is taken" in log, log
    assert "Traceback" not in log + err.decode()
