"""A real NOTIFY_SOCKET: a datagram unix socket the test binds, standing in for systemd's."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from telepi.service import notify


class NotifySocket:
    """Receives what the process under test sends to ``$NOTIFY_SOCKET``, stamping each datagram on arrival."""

    def __init__(self, address: str) -> None:
        self.address = address  # as NOTIFY_SOCKET spells it ('@name' for the abstract namespace)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(0.02)
        self._received: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._open = True
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while self._open:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._received.append((time.monotonic(), data.decode("utf-8")))

    def messages(self, timeout: float = 1.0, count: int | None = None) -> list[tuple[float, str]]:
        """(arrival time, text) of the datagrams received so far and until ``count`` arrived (or ``timeout``
        passed); each is returned once."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if count is not None and len(self._received) >= count:
                    break
            time.sleep(0.005)
        with self._lock:
            taken, self._received = self._received, []
        return taken

    def texts(self, timeout: float = 1.0, count: int | None = None) -> list[str]:
        return [text for _, text in self.messages(timeout, count)]

    def close(self) -> None:
        self._open = False
        self._reader.join()
        self.sock.close()


@pytest.fixture
def notify_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifySocket]:
    # A short directory: unix socket paths are limited to 108 bytes, pytest's tmp_path can be longer.
    directory = Path(tempfile.mkdtemp(prefix="telepi-notify-"))
    path = str(directory / "notify.sock")
    receiver = NotifySocket(path)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setattr(notify, "_default", None)  # the process-wide notifier reads the environment anew
    try:
        yield receiver
    finally:
        receiver.close()
        if os.path.exists(path):
            os.unlink(path)
        directory.rmdir()
