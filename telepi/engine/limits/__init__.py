"""Telegram's limits on one account: pacing, flood waits, and the windows learned from them."""
