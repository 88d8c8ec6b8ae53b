"""The sandbox's Telegram world: accounts, chats, topics, messages, pts and stored files, persisted in SQLite."""
