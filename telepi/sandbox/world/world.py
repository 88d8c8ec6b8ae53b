"""The sandbox's Telegram world: accounts, chats, topics, messages and pts, persisted in SQLite.

This package is storage and bookkeeping only (no TL, no permissions): the RPC layer
(``telepi/sandbox/rpc/``) turns rows into TL objects and applies Telegram's rules. :class:`World` is its one
facade, composed of a class per concern: ``accounts``, ``chats`` (and members), ``topics``, ``media``
(documents, photos), ``boxes`` (messages) and ``updates`` (pts), over ``store`` (the SQLite file).

Peers use Telethon's *marked* ids everywhere (``peers.py``).

Message ids live in *boxes*, as on Telegram (https://core.telegram.org/api/updates#message-related-event-sequences):
a channel numbers its own messages (box = the channel's marked id), while private chats and basic groups are
numbered per account (box = the user id), so a message in a basic group with three members exists as three copies
with three ids, tied together by a shared ``gid``. Every change to a box (new, edit, delete) takes the box's next
``pts`` and is logged in ``events`` so that ``updates.getDifference`` / ``getChannelDifference`` can replay it
exactly.
"""

from __future__ import annotations

from telepi.sandbox.world.accounts import Accounts
from telepi.sandbox.world.media import Media
from telepi.sandbox.world.topics import Topics


class World(Topics, Media, Accounts):
    """The world's state in ``path`` (``world.sqlite``); single writer, many readers."""
