"""The shared checkpoint on a real SQLite file: leases, albums, ordering, takeover, topics, errors."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from telepi.checkpoint import Checkpoint, NewItem, SqliteStore, open_checkpoint
from telepi.errors import CheckpointError


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(checkpoint_target: Path | str, clock: Clock) -> Iterator[Checkpoint]:
    """Every test taking ``store`` runs on both backends (tests/conftest.py)."""
    store = open_checkpoint(checkpoint_target, clock=clock)
    yield store
    store.close()


def raw_rows(target: Path | str, query: str, *, write: bool = False) -> list[tuple[object, ...]]:
    """Rows of a query run beside telepi, as a person runs it in sqlite3 or psql (``write``: statements
    that change the checkpoint, committed; no rows)."""
    if isinstance(target, Path):
        db = sqlite3.connect(target)
        if write:
            db.executescript(query)
            db.close()
            return []
        return db.execute(query).fetchall()
    import psycopg

    with psycopg.connect(target) as db:
        cursor = db.execute(query.encode())
        return [] if write else list(cursor.fetchall())


def test_enqueue_is_idempotent_and_never_resets_done(store: Checkpoint) -> None:
    route = store.route("-1001", "-1002")
    assert store.enqueue(route.id, [NewItem(1), NewItem(2), NewItem(3)]) == 3
    assert store.enqueue(route.id, [NewItem(2), NewItem(3), NewItem(4)]) == 1
    [first, *_] = store.claim(route.id, "s1", 1, 60)
    assert store.complete(route.id, {first.source_msg_id: 501}, "s1") == 1
    assert store.enqueue(route.id, [NewItem(1)]) == 0
    assert store.target_ids(route.id, [1, 2]) == {1: 501}


def test_random_id_is_fixed_at_enqueue(store: Checkpoint, clock: Clock) -> None:
    route = store.route("a", "b")
    store.enqueue(route.id, [NewItem(7)])
    first = store.claim(route.id, "s1", 1, 10)[0]
    clock.now += 11  # s1 dies; s2 takes over and must send with the same random_id
    second = store.claim(route.id, "s2", 1, 10)[0]
    assert first.random_id == second.random_id != 0


def test_claim_takes_lowest_ids_and_splits_between_sessions(store: Checkpoint) -> None:
    route = store.route("a", "b")
    store.enqueue(route.id, [NewItem(i) for i in (5, 3, 9, 1, 7)])
    assert [i.source_msg_id for i in store.claim(route.id, "s1", 2, 60)] == [1, 3]
    assert [i.source_msg_id for i in store.claim(route.id, "s2", 2, 60)] == [5, 7]
    assert [i.source_msg_id for i in store.claim(route.id, "s1", 5, 60)] == [9]
    assert store.claim(route.id, "s2", 5, 60) == []


def test_album_is_claimed_whole(store: Checkpoint) -> None:
    route = store.route("a", "b")
    store.enqueue(route.id, [NewItem(1), *(NewItem(i, grouped_id=77) for i in (2, 3, 4)), NewItem(5)])
    claimed = store.claim(route.id, "s1", 2, 60)
    assert [i.source_msg_id for i in claimed] == [1, 2, 3, 4]
    assert {i.grouped_id for i in claimed[1:]} == {77}
    assert [i.source_msg_id for i in store.claim(route.id, "s2", 1, 60)] == [5]


def test_expired_lease_is_claimable_by_anyone_without_cleanup(store: Checkpoint, clock: Clock) -> None:
    route = store.route("a", "b")
    store.enqueue(route.id, [NewItem(1)])
    assert store.claim(route.id, "s1", 1, 30)
    clock.now += 29
    assert store.claim(route.id, "s2", 1, 30) == []
    clock.now += 2
    taken = store.claim(route.id, "s2", 1, 30)
    assert [i.source_msg_id for i in taken] == [1]
    assert taken[0].attempts == 1  # the lost lease counts as an attempt
    assert taken[0].takeover is False  # s1 never started sending


def test_heartbeat_keeps_leases_alive(store: Checkpoint, clock: Clock) -> None:
    route = store.route("a", "b")
    store.register_session("s1", "host", 1)
    store.enqueue(route.id, [NewItem(1), NewItem(2)])
    store.claim(route.id, "s1", 2, 30)
    for _ in range(5):
        clock.now += 20
        assert store.heartbeat("s1", 30) == 2
    assert store.claim(route.id, "s2", 2, 30) == []


def test_takeover_of_a_sending_item_is_flagged(store: Checkpoint, clock: Clock) -> None:
    route = store.route("a", "b")
    store.enqueue(route.id, [NewItem(1)])
    store.claim(route.id, "s1", 1, 30)
    assert store.mark_sending(route.id, [1], "s1")
    clock.now += 31
    [item] = store.claim(route.id, "s2", 1, 30)
    assert item.takeover and item.send_session == "s1"
    assert not store.mark_sending(route.id, [1], "s1")  # s1 lost its lease
    assert store.mark_sending(route.id, [1], "s2")


def test_a_retry_keeps_its_first_attempts_time_for_the_next_holder(store: Checkpoint, clock: Clock) -> None:
    """The takeover looks for an earlier copy from the first attempt on: a retry long after it (a flood wait
    in between) must not hide a copy the first attempt made."""
    route = store.route("a", "b")
    store.enqueue(route.id, [NewItem(1)])
    store.claim(route.id, "s1", 1, 600)
    assert store.confirm_send(route.id, [1], "s1", 5)  # the first attempt: its answer never comes
    first = clock.now
    clock.now += 90  # a flood wait before the retry
    assert store.confirm_send(route.id, [1], "s1", 5)
    clock.now += 600  # s1 died: its lease runs out
    [item] = store.claim(route.id, "s2", 1, 30)
    assert (item.send_session, item.first_send_at, item.send_started_at) == ("s1", first, first + 90)
    # s2 found no copy in the target and sends: its own attempts count from its own first one
    assert store.mark_sending(route.id, [1], "s2")
    clock.now += 31
    [item] = store.claim(route.id, "s3", 1, 30)
    assert (item.send_session, item.first_send_at, item.send_started_at) == ("s2", first + 690, first + 690)


def test_a_checkpoint_from_before_first_attempt_times_counts_its_marks_from_their_latest_attempt(
    checkpoint_target: Path | str, clock: Clock
) -> None:
    store = open_checkpoint(checkpoint_target, clock=clock)
    route = store.route("a", "b")
    store.enqueue(route.id, [NewItem(1), NewItem(2)])
    store.claim(route.id, "s1", 2, 30)
    assert store.mark_sending(route.id, [1], "s1")
    store.close()
    as_version_10 = ["ALTER TABLE messages DROP COLUMN send_first_at"]
    if isinstance(checkpoint_target, Path):
        as_version_10.append("PRAGMA user_version = 10")
    else:
        as_version_10.append("UPDATE telepi_meta SET version = 10")
    raw_rows(checkpoint_target, "; ".join(as_version_10), write=True)
    clock.now += 31
    store = open_checkpoint(checkpoint_target, clock=clock)
    items = store.claim(route.id, "s2", 2, 30)
    store.close()
    assert [(i.source_msg_id, i.first_send_at, i.send_started_at) for i in items] == [
        (1, clock.now - 31, clock.now - 31),
        (2, None, None),
    ]


def test_late_complete_by_the_real_sender_stops_the_new_holder(store: Checkpoint, clock: Clock) -> None:
    route = store.route("a", "b")
    store.enqueue(route.id, [NewItem(1)])
    store.claim(route.id, "s1", 1, 30)
    store.mark_sending(route.id, [1], "s1")
    clock.now += 31
    store.claim(route.id, "s2", 1, 30)
    assert store.complete(route.id, {1: 900}, "s1") == 1  # s1 did send it: the truth is recorded
    assert not store.mark_sending(route.id, [1], "s2")
    assert store.complete(route.id, {1: 901}, "s2") == 0  # a done row is never overwritten
    assert store.target_ids(route.id, [1]) == {1: 900}


def test_fail_retries_with_backoff_then_fails(store: Checkpoint, clock: Clock) -> None:
    route = store.route("a", "b")
    store.enqueue(route.id, [NewItem(1)])
    for attempt in (1, 2):
        store.claim(route.id, "s1", 1, 30)
        assert store.fail(
            route.id, [1], f"INTERNAL {attempt}", "s1", retryable=True, max_attempts=3, backoff_seconds=10
        )
        assert store.claim(route.id, "s1", 1, 30) == []  # backing off
        clock.now += 10
    store.claim(route.id, "s1", 1, 30)
    store.fail(route.id, [1], "INTERNAL 3", "s1", retryable=True, max_attempts=3)
    clock.now += 1000
    assert store.claim(route.id, "s1", 1, 30) == []
    report = store.report()
    assert report.routes[0].counts["failed"] == 1
    assert report.failures[0].error == "INTERNAL 3" and report.failures[0].attempts == 3
    assert store.retry(route.id) == 1
    assert [i.attempts for i in store.claim(route.id, "s1", 1, 30)] == [0]


def test_non_retryable_failure_is_failed_at_once(store: Checkpoint) -> None:
    route = store.route("a", "b")
    store.enqueue(route.id, [NewItem(1), NewItem(2)])
    store.claim(route.id, "s1", 2, 30)
    store.fail(route.id, [1], "MEDIA_INVALID", "s1", retryable=False, max_attempts=5)
    store.skip(route.id, [2], "service_message", "s1")
    counts = store.report().routes[0].counts
    assert (counts["failed"], counts["skipped"]) == (1, 1)
    assert store.retry(route.id, [2]) == 0  # skipped is permanent


def test_low_water_mark_follows_done_and_skipped(store: Checkpoint) -> None:
    route = store.route("a", "b")
    assert store.low_water_mark(route.id) is None
    store.enqueue(route.id, [NewItem(i) for i in range(1, 6)])
    items = store.claim(route.id, "s1", 5, 30)
    store.complete(route.id, {2: 12, 3: 13}, "s1")
    assert store.low_water_mark(route.id) == 1
    store.skip(route.id, [1], "service_message", "s1")
    assert store.low_water_mark(route.id) == 4
    store.complete(route.id, {i.source_msg_id: 100 for i in items[3:]}, "s1")
    assert store.low_water_mark(route.id) is None


def test_release_only_unsent_keeps_sending_items(store: Checkpoint) -> None:
    route = store.route("a", "b")
    store.enqueue(route.id, [NewItem(1), NewItem(2), NewItem(3)])
    store.claim(route.id, "s1", 3, 30)
    store.mark_sending(route.id, [1], "s1")
    assert store.release("s1", only_unsent=True) == 2
    assert [i.source_msg_id for i in store.claim(route.id, "s2", 5, 30)] == [2, 3]
    assert store.release("s1") == 1
    [item] = store.claim(route.id, "s2", 5, 30)
    assert item.source_msg_id == 1 and item.takeover


def test_a_refused_send_is_unmarked_by_its_holder_only_and_keeps_its_lease(store: Checkpoint, clock: Clock) -> None:
    route = store.route("a", "b")
    store.enqueue(route.id, [NewItem(1), NewItem(2)])
    store.claim(route.id, "s1", 2, 30)
    assert store.confirm_send(route.id, [1, 2], "s1", 5)
    assert store.unmark_refused(route.id, [1], "s2") == 0  # not s2's lease nor its mark
    assert store.unmark_refused(route.id, [1], "s1") == 1
    assert [lease.sending for lease in store.report().routes[0].leases] == [False, True]
    assert store.heartbeat("s1", 30) == 2  # both still leased by s1
    assert store.release("s1", only_unsent=True) == 1  # the refused one is unsent again: a long wait hands it on
    [item] = store.claim(route.id, "s2", 5, 30)
    assert item.source_msg_id == 1 and not item.takeover
    clock.now += 31
    [marked] = store.claim(route.id, "s3", 5, 30, after=1)  # the other, its mark kept, is a takeover
    assert marked.source_msg_id == 2 and marked.takeover
    assert store.unmark_refused(route.id, [2], "s3") == 0  # s1's mark: only s1's refusal clears it


def test_claim_between_bounds_takes_only_that_range(store: Checkpoint) -> None:
    route = store.route("a", "b")
    store.enqueue(route.id, [NewItem(i) for i in range(1, 10)])
    assert [i.source_msg_id for i in store.claim(route.id, "s1", 3, 30, after=4)] == [5, 6, 7]
    assert [i.source_msg_id for i in store.claim(route.id, "s2", 9, 30, before=3)] == [1, 2]
    assert [i.source_msg_id for i in store.claim(route.id, "s2", 9, 30, after=2, before=8)] == [3, 4]


def test_claim_at_least_takes_nothing_until_that_many_are_claimable(store: Checkpoint) -> None:
    route = store.route("a", "b")
    store.enqueue(route.id, [NewItem(i) for i in range(1, 5)])
    assert store.claim(route.id, "s1", 5, 30, at_least=5) == []
    assert store.report().routes[0].counts["pending"] == 4  # nothing was leased
    store.enqueue(route.id, [NewItem(5), NewItem(6)])
    assert [i.source_msg_id for i in store.claim(route.id, "s1", 5, 30, at_least=5)] == [1, 2, 3, 4, 5]
    assert [i.source_msg_id for i in store.claim(route.id, "s1", 5, 30)] == [6]


def test_head_is_the_next_message_to_publish_and_says_who_holds_it(store: Checkpoint, clock: Clock) -> None:
    route = store.route("a", "b")
    assert store.head(route.id) is None
    store.enqueue(route.id, [NewItem(i) for i in (1, 2, 3)])
    head = store.head(route.id)
    assert head is not None and (head.source_msg_id, head.claimable, head.holder) == (1, True, None)
    store.claim(route.id, "s1", 1, 30)
    head = store.head(route.id)
    assert head is not None and (head.source_msg_id, head.claimable, head.holder) == (1, False, "s1")
    store.fail(route.id, [1], "INTERNAL", "s1", retryable=True, max_attempts=1)  # spent: failed
    head = store.head(route.id)
    assert head is not None and head.source_msg_id == 2  # a failed message holds nobody back
    [item] = store.claim(route.id, "s1", 1, 30)
    store.fail(route.id, [item.source_msg_id], "INTERNAL", "s1", retryable=True, max_attempts=5, backoff_seconds=9)
    head = store.head(route.id)
    assert head is not None and (head.source_msg_id, head.claimable, head.holder) == (2, False, None)
    clock.now += 10
    head = store.head(route.id)
    assert head is not None and head.claimable


def forum_items(topics: str) -> list[NewItem]:
    """Messages 1, 2, … in the topics named by each letter (a=1, b=2, …), interleaved as written."""
    return [NewItem(i, topic_id=ord(letter) - ord("a") + 1) for i, letter in enumerate(topics, start=1)]


def test_topic_run_takes_one_topics_messages_in_order(store: Checkpoint) -> None:
    route = store.route("a", "b")
    store.enqueue(route.id, forum_items("abcabcabca"))  # topic 1: 1 4 7 10, 2: 2 5 8, 3: 3 6 9
    assert [i.source_msg_id for i in store.claim(route.id, "s1", 3, 30, topic_run=True)] == [1, 4, 7]
    assert [i.source_msg_id for i in store.claim(route.id, "s2", 9, 30, topic_run=True)] == [2, 5, 8]
    assert [i.source_msg_id for i in store.claim(route.id, "s2", 9, 30, topic_run=True, topic=1)] == [10]
    assert [i.source_msg_id for i in store.claim(route.id, "s1", 9, 30, topic_run=True, before=9)] == [3, 6]
    assert store.claim(route.id, "s1", 9, 30, topic_run=True, topic=2) == []


def test_topic_run_stops_at_a_message_another_session_holds(store: Checkpoint) -> None:
    route = store.route("a", "b")
    store.enqueue(route.id, forum_items("aaaaab"))
    store.claim(route.id, "s1", 9, 30, after=2, before=4)  # s1 holds 3: no run of topic 1 may jump it
    assert [i.source_msg_id for i in store.claim(route.id, "s2", 9, 30, topic_run=True)] == [1, 2]
    assert [i.source_msg_id for i in store.claim(route.id, "s2", 9, 30, topic_run=True)] == [4, 5]
    store.fail(route.id, [3], "INTERNAL", "s1", retryable=True, max_attempts=1)  # spent: holds nobody back
    assert [i.source_msg_id for i in store.claim(route.id, "s3", 9, 30, topic_run=True, at_least=2)] == []
    assert [i.source_msg_id for i in store.claim(route.id, "s3", 9, 30, topic_run=True)] == [6]


def test_topic_run_keeps_albums_whole_and_chats_without_topics_are_one_topic(store: Checkpoint) -> None:
    route = store.route("a", "b")
    store.enqueue(
        route.id, [NewItem(1, 7, 1), NewItem(2, 7, 1), NewItem(3, None, 2), NewItem(4, 8, 1), NewItem(5, 8, 1)]
    )
    assert [i.source_msg_id for i in store.claim(route.id, "s1", 3, 30, topic_run=True)] == [1, 2, 4, 5]
    plain = store.route("c", "d")
    store.enqueue(plain.id, [NewItem(i) for i in (1, 2, 3)])
    assert [i.source_msg_id for i in store.claim(plain.id, "s1", 2, 30, topic_run=True, topic=None)] == [1, 2]
    head = store.head(plain.id, topic=None)
    assert head is not None and (head.source_msg_id, head.claimable) == (1, False)


def test_topic_head_and_open_item(store: Checkpoint) -> None:
    route = store.route("a", "b")
    store.enqueue(route.id, forum_items("abab"))
    store.claim(route.id, "s1", 1, 30)  # 1 (topic 1)
    head = store.head(route.id, topic=2)
    assert head is not None and (head.source_msg_id, head.claimable, head.holder) == (2, True, None)
    head = store.head(route.id, topic=1)
    assert head is not None and (head.source_msg_id, head.claimable, head.holder) == (1, False, "s1")
    assert store.head(route.id, topic=5) is None
    item = store.open_item(route.id, 1)
    assert item is not None and (item.claimable, item.holder) == (False, "s1")
    store.complete(route.id, {1: 11}, "s1")
    assert store.open_item(route.id, 1) is None and store.open_item(route.id, 99) is None
    head = store.head(route.id, topic=1)
    assert head is not None and head.source_msg_id == 3


def test_hand_back_gives_unsent_and_refused_leases_to_others(store: Checkpoint) -> None:
    route = store.route("a", "b")
    store.enqueue(route.id, [NewItem(i) for i in (1, 2, 3, 4)])
    store.claim(route.id, "s1", 4, 30)
    store.mark_sending(route.id, [1], "s1")  # refused by a flood wait: never executed
    store.mark_sending(route.id, [2], "s1")  # still on its way: must stay with s1
    assert store.hand_back(route.id, "s1", refused=[1]) == 3
    taken = store.claim(route.id, "s2", 9, 30)
    assert [i.source_msg_id for i in taken] == [1, 3, 4]
    assert not any(i.takeover for i in taken)  # nothing to look for in the target


def test_hand_back_gives_doubtful_leases_with_their_mark(store: Checkpoint) -> None:
    route = store.route("a", "b")
    store.enqueue(route.id, [NewItem(i) for i in (1, 2, 3)])
    store.claim(route.id, "s1", 3, 30)
    store.mark_sending(route.id, [1], "s1")  # its media landed, its caption's reply was refused
    store.mark_sending(route.id, [2], "s1")  # still on its way: must stay with s1
    assert store.hand_back(route.id, "s1", doubtful=[1]) == 2
    taken = {i.source_msg_id: i for i in store.claim(route.id, "s2", 9, 30)}
    assert sorted(taken) == [1, 3]
    assert taken[1].takeover and taken[1].send_session == "s1"  # s2 looks in the target before sending
    assert not taken[3].takeover


def test_hand_back_gives_a_taken_over_lease_back_with_the_dead_sessions_mark(store: Checkpoint, clock: Clock) -> None:
    # s1 marked 1 sending and died; s2 took it over and queued it behind 2 (claimed first). Waiting for its
    # turn with 2, s2 hands 1 back to send it in order: it never sent 1, so 1 goes — with s1's mark, so
    # whoever takes it looks in the target first. Kept, s2 waited for itself for ever (the route stood still).
    route = store.route("a", "b")
    store.enqueue(route.id, [NewItem(i) for i in (1, 2, 3)])
    store.claim(route.id, "s1", 1, 30)
    assert store.mark_sending(route.id, [1], "s1")
    store.claim(route.id, "s2", 1, 30, after=1)
    clock.now += 31
    [taken] = store.claim(route.id, "s2", 1, 30)
    assert taken.source_msg_id == 1 and taken.takeover
    store.claim(route.id, "s2", 1, 30, after=2)
    assert store.mark_sending(route.id, [3], "s2")  # s2's own send of 3, on its way: stays with s2
    assert store.hand_back(route.id, "s2") == 2
    head = store.head(route.id)
    assert head is not None and head.source_msg_id == 1 and head.claimable
    taken_again = {i.source_msg_id: i for i in store.claim(route.id, "s3", 9, 30)}
    assert sorted(taken_again) == [1, 2]
    assert taken_again[1].takeover and taken_again[1].send_session == "s1"
    assert not taken_again[2].takeover
    # A long flood wait gives back what its session is not sending: s1's mark is not s3's send.
    assert store.release("s3", only_unsent=True) == 2


def test_others_alive_counts_recently_seen_working_sessions(store: Checkpoint, clock: Clock) -> None:
    store.register_session("s1", "h", 1)
    store.register_session("s2", "h", 2)
    assert store.others_alive("s1", within=30) == 1
    clock.now += 31
    assert store.others_alive("s1", within=30) == 0
    store.heartbeat("s2", 30)
    assert store.others_alive("s1", within=30) == 1
    store.set_session_state("s2", "stopped")
    assert store.others_alive("s1", within=30) == 0


def test_topic_is_created_by_one_session_only(store: Checkpoint, clock: Clock) -> None:
    route = store.route("a", "b")
    assert store.claim_topic(route.id, 5, "s1", "News", 30).state == "create"
    waiting = store.claim_topic(route.id, 5, "s2", "News", 30)
    assert (waiting.state, waiting.holder) == ("wait", "s1")
    clock.now += 31  # s1 died while creating: s2 may take over (and looks for the title first)
    assert store.claim_topic(route.id, 5, "s2", "News", 30).state == "create"
    store.complete_topic(route.id, 5, 42, "News")
    mapped = store.claim_topic(route.id, 5, "s1", "News", 30)
    assert (mapped.state, mapped.target_topic_id) == ("mapped", 42)
    assert store.topic_map(route.id) == {5: 42}


def test_routes_are_keyed_by_source_and_target(store: Checkpoint) -> None:
    one = store.route("-1001", "-1002", "src -> dst")
    assert store.route("-1001", "-1002").id == one.id
    other = store.route("-1001", "-1003")
    store.enqueue(one.id, [NewItem(1)])
    store.enqueue(other.id, [NewItem(1)])
    assert len(store.claim(one.id, "s1", 5, 30)) == 1
    assert len(store.claim(other.id, "s1", 5, 30)) == 1
    store.raise_high_water(one.id, 50)
    store.raise_high_water(one.id, 20)
    assert [r.high_water for r in store.routes()] == [50, 0]


def test_source_pts_is_per_route_and_never_moves_back(store: Checkpoint, checkpoint_target: Path | str) -> None:
    one, other = store.route("-1001", "-1002"), store.route("-1001", "-1003")
    assert store.source_pts(one.id) is None  # never asked: the first start reads the window instead
    assert store.advance_source_pts(one.id, 40) == 40
    assert store.advance_source_pts(one.id, 35) == 40  # a session behind the others does not undo their work
    assert store.advance_source_pts(one.id, 41) == 41
    assert (store.source_pts(one.id), store.source_pts(other.id)) == (41, None)
    assert store.advance_source_pts(one.id, 7, restart=True) == 7  # Telegram refused 41: start over from 7
    store.close()
    reopened = open_checkpoint(checkpoint_target)
    assert reopened.source_pts(one.id) == 7
    reopened.close()


def test_seed_monitoring_queries_work_verbatim(store: Checkpoint, checkpoint_target: Path | str) -> None:
    route = store.route("a", "b")
    store.enqueue(route.id, [NewItem(1), NewItem(2)])
    store.claim(route.id, "s1", 1, 30)
    store.complete(route.id, {1: 11}, "s1")
    counts = raw_rows(checkpoint_target, "SELECT status, COUNT(*) FROM messages GROUP BY status;")
    assert dict((str(status), count) for status, count in counts) == {"done": 1, "pending": 1}
    assert raw_rows(checkpoint_target, "SELECT * FROM messages WHERE status='processing';") == []
    query = "SELECT session, target_msg_id FROM messages ORDER BY processed_at DESC LIMIT 10;"
    latest = raw_rows(checkpoint_target, query)
    # PostgreSQL sorts NULLs first in DESC: rows never processed (pending) come before the latest done one.
    assert next(row for row in latest if row[1] is not None) == ("s1", 11)


def test_report_counts_match_rows(store: Checkpoint, clock: Clock) -> None:
    route = store.route("-1001", "@target", "@src -> @target")
    store.register_session("s1", "h", 123)
    store.enqueue(route.id, [NewItem(i) for i in range(1, 11)])
    store.claim(route.id, "s1", 4, 30)
    store.complete(route.id, {1: 1, 2: 2}, "s1")
    clock.now += 60
    report = store.report()
    [route_report] = report.routes
    assert route_report.counts == {"pending": 6, "processing": 2, "done": 2, "failed": 0, "skipped": 0}
    assert route_report.known == 10 and route_report.finished == 2
    assert [lease.source_msg_id for lease in route_report.expired] == [3, 4]
    [session] = report.sessions
    assert (session.name, session.done_total, session.done_last_5min) == ("s1", 2, 2)


def test_non_sqlite_file_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.db"
    content = b"this is not a database at all\n" * 100
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=f"{path} is not a usable telepi checkpoint"):
        SqliteStore(path)
    assert path.read_bytes() == content


def test_corrupted_checkpoint_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.db"
    store = SqliteStore(path)
    route = store.route("a", "b")
    store.enqueue(route.id, [NewItem(i) for i in range(2000)])
    store.close()
    data = bytearray(path.read_bytes())
    data[4096 : 4096 * 3] = b"\xff" * 8192  # smash b-tree pages
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="not a usable telepi checkpoint"):
        broken = SqliteStore(path)
        broken.report()
    assert path.read_bytes() == bytes(data)


def test_foreign_sqlite_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE photos (id INTEGER)")
    db.commit()
    db.close()
    with pytest.raises(CheckpointError, match="not a telepi checkpoint"):
        SqliteStore(path)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.db"
    SqliteStore(path).close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.commit()
    db.close()
    with pytest.raises(CheckpointError, match="newer telepi"):
        SqliteStore(path)


def test_reopen_keeps_state(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.db"
    first = SqliteStore(path)
    route = first.route("a", "b")
    first.enqueue(route.id, [NewItem(1)])
    first.close()
    again = SqliteStore(path)
    assert again.report().routes[0].known == 1


def test_restarted_session_releases_its_previous_incarnations_leases(store: Checkpoint) -> None:
    route = store.route("a", "b")
    store.register_session("s1", "h", 100)
    store.enqueue(route.id, [NewItem(1), NewItem(2)])
    store.claim(route.id, "s1", 2, 600)
    store.mark_sending(route.id, [2], "s1")
    store.register_session("s1", "h", 101)  # systemd restarted telepi@s1 after a crash
    again = store.claim(route.id, "s1", 2, 600)
    assert [(i.source_msg_id, i.takeover, i.attempts) for i in again] == [(1, False, 1), (2, True, 1)]


def test_items_known_to_skip_are_enqueued_skipped_and_never_claimed(store: Checkpoint) -> None:
    route = store.route("a", "b")
    store.enqueue(route.id, [NewItem(1, skip_reason="service_message"), NewItem(2)])
    assert [i.source_msg_id for i in store.claim(route.id, "s1", 5, 30)] == [2]
    assert store.report().routes[0].counts["skipped"] == 1
    assert store.low_water_mark(route.id) == 2


def test_route_counts_are_finished_and_known(store: Checkpoint) -> None:
    route = store.route("a", "b")
    assert store.route_counts(route.id) == (0, 0)
    store.enqueue(route.id, [NewItem(1, skip_reason="service_message"), NewItem(2), NewItem(3)])
    store.claim(route.id, "s1", 1, 30)
    store.complete(route.id, {2: 20}, "s1")
    assert store.route_counts(route.id) == (2, 3)


def test_mapped_targets_names_the_copies_already_recorded(store: Checkpoint) -> None:
    route = store.route("a", "b")
    other = store.route("a", "c")
    store.enqueue(route.id, [NewItem(1), NewItem(2)])
    store.enqueue(other.id, [NewItem(1)])
    store.claim(route.id, "s1", 2, 30)
    store.claim(other.id, "s1", 1, 30)
    store.complete(route.id, {1: 501}, "s1")
    store.complete(other.id, {1: 502}, "s1")
    assert store.mapped_targets(route.id, [501, 502, 503]) == {501}  # 502 is another route's copy
    assert store.mapped_targets(route.id, []) == set()


def test_sending_count_covers_every_route_into_the_target(store: Checkpoint) -> None:
    route, beside, elsewhere = store.route("a", "t"), store.route("b", "t"), store.route("c", "u")
    for each in (route, beside, elsewhere):
        store.enqueue(each.id, [NewItem(1)])
        store.claim(each.id, "s1", 1, 30)
        store.mark_sending(each.id, [1], "s1")
    assert store.sending_count(route.id) == 2  # another route's send into the same target is unrecorded too
    store.complete(beside.id, {1: 700}, "s1")
    assert store.sending_count(route.id) == 1


def test_topic_creation_keeps_its_random_id_and_names_the_earlier_creator(store: Checkpoint, clock: Clock) -> None:
    route = store.route("a", "b")
    first = store.claim_topic(route.id, 5, "s1", "News", 30, user_id=100)
    assert first.state == "create" and first.random_id != 0 and first.previous_creator is None
    clock.now += 31  # s1 (user 100) died between create and record
    second = store.claim_topic(route.id, 5, "s2", "News", 30, user_id=200)
    assert (second.random_id, second.previous_creator) == (first.random_id, 100)
    store.complete_topic(route.id, 5, 42, "News")
    assert not store.forget_topic(route.id, 5, 41)  # another target: already recreated by someone else
    assert store.forget_topic(route.id, 5, 42)  # deleted in the target: unmapped once
    assert not store.forget_topic(route.id, 5, 42)
    anew = store.claim_topic(route.id, 5, "s2", "News", 30, user_id=200)
    assert anew.state == "create" and anew.random_id != first.random_id and anew.previous_creator is None


def test_a_per_account_route_binds_to_its_first_account(store: Checkpoint) -> None:
    route = store.route("-5", "-1007")
    assert store.bind_route(route.id, 100) == 100
    assert store.bind_route(route.id, 200) == 100
    store.register_session("bob", "h", 1, user_id=100)
    assert store.sessions_of_user(100) == ["bob"]


def test_paces_are_kept_per_account_and_group_and_shown_with_every_session_of_the_account(
    store: Checkpoint, checkpoint_target: Path | str
) -> None:
    from telepi.checkpoint.model import Pace

    store.register_session("bob-a", "host1", 1, user_id=42)
    store.register_session("bob-b", "host2", 2, user_id=42)  # the same account on another host
    store.register_session("carol", "host1", 3, user_id=7)
    first = Pace("send", 20, 31.0, learned_at=1000.0, reason="FLOOD_WAIT 30 s", session="bob-a", wait_until=1030.0)
    store.save_pace(42, first)
    store.save_pace(42, Pace("GetHistory", 30, 60.0, learned_at=1001.0, reason="FLOOD_WAIT 30 s", session="bob-b"))
    assert [p.group for p in store.paces(42)] == ["GetHistory", "send"] and store.paces(7) == []
    stricter = Pace("send", 1999, 5990.0, learned_at=4000.0, reason="FLOOD_WAIT 3000 s", session="bob-b")
    store.save_pace(42, stricter)  # a later lesson of the group replaces the earlier one
    assert store.paces(42)[1] == stricter
    sessions = {s.name: s for s in store.report().sessions}
    assert sessions["bob-a"].paces == sessions["bob-b"].paces == store.paces(42)
    assert sessions["carol"].paces == []
    assert raw_rows(checkpoint_target, "SELECT user_id, grp, calls, reason FROM paces ORDER BY grp") == [
        (42, "GetHistory", 30, "FLOOD_WAIT 30 s"),
        (42, "send", 1999, "FLOOD_WAIT 3000 s"),
    ]


def test_done_counts_follow_every_way_a_row_enters_or_leaves_done(
    store: Checkpoint, checkpoint_target: Path | str
) -> None:
    """`telepi status` reads done totals from counters kept by triggers: each must agree with the rows."""
    route = store.route("a", "b")
    other = store.route("a", "c")
    for name in ("s1", "s2"):
        store.register_session(name, "host", 1)
    store.enqueue(route.id, [NewItem(i) for i in range(1, 9)])
    store.enqueue(other.id, [NewItem(1)])
    for session, limit in (("s1", 3), ("s2", 3)):
        ids = [i.source_msg_id for i in store.claim(route.id, session, limit, 60)]
        store.mark_sending(route.id, ids, session)
        store.complete(route.id, {i: 100 + i for i in ids}, session)
    [late] = store.claim(other.id, "s1", 1, 60)
    store.complete(other.id, {late.source_msg_id: 1}, "s1")
    store.requeue_missing(route.id, [NewItem(1), NewItem(4)])  # one done by s1, one by s2: back to pending
    store.adopt(route.id, [(NewItem(7), 207)], [], through=207)  # done without a session

    def truth() -> tuple[dict[str, int], dict[int, int]]:
        rows = raw_rows(checkpoint_target, "SELECT route_id, session, status FROM messages")
        per_session = {n: sum(1 for _, s, st in rows if s == n and st == "done") for n in ("s1", "s2")}
        per_route = {r: sum(1 for rid, _, st in rows if rid == r and st == "done") for r in (route.id, other.id)}
        return per_session, per_route

    report = store.report()
    per_session, per_route = truth()
    assert per_session == {"s1": 3, "s2": 2} and per_route == {route.id: 5, other.id: 1}  # the case is what it says
    assert {s.name: s.done_total for s in report.sessions} == per_session
    assert all(type(s.done_total) is int for s in report.sessions)  # not a Decimal: status --json prints it
    assert {r.route.id: r.counts["done"] for r in report.routes} == per_route
    assert store.route_counts(route.id) == (5, 8)
