"""Filtered messages in the checkpoint, on both backends: terminal (they never hold an ordered head), counted
in ``telepi status`` (text and --json), requeued by ``telepi retry --filtered`` and by nothing else."""

from __future__ import annotations

import json
from pathlib import Path

from telepi.checkpoint import NewItem, open_checkpoint
from tests.unit.test_operator_safety import cli


def test_filtered_rows_are_terminal_counted_and_requeued_only_by_retry_filtered(
    checkpoint_target: Path | str,
) -> None:
    store = open_checkpoint(checkpoint_target)
    route = store.route("-1001", "-1002")
    store.enqueue(
        route.id,
        [
            NewItem(1, skip_reason="filtered: kind=sticker"),
            NewItem(2),
            NewItem(3, skip_reason="filtered: exclude_regex=^ad"),
            NewItem(4, skip_reason="filtered: kind=sticker"),
            NewItem(5, skip_reason="service_message"),
            NewItem(6),
        ],
    )
    head = store.head(route.id)
    assert head is not None and head.source_msg_id == 2  # filtered 1 does not hold the ordered head
    [report] = store.report().routes
    assert report.filtered == 3 and report.counts["skipped"] == 4
    target = str(checkpoint_target)

    shown = cli("status", target)
    assert shown.returncode == 0, shown.stderr
    assert "filtered: kind=sticker" in shown.stdout and "4, 1" in shown.stdout
    assert f"3 of route {route.id}'s messages left out by its filters" in shown.stdout
    data = json.loads(cli("status", target, "--json").stdout)
    assert data["routes"][0]["filtered"] == 3

    plain = cli("retry", target, "--skipped")  # every reason but the never-copyable and the filtered ones
    assert "no skipped messages (other than service_message, deleted, filtered)" in plain.stdout
    requeued = cli("retry", target, "--filtered", str(route.id))
    assert requeued.returncode == 0, requeued.stderr
    assert requeued.stdout.startswith("requeued 3 filtered messages; running sessions judge them")
    [report] = store.report().routes
    assert report.filtered == 0 and report.counts["pending"] == 5
    assert "no filtered messages to requeue" in cli("retry", target, "--filtered").stdout
    store.close()
