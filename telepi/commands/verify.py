"""``telepi verify``: compare the source with the target through the checkpoint and content identity;
read-only unless ``--requeue`` (queue what is missing) or ``--adopt`` (rebuild the records from the target)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from telethon import utils

from telepi.checkpoint import Checkpoint, open_store
from telepi.checkpoint.model import FILTERED, NewItem, Route
from telepi.config import Settings
from telepi.engine.limits.account import AccountLimiter
from telepi.engine.limits.gateway import AccountProblem, Gateway
from telepi.engine.messages import identity, skip_reason, topic_of
from telepi.engine.progress import Progress
from telepi.engine.reconcile import KINDS, Finding, Reconciliation, Seen, reconcile
from telepi.engine.routerules import RouteRules, source_link_base
from telepi.engine.session import NotLoggedIn, resolve_chat
from telepi.errors import ConfigError, Problem
from telepi.telegram.client import make_client

FILTERED_IDS_SHOWN = 20


@dataclass(frozen=True)
class Options:
    route: int | None = None
    adopt: bool = False
    route_name: str | None = None  # a route's name in the routes file
    requeue: bool = False


@dataclass
class Outcome:
    route: Route
    source_count: int
    target_count: int
    result: Reconciliation
    adopted: int = 0
    requeued: int = 0
    in_review: int = 0  # units held for review (needs_review, adopt_review) that this run left unresolved
    filtered: dict[str, list[int]] = field(default_factory=dict)  # reason -> source ids the filters left out

    @property
    def exit_code(self) -> int:
        return 0 if not (self.result.problems() or self.in_review) or self.adopted or self.requeued else 1


async def verify(settings: Settings, options: Options) -> Outcome:
    if not settings.session_file.exists():
        raise NotLoggedIn(f"session {settings.session_name} is not logged in: run  telepi login {settings.session_dir}")
    store = open_store(settings, create=options.adopt)
    problems: list[AccountProblem] = []
    client = make_client(settings, receive_updates=False)
    gateway = Gateway(settings.session_name, f"telepi login {settings.session_dir}", problems.append)
    gateway.limiter = AccountLimiter(store, settings.session_name, Progress())  # reads wait out flood limits
    client.middleware = gateway
    try:
        await client.connect()
        if not await client.is_user_authorized():
            raise NotLoggedIn(
                f"session {settings.session_name} is not logged in: run  telepi login {settings.session_dir}"
            )
        settings, source, target = await _chosen_route(client, store, settings, options)
        route = _route(store, settings, source, target, options)
        is_forum = bool(getattr(source, "forum", False))
        source_messages = await _read(client, source)
        target_messages = await _read(client, target)
        if problems:
            raise problems[0]
        rules = route_rules(settings, store, route.id, source)
        seen_source = [  # what a copy shows: the source through the route's transforms
            Seen(m.id, _shown_identity(m, rules, is_forum), topic_of(m, is_forum), getattr(m, "grouped_id", None))
            for m in source_messages
        ]
        seen_target = [Seen(m.id, identity(m)) for m in target_messages]
        ledger = store.ledger(route.id)
        result = reconcile(seen_source, seen_target, ledger)
        outcome = Outcome(route, len(seen_source), len(seen_target), result, filtered=_filtered(store, route.id))
        by_id = {m.id: m for m in seen_source}
        held = {s for s, (status, _) in ledger.items() if status == "review" and s in by_id}
        resolved: set[int] = set()
        if options.adopt:
            copies = [(_item(by_id[s]), t) for s, t in result.adoptable.items()]
            review = [_item(by_id[f.source_id]) for f in result.findings if f.kind == "review" and f.source_id]
            newest = max((m.id for m in target_messages), default=0)
            outcome.adopted = store.adopt(route.id, copies, review, newest)
            resolved |= held & set(result.adoptable)
        if options.requeue:
            ledger = store.ledger(route.id)
            missing = [
                _item(by_id[f.source_id])
                for f in result.findings
                if f.kind == "missing"
                and f.source_id
                and ledger.get(f.source_id, ("", None))[0] in ("", "done", "failed", "review")
            ]
            outcome.requeued = store.requeue_missing(route.id, missing)
            resolved |= held & {item.source_msg_id for item in missing}
        # A unit held for review whose one copy content identity found: --adopt records it.
        note = "held for review; the one copy found: --adopt records it"
        result.add(
            Finding("review", by_id[source_id].topic, source_id, result.adoptable[source_id], note)
            for source_id in held & set(result.adoptable) - resolved
        )
        outcome.in_review = len(held - resolved)
        return outcome
    finally:
        await client.disconnect()
        store.close()


async def _chosen_route(
    client: Any, store: Checkpoint, settings: Settings, options: Options
) -> tuple[Settings, Any, Any]:
    """The route to verify: the .env's one, or with a routes file the one --route names (a route's name in
    the file, or its checkpoint id); several routes and no --route: a sentence listing their names."""
    routes = settings.all_routes
    named = [r for r in routes if options.route_name is not None and r.route_name == options.route_name]
    if options.route_name is not None and not named:
        names = ", ".join(r.route_name for r in routes if r.route_name) or "none: there is no routes file"
        raise ConfigError([Problem("--route", f"--route {options.route_name} names no route", f"use one of {names}")])
    if named:
        routes = tuple(named)
    elif options.route is None and len(routes) > 1:
        names = ", ".join(r.route_name for r in routes)
        fix = f"pass --route with one of their names ({names}) or a route id from telepi status"
        raise ConfigError([Problem("--route", f"{settings.routes_file} lists {len(routes)} routes", fix)])
    for candidate in routes:
        source = await resolve_chat(client, "SOURCE_CHAT", candidate.source_chat)
        target = await resolve_chat(client, "TARGET_CHAT", candidate.target_chat)
        ids = (str(utils.get_peer_id(source)), str(utils.get_peer_id(target)))
        found = next((r for r in store.routes() if (r.source_chat, r.target_chat) == ids), None)
        if options.route is None or len(routes) == 1 or (found is not None and found.id == options.route):
            return candidate, source, target
    names = ", ".join(r.route_name for r in routes)
    fix = "pass --route with a route name or an id telepi routes shows"
    raise ConfigError([Problem("--route", f"no route of this session ({names}) is route {options.route}", fix)])


def _route(store: Checkpoint, settings: Settings, source: Any, target: Any, options: Options) -> Route:
    source_id, target_id = str(utils.get_peer_id(source)), str(utils.get_peer_id(target))
    found = next((r for r in store.routes() if (r.source_chat, r.target_chat) == (source_id, target_id)), None)
    if found is None and options.adopt:
        found = store.route(source_id, target_id)
    if found is None:
        raise ConfigError(
            [
                Problem(
                    "",
                    f"the checkpoint {store.path} has no route {source_id} -> {target_id}",
                    f"rebuild it from the target with  telepi verify {settings.session_dir} --adopt",
                )
            ]
        )
    if options.route is not None and options.route != found.id:
        raise ConfigError(
            [Problem("--route", f"session {settings.session_name} clones route {found.id}", f"pass --route {found.id}")]
        )
    return found


async def _read(client: Any, peer: Any) -> list[Any]:
    """The chat's content messages, oldest first (service messages are not copied, so not compared).
    Without Telethon's own pause (``wait_time``: 1 s after every 100 messages for a whole history, 17
    minutes a 100,000-message chat): the account's gateway waits out what Telegram asks instead, as
    the planner's reads do."""
    return [m async for m in client.iter_messages(peer, reverse=True, wait_time=0) if skip_reason(m) is None]


def route_rules(settings: Settings, store: Checkpoint, route_id: int, source: Any) -> RouteRules:
    def title(topic: int | None) -> str:
        return (store.topic_title(route_id, topic) or "") if topic is not None else ""

    return RouteRules(settings.filters, settings.transforms, source_link_base(source), title)


def _shown_identity(message: Any, rules: RouteRules, is_forum: bool) -> str:
    if not rules.transforms.active:
        return identity(message)
    return identity(message, shown=rules.shown(message, message.entities, topic=topic_of(message, is_forum)))


def _filtered(store: Checkpoint, route_id: int) -> dict[str, list[int]]:
    """Every message the route's filters left out, by reason (read from the skipped rows' own index)."""
    for report in store.report(failures=0, skipped_ids=1 << 30).routes:
        if report.route.id == route_id:
            return {s.reason: sorted(s.latest) for s in report.skipped if s.reason.startswith(FILTERED)}
    return {}


def _item(message: Seen) -> NewItem:
    return NewItem(message.id, grouped_id=message.grouped_id, topic_id=message.topic)


def render(outcome: Outcome, say: Callable[[str], object]) -> None:
    route, result = outcome.route, outcome.result
    say(
        f"route {route.id} ({route.label}): {outcome.source_count} source messages, "
        f"{outcome.target_count} in the target"
    )
    by_topic: dict[int | None, Counter[str]] = {}
    for finding in result.findings:
        by_topic.setdefault(finding.topic, Counter())[finding.kind] += 1
    if not result.findings:
        say("nothing to fix: every source message has exactly one copy, in order")
    for topic, counts in sorted(by_topic.items(), key=lambda item: item[0] or 0):
        where = "chat" if topic is None else f"topic {topic}"
        say(f"{where}: " + ", ".join(f"{kind.replace('_', ' ')} {counts[kind]}" for kind in KINDS if counts[kind]))
    for finding in result.findings:
        target = "" if finding.target_id is None else f" -> target {finding.target_id}"
        note = f" ({finding.note})" if finding.note else ""
        say(f"  {finding.kind.replace('_', ' '):<15} source {finding.source_id}{target}{note}")
    if outcome.in_review:
        say(
            f"{outcome.in_review} messages are held for review (telepi status: needs_review, adopt_review): "
            "one copy found in the target -> --adopt records it; none -> --requeue sends it; several -> delete "
            "all but one in the target, then --adopt"
        )
    if outcome.adopted:
        reviews = sum(f.kind == "review" for f in result.findings)
        say(
            f"adopted {outcome.adopted} copies from the target; {reviews} doubtful matches held back for review "
            "(adopt_review); the next run copies what is missing"
        )
    if outcome.requeued:
        say(f"requeued {outcome.requeued} missing messages; running sessions copy them")
    if outcome.filtered:
        total = sum(len(ids) for ids in outcome.filtered.values())
        say(
            f"filtered {total} (left out by the route's filters, not missing; telepi retry --filtered copies "
            "what the filters let through now):"
        )
        for reason, ids in sorted(outcome.filtered.items()):
            shown = ", ".join(str(i) for i in ids[:FILTERED_IDS_SHOWN]) + (
                ", …" if len(ids) > FILTERED_IDS_SHOWN else ""
            )
            say(f"  {reason}: {len(ids)} ({shown})")


def as_json(outcome: Outcome) -> str:
    return json.dumps(
        {
            "route": outcome.route.id,
            "source_messages": outcome.source_count,
            "target_messages": outcome.target_count,
            "findings": [asdict(f) for f in outcome.result.findings],
            "adopted": outcome.adopted,
            "requeued": outcome.requeued,
            "in_review": outcome.in_review,
            "filtered": outcome.filtered,
        },
        indent=2,
    )


def run_verify(settings: Settings, options: Options, *, as_json_output: bool) -> int:
    outcome = asyncio.run(verify(settings, options))
    if as_json_output:
        print(as_json(outcome))
    else:
        render(outcome, print)
    return outcome.exit_code
