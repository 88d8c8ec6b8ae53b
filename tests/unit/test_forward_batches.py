"""How a claim's forwardable units are merged into forward batches (engine/worker.py ``forward_batches``)."""

from __future__ import annotations

from telepi.checkpoint.model import WorkItem
from telepi.engine.worker import Unit, forward_batches


def unit(msg_id: int, mark: tuple[str, float] | None = None) -> Unit:
    session, started = mark if mark is not None else (None, None)
    item = WorkItem(1, msg_id, None, 7, msg_id * 11, 0, 0.0, mark is not None, session, started)
    return Unit([item], [f"message {msg_id}"])


def shapes(batches: list[Unit]) -> list[list[int]]:
    return [batch.ids for batch in batches]


def test_neighbours_of_one_topic_and_reply_share_a_batch_and_a_gap_splits_an_ordered_one() -> None:
    units = [unit(1), unit(2), unit(4), unit(5)]
    same = [("topic", 1)] * 4
    assert shapes(forward_batches(units, same, contiguous=False)) == [[1, 2, 4, 5]]
    assert shapes(forward_batches(units, same, contiguous=True)) == [[1, 2], [4, 5]]
    other = [("topic", 1), ("topic", 2), ("topic", 2), None]
    assert shapes(forward_batches(units, other, contiguous=False)) == [[1], [2, 4], [5]]


def test_a_unit_a_dead_session_may_have_sent_is_batched_only_with_what_it_was_sent_with() -> None:
    """Message 115 was forwarded alone by session4, killed before the answer; the claim that takes it over
    also holds 116 (never sent) and 117, 118 (sent together by session5 before it stalled). Each earlier
    call is looked for in the target as the run it made, so each keeps its shape."""
    alone, pair = ("session4", 100.0), ("session5", 104.0)
    units = [unit(115, alone), unit(116), unit(117, pair), unit(118, pair), unit(119)]
    batches = forward_batches(units, [("topic", 3)] * 5, contiguous=True)
    assert shapes(batches) == [[115], [116], [117, 118], [119]]
