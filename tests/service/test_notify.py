"""sd_notify through a real datagram socket: what systemd would receive, byte for byte."""

from __future__ import annotations

import logging
import os
import uuid

import pytest

from telepi.service import notify
from telepi.service.notify import Notifier
from tests.service.conftest import NotifySocket


def test_without_notify_socket_everything_is_a_quiet_no_op(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setattr(notify, "_default", None)
    notifier = Notifier()
    assert not notifier.enabled
    assert not notifier.ready("x")
    assert not notifier.watchdog()
    assert not notify.status("x")
    assert caplog.records == []


def test_each_message_reaches_the_socket(notify_socket: NotifySocket) -> None:
    notifier = Notifier()
    assert notifier.enabled
    assert notifier.ready("copying")
    assert notifier.status("12 of 40 copied")
    assert notifier.watchdog()
    assert notifier.extend_timeout(2.5)
    assert notifier.stopping()
    assert notify_socket.texts(count=5) == [
        "READY=1\nSTATUS=copying",
        "STATUS=12 of 40 copied",
        "WATCHDOG=1",
        "EXTEND_TIMEOUT_USEC=2500000",
        "STOPPING=1",
    ]


def test_module_functions_use_the_process_notifier(notify_socket: NotifySocket) -> None:
    assert notify.ready()
    assert notify.status("s")
    assert notify.watchdog()
    assert notify.stopping("bye")
    assert notify_socket.texts(count=4) == ["READY=1", "STATUS=s", "WATCHDOG=1", "STOPPING=1\nSTATUS=bye"]


def test_status_is_utf8_on_one_line(notify_socket: NotifySocket) -> None:
    # A newline would let a chat title smuggle in another assignment such as READY=1.
    Notifier().status("копирую «Новости» →\nREADY=1")
    # texts() decodes as UTF-8: equality proves the bytes on the wire are UTF-8, not latin-1.
    assert notify_socket.texts(count=2, timeout=0.3) == ["STATUS=копирую «Новости» → READY=1"]


def test_abstract_namespace_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    receiver = NotifySocket(f"@telepi-test-{uuid.uuid4().hex}")
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", receiver.address)
        assert Notifier().watchdog()
        assert receiver.texts(count=1) == ["WATCHDOG=1"]
    finally:
        receiver.close()


def test_reconnects_when_the_socket_is_recreated(notify_socket: NotifySocket) -> None:
    notifier = Notifier()
    assert notifier.watchdog()
    assert notify_socket.texts(count=1) == ["WATCHDOG=1"]
    # systemd re-created its socket at the same path: the old connection is dead.
    notify_socket.close()
    os.unlink(notify_socket.address)
    fresh = NotifySocket(notify_socket.address)
    try:
        assert notifier.watchdog()
        assert fresh.texts(count=1) == ["WATCHDOG=1"]
    finally:
        fresh.close()


def test_an_unreachable_socket_is_reported_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: os.PathLike[str]
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", f"{tmp_path}/absent.sock")
    notifier = Notifier()
    with caplog.at_level(logging.WARNING):
        assert not notifier.watchdog()
        assert not notifier.watchdog()
    assert [r.getMessage() for r in caplog.records] == [
        f"cannot notify systemd at {tmp_path}/absent.sock: [Errno 2] No such file or directory"
    ]


def test_a_non_unix_address_is_refused(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")
    notifier = Notifier()
    assert not notifier.enabled
    assert not notifier.ready()
    assert "not a unix socket path" in caplog.text


def test_a_long_status_is_cut_on_a_character_boundary(notify_socket: NotifySocket) -> None:
    assert Notifier().status("ё" * 3000)  # 6000 bytes: systemd would drop the whole datagram
    [text] = notify_socket.texts(count=1)
    assert text == "STATUS=" + "ё" * 1024
