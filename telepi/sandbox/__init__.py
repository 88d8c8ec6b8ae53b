"""A local Telegram: a loopback MTProto server that the unmodified Telethon client talks to."""
