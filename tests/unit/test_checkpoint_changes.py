"""Source edits and deletes in the checkpoint: one open edit per message, claimed only by the copy's account."""

from __future__ import annotations

from pathlib import Path

import pytest

from telepi.checkpoint import Checkpoint, NewItem, open_checkpoint
from tests.unit.test_checkpoint import Clock

BOB, CAROL = 2002, 3003


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(checkpoint_target: Path | str, clock: Clock) -> Checkpoint:
    store = open_checkpoint(checkpoint_target, clock=clock)
    store.register_session("bob", "host", 1, user_id=BOB)
    store.register_session("carol", "host", 2, user_id=CAROL)
    return store


def copied(store: Checkpoint, route_id: int, session: str, ids: list[int]) -> None:
    store.enqueue(route_id, [NewItem(i) for i in ids])
    items = store.claim(route_id, session, len(ids), 60)
    assert store.mark_sending(route_id, [i.source_msg_id for i in items], session)
    store.complete(route_id, {i.source_msg_id: 100 + i.source_msg_id for i in items}, session)


def test_a_change_is_claimed_only_by_the_account_that_made_the_copy(store: Checkpoint) -> None:
    route = store.route("a", "b")
    copied(store, route.id, "bob", [1])
    copied(store, route.id, "carol", [2])
    store.enqueue_edits(route.id, {1: 50, 2: 50})
    store.enqueue_deletes(route.id, [1])  # the delete makes bob's edit moot
    assert store.claim_changes(route.id, "carol", CAROL, 10, 60)[0].source_msg_id == 2
    [bob_change] = store.claim_changes(route.id, "bob", BOB, 10, 60)
    assert (bob_change.source_msg_id, bob_change.kind, bob_change.target_msg_id) == (1, "delete", 101)
    assert store.finish_change(route.id, 1, "delete", "bob")
    assert store.change_counts(route.id) == {"pending": 0, "processing": 1, "done": 2, "failed": 0}


def test_one_open_edit_per_message_reopened_by_a_newer_edit(store: Checkpoint, clock: Clock) -> None:
    route = store.route("a", "b")
    copied(store, route.id, "bob", [1])
    store.enqueue_edits(route.id, {1: 50})
    store.enqueue_edits(route.id, {1: 60})
    [change] = store.claim_changes(route.id, "bob", BOB, 10, 60)
    assert change.edit_date == 60
    store.enqueue_edits(route.id, {1: 70})  # edited again while being applied: applied once more
    assert not store.finish_change(route.id, 1, "edit", "bob")
    [again] = store.claim_changes(route.id, "bob", BOB, 10, 60)
    assert store.finish_change(route.id, 1, "edit", "bob")
    assert again.edit_date == 70
    assert store.enqueue_edits(route.id, {1: 65}) == 0  # an older edit than the one applied
    # The catch-up: an edit no later than the one recorded is not news; a later one is.
    assert store.enqueue_stale_edits(route.id, {1: 70}, slack=0) == 0
    assert store.enqueue_stale_edits(route.id, {1: 71}, slack=0) == 1


def test_catch_up_records_edits_made_after_the_copy_was_claimed(store: Checkpoint, clock: Clock) -> None:
    route = store.route("a", "b")
    claimed_at = int(clock.now)
    copied(store, route.id, "bob", [1, 2, 3])
    store.enqueue(route.id, [NewItem(4)])  # not copied yet: it will read the edited text
    edits = {1: claimed_at - 1000, 2: claimed_at + 5, 4: claimed_at + 5}
    assert store.enqueue_stale_edits(route.id, edits, slack=60) == 1
    assert [c.source_msg_id for c in store.claim_changes(route.id, "bob", BOB, 10, 60)] == [2]


def test_changes_without_a_copy_are_closed_and_failures_retried_then_kept(store: Checkpoint, clock: Clock) -> None:
    route = store.route("a", "b")
    store.enqueue(route.id, [NewItem(1, skip_reason="service_message")])
    copied(store, route.id, "bob", [2])
    store.enqueue_edits(route.id, {1: 50, 2: 50, 9: 50})
    [change] = store.claim_changes(route.id, "bob", BOB, 10, 60)
    assert change.source_msg_id == 2
    assert store.change_counts(route.id)["done"] == 2  # 1 was skipped, 9 was never planned
    store.fail_change(route.id, 2, "edit", "bob", "RPC_CALL_FAIL", retryable=True, max_attempts=2, backoff_seconds=30)
    assert store.claim_changes(route.id, "bob", BOB, 10, 60) == []  # backing off
    clock.now += 31
    store.claim_changes(route.id, "bob", BOB, 10, 60)
    store.fail_change(route.id, 2, "edit", "bob", "RPC_CALL_FAIL", retryable=True, max_attempts=2)
    assert store.change_counts(route.id)["failed"] == 1
