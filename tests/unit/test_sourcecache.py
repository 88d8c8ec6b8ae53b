"""Messages read ahead serve later claims while fresh; nothing that read as missing is kept."""

from __future__ import annotations

from typing import Any

from telepi.engine.sourcecache import FRESH_SECONDS, READ_AHEAD, SourceCache


class Source:
    def __init__(self, existing: set[int]) -> None:
        self.existing = existing
        self.calls: list[list[int]] = []

    async def read(self, ids: list[int]) -> list[Any]:
        self.calls.append(list(ids))
        return [{"id": i} if i in self.existing else None for i in ids]


async def test_a_read_takes_the_ids_ahead_and_later_claims_are_served_from_it() -> None:
    now = [0.0]
    source = Source(set(range(1, 300)))
    cache = SourceCache(source.read, clock=lambda: now[0])
    assert await cache.messages([5], ahead=range(6, 200)) == [{"id": 5}]
    assert source.calls == [[5, *range(6, 5 + READ_AHEAD)]]  # one call of at most 100 ids
    assert await cache.messages([6, 7]) == [{"id": 6}, {"id": 7}]
    assert len(source.calls) == 1
    assert await cache.messages([6]) == [{"id": 6}]  # served once: a second claim of it reads it anew
    assert len(source.calls) == 2
    now[0] = FRESH_SECONDS + 1
    assert await cache.messages([8]) == [{"id": 8}]
    assert source.calls[-1] == [8]  # too old: read again


async def test_an_id_that_read_as_nothing_is_read_again() -> None:
    source = Source({1})
    cache = SourceCache(source.read)
    assert await cache.messages([1], ahead=[2, 3]) == [{"id": 1}]
    source.existing.add(2)  # posted after the read
    assert await cache.messages([2]) == [{"id": 2}]
    assert source.calls == [[1, 2, 3], [2]]
