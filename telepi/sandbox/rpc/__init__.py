"""Telegram's API methods the sandbox answers, one module per method family (https://core.telegram.org/methods)."""
