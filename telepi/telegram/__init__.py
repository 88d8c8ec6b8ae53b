"""The Telegram adapter: the client factory and the sorting of Telegram's errors."""
