"""Sessions on two hosts sharing a PostgreSQL checkpoint, deployed for real: two Debian bookworm containers booted
with systemd, one inventory in the shape the README shows (deploy/ansible/inventory.multi-host.example.ini).

`alpha` is in [telepi_postgres]: the playbook installs Debian's PostgreSQL there, a role and a database for telepi
(TLS, only the [telepi] hosts let in), and runs session1 (bob); `beta` runs session2 (carol). Both units work one
route of the sandbox (a thread of this process, on the host's loopback, which the containers share). Checked from
the target itself: every message exactly once and in order; session1's unit is SIGKILLed while it holds leases and
beta takes its work over within the lease; the second playbook run changes nothing; the database password appears
in no output, no .env and no journal.

Skipped with one sentence where the containers cannot run (container.missing_requirement). Needs the Debian
mirror for PostgreSQL's packages on the first run (kept in the cache afterwards).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from telepi.sandbox.world.worldfile import generate_history
from tests.e2e.container import CACHE, Container, free_port, fresh_container, locked
from tests.e2e.harness import REPO, copy_key, prerequisites, snapshot_source, wait_for
from tests.e2e.sandbox_thread import SandboxThread

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

ANSIBLE_DIR = REPO / "deploy" / "ansible"
EXAMPLE = ANSIBLE_DIR / "inventory.multi-host.example.ini"
ROOT = "/srv/telepi/sessions"
KEY_IN_CONTAINER = "/usr/local/lib/telepi-e2e/sandbox-key.pem"
MESSAGES = 40
LEASE_SECONDS = 15
HOSTS = {"alpha": ("session1", "bob"), "beta": ("session2", "carol")}
SENDS = ("ForwardMessagesRequest", "SendMessageRequest", "SendMediaRequest", "SendMultiMediaRequest")


def sandbox_world() -> dict[str, Any]:
    accounts = ("alice", "bob", "carol")
    source: dict[str, Any] = {
        "name": "source",
        "kind": "channel",
        "title": "Source",
        "owner": "alice",
        "noforwards": True,  # copied one message per send, so a kill lands mid-way through the live posts
        "members": ["bob", "carol"],
    }
    source["messages"] = generate_history(source, MESSAGES, seed=5, mix={"text": 80, "photo": 20}, max_size=4096)
    target = {"name": "target", "kind": "channel", "title": "Target", "owner": "alice"}
    target["admins"] = {name: ["post_messages"] for name in ("bob", "carol")}
    return {
        "accounts": [{"name": n, "phone": f"+1555030000{i}", "code": "12345"} for i, n in enumerate(accounts)],
        "chats": [source, target],
    }


@dataclass
class Run:
    returncode: int
    output: str

    def recap(self, host: str) -> dict[str, int]:
        match = re.search(rf"^{host}\s+:\s+(.*)$", self.output, flags=re.MULTILINE)
        assert match, self.output[-3000:]
        return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", match.group(1))}


@dataclass
class Hosts:
    containers: dict[str, Container]
    sandbox: SandboxThread
    workdir: Path
    local: Path
    source: Path
    ansible_playbook: str
    pg_port: int
    say: Callable[[str], None]
    runs: list[Run] = field(default_factory=list)

    def inventory(self) -> Path:
        """The README's multi-host example with this test's addresses: the hosts' lines rewritten, the rest kept."""
        lines = []
        for line in EXAMPLE.read_text().splitlines():
            name = line.split(" ", 1)[0]
            if name in self.containers and " ansible_host=" in line:
                container = self.containers[name]
                sessions = re.search(r"telepi_sessions=\"[^\"]*\"", line)
                assert sessions, line
                line = (
                    f"{name} ansible_host=127.0.0.1 ansible_port={container.port} ansible_user=root "
                    f"ansible_ssh_private_key_file={container.key} ansible_python_interpreter=/usr/bin/python3 "
                    "ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null' "
                    + sessions.group(0)
                )
            lines.append(line)
        path = self.workdir / "inventory.ini"
        path.write_text("\n".join(lines) + "\n")
        return path

    def playbook(self) -> Run:
        variables = self.workdir / "vars.json"
        variables.write_text(
            json.dumps(
                {
                    "telepi_local_sessions_dir": str(self.local),
                    "telepi_copy_session_files": True,
                    "telepi_wheel_dir": str(CACHE / "wheels"),
                    "telepi_project_dir": str(self.source),
                    "telepi_credentials_dir": str(self.workdir / "credentials"),
                    "telepi_postgres_port": self.pg_port,
                }
            )
        )
        env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}
        env["PATH"] = f"{Path(self.ansible_playbook).parent}:{env['PATH']}"
        started = time.monotonic()
        result = subprocess.run(
            [self.ansible_playbook, "-i", str(self.inventory()), "-e", f"@{variables}", "deploy.yml"],
            cwd=ANSIBLE_DIR,
            capture_output=True,
            text=True,
            env=env,
            timeout=900,
        )
        run = Run(result.returncode, result.stdout + result.stderr)
        outcome = {h: run.recap(h) for h in HOSTS} if run.returncode == 0 else run.output[-2000:]
        self.say(f"playbook run {len(self.runs) + 1}: {time.monotonic() - started:.1f} s, {outcome}")
        self.runs.append(run)
        return run

    def password(self) -> str:
        return (self.workdir / "credentials" / "postgres-telepi").read_text().split()[0]

    def target(self) -> list[tuple[str, str]]:
        return self.sandbox.call(lambda sb: [copy_key(m) for m in sb.messages("target") if not m["service"]])

    def source_contents(self) -> list[tuple[str, str]]:
        return self.sandbox.call(lambda sb: [copy_key(m) for m in sb.messages("source") if not m["service"]])

    def status(self, host: str) -> dict[str, Any]:
        """`telepi status --json` on ``host`` as its service user: the PostgreSQL checkpoint as telepi reads it."""
        session = HOSTS[host][0]
        result = self.containers[host].run(
            "runuser", "-u", "telepi", "--", "/opt/telepi/venv/bin/telepi", "status", f"{ROOT}/{session}", "--json"
        )
        assert result.returncode == 0, result.stdout + result.stderr
        data: dict[str, Any] = json.loads(result.stdout)
        return data

    def journal(self, host: str) -> str:
        return self.containers[host].run("journalctl", "--no-pager", "-o", "json", check=True).stdout


@pytest.fixture(scope="module")
def hosts(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosts]:
    ansible_playbook, say = prerequisites(request, "e2e two hosts")
    started = time.monotonic()
    workdir = tmp_path_factory.mktemp("two-hosts")
    key_file = CACHE / "sandbox-key.pem"
    with (
        SandboxThread(sandbox_world(), workdir / "sandbox", key_file) as sandbox,
        locked("e2e"),
        fresh_container(say) as alpha,
        fresh_container(say) as beta,
    ):
        containers = {"alpha": alpha, "beta": beta}
        for name, container in containers.items():
            container.write(KEY_IN_CONTAINER, sandbox.call(lambda sb: sb.public_key_path.read_text()))
            container.write("/etc/hostname", f"{name}\n")  # two hosts, two names (telepi status tells them apart)
        # e2e only: session1's unit is not restarted for the takeover test (it is started again at the end).
        alpha.write("/etc/systemd/system/telepi@session1.service.d/e2e.conf", "[Service]\nRestartSec=3600\n")
        for container in containers.values():
            container.boot()
        say(f"two containers booted {time.monotonic() - started:.1f} s after the start")
        source = snapshot_source(workdir / "source")
        local = workdir / "local"

        async def logins(sb: Any) -> None:
            for session, account in HOSTS.values():
                await sb.session_dir(
                    local / session,
                    account,
                    SOURCE_CHAT=str(sb.chat("source").id),
                    TARGET_CHAT=str(sb.chat("target").id),
                    TG_SERVER_KEY=KEY_IN_CONTAINER,
                    LIVE="true",
                    SEND_INTERVAL="0.3",
                    READ_INTERVAL="0",
                    LEASE_SECONDS=str(LEASE_SECONDS),
                )

        sandbox.call(logins)
        for path in local.glob("*/.env"):
            path.chmod(0o600)
        deployment = Hosts(containers, sandbox, workdir, local, source, ansible_playbook, free_port(), say)
        for _ in range(2):
            run = deployment.playbook()
            if run.returncode != 0:
                journals = "".join(
                    f"\n--- {name}'s telepi units:\n"
                    + c.run("journalctl", "--no-pager", "-o", "cat", "-n", "40", "-u", "telepi@*").stdout
                    for name, c in containers.items()
                )
                pytest.fail(
                    f"deploy.yml failed into the two containers:\n{run.output[-4000:]}{journals}", pytrace=False
                )
        yield deployment
    say(f"done in {time.monotonic() - started:.1f} s")


def test_the_second_run_changes_nothing_and_the_password_stays_secret(hosts: Hosts) -> None:
    first, second = hosts.runs[:2]
    assert all(first.recap(h)["changed"] > 0 for h in HOSTS)
    assert {h: second.recap(h)["changed"] for h in HOSTS} == {"alpha": 0, "beta": 0}, second.output
    password = hosts.password()
    assert len(password) == 40
    for run in hosts.runs:
        assert password not in run.output
    for name, container in hosts.containers.items():
        session = HOSTS[name][0]
        env = container.run("cat", f"{ROOT}/{session}/.env", check=True).stdout
        [url] = re.findall(r"^SHARED_DB_URL=(.*)$", env, flags=re.MULTILINE)
        assert url == (
            f"postgresql://telepi@127.0.0.1:{hosts.pg_port}/telepi?sslmode=require&passfile={ROOT}/shared/pgpass"
        )
        assert password not in env
        mode = container.run("stat", "-c", "%U %a", f"{ROOT}/shared/pgpass", check=True).stdout.split()
        assert mode == ["telepi", "600"]
    # Only alpha runs the server; beta reaches it over the network (TLS required by pg_hba).
    assert hosts.containers["beta"].run("dpkg-query", "-W", "postgresql").returncode != 0
    hba = hosts.containers["alpha"].run("sh", "-c", "cat /etc/postgresql/*/main/pg_hba.conf", check=True).stdout
    assert "hostssl telepi telepi 127.0.0.1/32 scram-sha-256" in hba


def test_both_hosts_fill_the_target_exactly_once_in_order(hosts: Hosts) -> None:
    source = hosts.source_contents()
    wait_for("the target to hold the whole source", lambda: len(hosts.target()) >= len(source), 180)
    assert hosts.target() == source
    status = hosts.status("beta")
    assert {s["name"] for s in status["sessions"]} == {"session1", "session2"}
    assert {s["state"] for s in status["sessions"]} == {"running"}
    [route] = status["routes"]
    assert route["counts"]["done"] == len(source)


def test_a_killed_host_session_is_taken_over_by_the_other_host(hosts: Hosts) -> None:
    """session1's unit is SIGKILLed right after one of its sends executed on the server and before the answer
    (the worst moment: the copy is in the target, session1 never recorded it); beta must adopt that copy, not send
    it again, and copy the rest of what session1 held once its lease runs out."""
    alpha = hosts.containers["alpha"]
    fired: list[float] = []

    def kill(_request: object) -> None:
        if not fired:
            fired.append(time.monotonic())
            alpha.run("systemctl", "kill", "--kill-whom=main", "--signal=SIGKILL", "telepi@session1")

    def arm(sb: Any) -> None:
        bob = sb.account("bob").id
        for method in SENDS:
            sb.faults.after_call(method, kill, nth=3, user_id=bob)  # mid-way: later posts wait on its unit

    hosts.sandbox.call(arm)
    for n in range(30):
        hosts.sandbox.call(lambda sb, n=n: sb.post("source", f"live post {n}", as_account="alice"))
    try:
        wait_for("session1 to send a live post", lambda: bool(fired), 60)
    except AssertionError as exc:
        journal = alpha.run("journalctl", "--no-pager", "-o", "cat", "-n", "60", "-u", "telepi@session1").stdout
        raise AssertionError(f"{exc}; session1's journal:\n{journal}\nstatus: {hosts.status('beta')}") from None
    killed = fired[0]
    source = hosts.source_contents()
    wait_for("beta to copy what session1 held", lambda: len(hosts.target()) >= len(source), 60 + 2 * LEASE_SECONDS)
    hosts.say(f"the target was complete {time.monotonic() - killed:.1f} s after the SIGKILL")
    time.sleep(2)  # a late duplicate would show now
    assert hosts.target() == source
    assert alpha.show("telepi@session1", "ActiveState")["ActiveState"] != "active"
    # It waits for its (e2e-long) automatic restart: stop cancels that, then a start now.
    alpha.run("systemctl", "stop", "telepi@session1", check=True)
    alpha.run("systemctl", "start", "--no-block", "telepi@session1", check=True)

    def session1_runs() -> bool:
        return alpha.show("telepi@session1", "ActiveState")["ActiveState"] == "active"

    try:
        wait_for("session1 to start again", session1_runs, 90)
    except AssertionError as exc:
        journal = alpha.run("journalctl", "--no-pager", "-o", "cat", "-n", "60", "-u", "telepi@session1").stdout
        raise AssertionError(f"{exc}; session1's journal:\n{journal}") from None
    hosts.sandbox.call(lambda sb: sb.post("source", "after the takeover", as_account="alice"))
    wait_for("the post after the takeover", lambda: ("after the takeover", "") in hosts.target(), 60)
    assert hosts.target() == hosts.source_contents()
    password = hosts.password()
    for name in HOSTS:
        assert password not in hosts.journal(name)
