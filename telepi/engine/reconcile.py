"""Pair a source history with its target history through the checkpoint's records and content identity:
what is missing, duplicated, out of order or wrongly mapped, and which copies a new checkpoint can adopt."""

from __future__ import annotations

import bisect
import itertools
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["missing", "duplicated", "out_of_order", "wrongly_mapped", "review"]
KINDS: tuple[Kind, ...] = ("missing", "duplicated", "out_of_order", "wrongly_mapped", "review")


@dataclass(frozen=True)
class Seen:
    """One content message as read from a chat."""

    id: int
    identity: str
    topic: int | None = None
    grouped_id: int | None = None


@dataclass(frozen=True)
class Finding:
    kind: Kind
    topic: int | None  # the source topic (None outside forums)
    source_id: int | None
    target_id: int | None = None
    note: str = ""


@dataclass
class Reconciliation:
    pairs: dict[int, int] = field(default_factory=dict)  # source id -> its copy, recorded or matched
    adoptable: dict[int, int] = field(default_factory=dict)  # matched by a unique identity, not recorded
    findings: list[Finding] = field(default_factory=list)

    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.kind != "review"]

    def add(self, findings: Iterable[Finding]) -> None:
        """More findings, kept in report order: by topic, kind, source id, target id."""
        self.findings.extend(findings)
        self.findings.sort(key=lambda f: (f.topic or 0, KINDS.index(f.kind), f.source_id or 0, f.target_id or 0))


def reconcile(
    source: Sequence[Seen], target: Sequence[Seen], ledger: Mapping[int, tuple[str, int | None]]
) -> Reconciliation:
    """``ledger``: the checkpoint's rows (source id -> (status, target id)). Recorded copies are checked
    against the target; the rest is matched by identity, unique matches only (``adoptable``); doubtful
    ones (the same content several times) are ``review`` findings, never guessed."""
    result = Reconciliation()
    by_id = {m.id: m for m in target}
    used: set[int] = set()
    unmatched: list[Seen] = []
    settled: set[int] = set()
    for message in sorted(source, key=lambda m: m.id):
        status, copy = ledger.get(message.id, ("", None))
        if status == "skipped":
            settled.add(message.id)  # left out on purpose (unsupported, too large, held for review): never missing
        if status == "done" and copy is not None and copy in by_id and copy not in used:
            used.add(copy)
            if by_id[copy].identity == message.identity:
                result.pairs[message.id] = copy
            else:
                result.findings.append(
                    Finding("wrongly_mapped", message.topic, message.id, copy, "the recorded copy shows other content")
                )
            continue
        unmatched.append(message)
    pool: dict[str, list[int]] = defaultdict(list)
    for copy_message in sorted(target, key=lambda m: m.id):
        if copy_message.id not in used:
            pool[copy_message.identity].append(copy_message.id)
    wanted: dict[str, list[Seen]] = defaultdict(list)
    for message in unmatched:
        wanted[message.identity].append(message)
    doubtful: dict[str, tuple[list[Seen], list[int]]] = {}
    for identity, messages in wanted.items():
        copies = pool.pop(identity, [])
        if len(messages) == 1 and len(copies) == 1:
            result.pairs[messages[0].id] = result.adoptable[messages[0].id] = copies[0]
        else:
            doubtful[identity] = (messages, copies)
    anchors = sorted(result.pairs.items())
    for messages, copies in doubtful.values():
        messages, copies = _by_position(messages, copies, anchors, result)
        for message in messages[len(copies) :] if copies else messages:
            if message.id not in settled:
                result.findings.append(Finding("missing", message.topic, message.id))
        for message, copy in zip(messages, copies, strict=False):
            result.findings.append(
                Finding("review", message.topic, message.id, copy, f"{len(messages)} source / {len(copies)} copies")
            )
        for copy in copies[len(messages) :]:
            result.findings.append(
                Finding("duplicated", messages[0].topic, messages[0].id, copy, "more copies than source messages")
            )
    # Leftover copies of content that is already paired: a second copy of one source message.
    first_of: dict[str, Seen] = {}
    for message in sorted(source, key=lambda m: m.id):
        first_of.setdefault(message.identity, message)
    for identity, copies in pool.items():
        original = first_of.get(identity)
        if original is None:
            continue  # not a copy of anything in the source: not telepi's
        for copy in copies:
            result.findings.append(
                Finding("duplicated", original.topic, original.id, copy, f"copy of {result.pairs.get(original.id)}")
            )
    result.add(_out_of_order(source, result.pairs))
    return result


def _by_position(
    messages: list[Seen], copies: list[int], anchors: list[tuple[int, int]], result: Reconciliation
) -> tuple[list[Seen], list[int]]:
    """Repeated content: a copy is still certain when it is the only one between the copies of the
    source message's paired neighbours, and no other message of that content could claim it."""
    # Each message's neighbours: the highest copy of an anchor before it, the lowest after it (prefix
    # maxima and suffix minima over the anchors, found by bisection: no scan of every anchor per message).
    sources = [s for s, _ in anchors]
    highest_before = list(itertools.accumulate((t for _, t in anchors), max, initial=0))
    lowest_after = list(itertools.accumulate((t for _, t in reversed(anchors)), min, initial=1 << 62))[::-1]
    copies = sorted(copies)
    candidates: dict[int, list[int]] = {}
    for message in messages:
        before = highest_before[bisect.bisect_left(sources, message.id)]
        after = lowest_after[bisect.bisect_right(sources, message.id)]
        candidates[message.id] = copies[bisect.bisect_right(copies, before) : bisect.bisect_left(copies, after)]
    claims = Counter(c for found in candidates.values() for c in found)
    certain = {m: found[0] for m, found in candidates.items() if len(found) == 1 and claims[found[0]] == 1}
    # Identical messages side by side with as many copies side by side between the same neighbours: the copies
    # follow the source's order, and whichever way they paired, each shows its message's content exactly.
    runs: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for message_id, found in candidates.items():
        if message_id not in certain:
            runs[tuple(found)].append(message_id)
    for shared, run in runs.items():
        if shared and len(shared) == len(run) and sum(claims[c] for c in shared) == len(run) * len(shared):
            certain.update(zip(sorted(run), sorted(shared), strict=True))
    for message_id, copy in certain.items():
        result.pairs[message_id] = result.adoptable[message_id] = copy
    taken = set(certain.values())
    return [m for m in messages if m.id not in certain], [c for c in copies if c not in taken]


def _out_of_order(source: Sequence[Seen], pairs: Mapping[int, int]) -> list[Finding]:
    """Per topic, copies whose target id is below that of a copy of an earlier source message."""
    found = []
    highest: dict[int | None, int] = {}
    for message in sorted(source, key=lambda m: m.id):
        copy = pairs.get(message.id)
        if copy is None:
            continue
        if copy < highest.get(message.topic, 0):
            found.append(Finding("out_of_order", message.topic, message.id, copy))
        highest[message.topic] = max(highest.get(message.topic, 0), copy)
    return found
