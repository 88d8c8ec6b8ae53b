"""Hypothesis state machine: the checkpoint (SQLite and PostgreSQL) behaves like a small in-memory model of it."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from telepi.checkpoint import NewItem, open_checkpoint
from telepi.checkpoint.model import SENDING_STALE_SECONDS

SESSIONS = st.sampled_from(["s1", "s2", "s3"])
MAX_ATTEMPTS = 2


def album_of(msg_id: int) -> int | None:
    # ids 20..35 come in albums of four; the rest are single messages
    return 1000 + msg_id // 4 if 20 <= msg_id < 36 else None


@dataclass
class Row:
    status: str = "pending"
    owner: str | None = None
    expires: float = 0.0
    not_before: float = 0.0
    sending: bool = False
    sent_by: str | None = None  # the session of the send mark
    claimed_at: float = 0.0
    sent_at: float = 0.0  # when the latest send mark was made
    first_sent_at: float = 0.0  # when the marking session's first attempt was marked
    attempts: int = 0
    target: int | None = None


class Clock:
    now = 5000.0

    def __call__(self) -> float:
        return self.now


class CheckpointMachine(RuleBasedStateMachine):
    def __init__(self, fresh: Callable[[], str] | None = None) -> None:
        super().__init__()
        self.directory = tempfile.TemporaryDirectory()
        self.clock = Clock()
        # A fresh PostgreSQL database per example when ``fresh`` is given, else a fresh SQLite file.
        target = fresh() if fresh is not None else Path(self.directory.name) / "checkpoint.db"
        self.store = open_checkpoint(target, clock=self.clock)
        self.route = self.store.route("src", "dst").id
        self.rows: dict[int, Row] = {}
        self.next_target = 1

    def teardown(self) -> None:
        self.store.close()
        self.directory.cleanup()

    # ---- model helpers -------------------------------------------------------------------------

    def claimable(self, msg_id: int) -> bool:
        row = self.rows[msg_id]
        now = self.clock.now
        # a send mark made under the current claim and older than SENDING_STALE_SECONDS frees the unit too
        stale_send = row.sending and row.sent_at < now - SENDING_STALE_SECONDS and row.sent_at >= row.claimed_at
        return (row.status == "pending" and row.not_before <= now) or (
            row.status == "processing" and (row.expires < now or stale_send)
        )

    def held(self, session: str) -> list[int]:
        return sorted(i for i, r in self.rows.items() if r.status == "processing" and r.owner == session)

    # ---- rules -----------------------------------------------------------------------------------

    @rule(ids=st.lists(st.integers(1, 40), min_size=1, max_size=12))
    def enqueue(self, ids: list[int]) -> None:
        new = {i for i in ids if i not in self.rows}
        assert self.store.enqueue(self.route, [NewItem(i, grouped_id=album_of(i)) for i in ids]) == len(new)
        for i in new:
            self.rows[i] = Row()

    @rule(session=SESSIONS, limit=st.integers(1, 5), lease=st.sampled_from([10.0, 30.0]))
    def claim(self, session: str, limit: int, lease: float) -> None:
        expected: list[int] = []
        seen_albums: set[int] = set()
        for msg_id in sorted(i for i in self.rows if self.claimable(i))[:limit]:
            if len(expected) >= limit:
                break
            album = album_of(msg_id)
            if album is None:
                expected.append(msg_id)
            elif album not in seen_albums:
                seen_albums.add(album)
                expected += [i for i in self.rows if album_of(i) == album and self.claimable(i)]
        got = self.store.claim(self.route, session, limit, lease)
        assert [item.source_msg_id for item in got] == sorted(set(expected))
        for item in got:
            row = self.rows[item.source_msg_id]
            if row.status == "processing":
                row.attempts += 1
            assert item.takeover == row.sending
            assert (item.send_session, item.first_send_at) == (
                (row.sent_by, row.first_sent_at) if row.sending else (None, None)
            )
            assert item.attempts == row.attempts
            row.status, row.owner, row.expires = "processing", session, self.clock.now + lease
            row.claimed_at = self.clock.now

    @rule(seconds=st.sampled_from([1.0, 5.0, 15.0, 40.0]))
    def tick(self, seconds: float) -> None:
        self.clock.now += seconds

    @rule(session=SESSIONS)
    def heartbeat(self, session: str) -> None:
        held = self.held(session)
        assert self.store.heartbeat(session, 30.0) == len(held)
        for i in held:
            self.rows[i].expires = self.clock.now + 30.0

    @rule(session=SESSIONS, data=st.data())
    def mark_sending(self, session: str, data: st.DataObject) -> None:
        ids = data.draw(st.lists(st.sampled_from(sorted(self.rows)), min_size=1, max_size=3)) if self.rows else [1]
        owns_all = all(
            i in self.rows and self.rows[i].status == "processing" and self.rows[i].owner == session for i in ids
        )
        assert self.store.mark_sending(self.route, ids, session) == owns_all
        if owns_all:
            for i in ids:
                row = self.rows[i]
                if not (row.sending and row.sent_by == session):  # a retry keeps its first attempt's time
                    row.first_sent_at = self.clock.now
                row.sending, row.sent_by, row.sent_at = True, session, self.clock.now

    @precondition(lambda self: any(r.status == "processing" for r in self.rows.values()))
    @rule(data=st.data())
    def complete(self, data: st.DataObject) -> None:
        processing = sorted(i for i, r in self.rows.items() if r.status == "processing")
        ids = data.draw(st.lists(st.sampled_from(processing), min_size=1, max_size=3, unique=True))
        session = self.rows[ids[0]].owner or "s1"
        targets = {}
        for i in ids:
            targets[i] = self.next_target
            self.next_target += 1
        assert self.store.complete(self.route, targets, session) == len(ids)
        for i in ids:
            self.rows[i].status, self.rows[i].target, self.rows[i].owner = "done", targets[i], session

    @rule(session=SESSIONS, retryable=st.booleans(), backoff=st.sampled_from([0.0, 20.0]))
    def fail_held(self, session: str, retryable: bool, backoff: float) -> None:
        held = self.held(session)[:2]
        if not held:
            return
        changed = self.store.fail(
            self.route, held, "E", session, retryable=retryable, max_attempts=MAX_ATTEMPTS, backoff_seconds=backoff
        )
        assert changed == len(held)
        for i in held:
            row = self.rows[i]
            row.attempts += 1
            if retryable and row.attempts < MAX_ATTEMPTS:
                row.status, row.not_before = "pending", self.clock.now + backoff
            else:
                row.status, row.not_before = "failed", 0.0

    @rule(session=SESSIONS)
    def skip_held(self, session: str) -> None:
        held = self.held(session)[:1]
        if held:
            assert self.store.skip(self.route, held, "unsupported", session) == 1
            self.rows[held[0]].status = "skipped"

    def sending_here(self, msg_id: int) -> bool:
        """Marked under the current claim: a predecessor's mark (a takeover) is no send of this holder's."""
        row = self.rows[msg_id]
        return row.sending and row.sent_at >= row.claimed_at

    @rule(session=SESSIONS, only_unsent=st.booleans())
    def release(self, session: str, only_unsent: bool) -> None:
        held = [i for i in self.held(session) if not (only_unsent and self.sending_here(i))]
        assert self.store.release(session, only_unsent=only_unsent) == len(held)
        for i in held:
            self.rows[i].status, self.rows[i].owner = "pending", None

    @rule(session=SESSIONS)
    def hand_back(self, session: str) -> None:
        held = [i for i in self.held(session) if not self.sending_here(i)]
        assert self.store.hand_back(self.route, session) == len(held)
        for i in held:  # marks kept: whoever takes a taken-over unit next looks in the target too
            self.rows[i].status, self.rows[i].owner = "pending", None

    @rule()
    def retry(self) -> None:
        failed = [i for i, r in self.rows.items() if r.status == "failed"]
        assert self.store.retry(self.route) == len(failed)
        for i in failed:
            row = self.rows[i]
            row.status, row.attempts, row.not_before, row.owner = "pending", 0, 0.0, None

    # ---- invariants ------------------------------------------------------------------------------

    @invariant()
    def counts_and_low_water_match(self) -> None:
        report = self.store.report()
        counts = report.routes[0].counts if report.routes else {}
        for status in ("pending", "processing", "done", "failed", "skipped"):
            assert counts.get(status, 0) == sum(1 for r in self.rows.values() if r.status == status)
        if report.routes:  # the progress line's (finished, known), read from the same counters
            finished = sum(1 for r in self.rows.values() if r.status in ("done", "skipped"))
            assert self.store.route_counts(self.route) == (finished, len(self.rows))
        open_ids = [i for i, r in self.rows.items() if r.status in ("pending", "processing", "failed")]
        assert self.store.low_water_mark(self.route) == (min(open_ids) if open_ids else None)

    @invariant()
    def done_rows_keep_their_target(self) -> None:
        done = {i: r.target for i, r in self.rows.items() if r.status == "done"}
        assert self.store.target_ids(self.route, list(done)) == done


SETTINGS = settings(max_examples=60, stateful_step_count=40, deadline=None)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_checkpoint_behaves_like_its_model(backend: str, request: pytest.FixtureRequest) -> None:
    fresh = request.getfixturevalue("pg_server").new_database if backend == "postgres" else None
    run_state_machine_as_test(lambda: CheckpointMachine(fresh), settings=SETTINGS)
