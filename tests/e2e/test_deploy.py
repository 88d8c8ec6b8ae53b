"""deploy.yml and telepi@.service for real: systemd as PID 1 in a Debian bookworm container, Ansible over ssh,
and the real `telepi run` in the units, cloning from the sandbox on the host's loopback.

The container boots once for this module. The sandbox (a thread of this process) holds a protected source
channel and an empty target; session1 (bob) and session2 (carol) are logged in there, and their directories
(.env and .session) are what the playbook deploys, with a third, `broken` (enabled=false, .env invalid). The
playbook runs twice; the second run must change nothing. Then the units must fill the target exactly once, in
order, follow a live post, log to the journal with telepi's fields, be killed by the watchdog when hung and
restarted, and stop cleanly with their leases released. Midway the playbook runs twice more with
telepi_wheels=host: the container's pip installs from the package index and compiles systemd-python.

Skipped with one sentence when this machine cannot host the container (container.missing_requirement probes it);
installs systemd-container and debootstrap if missing. A failed playbook fails the module with its own error.
Cold (debootstrap) about 2 minutes, then about 55 seconds from the cached root filesystem.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from telepi.checkpoint import SqliteStore
from telepi.sandbox.world.worldfile import generate_history
from tests.e2e.container import CACHE, Container, fresh_container, locked
from tests.e2e.harness import REPO, copy_key, prerequisites, snapshot_source, wait_for
from tests.e2e.sandbox_thread import SandboxThread

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

ANSIBLE_DIR = REPO / "deploy" / "ansible"
ROOT = "/srv/telepi/sessions"
KEY_IN_CONTAINER = "/usr/local/lib/telepi-e2e/sandbox-key.pem"  # the sandbox's public key (TG_SERVER_KEY)
PIP_CA_IN_CONTAINER = "/usr/local/lib/telepi-e2e/pip-ca.pem"  # this machine's pip CA bundle, for host mode
HOST_BUILD_DIR = "/opt/telepi-host"  # host mode installs beside the bundle's /opt/telepi: a venv of its own
SESSIONS = [{"name": "session1"}, {"name": "session2"}, {"name": "broken", "enabled": False}]
MESSAGES = 60


def sandbox_world() -> dict[str, Any]:
    accounts = ("alice", "bob", "carol")
    source: dict[str, Any] = {
        "name": "source",
        "kind": "channel",
        "title": "Protected source",
        "owner": "alice",
        "noforwards": True,
        "members": ["bob", "carol"],
    }
    source["messages"] = generate_history(source, MESSAGES, seed=9, mix={"text": 70, "photo": 30}, max_size=8192)
    target = {"name": "target", "kind": "channel", "title": "Target", "owner": "alice"}
    target["admins"] = {name: ["post_messages"] for name in ("bob", "carol")}
    return {
        "accounts": [{"name": n, "phone": f"+1555020000{i}", "code": "12345"} for i, n in enumerate(accounts)],
        "chats": [source, target],
    }


@dataclass
class PlaybookRun:
    returncode: int
    output: str
    seconds: float
    bundle_mtime: int  # of the wheels' bundle.tar on the control machine after the run (0: none)

    @property
    def recap(self) -> dict[str, int]:
        match = re.search(r"^target\s+:\s+(.*)$", self.output, flags=re.MULTILINE)
        assert match, self.output[-3000:]
        return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", match.group(1))}

    def cause(self) -> str:
        """What failed, as Ansible said it: each failed task's name with its error."""
        lines = self.output.splitlines()
        failed = [n for n, line in enumerate(lines) if re.match(r"(fatal|failed): \[", line)]
        if not failed:
            return self.output[-3000:]
        tasks = [max((k for k in range(n) if lines[k].startswith("TASK [")), default=n) for n in failed]
        # A command's error is at the end of its stderr, the task's module arguments at the start.
        shown = [line if len(line) <= 3000 else f"{line[:300]} … {line[-2700:]}" for line in lines]
        return "\n".join(f"{lines[task][:120]}\n{shown[n]}" for task, n in zip(tasks, failed, strict=True))


@dataclass
class Deployment:
    container: Container
    local: Path  # this machine's sessions tree, as the playbook reads it
    source: Path  # the code deployed: a snapshot, so that edits made meanwhile do not count as changes
    ansible_playbook: str
    say: Callable[[str], None]
    sandbox: SandboxThread
    api_hash: str  # must never show in any output
    runs: list[PlaybookRun] = field(default_factory=list)

    def playbook(self, *, copy_session_files: bool = True, **extra: Any) -> PlaybookRun:
        """Run deploy.yml against the container; ``extra`` overrides variables (e.g. telepi_wheels)."""
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
                    **extra,
                }
            )
        )
        bundle = Path(extra.get("telepi_wheel_dir", CACHE / "wheels")) / "bundle.tar"
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
        run = PlaybookRun(
            result.returncode,
            result.stdout + result.stderr,
            time.monotonic() - started,
            bundle.stat().st_mtime_ns if bundle.exists() else 0,
        )
        outcome = run.recap if run.returncode == 0 else f"failed: {run.cause()[-300:]}"
        self.say(f"playbook run {len(self.runs) + 1}: {run.seconds:.1f} s, {outcome}")
        self.runs.append(run)
        return run

    def journal(self, *args: str) -> str:
        return self.container.run("journalctl", "--no-pager", *args, check=True).stdout

    def cursor(self) -> str:
        """Where the journal ends now; pass to journal('--after-cursor=...')."""
        output = self.journal("-n", "0", "--show-cursor")
        return output.strip().rsplit("-- cursor: ", 1)[1]

    def target_contents(self) -> list[tuple[str, str]]:
        return self.sandbox.call(lambda sb: [copy_key(m) for m in sb.messages("target") if not m["service"]])

    def source_contents(self) -> list[tuple[str, str]]:
        return self.sandbox.call(lambda sb: [copy_key(m) for m in sb.messages("source") if not m["service"]])

    def checkpoint(self) -> SqliteStore:
        return SqliteStore(self.container.root / ROOT.lstrip("/") / "shared" / "checkpoint.db", create=False)


def pip_env_for_the_host() -> tuple[dict[str, str], str | None]:
    """How pip on this machine reaches the package index (its configuration, then its environment): the index
    URL, proxy and CA bundle as telepi_pip_env for the host, and the CA file to copy there. Here a TLS-inspecting
    egress proxy signs pypi.org with its own CA, which only this machine's bundle (pip's `cert`) trusts."""
    listing = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    ).stdout
    settings = dict(re.findall(r"^[^.\s]*\.([\w-]+)='(.*)'$", listing, flags=re.MULTILINE))  # :env: lines last
    env = {}
    if settings.get("index-url", "").startswith(("http://", "https://")):
        env["PIP_INDEX_URL"] = settings["index-url"]
    proxy = settings.get("proxy") or os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    if proxy:
        env["HTTPS_PROXY"] = proxy
    cert = settings.get("cert")
    if cert and Path(cert).is_file():
        env["PIP_CERT"] = PIP_CA_IN_CONTAINER
    return env, cert


def make_local_sessions(sandbox: SandboxThread, local: Path) -> str:
    """Log bob and carol in to the sandbox (their .env and .session files), add `broken`; returns the API hash."""

    async def logins(sb: Any) -> None:
        source, target = sb.chat("source"), sb.chat("target")
        for name, account in (("session1", "bob"), ("session2", "carol")):
            await sb.session_dir(
                local / name,
                account,
                SOURCE_CHAT=str(source.id),
                TARGET_CHAT=str(target.id),
                TG_SERVER_KEY=KEY_IN_CONTAINER,
                LIVE="true",
                SEND_INTERVAL="0.05",
                READ_INTERVAL="0",
            )

    sandbox.call(logins)
    env = (local / "session1" / ".env").read_text()
    api_hash = re.search(r"^TG_API_HASH=(\S+)$", env, flags=re.MULTILINE)
    assert api_hash
    (local / "broken").mkdir()
    (local / "broken" / ".env").write_text(env.replace(api_hash.group(1), "not-a-hash"))
    for path in local.glob("*/.env"):
        path.chmod(0o600)
    return api_hash.group(1)


@pytest.fixture(scope="module")
def host(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    ansible_playbook, say = prerequisites(request, "e2e")
    started = time.monotonic()
    state = tmp_path_factory.mktemp("sandbox")
    key_file = CACHE / "sandbox-key.pem"  # the test sandbox's own key, kept: generating one takes seconds
    with SandboxThread(sandbox_world(), state, key_file) as sandbox, locked("e2e"), fresh_container(say) as container:
        say(f"root filesystem ready in {time.monotonic() - started:.1f} s")
        container.write(KEY_IN_CONTAINER, sandbox.call(lambda sb: sb.public_key_path.read_text()))
        # session1 gets a short watchdog so the kill test takes seconds, not minutes.
        container.write(
            "/etc/systemd/system/telepi@session1.service.d/e2e.conf",
            "# e2e only: a short watchdog\n[Service]\nWatchdogSec=5\nRestartSec=1\n",
        )
        booting = time.monotonic()
        container.boot()
        say(f"container booted in {time.monotonic() - booting:.1f} s")
        source = snapshot_source(container.workdir / "source")
        local = container.workdir / "local"
        api_hash = make_local_sessions(sandbox, local)
        deployment = Deployment(container, local, source, ansible_playbook, say, sandbox, api_hash)
        for _ in range(2):
            run = deployment.playbook()
            if run.returncode != 0:  # the project is wrong (or this machine's build tools): say what failed
                pytest.fail(f"deploy.yml failed into the container:\n{run.cause()}", pytrace=False)
        yield deployment
    say(f"e2e module done in {time.monotonic() - started:.1f} s")


def test_first_run_deploys_and_the_second_changes_nothing(host: Deployment) -> None:
    first, second = host.runs[:2]
    assert first.returncode == 0, first.output[-4000:]
    assert first.recap["changed"] > 0 and first.recap["failed"] == 0
    assert second.returncode == 0, second.output[-4000:]
    assert second.recap["changed"] == 0, second.output
    assert second.bundle_mtime == first.bundle_mtime  # same sources: the wheels were not built again
    for run in host.runs:
        assert host.api_hash not in run.output  # no_log on every task that touches a secret


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
        # Type=notify: "active (running)" only after READY=1 reached systemd; STATUS= is the progress line.
        status = state.pop("StatusText")
        assert re.fullmatch(r"copied \d+/\d+ · \d+ msg/min.*|.+ -> .+", status), status
        assert state == {
            "Type": "notify",
            "ActiveState": "active",
            "SubState": "running",
            "WatchdogUSec": watchdog,
            "NRestarts": "0",
            "User": "telepi",
        }


def test_the_units_fill_the_target_exactly_once_in_order(host: Deployment) -> None:
    source = host.source_contents()
    wait_for("the target to hold the whole source", lambda: len(host.target_contents()) >= len(source), 120)
    assert host.target_contents() == source  # protected source: every photo reuploaded, nothing twice
    store = host.checkpoint()
    try:
        report = store.report(failures=0)
        counts = report.routes[0].counts
        assert counts["pending"] == counts["processing"] == counts["failed"] == 0
        assert counts["done"] == len(source)
        assert {s.name for s in report.sessions} == {"session1", "session2"}
    finally:
        store.close()
    for name in ("session1", "session2"):
        state = host.container.show(f"telepi@{name}", "StatusText")["StatusText"]
        assert state.startswith("copied "), state


def test_a_live_post_is_copied_by_the_running_units(host: Deployment) -> None:
    host.sandbox.call(lambda sb: sb.post("source", "posted while the units run", as_account="alice"))
    wait_for(
        "the live post in the target",
        lambda: ("posted while the units run", "") in host.target_contents(),
        60,
    )
    assert host.target_contents() == host.source_contents()


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


def test_hardened_service_writes_its_checkpoint_and_clone_log(host: Deployment) -> None:
    # ProtectSystem=strict, ProtectHome, ReadWritePaths: the sessions root is writable, and the copy above ran
    # under MemoryDenyWriteExecute with cryptg's AES.
    files = host.container.run("stat", "-c", "%n %U", f"{ROOT}/shared/checkpoint.db", f"{ROOT}/session2/clone.log")
    assert files.stdout.splitlines() == [f"{ROOT}/shared/checkpoint.db telepi", f"{ROOT}/session2/clone.log telepi"]


def test_journal_entries_carry_structured_fields(host: Deployment) -> None:
    entries = [json.loads(line) for line in host.journal("-u", "telepi@session2", "-o", "json").splitlines()]
    env = dict(line.split("=", 1) for line in (host.local / "session2" / ".env").read_text().splitlines())
    label = f"{env['SOURCE_CHAT']} -> {env['TARGET_CHAT']}"
    [ready, *_] = [entry for entry in entries if entry.get("TELEPI_EVENT") == "ready"]
    assert {
        key: ready[key] for key in ready if key.startswith("TELEPI_") or key in {"PRIORITY", "SYSLOG_IDENTIFIER"}
    } == {
        "TELEPI_SESSION": "session2",
        "TELEPI_ROUTE": label,
        "TELEPI_EVENT": "ready",
        "PRIORITY": "6",
        "SYSLOG_IDENTIFIER": "telepi",
    }
    planned = [json.loads(line) for line in host.journal("TELEPI_EVENT=planned", "-o", "json").splitlines()]
    assert planned and all(int(entry["TELEPI_MSG_ID"]) > 0 for entry in planned)
    assert {entry["TELEPI_SESSION"] for entry in planned} <= {"session1", "session2"}
    everything = host.journal("-o", "export") + "".join(
        path.read_text() for path in (host.container.root / ROOT.lstrip("/")).glob("*/clone.log")
    )
    assert host.api_hash not in everything


def test_broken_env_fails_once_with_78_and_is_not_restarted(host: Deployment) -> None:
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


def test_host_mode_installs_from_the_package_index_and_compiles_on_the_host(host: Deployment) -> None:
    """telepi_wheels=host, as for an aarch64 VPS: only telepi's wheel leaves this machine; the host's pip takes the
    rest from the package index (reached the way this machine's pip reaches it) and compiles systemd-python there,
    into a fresh venv (another telepi_install_dir), and the units move to it and go on copying."""
    pip_env, cert = pip_env_for_the_host()
    if cert:
        host.container.write(PIP_CA_IN_CONTAINER, Path(cert).read_text())
    index = pip_env.get("PIP_INDEX_URL", "https://pypi.org/simple")
    probe = host.container.run(
        "env",
        *(f"{key}={value}" for key, value in pip_env.items()),
        "python3",
        "-c",
        "import os, ssl, sys, urllib.request; cafile = os.environ.get('PIP_CERT');"
        "context = ssl.create_default_context(cafile=cafile);"
        "urllib.request.urlopen(sys.argv[1] + '/pip/', context=context, timeout=30).read(1)",
        index,
    )
    if probe.returncode != 0:
        pytest.skip(f"the container cannot reach the package index {index}: {probe.stderr.strip()[-200:]}")
    variables = {
        "telepi_wheels": "host",
        "telepi_pip_env": pip_env,
        "telepi_install_dir": HOST_BUILD_DIR,
        "telepi_wheel_dir": str(CACHE / "telepi-wheel"),
    }
    first = host.playbook(copy_session_files=False, **variables)
    assert first.returncode == 0, first.cause()
    second = host.playbook(copy_session_files=False, **variables)
    assert second.returncode == 0, second.cause()
    assert second.recap["changed"] == 0, second.output

    run = host.container.run
    # Only telepi's own wheel was sent; the dependencies came from the index, systemd-python built here.
    assert run("ls", f"{HOST_BUILD_DIR}/wheels").stdout.split() == ["telepi-0.1.0-py3-none-any.whl"]
    installed = json.loads(run(f"{HOST_BUILD_DIR}/venv/bin/pip", "list", "--format=json", check=True).stdout)
    assert {"telepi", "Telethon", "cryptg", "systemd-python"} <= {package["name"] for package in installed}
    # A wheel tagged linux_<arch> was built where it was installed: PyPI takes only manylinux ones.
    wheel = run(
        f"{HOST_BUILD_DIR}/venv/bin/python",
        "-c",
        "import importlib.metadata as m; print(m.distribution('systemd-python').read_text('WHEEL'))",
        check=True,
    ).stdout
    arch = run("uname", "-m", check=True).stdout.strip()
    assert re.search(rf"^Tag: cp3\d+-cp3\d+-linux_{arch}$", wheel, flags=re.MULTILINE), wheel
    assert run("dpkg-query", "-W", "gcc", "libsystemd-dev").returncode == 0
    imported = run(f"{HOST_BUILD_DIR}/venv/bin/python", "-c", "from systemd import journal; import cryptg")
    assert imported.returncode == 0, imported.stderr

    for name in ("session1", "session2"):
        unit = host.container.show(f"telepi@{name}", "ExecStart", "ActiveState")
        assert f"path={HOST_BUILD_DIR}/venv/bin/telepi " in unit["ExecStart"], unit
        assert unit["ActiveState"] == "active", unit
    host.sandbox.call(lambda sb: sb.post("source", "copied by the host-built venv", as_account="alice"))
    wait_for("the post in the target", lambda: ("copied by the host-built venv", "") in host.target_contents(), 60)
    assert host.target_contents() == host.source_contents()


def test_watchdog_kills_and_restarts_a_hung_session(host: Deployment) -> None:
    unit = "telepi@session1"

    def running() -> bool:
        state = host.container.show(unit, "ActiveState", "SubState")
        return (state["ActiveState"], state["SubState"]) == ("active", "running")

    wait_for(f"{unit} to run", running)
    restarts = int(host.container.show(unit, "NRestarts")["NRestarts"])
    cursor = host.cursor()
    # A hung process: it neither pings nor answers (SIGSTOP); only the watchdog can end it.
    host.container.run("systemctl", "kill", "--kill-whom=main", "--signal=SIGSTOP", unit, check=True)

    def restarted() -> bool:
        return int(host.container.show(unit, "NRestarts")["NRestarts"]) > restarts and running()

    wait_for(f"{unit} to be killed by the watchdog and restarted", restarted, timeout=60)
    # The whole journal, not -u: journald attributes a native entry to its unit from the sender's /proc, which
    # a busy journald may read after the process is gone; the entry then lacks _SYSTEMD_UNIT.
    log = host.journal(f"--after-cursor={cursor}", "-o", "short-monotonic")
    assert "Watchdog timeout (limit 5s)!" in log, log
    assert "Scheduled restart job" in log, log
    # The new process took the route up again: a post made now is copied.
    host.sandbox.call(lambda sb: sb.post("source", "after the restart", as_account="alice"))
    wait_for("the post made after the restart", lambda: ("after the restart", "") in host.target_contents(), 60)


def test_a_stop_is_clean_and_releases_the_leases(host: Deployment) -> None:
    host.container.run("systemctl", "stop", "telepi@session2", check=True)
    assert host.container.show("telepi@session2", "ActiveState", "Result", "ExecMainStatus") == {
        "ActiveState": "inactive",
        "Result": "success",
        "ExecMainStatus": "0",
    }
    assert "stopping cleanly" in host.journal("-u", "telepi@session2", "-o", "cat")
    store = host.checkpoint()
    try:
        report = store.report(failures=0)
        [session2] = [s for s in report.sessions if s.name == "session2"]
        assert session2.state == "stopped"
        assert not [lease for lease in report.routes[0].leases if lease.session == "session2"]
    finally:
        store.close()
