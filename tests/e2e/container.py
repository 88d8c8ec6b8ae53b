"""A Debian bookworm container booted with systemd as PID 1 (systemd-nspawn), reachable over ssh, for the e2e
tests of the unit and the playbook. Facts this relies on: /work/shared/notes/systemd-e2e.md.

The root filesystem is debootstrapped once, cached as a zstd tarball outside git (CACHE) and unpacked once beside
it; each test module boots a fresh overlay on that copy (its writes go to the module's own upper layer) and
powers it off afterwards, whatever happened.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

CACHE = Path(os.environ.get("TELEPI_E2E_CACHE", "/var/cache/telepi-e2e"))
MIRROR = os.environ.get("TELEPI_E2E_MIRROR", "http://deb.debian.org/debian")
# python3-apt: the apt module's; sudo: become; the rest per the notes. The playbook installs what telepi needs.
PACKAGES = "systemd,systemd-sysv,dbus,python3,python3-venv,python3-apt,openssh-server,ca-certificates,sudo"
# tool -> Debian package; the missing ones are installed with apt-get
HOST_TOOLS = {
    "systemd-nspawn": "systemd-container",
    "debootstrap": "debootstrap",
    "zstd": "zstd",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
}


def missing_requirement() -> str | None:
    """Why the container cannot run here, or None. Installs systemd-container, debootstrap (and zstd, ssh)
    with apt-get when they are missing."""
    if not sys.platform.startswith("linux"):
        return "needs Linux"
    if os.geteuid() != 0:
        return "needs root (systemd-nspawn, debootstrap)"
    absent = sorted({package for tool, package in HOST_TOOLS.items() if shutil.which(tool) is None})
    if absent:
        if shutil.which("apt-get") is None:
            return f"needs {' '.join(absent)} and there is no apt-get to install them"
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-q", *absent]
        if subprocess.run(install, capture_output=True, env=env, check=False).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env, check=False)
            result = subprocess.run(install, capture_output=True, text=True, env=env, check=False)
            if result.returncode != 0:
                return f"apt-get install {' '.join(absent)} failed: {result.stderr.strip()[-300:]}"
    for tool in (*HOST_TOOLS, "nsenter", "tar"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    return cannot_overlay() or cannot_nspawn() or mirror_unreachable()


def cannot_overlay() -> str | None:
    """Each container is an overlay on the cached root filesystem: mount one for real."""
    with tempfile.TemporaryDirectory(prefix="telepi-e2e-probe-") as scratch:
        layers = [Path(scratch, name) for name in ("lower", "upper", "work", "merged")]
        for layer in layers:
            layer.mkdir()
        options = f"lowerdir={layers[0]},upperdir={layers[1]},workdir={layers[2]}"
        result = subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o", options, str(layers[3])], capture_output=True, text=True
        )
        if result.returncode != 0:
            return f"this machine cannot mount an overlay file system: {result.stderr.strip()[-200:]}"
        subprocess.run(["umount", str(layers[3])], check=False)
    return None


def cannot_nspawn() -> str | None:
    """Start a real systemd-nspawn container (namespaces, cgroup, mounts) on this machine's own /usr, running
    `true` then `false`: a machine that cannot host one fails here in a tenth of a second, before a debootstrap."""
    with tempfile.TemporaryDirectory(prefix="telepi-e2e-probe-") as scratch:
        root = Path(scratch)
        root.chmod(0o755)
        (root / "usr").mkdir()
        (root / "etc").mkdir()
        for link in ("bin", "sbin", "lib", "lib64"):
            (root / link).symlink_to(f"usr/{link}")
        command = ["systemd-nspawn", "-q", "--register=no", "--keep-unit", "-D", str(root), "--bind-ro=/usr"]
        codes = []
        for program in ("/usr/bin/true", "/usr/bin/false"):
            result = subprocess.run([*command, program], capture_output=True, text=True, timeout=60, check=False)
            codes.append(result.returncode)
        if codes != [0, 1]:
            return f"systemd-nspawn cannot start a container on this machine: {result.stderr.strip()[-300:]}"
    return None


def mirror_unreachable() -> str | None:
    """Without a cached root filesystem, debootstrap needs the Debian mirror."""
    if any(CACHE.glob("bookworm-*.tar.zst")):
        return None
    url = f"{MIRROR}/dists/bookworm/InRelease"
    try:
        with urllib.request.urlopen(url, timeout=20) as response:
            response.read(1)
    except (OSError, ValueError) as exc:
        return f"no root filesystem is cached in {CACHE} and the Debian mirror is unreachable ({url}: {exc})"
    return None


@contextlib.contextmanager
def locked(name: str) -> Iterator[None]:
    """One holder at a time across processes (two test runs share the cache and the wheel directory)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / f"{name}.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    with open("/proc/self/mountinfo") as handle:
        points = [line.split()[4] for line in handle]
    return [point for point in points if point.startswith(prefix) or point == prefix[:-1]]


def unmount_all_under(path: Path) -> list[str]:
    leftovers = mounts_under(path)
    for point in sorted(leftovers, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False)
    return leftovers


def rootfs_tarball(log: Callable[[str], None]) -> Path:
    """The cached bookworm root filesystem, debootstrapped on first use (about 2 minutes)."""
    key = hashlib.sha256(f"{MIRROR} {PACKAGES}".encode()).hexdigest()[:12]
    tarball = CACHE / f"bookworm-{key}.tar.zst"
    with locked("rootfs"):
        if tarball.exists():
            return tarball
        build = Path(tempfile.mkdtemp(prefix="rootfs-", dir=CACHE))
        build.chmod(0o755)  # becomes the container's /: mkdtemp's 0700 would lock its daemons out
        try:
            log(f"debootstrapping Debian bookworm into {build} (cached afterwards as {tarball})")
            bootstrap = subprocess.run(
                ["debootstrap", "--variant=minbase", f"--include={PACKAGES}", "bookworm", str(build), MIRROR],
                capture_output=True,
                text=True,
            )
            if bootstrap.returncode != 0:
                log_file = build / "debootstrap/debootstrap.log"
                details = log_file.read_text(errors="replace") if log_file.exists() else ""
                cause = (bootstrap.stderr + bootstrap.stdout + details).strip()[-1500:]
                raise RuntimeError(f"debootstrap of bookworm from {MIRROR} failed: {cause}")
            unmount_all_under(build)
            for deb in (build / "var/cache/apt/archives").glob("*.deb"):
                deb.unlink()
            partial = tarball.with_suffix(".partial")
            subprocess.run(["tar", "-C", str(build), "-I", "zstd -T0 -3", "-cf", str(partial), "."], check=True)
            partial.rename(tarball)
        finally:
            unmount_all_under(build)
            shutil.rmtree(build, ignore_errors=True)
    return tarball


def rootfs_base(log: Callable[[str], None]) -> Path:
    """The cached root filesystem unpacked once next to its tarball: the read-only lower layer of each
    container's overlay, so a container starts without copying it."""
    tarball = rootfs_tarball(log)
    base = tarball.with_name(tarball.name.removesuffix(".tar.zst"))
    with locked("rootfs"):
        if not base.is_dir():
            partial = Path(tempfile.mkdtemp(prefix="unpacking-", dir=CACHE))
            try:
                subprocess.run(["tar", "-C", str(partial), "-I", "zstd -d -T0", "-xf", str(tarball)], check=True)
                partial.chmod(0o755)
                partial.rename(base)
            finally:
                shutil.rmtree(partial, ignore_errors=True)
    return base


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


_numbers = itertools.count(1)


class Container:
    """A booted container: ``root`` is its filesystem, ``run()`` executes inside, ssh listens on ``port``."""

    def __init__(self, workdir: Path, base: Path) -> None:
        self.workdir = workdir
        self.root = workdir / "root"
        self.key = workdir / "id_ed25519"
        self.port = free_port()
        self.name = f"telepi-e2e-{os.getpid()}-{next(_numbers)}"  # several may run at once
        self.pid1 = 0
        self._nspawn: subprocess.Popen[bytes] | None = None
        self.root.mkdir()
        upper, scratch = workdir / "upper", workdir / "overlay-work"
        upper.mkdir()
        scratch.mkdir()
        layers = f"lowerdir={base},upperdir={upper},workdir={scratch}"
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o", layers, str(self.root)], check=True)
        self.root.chmod(0o755)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key)], check=True)
        ssh_dir = self.root / "root/.ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        (ssh_dir / "authorized_keys").write_text(self.key.with_suffix(".pub").read_text())
        (ssh_dir / "authorized_keys").chmod(0o600)
        # The container shares the host's network: sshd must not take the host's port 22.
        (self.root / "etc/ssh/sshd_config.d/e2e.conf").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        )

    def write(self, path: str, text: str, mode: int = 0o644) -> None:
        """Put a file into the container's filesystem (before or after boot)."""
        target = self.root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(mode)

    def boot(self, timeout: float = 90) -> None:
        log = (self.workdir / "nspawn.log").open("wb")
        # --register=no --keep-unit: no machined/bus on this host; --console=passive: no tty needed.
        command = ["systemd-nspawn", "-D", str(self.root), f"--machine={self.name}", "--register=no"]
        # The packages apt downloads inside (the host-build test's compiler) are kept for the next run.
        archives = CACHE / "apt-archives"
        (archives / "partial").mkdir(parents=True, exist_ok=True)
        command.append(f"--bind={archives}:/var/cache/apt/archives")
        self._nspawn = subprocess.Popen(
            [*command, "--keep-unit", "--console=passive", "-b"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        children = Path(f"/proc/{self._nspawn.pid}/task/{self._nspawn.pid}/children")
        while not self.pid1:
            if self._nspawn.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the container did not start: {(self.workdir / 'nspawn.log').read_text()}")
            with contextlib.suppress(OSError):
                for pid in children.read_text().split():
                    if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                        self.pid1 = int(pid)
            time.sleep(0.05)
        # Right after the exec, systemd may not answer yet (no private bus socket): ask until it does.
        while True:
            result = self.run("systemctl", "is-system-running", "--wait", timeout=timeout)
            state = result.stdout.strip()
            if state in {"running", "degraded"}:
                return
            if state not in {"", "offline", "initializing", "starting"} or time.monotonic() > deadline:
                raise RuntimeError(f"the container's systemd is {state!r}: {result.stderr.strip()}")
            time.sleep(0.2)

    def run(self, *argv: str, check: bool = False, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run a command inside the container (all its namespaces), as its root."""
        return subprocess.run(
            ["nsenter", "-t", str(self.pid1), "-a", *argv],
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
        )

    def show(self, unit: str, *properties: str) -> dict[str, str]:
        output = self.run("systemctl", "show", unit, "-p", ",".join(properties), check=True).stdout
        return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)

    def power_off(self) -> None:
        """Stop the container, politely then not; leaves no process and no mount behind."""
        if self._nspawn is not None and self._nspawn.poll() is None:
            self._nspawn.send_signal(signal.SIGTERM)  # nspawn asks the container's systemd to power off
            try:
                self._nspawn.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._nspawn.kill()
                self._nspawn.wait(timeout=10)
        subprocess.run(["umount", str(self.root)], check=False)  # the overlay: its own mount, expected here
        leftovers = unmount_all_under(self.workdir)
        if leftovers:
            raise RuntimeError(f"mounts were left behind under {self.workdir}: {leftovers}")


@contextlib.contextmanager
def fresh_container(log: Callable[[str], None]) -> Iterator[Container]:
    """A fresh copy of the cached root filesystem, not yet booted (write files into it, then boot())."""
    base = rootfs_base(log)
    workdir = Path(tempfile.mkdtemp(prefix="telepi-e2e-", dir="/var/tmp"))
    container = None
    try:
        container = Container(workdir, base)
        yield container
    finally:
        try:
            if container is not None:
                container.power_off()
            else:
                unmount_all_under(workdir)  # set-up failed after mounting the overlay
        finally:
            if not mounts_under(workdir):
                shutil.rmtree(workdir, ignore_errors=True)
