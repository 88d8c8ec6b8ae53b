"""The checkpoint interface the engine codes against: ``sqlite.py`` (one host) and ``postgres.py`` (several
hosts) implement it with the same semantics; the tests run on both."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from telepi.checkpoint.model import (
    ANY_TOPIC,
    ChangeItem,
    ChangeKind,
    Head,
    NewItem,
    Pace,
    Pulse,
    Route,
    SessionState,
    StatusReport,
    TopicClaim,
    TopicFilter,
    WorkItem,
)


class Store(Protocol):
    notifies: bool  # whether wait_head is woken by other sessions' writes (else the caller polls)

    # routes
    def route(self, source_chat: str, target_chat: str, label: str = "") -> Route:
        """Get or create the route for (source, target)."""

    def routes(self) -> list[Route]: ...

    def raise_high_water(self, route_id: int, source_msg_id: int) -> None:
        """Record planning progress; never moves backwards."""

    # work items
    def enqueue(self, route_id: int, items: Sequence[NewItem]) -> int:
        """Add items that are not known yet (never resets a known one); returns how many were new."""

    def claim(
        self,
        route_id: int,
        session: str,
        limit: int,
        lease_seconds: float,
        *,
        after: int | None = None,
        before: int | None = None,
        at_least: int = 1,
        topic_run: bool = False,
        topic: TopicFilter = ANY_TOPIC,
    ) -> list[WorkItem]:
        """Lease the lowest-id claimable items (whole albums) to ``session``, only ids between ``after``
        and ``before`` when given (a session waiting for its turn takes over what stands before it);
        nothing unless ``at_least`` are claimable (a forward batch is not cut short while planning).

        With ``topic_run`` (ORDERED=topic) the items are one topic's run: the lowest claimable item (in
        ``topic`` when given) and the open items of its topic after it while they are claimable, so no
        item of that topic that another session holds lies between two of them."""

    def heartbeat(self, session: str, lease_seconds: float, pulse: Pulse | None = None) -> int:
        """Extend every lease ``session`` holds and mark the session alive, recording the ``pulse`` facts
        (its heartbeat interval, since when Telegram is unreachable, bytes moved); returns leases extended."""

    def confirm_send(self, route_id: int, source_ids: Sequence[int], session: str, spare_seconds: float) -> bool:
        """Right before the send request, in one transaction: whether ``session`` still holds every one of
        these leases for at least ``spare_seconds`` more (another session may also have taken a unit whose
        send went out SENDING_STALE_SECONDS ago); if so, mark them *sending* by it as of now, so that the
        send timeout counts from the request, not from pacing or flood waits before it."""
        ...

    def mark_sending(self, route_id: int, source_ids: Sequence[int], session: str) -> bool:
        """Record that the send is about to start; False if ``session`` no longer holds every lease."""

    def unmark_refused(self, route_id: int, source_ids: Sequence[int], session: str) -> int:
        """Telegram answered the send with a refusal (FLOOD_WAIT, SLOWMODE_WAIT: an RPC error, so the
        request was not executed): clear the *sending* mark ``session`` set for it, keeping the lease, so
        status says it waits and a takeover need not look for a copy. Only for a unit no earlier attempt
        may have sent (its claim carried no mark): that doubt a refusal now cannot settle."""

    def complete(self, route_id: int, targets: Mapping[int, int | None], session: str) -> int:
        """Mark sent items done with their target ids; returns rows that changed."""

    def fail(
        self,
        route_id: int,
        source_ids: Sequence[int],
        error: str,
        session: str,
        *,
        retryable: bool,
        max_attempts: int,
        backoff_seconds: float = 0.0,
    ) -> int:
        """Count a failed attempt: back to pending after ``backoff_seconds``, or ``failed`` when spent."""

    def skip(self, route_id: int, source_ids: Sequence[int], reason: str, session: str) -> int:
        """Mark items permanently skipped with a reason (service_message, too_large, unsupported, …)."""

    def hand_back(self, route_id: int, session: str, refused: Sequence[int] = (), doubtful: Sequence[int] = ()) -> int:
        """Give every lease of ``session`` on the route that is not being sent to the other sessions;
        ``refused`` ids were marked sending but Telegram refused the send (FLOOD_WAIT), so they go too,
        unmarked; ``doubtful`` ids go with their mark (an attempt may have sent part of them: a caption's
        follow-up refused after its media landed), so whoever takes them looks in the target first."""

    def release(self, session: str, *, route_id: int | None = None, only_unsent: bool = False) -> int:
        """Give leases back (clean shutdown, or a long flood wait when ``only_unsent``)."""

    def retry(self, route_id: int | None = None, source_ids: Sequence[int] | None = None) -> int:
        """Requeue failed items (all, one route's, or the given ids); returns how many."""

    def retry_skipped(
        self,
        route_id: int | None = None,
        source_ids: Sequence[int] | None = None,
        reasons: Sequence[str] | None = None,
        *,
        exclude: Sequence[str] = (),
    ) -> dict[str, int]:
        """Requeue skipped items (all, one route's, the given ids, those with one of ``reasons``, never
        those with a reason in ``exclude``) as if never tried, keeping their random_id; returns how many
        by reason."""

    def low_water_mark(self, route_id: int) -> int | None:
        """Lowest source id of the route that is not done or skipped, or None when all are (see ``head``
        for what ordered publishing waits on)."""

    def mapped_targets(self, route_id: int, target_ids: Sequence[int]) -> set[int]:
        """Which of these target messages are already recorded as a copy, by any route into the same target."""

    def route_counts(self, route_id: int) -> tuple[int, int]:
        """(finished = done + skipped, known) messages of the route."""

    def wait_head(self, route_id: int, timeout: float) -> bool:
        """Block up to ``timeout`` seconds for another session's write that may move the route's head;
        True when one came. Returns False at once when ``notifies`` is False."""

    def head(self, route_id: int, topic: TopicFilter = ANY_TOPIC) -> Head | None:
        """The lowest id still to publish (in ``topic`` when given) and whether it is claimable right now,
        or None when nothing is.

        Failed rows are left aside: a message that spent its attempts must not hold the rest back forever
        (it is visible in ``telepi status`` and requeued by retry)."""

    def open_item(self, route_id: int, source_msg_id: int) -> Head | None:
        """This message while it is still to publish (pending or leased), whether it is claimable and who
        holds it; None once done, skipped or failed, or when the route never planned it."""

    def target_ids(self, route_id: int, source_ids: Sequence[int]) -> dict[int, int]:
        """Target message ids of copied source messages (for replies, edits, deletes)."""

    # source edits and deletes (applied by the account that made the copy)
    def copied_ids(self, route_id: int) -> list[int]:
        """Source ids of the route with a copy in the target (done with a target id), ascending."""

    def enqueue_edits(self, route_id: int, edits: Mapping[int, int | None]) -> int:
        """Record source edits (source id → the source's edit_date): one open edit per message, reopened
        only by an edit_date as late or later; a message whose delete is recorded is left alone. Returns
        rows changed."""

    def enqueue_stale_edits(self, route_id: int, edits: Mapping[int, int], slack: float) -> int:
        """Catch-up: record the edits of copied messages whose ``edit_date`` is later than the copy's claim
        (less ``slack`` seconds of clock difference) or than the edit last recorded. Returns how many."""

    def enqueue_deletes(self, route_id: int, source_ids: Sequence[int]) -> int:
        """Record source deletes; an open edit of the same message is done (nothing left to edit)."""

    def source_pts(self, route_id: int) -> int | None:
        """The source channel's pts up to which its edits and deletes are recorded (None: never asked)."""

    def advance_source_pts(self, route_id: int, pts: int, *, restart: bool = False) -> int:
        """Record that the source's updates up to ``pts`` are recorded; never moves back (several sessions
        advance it) unless ``restart`` (Telegram refused the stored one). Returns the route's pts now."""

    def claim_changes(
        self, route_id: int, session: str, user_id: int, limit: int, lease_seconds: float
    ) -> list[ChangeItem]:
        """Lease open changes of copies made by ``user_id``'s account; changes of messages without a copy
        (skipped, never planned) are closed as not applicable; those still being copied wait."""

    def finish_change(self, route_id: int, source_msg_id: int, kind: ChangeKind, session: str, note: str = "") -> bool:
        """Mark a leased change done (``note`` says why when nothing was changed); False if it was
        reopened by a newer edit or lost its lease meanwhile."""

    def fail_change(
        self,
        route_id: int,
        source_msg_id: int,
        kind: ChangeKind,
        session: str,
        error: str,
        *,
        retryable: bool,
        max_attempts: int,
        backoff_seconds: float = 0.0,
    ) -> None:
        """Count a failed attempt: pending again after ``backoff_seconds``, or ``failed`` when spent."""

    def reassign_change(self, route_id: int, source_msg_id: int, kind: ChangeKind, author_user_id: int) -> None:
        """The copy turned out to be another account's: only that account will claim the change."""

    def change_counts(self, route_id: int | None = None) -> dict[str, int]:
        """Changes by status (``pending``, ``processing``, ``done``, ``failed``), of one route or all."""

    # topics
    def claim_topic(
        self,
        route_id: int,
        source_topic_id: int,
        session: str,
        title: str,
        lease_seconds: float,
        user_id: int | None = None,
    ) -> TopicClaim:
        """Who creates the target topic for ``source_topic_id``; at most one session at a time. A create
        claim records ``user_id`` as the creator and says which account claimed it before."""

    def forget_topic(self, route_id: int, source_topic_id: int, target_topic_id: int) -> bool:
        """The target topic was deleted: unmap it (once, if it is still mapped to ``target_topic_id``)
        so the next claim creates a new one with a new random_id. True when this call unmapped it."""

    def complete_topic(self, route_id: int, source_topic_id: int, target_topic_id: int, title: str) -> None: ...

    def topic_title(self, route_id: int, source_topic_id: int) -> str | None:
        """The title last recorded for a source topic (renames compare against it)."""

    def topic_map(self, route_id: int) -> dict[int, int]: ...

    def bind_route(self, route_id: int, user_id: int) -> int:
        """Bind a route whose message ids are per account to its first account; returns the bound user id."""

    def sessions_of_user(self, user_id: int) -> list[str]:
        """Names of the sessions registered with this Telegram user id."""

    # sessions
    def register_session(self, name: str, host: str, pid: int, user_id: int | None = None) -> None:
        """Mark ``name`` running; leases left by a dead earlier process of that name become claimable."""

    def others_alive(self, session: str, within: float) -> int:
        """How many other sessions were seen working in the last ``within`` seconds."""

    def session_user_ids(self) -> set[int]:
        """The accounts of every session that ever ran on this checkpoint."""
        ...

    def session_user_id(self, name: str) -> int | None:
        """The Telegram user id a session registered with (to recognise its messages in the target)."""

    def record_flood_wait(self, session: str, method: str, seconds: float) -> None:
        """Count a FLOOD_WAIT of ``seconds`` Telegram asked of ``method`` (for the metrics)."""

    def save_pace(self, user_id: int, pace: Pace) -> None:
        """Keep what account ``user_id`` learned of ``pace.group``'s quota, replacing what it knew before."""

    def paces(self, user_id: int) -> list[Pace]:
        """What account ``user_id`` learned, by group."""

    def set_session_state(
        self, name: str, state: SessionState, detail: str = "", wait_until: float | None = None
    ) -> None: ...

    # verify and adopt
    def ledger(self, route_id: int) -> dict[int, tuple[str, int | None]]:
        """Every row of the route: source id -> (status, target id); a row skipped for review
        (REVIEW_REASONS: a person decides, through ``telepi verify``) has the status ``review``."""

    def sending_count(self, route_id: int) -> int:
        """Rows of every route into the route's target whose send started and is not recorded yet (their
        copies may already be in the target)."""

    def adopt(
        self, route_id: int, copies: Sequence[tuple[NewItem, int]], review: Sequence[NewItem], through: int
    ) -> int:
        """Record copies found in the target as done, hold ``review`` back as skipped (adopt_review), and
        mark the target adopted up to id ``through``; returns the copies recorded."""

    def requeue_missing(self, route_id: int, items: Sequence[NewItem]) -> int:
        """Queue these source messages again (their copies are gone), with a new random_id."""

    # reporting
    def report(self, failures: int = 10, skipped_ids: int = 5) -> StatusReport:
        """Everything ``telepi status`` shows: per route counts, leases and skipped ids by reason
        (the latest ``skipped_ids`` of each), sessions, the latest ``failures``."""

    def close(self) -> None: ...
