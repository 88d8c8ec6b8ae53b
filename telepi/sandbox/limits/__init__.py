"""Telegram's limits and failures: flood waits (https://core.telegram.org/api/errors#420-flood) and injected faults."""
