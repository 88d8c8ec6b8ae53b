"""deploy.yml and telepi@.service for real: systemd as PID 1 in a Debian bookworm container, Ansible over ssh.

The container boots once for this module. The playbook deploys three session directories: session1 and
session2 (logged in: their .session files are moved over) and `broken` (deployed with enabled=false, its .env
invalid). It runs twice; the second run must change nothing.

Until the engine can run here against the sandbox, session1 and session2 run tests/e2e/service_stub.py through
an ExecStart drop-in: telepi's real configuration, logging, checkpoint, sd_notify and HealthMonitor, with the
failures scripted by signals. `broken` runs the real `telepi run`. TODO(engine): drop the drop-ins and run
`telepi run` against the sandbox.

Skipped (with the reason) unless root on Linux; installs systemd-container and debootstrap if missing.
Cold (debootstrap) about 3 minutes, then about 1.5 minutes from the cached root filesystem.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.e2e.container import CACHE, Container, fresh_container, locked, missing_requirement

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_DIR = REPO / "deploy" / "ansible"
STUB = Path(__file__).with_name("service_stub.py")
STUB_IN_CONTAINER = "/usr/local/lib/telepi-e2e/service_stub.py"
ROOT = "/srv/telepi/sessions"
API_HASH = "5f1e6c2b9a8d7e3f0a1b2c3d4e5f6a7b"
GOOD_ENV = f"TG_API_ID=12345\nTG_API_HASH={API_HASH}\nSOURCE_CHAT=-1001111111111\nTARGET_CHAT=@my_target\n"
SESSIONS = [{"name": "session1"}, {"name": "session2"}, {"name": "broken", "enabled": False}]


@dataclass
class PlaybookRun:
    returncode: int
    output: str
    seconds: float

    @property
    def recap(self) -> dict[str, int]:
        match = re.search(r"^target\s+:\s+(.*)$", self.output, flags=re.MULTILINE)
        assert match, self.output[-3000:]
        return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", match.group(1))}


@dataclass
class Deployment:
    container: Container
    local: Path  # this machine's sessions tree, as the playbook reads it
    source: Path  # the code deployed: a snapshot, so that edits made meanwhile do not count as changes
    ansible_playbook: str
    say: Callable[[str], None]
    runs: list[PlaybookRun] = field(default_factory=list)

    def playbook(self, *, copy_session_files: bool = True) -> PlaybookRun:
        inventory = self.container.workdir / "inventory.ini"
        inventory.write_text(
            "[telepi]\n"
            f"target ansible_host=127.0.0.1 ansible_port={self.container.port} ansible_user=root "
            f"ansible_ssh_private_key_file={self.container.key} ansible_python_interpreter=/usr/bin/python3 "
            "ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null'\n"
        )
        variables = self.container.workdir / "vars.json"
        variables.write_text(
            json.dumps(
                {
                    "telepi_sessions": SESSIONS,
                    "telepi_local_sessions_dir": str(self.local),
                    "telepi_copy_session_files": copy_session_files,
                    "telepi_wheel_dir": str(CACHE / "wheels"),
                    "telepi_project_dir": str(self.source),
                }
            )
        )
        env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}
        env["PATH"] = f"{Path(self.ansible_playbook).parent}:{env['PATH']}"
        started = time.monotonic()
        result = subprocess.run(
            [self.ansible_playbook, "-i", str(inventory), "-e", f"@{variables}", "deploy.yml"],
            cwd=ANSIBLE_DIR,  # its ansible.cfg: pipelining
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        run = PlaybookRun(result.returncode, result.stdout + result.stderr, time.monotonic() - started)
        self.say(f"playbook run {len(self.runs) + 1}: {run.seconds:.1f} s, {run.recap}")
        self.runs.append(run)
        return run

    def journal(self, *args: str) -> str:
        return self.container.run("journalctl", "--no-pager", *args, check=True).stdout

    def cursor(self) -> str:
        """Where the journal ends now; pass to journal('--after-cursor=...')."""
        output = self.journal("-n", "0", "--show-cursor")
        return output.strip().rsplit("-- cursor: ", 1)[1]


def make_local_sessions(local: Path) -> None:
    for name in ("session1", "session2", "broken"):
        (local / name).mkdir(parents=True)
        env = GOOD_ENV if name != "broken" else GOOD_ENV.replace(API_HASH, "not-a-hash")
        (local / name / ".env").write_text(env)
        (local / name / ".env").chmod(0o600)
    for name in ("session1", "session2"):
        login = local / name / f"{name}.session"
        login.write_bytes(os.urandom(4096))  # stands in for a Telethon login; only copied, never read
        login.chmod(0o600)


def stub_drop_in(extra: str = "") -> str:
    return (
        "# e2e only: a stand-in for `telepi run` until the engine can run here (see tests/e2e/test_deploy.py)\n"
        "[Service]\nExecStart=\n"
        f"ExecStart=/opt/telepi/venv/bin/python {STUB_IN_CONTAINER} {ROOT}/%i\n{extra}"
    )


def wait_for(what: str, condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def host(request: pytest.FixtureRequest) -> Iterator[Deployment]:
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
            print(f"\n[e2e] {line}", end="", flush=True)

    started = time.monotonic()
    with locked("e2e"), fresh_container(say) as container:
        say(f"root filesystem ready in {time.monotonic() - started:.1f} s")
        container.write(STUB_IN_CONTAINER, STUB.read_text())
        # session1 gets a short watchdog so the kill tests take seconds, not minutes.
        container.write(
            "/etc/systemd/system/telepi@session1.service.d/e2e.conf", stub_drop_in("WatchdogSec=5\nRestartSec=1\n")
        )
        container.write("/etc/systemd/system/telepi@session2.service.d/e2e.conf", stub_drop_in())
        booting = time.monotonic()
        container.boot()
        say(f"container booted in {time.monotonic() - booting:.1f} s")
        source = container.workdir / "source"
        shutil.copytree(REPO / "telepi", source / "telepi", ignore=shutil.ignore_patterns("__pycache__"))
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(REPO / name, source / name)
        deployment = Deployment(container, container.workdir / "local", source, ansible_playbook, say)
        make_local_sessions(deployment.local)
        deployment.playbook()
        deployment.playbook()
        yield deployment
    say(f"e2e module done in {time.monotonic() - started:.1f} s")


def test_first_run_deploys_and_the_second_changes_nothing(host: Deployment) -> None:
    first, second = host.runs[:2]
    assert first.returncode == 0, first.output[-4000:]
    assert first.recap["changed"] > 0 and first.recap["failed"] == 0
    assert second.returncode == 0, second.output[-4000:]
    assert second.recap["changed"] == 0, second.output
    for run in host.runs:
        assert API_HASH not in run.output  # no_log on every task that touches a secret


def test_units_are_installed_and_enabled_only_for_enabled_sessions(host: Deployment) -> None:
    enabled = host.container.run("systemctl", "is-enabled", "telepi@session1", "telepi@session2", "telepi@broken")
    assert enabled.stdout.split() == ["enabled", "enabled", "disabled"]
    unit = host.container.run("systemctl", "cat", "telepi@session2").stdout
    assert "ExecStart=/opt/telepi/venv/bin/telepi run --strict /srv/telepi/sessions/%i" in unit


def test_type_notify_units_are_running_after_ready(host: Deployment) -> None:
    for name, watchdog in (("session1", "5s"), ("session2", "1min")):
        state = host.container.show(
            f"telepi@{name}", "Type", "ActiveState", "SubState", "StatusText", "WatchdogUSec", "NRestarts", "User"
        )
        # Type=notify: "active (running)" only after READY=1 reached systemd; STATUS= is shown too.
        assert state == {
            "Type": "notify",
            "ActiveState": "active",
            "SubState": "running",
            "StatusText": "e2e stand-in: -1001111111111 -> @my_target",
            "WatchdogUSec": watchdog,
            "NRestarts": "0",
            "User": "telepi",
        }


def test_secret_files_are_private_to_the_service_user(host: Deployment) -> None:
    stat = host.container.run(
        "stat",
        "-c",
        "%n %U:%G %a",
        ROOT,
        f"{ROOT}/session1",
        f"{ROOT}/session1/.env",
        f"{ROOT}/session1/session1.session",
    )
    assert stat.stdout.splitlines() == [
        f"{ROOT} telepi:telepi 700",
        f"{ROOT}/session1 telepi:telepi 700",
        f"{ROOT}/session1/.env telepi:telepi 600",
        f"{ROOT}/session1/session1.session telepi:telepi 600",
    ]
    # The moved logins are retired on this machine so they cannot be used from two places.
    assert sorted(p.name for p in (host.local / "session1").iterdir()) == [".env", "session1.session.moved-to-target"]
    assert not (host.container.root / ROOT.lstrip("/") / "broken" / "broken.session").exists()


def test_hardened_service_writes_its_checkpoint_and_clone_log_and_nothing_else(host: Deployment) -> None:
    files = host.container.run("stat", "-c", "%n %U", f"{ROOT}/shared/checkpoint.db", f"{ROOT}/session2/clone.log")
    assert files.stdout.splitlines() == [f"{ROOT}/shared/checkpoint.db telepi", f"{ROOT}/session2/clone.log telepi"]
    clone_log = (host.container.root / ROOT.lstrip("/") / "session2" / "clone.log").read_text()
    # ProtectSystem=strict, ProtectHome, ReadWritePaths: only the sessions root is writable; cryptg works
    # under MemoryDenyWriteExecute (the stub encrypts before logging this).
    assert "hardening: sessions=ok venv=EROFS etc=EROFS root_home=EACCES; uid 999; api hash [redacted]" in clone_log


def test_journal_entries_carry_structured_fields(host: Deployment) -> None:
    entries = [json.loads(line) for line in host.journal("-u", "telepi@session2", "-o", "json").splitlines()]
    [ready] = [entry for entry in entries if entry.get("TELEPI_EVENT") == "ready"]
    assert {
        key: ready[key] for key in ready if key.startswith("TELEPI_") or key in {"PRIORITY", "SYSLOG_IDENTIFIER"}
    } == {
        "TELEPI_SESSION": "session2",
        "TELEPI_ROUTE": "-1001111111111 -> @my_target",
        "TELEPI_MSG_ID": "5",
        "TELEPI_EVENT": "ready",
        "PRIORITY": "6",
        "SYSLOG_IDENTIFIER": "telepi",
    }
    everything = host.journal("-o", "export") + "".join(
        path.read_text() for path in (host.container.root / ROOT.lstrip("/")).glob("*/clone.log")
    )
    assert "api hash [redacted]" in everything
    assert API_HASH not in everything


def test_broken_env_fails_once_with_78_and_is_not_restarted(host: Deployment) -> None:
    # The real `telepi run` (no drop-in for this instance) with an invalid TG_API_HASH.
    started = host.container.run("systemctl", "start", "telepi@broken")
    assert started.returncode != 0
    assert host.container.show(
        "telepi@broken", "ActiveState", "SubState", "Result", "ExecMainStatus", "NRestarts"
    ) == {  # SubState "failed", not "auto-restart": no restart is pending (RestartPreventExitStatus=78)
        "ActiveState": "failed",
        "SubState": "failed",
        "Result": "exit-code",
        "ExecMainStatus": "78",
        "NRestarts": "0",
    }
    log = host.journal("-u", "telepi@broken", "-o", "cat")
    assert "TG_API_HASH=(value hidden) is not 32 hexadecimal characters" in log


def test_a_changed_env_restarts_only_its_session(host: Deployment) -> None:
    before = {name: host.container.show(f"telepi@{name}", "InvocationID") for name in ("session1", "session2")}
    env = host.local / "session2" / ".env"
    env.write_text(env.read_text() + "LOG_LEVEL=DEBUG\n")
    run = host.playbook(copy_session_files=False)  # the logins were moved by the first run
    assert run.returncode == 0, run.output[-4000:]
    assert run.recap["changed"] == 2, run.output  # the .env copy and the restart handler
    assert "RUNNING HANDLER [Restart telepi sessions]" in run.output
    after = {name: host.container.show(f"telepi@{name}", "InvocationID") for name in ("session1", "session2")}
    assert after["session1"] == before["session1"]
    assert after["session2"] != before["session2"]
    assert host.container.show("telepi@session2", "ActiveState")["ActiveState"] == "active"


def kill_by_watchdog(host: Deployment, signal_name: str) -> str:
    """Send the stub a signal, wait for the watchdog kill and the restart; the journal of what happened."""
    unit = "telepi@session1"

    def running() -> bool:
        state = host.container.show(unit, "ActiveState", "SubState")
        return (state["ActiveState"], state["SubState"]) == ("active", "running")

    # Only a process that is running (READY sent) has its signal handlers in place.
    wait_for(f"{unit} to run", running)
    restarts = int(host.container.show(unit, "NRestarts")["NRestarts"])
    cursor = host.cursor()
    host.container.run("systemctl", "kill", "--kill-whom=main", f"--signal={signal_name}", unit, check=True)

    def restarted() -> bool:
        return int(host.container.show(unit, "NRestarts")["NRestarts"]) > restarts and running()

    wait_for(f"{unit} to be killed by the watchdog and restarted", restarted, timeout=40)
    # The whole journal, not -u: journald attributes a native entry to its unit from the sender's /proc, which
    # a busy journald may read after the process is gone; the entry then lacks _SYSTEMD_UNIT.
    return host.journal(f"--after-cursor={cursor}", "-o", "short-monotonic")


def test_watchdog_kills_and_restarts_a_blocked_event_loop(host: Deployment) -> None:
    log = kill_by_watchdog(host, "SIGUSR1")
    assert "blocking the event loop" in log, log
    assert "Watchdog timeout (limit 5s)!" in log, log
    # PYTHONFAULTHANDLER=1 in the unit: the SIGABRT leaves the Python stack in the journal.
    assert "Fatal Python error: Aborted" in log and "in block_the_loop" in log, log
    assert "Scheduled restart job" in log, log


def test_watchdog_kills_and_restarts_a_stalled_pipeline(host: Deployment) -> None:
    log = kill_by_watchdog(host, "SIGUSR2")
    # The event loop is fine; the HealthMonitor withholds the pings because the pipeline made no progress.
    assert "stalling the pipeline" in log, log
    assert "unhealthy, not pinging the watchdog: pipeline: no progress for" in log, log
    assert log.index("unhealthy, not pinging") < log.index("Watchdog timeout (limit 5s)!"), log


def test_a_stop_is_clean(host: Deployment) -> None:
    host.container.run("systemctl", "stop", "telepi@session2", check=True)
    assert host.container.show("telepi@session2", "ActiveState", "Result", "ExecMainStatus") == {
        "ActiveState": "inactive",
        "Result": "success",
        "ExecMainStatus": "0",
    }
    assert "stopping cleanly" in host.journal("-u", "telepi@session2", "-o", "cat")
