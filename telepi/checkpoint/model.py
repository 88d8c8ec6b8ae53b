"""Plain values the checkpoint hands to the engine and to ``telepi status``."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["pending", "processing", "done", "failed", "skipped"]
STATUSES: tuple[Status, ...] = ("pending", "processing", "done", "failed", "skipped")
SessionState = Literal[
    "running",
    "flood_wait",
    "stopped",
    "error",
    # Stopped by something only a person can fix; ``detail`` holds the one-sentence fix.
    "revoked",  # the login is gone (AUTH_KEY_UNREGISTERED, SESSION_REVOKED, AUTH_KEY_DUPLICATED …)
    "banned",  # USER_DEACTIVATED(_BAN)
    "frozen",  # FROZEN_METHOD_INVALID
    "limited",  # PEER_FLOOD / USER_RESTRICTED
    "blocked",  # the chat or the account's rights in it (write forbidden, topic closed …)
]
PROBLEM_STATES: frozenset[str] = frozenset({"error", "revoked", "banned", "frozen", "limited", "blocked"})
FILTERED = "filtered:"  # skip reasons of messages a route's filters left out: "filtered: kind=sticker"
NEVER_COPYABLE: tuple[str, ...] = ("service_message", "deleted")  # skip reasons a plain retry leaves alone
# Skip reasons that mean "a person (telepi verify) decides": a takeover that found several candidate copies,
# an adoption that could not place repeated content. The ledger shows such rows as status "review".
REVIEW_REASONS: tuple[str, ...] = ("needs_review", "adopt_review")
# A send request without Telegram's answer this long is withdrawn by its session (never sent later, not even
# after a reconnect); a unit whose send went out this long ago (SENDING_STALE_SECONDS, with a margin for the
# request's way out) is then claimable by any session, whatever its holder's heartbeats say, and settled by
# the takeover rules: no ordered route waits for a holder cut off from Telegram. Only a mark made under the
# current claim counts: the session that took a unit over keeps it by its lease, not by its predecessor's mark
# (else every session could take it again at once, a lease ping-pong Hypothesis found).
SEND_TIMEOUT_SECONDS = 15.0
SENDING_STALE_SECONDS = 20.0
# A lease its session is not sending (SQL, both stores): no mark, or a predecessor's mark from before this
# claim. Giving leases back (hand_back, release of the unsent) keeps only the session's own sends: a unit taken
# over and not sent yet goes with its predecessor's mark, so whoever takes it looks in the target first. Kept,
# a session waiting for its turn behind such a unit, queued after the unit it waits with, waited for itself.
NOT_SENDING_HERE = "(send_started_at IS NULL OR send_started_at < claimed_at)"
# No send mark at all (SQL SET list, both stores): nothing was sent, or a refusal settled it.
UNMARKED = "send_session = NULL, send_started_at = NULL, send_first_at = NULL"


@dataclass(frozen=True)
class Route:
    """A (source chat, target chat) pair; work is keyed by route and source message id."""

    id: int
    source_chat: str
    target_chat: str
    label: str
    high_water: int  # highest source id the history planner has enqueued
    adopted_through: int = 0  # telepi verify --adopt matched the target up to this id; older ones are settled
    bound_user_id: int | None = None  # a basic group or private chat: the one account whose ids the route uses

    @classmethod
    def from_row(cls, row: Any) -> Route:
        """From a ``routes`` row of either backend (both index rows by column name)."""
        return cls(
            id=row["id"],
            source_chat=row["source_chat"],
            target_chat=row["target_chat"],
            label=row["label"],
            high_water=row["high_water"],
            adopted_through=row["adopted_through"] or 0,
            bound_user_id=row["bound_user_id"],
        )


@dataclass(frozen=True)
class NewItem:
    """A source message to enqueue; members of an album share ``grouped_id``."""

    source_msg_id: int
    grouped_id: int | None = None
    topic_id: int | None = None
    skip_reason: str | None = None  # known at planning (a service message): enqueued as skipped


@dataclass(frozen=True)
class WorkItem:
    """A leased message. ``takeover`` means a previous holder may already have sent it."""

    route_id: int
    source_msg_id: int
    grouped_id: int | None
    topic_id: int | None
    random_id: int
    attempts: int
    lease_expires: float
    takeover: bool
    send_session: str | None  # the session that started sending it, if any
    send_started_at: float | None = None  # its latest attempt's start (how stale the send is)
    # Its first attempt's start: an attempt whose outcome is unknown may have landed then, retries later
    # (after a flood wait, a restart) keep this time, so a takeover looks for the copy from here.
    first_send_at: float | None = None


class AnyTopic(enum.Enum):
    """Not restricted to one topic (a topic id may be None: a chat without topics)."""

    ANY = "any"


ANY_TOPIC = AnyTopic.ANY
TopicFilter = int | None | AnyTopic


@dataclass(frozen=True)
class Head:
    """The route's next message to publish in order (failed ones aside) and who holds it."""

    source_msg_id: int
    claimable: bool  # pending and due, or its holder's lease ran out
    holder: str | None  # the session leasing it, None when it is not leased


@dataclass(frozen=True)
class TopicClaim:
    """Answer of a topic lease: already ``mapped``, yours to ``create``, or ``wait`` for another session."""

    state: Literal["mapped", "create", "wait"]
    target_topic_id: int | None = None
    holder: str | None = None
    random_id: int = 0  # create: the fixed random_id of this creation (a retry by the same account is deduplicated)
    previous_creator: int | None = None  # create: the account that claimed this creation before, if any


@dataclass(frozen=True)
class Lease:
    route_id: int
    source_msg_id: int
    session: str
    age_seconds: float
    expires_in: float
    sending: bool


@dataclass(frozen=True)
class Failure:
    route_id: int
    source_msg_id: int
    status: Status
    attempts: int
    error: str
    at: float | None


@dataclass(frozen=True)
class Skipped:
    """Skipped messages of one route with one reason: how many, and the latest few ids (newest first)."""

    reason: str
    count: int
    latest: list[int]


@dataclass(frozen=True)
class Pulse:
    """What a running session records with each heartbeat: facts ``telepi status`` judges it by."""

    every: float  # seconds until the next heartbeat at the latest
    link_down_since: float | None = None  # Telegram unreachable since (wall clock); None while connected
    bytes_down: int = 0  # streamed from the source by this process
    bytes_up: int = 0  # uploaded to the target by this process


@dataclass(frozen=True)
class FloodTotal:
    """Every FLOOD_WAIT Telegram asked of one method of one session: how many, and their seconds summed."""

    method: str
    waits: int
    seconds: float


@dataclass(frozen=True)
class Pace:
    """What an account learned of one method group's quota from a refusal: at most ``calls`` calls per
    ``period`` seconds, spread evenly (``telepi/engine/limits/budget.py``)."""

    group: str  # "send" (SendMessage, SendMedia, SendMultiMedia) or a method's own name
    calls: int
    period: float
    learned_at: float  # wall clock
    reason: str  # "FLOOD_WAIT 2983 s"
    session: str  # the session that met it
    wait_until: float | None = None  # wall clock: the end of the wait it was learned from

    @property
    def interval(self) -> float:
        return self.period / self.calls

    @property
    def per_minute(self) -> float:
        return 60.0 * self.calls / self.period

    @classmethod
    def from_row(cls, row: Any) -> Pace:
        return cls(
            group=row["grp"],
            calls=row["calls"],
            period=row["period"],
            learned_at=row["learned_at"],
            reason=row["reason"],
            session=row["session"],
            wait_until=row["wait_until"],
        )


@dataclass(frozen=True)
class SessionInfo:
    name: str
    host: str
    pid: int
    user_id: int | None
    started_at: float
    last_seen: float
    state: SessionState
    detail: str
    wait_until: float | None
    done_total: int
    done_last_5min: int
    heartbeat_every: float | None = None  # None: written by a telepi from before schema 6
    link_down_since: float | None = None
    bytes_down: int = 0
    bytes_up: int = 0
    flood_waits: list[FloodTotal] = field(default_factory=list)
    paces: list[Pace] = field(default_factory=list)  # what its account learned (every session of it shares them)

    @classmethod
    def from_row(cls, row: Any, flood_waits: list[FloodTotal], paces: list[Pace] | None = None) -> SessionInfo:
        """From a ``sessions`` row with its ``done_total`` and ``done_recent`` counts, of either backend."""
        return cls(
            name=row["name"],
            host=row["host"],
            pid=row["pid"],
            user_id=row["user_id"],
            started_at=row["started_at"],
            last_seen=row["last_seen"],
            state=row["state"],
            detail=row["detail"],
            wait_until=row["wait_until"],
            done_total=row["done_total"],
            done_last_5min=row["done_recent"],
            heartbeat_every=row["heartbeat_every"],
            link_down_since=row["link_down_since"],
            bytes_down=row["bytes_down"],
            bytes_up=row["bytes_up"],
            flood_waits=flood_waits,
            paces=list(paces or []),
        )

    @property
    def per_minute(self) -> float:
        return self.done_last_5min / 5.0

    @property
    def needs_action(self) -> bool:
        """Stopped by a state only a person can end (its ``detail`` says how)."""
        return self.state in PROBLEM_STATES


@dataclass(frozen=True)
class RouteReport:
    route: Route
    counts: dict[str, int]
    low_water: int | None
    leases: list[Lease] = field(default_factory=list)
    expired: list[Lease] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)  # by reason, most frequent first
    oldest_open_at: float | None = None  # when the oldest message still pending or leased was planned
    done_last_5min: int = 0

    @property
    def known(self) -> int:
        return sum(self.counts.values())

    @property
    def finished(self) -> int:
        return self.counts.get("done", 0) + self.counts.get("skipped", 0)

    @property
    def filtered(self) -> int:
        """Skipped rows the route's filters left out (counted from the skipped rows' own index)."""
        return sum(entry.count for entry in self.skipped if entry.reason.startswith(FILTERED))


@dataclass(frozen=True)
class StatusReport:
    path: str
    generated_at: float
    routes: list[RouteReport]
    sessions: list[SessionInfo]
    failures: list[Failure]


ChangeKind = Literal["edit", "delete"]


@dataclass(frozen=True)
class ChangeItem:
    """A leased source edit or delete to apply to the copy ``target_msg_id`` (made by this account)."""

    route_id: int
    source_msg_id: int
    kind: ChangeKind
    edit_date: int | None  # edits: the source's edit_date the change was recorded for
    target_msg_id: int
    random_id: int  # the copied item's fixed random id (a follow-up sent by the edit derives its own)
    attempts: int
