"""Whether the target holds copies the checkpoint has no record of: a lost, new or restored checkpoint.

Started on such a checkpoint, a session would copy everything after its records again (issue 13: 1,184
messages in the target for 592 in the source). One look at the newest target messages is enough: copies
made by the route's accounts that the checkpoint neither records nor is sending right now.
"""

from __future__ import annotations

from typing import Any

from telepi.checkpoint.store import Store
from telepi.engine.messages import skip_reason
from telepi.errors import SessionStopped

LOOK_BACK = 50  # newest target messages read at start-up


class UnrecordedCopies(SessionStopped):
    """The target holds copies this checkpoint does not know: copying would double them."""


async def refuse_unrecorded_copies(
    client: Any, store: Store, route_id: int, target: Any, accounts: set[int], session_dir: str
) -> None:
    """Raise UnrecordedCopies when the newest target messages include copies by ``accounts`` that the
    checkpoint does not record (nor is sending); a target adopted by ``telepi verify --adopt`` is only
    looked at above the id it was adopted through."""
    route = next(r for r in store.routes() if r.id == route_id)
    # The target first, then the checkpoint: a copy seen in the target is by then recorded or still sending.
    newest = await client.get_messages(target, limit=LOOK_BACK)
    mine = {
        m.id: m
        for m in newest
        if m.id > route.adopted_through and skip_reason(m) is None and (m.out or _sender(m) in accounts)
    }
    # A caption too long for its media follows it as a text reply that the checkpoint does not record on its
    # own: it belongs to the media copy it answers, recorded or sending like that one. That copy may lie just
    # beyond the messages read (or be older: an edit can add a follow-up to an old copy); read it too.
    ours_or_context = dict(mine)
    beyond = sorted({r for m in mine.values() if (r := _replied(m)) is not None and r not in mine})
    if beyond:
        for m in await client.get_messages(target, ids=beyond):
            if m is not None and skip_reason(m) is None and (m.out or _sender(m) in accounts):
                ours_or_context[m.id] = m
    ours = [i for i, m in mine.items() if not _caption_follow_up(m, ours_or_context)]
    if not ours:
        return
    # Sends in flight first, then the records: a copy recorded in between counts in both, never in neither
    # (read the other way round, a takeover recording a dead session's copies meanwhile made them look lost).
    sending = store.sending_count(route_id)
    unrecorded = set(ours) - store.mapped_targets(route_id, ours)
    if len(unrecorded) <= sending:
        return  # a session's send is between Telegram's answer and its record: the worker matches it
    raise UnrecordedCopies(
        f"the target already holds {len(unrecorded)} copies made by these accounts (target ids "
        f"{', '.join(map(str, sorted(unrecorded)[:5]))}{', …' if len(unrecorded) > 5 else ''}) that the checkpoint "
        f"{getattr(store, 'path', '')} has no record of (a new, lost or restored checkpoint): copying now would "
        f"send them twice; rebuild the checkpoint from the target with  telepi verify {session_dir} --adopt  "
        "then start again"
    )


def _replied(message: Any) -> int | None:
    if getattr(message, "media", None) is not None:
        return None  # a follow-up is text only
    replied = getattr(getattr(message, "reply_to", None), "reply_to_msg_id", None)
    return None if replied is None else int(replied)


def _caption_follow_up(message: Any, mine: dict[int, Any]) -> bool:
    replied = _replied(message)
    answered = mine.get(replied) if replied is not None else None
    return getattr(message, "media", None) is None and answered is not None and answered.media is not None


def _sender(message: Any) -> int | None:
    sender = getattr(message, "from_id", None)
    return getattr(sender, "user_id", None)
