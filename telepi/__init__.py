"""telepi: clone Telegram chats with several accounts, exactly once, under systemd."""

__version__ = "0.1.0"
