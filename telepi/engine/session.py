"""One session's run: connect, check the login, resolve the chats, plan, work, follow live, stop cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import sqlite3
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from telethon import events, utils
from telethon.tl import types

from telepi.chatref import ChatRef
from telepi.checkpoint.model import Pulse
from telepi.checkpoint.store import Store
from telepi.config import Settings
from telepi.engine.changes import ChangeApplier, ChangeRoute
from telepi.engine.difference import SourceDifference
from telepi.engine.health import Beacon, HealthReport, Link
from telepi.engine.limits.account import AccountLimiter
from telepi.engine.limits.gateway import AccountProblem, Gateway
from telepi.engine.logcontext import ROUTE
from telepi.engine.planner import Planner, PlanScope
from telepi.engine.progress import Progress
from telepi.engine.provenance import refuse_unrecorded_copies
from telepi.engine.routerules import RouteRules, source_link_base
from telepi.engine.stopping import until_stopped
from telepi.engine.topics import TopicMapper, load_topic_map
from telepi.engine.worker import Reuploader, RouteTarget, Worker, WorkerOptions
from telepi.errors import PassingError, SessionStopped, UserFixableError
from telepi.telegram.client import make_client, transport_up
from telepi.telegram.errors import ErrorKind, classify, error_name, fatal_hint
from telepi.telegram.rights import may_post

if TYPE_CHECKING:
    from telepi.engine.transfer.progress import ByteTotals  # the transfer is imported only when used

log = logging.getLogger(__name__)
POLL_SECONDS = 10.0
DISCONNECT_SECONDS = 5.0
CONNECT_SECONDS = 30.0  # at start, Telegram unreachable this long: exit 75, systemd starts again after RestartSec


class NotLoggedIn(UserFixableError):
    pass


class ChatNotFound(UserFixableError):
    pass


class RouteOfAnotherAccount(UserFixableError):
    """A basic group or private chat numbers messages per account: its route belongs to one account."""


@dataclass
class Hooks:
    """What the service layer wants to hear: ready once, a status line now and then, and the health
    of the run (the Telegram connection, the tasks that must not die, whether the pipeline moves)."""

    ready: Callable[[], object] = lambda: None
    status: Callable[[str], object] = lambda _line: None
    monitor: HealthReport | None = None
    # Every 2 s with the run's numbers and the route's finished/known: the terminal's bar, the journal's line.
    progress: Callable[[Progress, int, int], object] = lambda _progress, _finished, _known: None
    # Once the chats are resolved: what the session copies, by titles (``Source -> Target``) or route names.
    named: Callable[[str], object] = lambda _label: None


PIPELINE_STALL_SECONDS = 600.0  # no progress, no declared wait, for this long: the process is stuck


async def resolve_chat(client: Any, key: str, ref: ChatRef) -> Any:
    """The entity a chat reference names, or a ChatNotFound naming the key."""
    if ref.kind == "invite":
        raise ChatNotFound(f"{key}={ref.raw!r} is an invite link: join the chat with this account, then use its id.")
    try:
        if ref.kind == "username":
            return await client.get_entity(f"@{ref.value}")
        try:
            return await client.get_entity(ref.value)
        except ValueError:
            await client.get_dialogs()  # an id is only known once the account has seen the chat
            return await client.get_entity(ref.value)
    except (ValueError, TypeError) as exc:
        raise ChatNotFound(
            f"{key}={ref.raw!r} cannot be found by this account ({exc}): check the value and that the account "
            "is a member of the chat."
        ) from None
    except Exception as exc:
        if classify(exc).kind is ErrorKind.CHAT or "INVALID" in error_name(exc):
            raise ChatNotFound(
                f"{key}={ref.raw!r} cannot be opened by this account ({error_name(exc)}): add the account to the "
                f"chat, or change {key}."
            ) from None
        raise


def unreachable(client: Any, exc: BaseException) -> PassingError:
    """Telegram cannot be reached at start: a sentence naming the address; systemd restarts the unit."""
    address = f"{client.session.server_address}:{client.session.port}"
    reason = str(exc) or ("no answer" if isinstance(exc, TimeoutError) else type(exc).__name__)
    return PassingError(
        f"Telegram at {address} cannot be reached ({reason}): telepi starts again by itself "
        "(under systemd after RestartSec); if it lasts, check this machine's network and TG_DC."
    )


def claim_size(settings: Settings, source_protected: bool) -> int:
    forwarding = settings.mode == "auto" and not source_protected and not settings.transforms.active
    if settings.mode == "forward" or forwarding:
        return 100  # one forwardMessages call per 100 messages
    if settings.ordered and settings.send_interval > 0:
        return 1  # paced accounts take turns message by message
    return 10


def route_rules(settings: Settings, store: Store, route: RouteTarget) -> RouteRules:
    """The route's filters and transforms; ``{topic}`` is the title the checkpoint recorded for the topic."""

    def title(topic: int | None) -> str:
        return (store.topic_title(route.route_id, topic) or "") if topic is not None else ""

    return RouteRules(settings.filters, settings.transforms, route.source_link, title)


async def run_session(
    settings: Settings,
    store: Store,
    stop: asyncio.Event,
    *,
    hooks: Hooks | None = None,
    reuploader: Reuploader | None = None,
) -> Progress:
    hooks = hooks or Hooks()
    own_reuploader = reuploader is None
    if reuploader is None:
        from telepi.engine.transfer import StreamingReuploader

        reuploader = StreamingReuploader()
    if not settings.session_file.exists():  # before the client creates an empty one
        raise NotLoggedIn(f"session {settings.session_name} is not logged in: run  telepi login {settings.session_dir}")
    try:
        client = make_client(settings)
    except sqlite3.OperationalError as exc:  # Telethon's session file: another process holds its lock
        raise NotLoggedIn(
            f"the session file {settings.session_file} is locked ({exc}): another telepi of session "
            f"{settings.session_name} is starting or running; stop it first (systemctl stop "
            f"telepi@{settings.session_name})."
        ) from None
    progress = Progress()
    session = settings.session_name
    limiter = AccountLimiter(
        store, session, progress, min_interval=settings.send_interval, read_interval=settings.read_interval, stop=stop
    )

    def account_refused(problem: AccountProblem) -> None:
        # Every call fails the same way from now on: give all work back at once, say why, and stop.
        with contextlib.suppress(Exception):
            store.release(session)
            store.set_session_state(session, problem.problem.state, str(problem))  # type: ignore[arg-type]
        log.error("%s", problem, extra={"event": "account_refused"})
        stop.set()

    gateway = Gateway(session, f"telepi login {settings.session_dir}", account_refused)
    stopped_by_problem = False
    gateway.limiter = limiter
    client.middleware = gateway
    link = Link(lambda: transport_up(client))  # not client.is_connected(): true while Telethon reconnects
    if hooks.monitor is not None:
        hooks.monitor.watch_connection(link)

    async def connect_and_run() -> None:
        telethon_log = logging.getLogger("telethon")
        level = telethon_log.level
        telethon_log.setLevel(logging.CRITICAL)  # its retries log a line each: the sentence below says it once
        try:
            async with asyncio.timeout(CONNECT_SECONDS):  # Telethon retries forever: a start gives up
                await client.connect()  # Telethon's first request (getConfig) goes around the gateway
        except (OSError, EOFError, TimeoutError) as exc:  # EOFError: IncompleteReadError, the link cut mid-reply
            with contextlib.suppress(Exception):  # while its log is quiet: each pending request logs a line
                async with asyncio.timeout(5):
                    await client.disconnect()
            raise unreachable(client, exc) from None
        except Exception as exc:
            found = classify(exc)
            if found.kind is ErrorKind.ACCOUNT:
                raise gateway.account_problem(found) from exc
            raise
        finally:
            telethon_log.setLevel(level)
        if not await client.is_user_authorized():
            raise NotLoggedIn(f"session {session} is not logged in: run  telepi login {settings.session_dir}")
        me = await client.get_me()
        store.register_session(settings.session_name, socket.gethostname(), os.getpid(), user_id=me.id)
        limiter.know_account(me.id)  # what the account learned of its quotas, in any session, before a send
        routes = await _open_routes(client, settings, store, me.id)
        hooks.named(shown_label(routes))

        async def hand_over(seconds: int) -> None:
            released = store.release(session, only_unsent=True)  # every route's: the account is what waits
            if released:
                log.info("flood wait of %ds: released %d leases to the other sessions", seconds, released)

        limiter.on_long_wait = hand_over
        try:
            vitals = _Vitals(link, settings.lease_seconds / 4, getattr(reuploader, "totals", None))
            await _run_routes(
                client,
                settings,
                store,
                routes,
                progress,
                limiter,
                stop,
                hooks,
                reuploader,
                vitals,
                lambda: gateway.problem is not None,
            )
        except Exception:
            if gateway.problem is None:
                raise
        if gateway.problem is not None:  # whichever task met it first, the account's problem is the cause
            raise gateway.problem

    try:
        # A stop ends the run even while Telethon waits for a Telegram that is gone (engine/stopping.py).
        await until_stopped(connect_and_run(), stop, link)
        if gateway.problem is not None:  # the run was cancelled after an account's problem stopped it
            raise gateway.problem
    except SessionStopped:
        stopped_by_problem = True  # its state (revoked, blocked, ...) and fix stay for telepi status
        raise
    finally:
        unsettled = _settle(store, session, stopped_by_problem, sys.exc_info()[1])
        if own_reuploader:
            with contextlib.suppress(Exception):
                await reuploader.close()
        with contextlib.suppress(Exception):  # a Telethon reconnect it cancels must not hold the stop up
            async with asyncio.timeout(DISCONNECT_SECONDS):
                await client.disconnect()
    if unsettled is not None:
        raise unsettled  # not exit 0: systemd would hear "all is well" while the checkpoint is not
    return progress


def _settle(store: Store, session: str, stopped_by_problem: bool, error: BaseException | None) -> Exception | None:
    """The stop's writes: leases released, the session's state for telepi status. What refuses them (a full
    disk, a read-only file, a lock held past the busy timeout) is returned to be raised once the client is
    closed, unless an error already ends the run: then that is the cause, and this one only a line in the
    log. Nothing is lost either way: leases left behind are taken over on the next start, and a sending
    mark makes the taker look in the target before sending again."""
    try:
        store.release(session)
        if not stopped_by_problem:
            store.set_session_state(session, "stopped", stop_detail(error))
    except Exception as exc:
        if not isinstance(exc, UserFixableError):  # a checkpoint error telepi has no sentence for yet
            exc = PassingError(
                f"the checkpoint refused the stop's writes ({type(exc).__name__}: {exc}): "
                "the next start takes the leases over; if it lasts, check SHARED_DB_PATH/SHARED_DB_URL."
            )
        if error is None:
            return exc
        log.warning("the stop could not be recorded in the checkpoint: %s", exc, extra={"event": "stop_unrecorded"})
    return None


async def _open_routes(client: Any, settings: Settings, store: Store, user_id: int) -> list[_OpenRoute]:
    """Every route this session may work, resolved; with a routes file, a route the account cannot read or
    post to is skipped with a warning (the others go on), unless no route is left."""
    mine = [route for route in settings.all_routes if settings.works(route)]
    if not mine:
        raise UserFixableError(
            f"no route of {settings.routes_file} lets session {settings.session_name} work it: add "
            f"{settings.session_name!r} to a route's sessions, or remove sessions from a route."
        )
    several = len(settings.all_routes) > 1
    opened: list[_OpenRoute] = []
    refused: list[UserFixableError] = []
    for route in mine:
        try:
            opened.append(await _open_route(client, route, store, user_id, check_rights=several))
        except (ChatNotFound, RouteOfAnotherAccount) as exc:
            if not several:
                raise
            refused.append(exc)
            log.warning("route %s skipped: %s", route.route_name, exc, extra={"event": "route_skipped"})
    if not opened:
        raise refused[0]
    return opened


async def _open_route(client: Any, route: Settings, store: Store, user_id: int, *, check_rights: bool) -> _OpenRoute:
    named = f"route {route.route_name!r} of {route.routes_file}: " if route.route_name else ""
    try:
        source = await resolve_chat(client, "SOURCE_CHAT", route.source_chat)
        target = await resolve_chat(client, "TARGET_CHAT", route.target_chat)
    except ChatNotFound as exc:
        raise ChatNotFound(named + str(exc)) from None
    if check_rights and not may_post(target):
        raise ChatNotFound(
            f"{named}this account cannot post in the target {route.target_chat.raw!r}: make it an admin with "
            "'post messages', or name the sessions that may in the route's sessions."
        )
    source_id, target_id = utils.get_peer_id(source), utils.get_peer_id(target)
    label = _label(route, source, target)
    checkpoint_route = store.route(str(source_id), str(target_id), label=label)
    _bind_per_account_route(store, route, checkpoint_route.id, user_id, source, target)
    accounts = {user_id, *store.session_user_ids()}
    await refuse_unrecorded_copies(client, store, checkpoint_route.id, target, accounts, str(route.session_dir))
    return _OpenRoute(
        route,
        RouteTarget(
            route_id=checkpoint_route.id,
            source_peer=utils.get_input_peer(source),
            target_peer=utils.get_input_peer(target),
            source_is_forum=bool(getattr(source, "forum", False)),
            source_protected=bool(getattr(source, "noforwards", False)),
            user_id=user_id,
            source_link=source_link_base(source),
        ),
        label,
    )


def _route_stopped(store: Store, session: str, route: Settings, error: SessionStopped) -> SessionStopped:
    """A route its chat refused, told by its name; the session's state (blocked, with the fix) says it."""
    stopped = SessionStopped(f"route {route.route_name!r} of {route.routes_file} stopped: {error}")
    log.error(
        "%s; the other routes go on",
        str(stopped).rstrip("."),
        extra={"event": "route_stopped", "route": route.route_name},
    )
    with contextlib.suppress(Exception):
        store.set_session_state(session, "blocked", str(stopped))
    return stopped


@dataclass(frozen=True)
class _OpenRoute:
    settings: Settings
    target: RouteTarget
    label: str  # the checkpoint's: the chats' titles, after the route's name


def shown_label(routes: list[_OpenRoute]) -> str:
    """One route by its chats' titles (``photos: Source -> My photos``), several by their names."""
    if len(routes) == 1:
        return routes[0].label
    return f"{len(routes)} routes: " + ", ".join(route.settings.route_name for route in routes)


async def _run_routes(
    client: Any,
    settings: Settings,
    store: Store,
    routes: list[_OpenRoute],
    progress: Progress,
    limiter: AccountLimiter,
    stop: asyncio.Event,
    hooks: Hooks,
    reuploader: Reuploader | None,
    vitals: _Vitals,
    account_failed: Callable[[], bool],
) -> None:
    """Every route on the one client and the one limiter, side by side; one heartbeat and one status line
    for the session. An error ends every route (it is what the user is told), except that with several
    routes a chat's refusal stops its route only; the run then ends with that sentence, exit 78."""
    session = settings.session_name
    route_ids = [route.target.route_id for route in routes]
    beacon = hooks.monitor.beacon("pipeline", PIPELINE_STALL_SECONDS) if hooks.monitor else None
    heartbeat = asyncio.create_task(_heartbeat(store, session, settings.lease_seconds, vitals, stop), name="heartbeat")
    status = asyncio.create_task(_report(store, route_ids, progress, hooks, stop, beacon), name="status")
    if hooks.monitor is not None:
        hooks.monitor.watch(heartbeat)
        hooks.monitor.watch(status)

    def heartbeat_ended(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            stop.set()  # end the run instead of working on without heartbeats

    heartbeat.add_done_callback(heartbeat_ended)
    waiting = len(routes)

    def one_ready() -> None:  # READY once every route has resolved its chats and started
        nonlocal waiting
        waiting -= 1
        if waiting == 0:
            token = ROUTE.set(None)  # the session's line, though the last route to start calls it
            try:
                hooks.ready()
            finally:
                ROUTE.reset(token)

    route_hooks = Hooks(ready=one_ready, status=hooks.status, monitor=hooks.monitor, progress=hooks.progress)
    tasks = [
        asyncio.create_task(
            _run_route(
                client, route.settings, store, route.target, progress, limiter, stop, route_hooks, reuploader, vitals
            ),
            name=f"route {route.settings.route_name or route.target.route_id}",
        )
        for route in routes
    ]
    by_task = dict(zip(tasks, routes, strict=True))
    blocked: list[SessionStopped] = []
    try:
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                error = None if task.cancelled() else task.exception()
                if error is None:
                    continue
                if len(routes) == 1 or not isinstance(error, SessionStopped) or account_failed():
                    raise error
                # One route's chat refused this account (rights, a closed topic): the others go on.
                blocked.append(_route_stopped(store, session, by_task[task].settings, error))
        if blocked:
            raise blocked[0]  # a person must act on that route: its state and fix stay for telepi status
    finally:
        for task in (*tasks, status, heartbeat):
            task.cancel()
        await asyncio.gather(*tasks, status, heartbeat, return_exceptions=True)
        with contextlib.suppress(UserFixableError):  # a checkpoint that failed the heartbeat fails this too
            counts = [store.route_counts(route_id) for route_id in route_ids]
            finished, known = sum(c[0] for c in counts), sum(c[1] for c in counts)
            hooks.status(progress.line(finished, known))
            hooks.progress(progress, finished, known)  # the bar's last state: a short run ends before its first
    if not heartbeat.cancelled() and heartbeat.exception() is not None:
        raise heartbeat.exception()  # type: ignore[misc]  # the sentence (disk full, read-only) says the fix


def stop_detail(error: BaseException | None) -> str:
    """What a stopped session leaves for ``telepi status``: ``exit 0`` after a clean stop, ``exit 75: …`` or
    ``exit 78: …`` with the sentence the user was told; other errors end as the process's traceback would."""
    if error is None or isinstance(error, asyncio.CancelledError | KeyboardInterrupt):
        return "exit 0"
    if isinstance(error, UserFixableError):
        return f"exit {error.exit_code}: {str(error)[:300]}"
    return f"exit 1: {type(error).__name__}"


def per_account_key(source: Any, target: Any) -> str | None:
    """Which chat of the route numbers its messages per account (a basic group or a private chat:
    https://core.telegram.org/api/channel#basic-groups), or None when both are channels/supergroups."""
    for key, entity in (("SOURCE_CHAT", source), ("TARGET_CHAT", target)):
        if isinstance(entity, types.Chat | types.ChatForbidden | types.User):
            return key
    return None


def _bind_per_account_route(
    store: Store, settings: Settings, route_id: int, user_id: int, source: Any, target: Any
) -> None:
    """Ids planned or copied by one account mean other messages (or nothing) to another account: a
    route through a basic group or private chat stays with the first account that ran it, so neither a
    second live session nor a takeover by another account can continue its ids."""
    key = per_account_key(source, target)
    if key is None:
        return
    owner = store.bind_route(route_id, user_id)
    if owner == user_id:
        return
    sessions = ", ".join(store.sessions_of_user(owner)) or f"user id {owner}"
    chat = settings.source_chat if key == "SOURCE_CHAT" else settings.target_chat
    raise RouteOfAnotherAccount(
        f"{key}={chat.raw!r} is a basic group or private chat: its message ids are per account, so only one "
        f"account may clone this route and it belongs to session {sessions}: stop session "
        f"{settings.session_name}, or migrate the group to a supergroup (then route the supergroup)."
    )


def _label(settings: Settings, source: Any, target: Any) -> str:
    def name(entity: Any, ref: ChatRef) -> str:
        return getattr(entity, "title", None) or ref.key

    label = f"{name(source, settings.source_chat)} -> {name(target, settings.target_chat)}"
    return f"{settings.route_name}: {label}" if settings.route_name else label  # telepi routes finds it by name


async def _run_route(
    client: Any,
    settings: Settings,
    store: Store,
    route: RouteTarget,
    progress: Progress,
    limiter: AccountLimiter,
    stop: asyncio.Event,
    hooks: Hooks,
    reuploader: Reuploader | None,
    vitals: _Vitals,
) -> None:
    session = settings.session_name
    ROUTE.set(settings.route_name or settings.route_label)  # this task's and its tasks' log lines (TELEPI_ROUTE)
    topics = TopicMapper(
        client,
        store,
        route.route_id,
        session,
        route.source_peer,
        route.target_peer,
        target_is_forum=await _is_forum(client, route.target_peer),
        auto_create=settings.auto_create_topics,
        fixed_target_topic=settings.target_topic,
        overrides=load_topic_map(settings.session_dir),
        user_id=route.user_id,
    )
    if route.source_is_forum and settings.auto_create_topics:
        await _mirror_topics(topics, settings.source_topic)

    rules = route_rules(settings, store, route)
    planner = Planner(
        client,
        store,
        route.route_id,
        session,
        PlanScope(
            route.source_peer, route.source_is_forum, settings.source_topic, settings.from_id, settings.to_id, rules
        ),
        limiter,
    )
    planner.on_topic_renamed = topics.rename
    planner.on_topic_state = topics.sync_state
    worker = Worker(
        client,
        store,
        session,
        route,
        topics,
        limiter,
        progress,
        WorkerOptions(
            mode=settings.mode,
            ordered=settings.ordered,
            by_topic=settings.ordered_by_topic,
            lease_seconds=settings.lease_seconds,
            max_attempts=settings.max_attempts,
            claim_size=claim_size(settings, route.source_protected),
            rules=rules,
        ),
        reuploader=reuploader,
    )
    worker.link = vitals.link
    wake = asyncio.Event()
    changes = ChangeApplier(
        client,
        store,
        session,
        ChangeRoute(route.route_id, route.source_peer, route.target_peer, route.user_id),
        sync_edits=settings.sync_edits,
        sync_deletes=settings.sync_deletes,
        lease_seconds=settings.lease_seconds,
        max_attempts=settings.max_attempts,
        rules=rules,
        source_is_forum=route.source_is_forum,
    )
    planner.work_planned = worker.work_planned
    syncing = settings.live and (settings.sync_edits or settings.sync_deletes)
    difference: SourceDifference | None = None
    if syncing and isinstance(route.source_peer, types.InputPeerChannel):
        # A channel or supergroup has Telegram's own record of its updates: nothing missed while down.
        channel = types.InputChannel(route.source_peer.channel_id, route.source_peer.access_hash)
        difference = SourceDifference(client, store, route.route_id, channel, changes, new_messages=wake.set)
    if settings.live:
        _follow_live(client, settings, route, wake, changes, planner, difference)

    hooks.ready()  # connected, logged in, chats resolved: planning and copying run side by side from here

    def work_done() -> bool:
        planning = next((task for task in tasks if task.get_name() == "planner"), None)
        if planning is not None and planning.done() and not planning.cancelled() and planning.exception():
            if isinstance(planning.exception(), SessionStopped):
                raise planning.exception()  # type: ignore[misc]  # a person must act: say what
            raise RuntimeError("planning the source's history failed") from planning.exception()
        return not settings.live and planner.reached_end and store.head(route.route_id) is None

    tasks: list[asyncio.Task[None]] = []
    if syncing:
        # A basic group or private source has no record of its own here: its history is read again instead.
        tasks.append(asyncio.create_task(changes.run(stop, reread=difference is None), name="changes"))
    if difference is not None:
        tasks.append(asyncio.create_task(difference.run(stop, vitals.link), name="difference"))
    tasks.append(
        asyncio.create_task(planner.run(wake, live=settings.live, poll_seconds=POLL_SECONDS, stop=stop), name="planner")
    )
    if hooks.monitor is not None:
        for task in tasks:
            hooks.monitor.watch(task)
    try:
        await worker.run(stop, work_done, planning=lambda: not planner.reached_end)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class _RouteCounts:
    """The session's routes' finished/known counts for the status line: read from the checkpoint (a scan
    of each route) every ``refresh`` seconds, this session's own progress added in between."""

    def __init__(self, store: Store, route_ids: list[int], progress: Progress, refresh: float = 30.0) -> None:
        self.store, self.route_ids, self.progress, self.refresh = store, route_ids, progress, refresh
        self._read_at = -refresh
        self._counts = (0, 0)
        self._own_then = 0

    def __call__(self) -> tuple[int, int]:
        own = self.progress.done + self.progress.skipped
        finished, known = self._counts
        if time.monotonic() - self._read_at >= self.refresh or finished + own - self._own_then >= known:
            counts = [self.store.route_counts(route_id) for route_id in self.route_ids]
            self._counts = (sum(c[0] for c in counts), sum(c[1] for c in counts))
            self._own_then, self._read_at = own, time.monotonic()
            finished, known = self._counts
        return min(finished + own - self._own_then, known), known


async def _mirror_topics(topics: TopicMapper, only: int | None) -> None:
    """Every source topic exists in the target from the start, empty ones included."""
    try:
        count = await topics.mirror_all(only)
    except Exception as exc:
        name = error_name(exc)
        hint = fatal_hint(name)
        if hint is not None:
            raise SessionStopped(f"Telegram answered {name} while mirroring topics: {hint}.") from exc
        log.warning("mirroring the source's topics failed (%s): they are created as messages need them", name)
        return
    log.info("mirrored %d source topics", count)


async def _is_forum(client: Any, peer: Any) -> bool:
    entity = await client.get_entity(peer)
    return bool(getattr(entity, "forum", False))


def _follow_live(
    client: Any,
    settings: Settings,
    route: RouteTarget,
    wake: asyncio.Event,
    changes: ChangeApplier,
    planner: Planner,
    difference: SourceDifference | None,
) -> None:
    """New messages wake the planner; edits and deletes become change rows (see engine/changes.py), for a
    channel through its update state (engine/difference.py), which sees every update with its pts."""

    async def on_new(event: Any) -> None:
        grouped = getattr(event.message, "grouped_id", None)
        if grouped is not None:
            planner.album_announced(grouped)
        wake.set()

    client.add_event_handler(on_new, events.NewMessage(chats=[route.source_peer]))
    if difference is not None:

        async def on_update(update: Any) -> None:
            difference.live(update)

        client.add_event_handler(on_update, events.Raw())
        return
    if settings.sync_edits:

        async def on_edit(event: Any) -> None:
            changes.record_edit(event.message)

        client.add_event_handler(on_edit, events.MessageEdited(chats=[route.source_peer]))
    if settings.sync_deletes:

        async def on_delete(event: Any) -> None:
            if event.chat_id is not None and event.chat_id != utils.get_peer_id(route.source_peer):
                return
            changes.record_deletes(event.deleted_ids)

        client.add_event_handler(on_delete, events.MessageDeleted(chats=[route.source_peer]))


LINK_SAMPLE_SECONDS = 1.0  # an outage is in the checkpoint (telepi status: reconnecting since T) this soon


@dataclass
class _Vitals:
    """The facts each heartbeat records: its interval, the link to Telegram, the bytes transfers moved."""

    link: Link
    every: float
    totals: ByteTotals | None

    def pulse(self) -> Pulse:
        down, up = (self.totals.down, self.totals.up) if self.totals is not None else (0, 0)
        return Pulse(self.every, self.link.down_since, down, up)


async def _heartbeat(store: Store, session: str, lease_seconds: float, vitals: _Vitals, stop: asyncio.Event) -> None:
    """Every ``lease_seconds / 4``: extend the leases and record the pulse; at once when the link to
    Telegram goes down or comes back, so an outage shows while it lasts."""
    loop = asyncio.get_running_loop()
    due = loop.time()
    written: float | None = None
    while not stop.is_set():
        vitals.link()
        if loop.time() >= due or vitals.link.down_since != written:
            store.heartbeat(session, lease_seconds, vitals.pulse())
            written, due = vitals.link.down_since, loop.time() + vitals.every
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(LINK_SAMPLE_SECONDS, max(0.0, due - loop.time()))):
                await stop.wait()


async def _report(
    store: Store, route_ids: list[int], progress: Progress, hooks: Hooks, stop: asyncio.Event, beacon: Beacon | None
) -> None:
    counts = _RouteCounts(store, route_ids, progress)
    seen_activity = progress.last_activity
    while not stop.is_set():
        # The pipeline is alive while it makes progress or sits in a declared (flood) wait.
        waiting = progress.wait_until is not None and progress.wait_until > time.time()
        if beacon is not None and (progress.last_activity != seen_activity or waiting):
            beacon.touch()
        seen_activity = progress.last_activity
        finished, known = counts()
        hooks.status(progress.line(finished, known))
        hooks.progress(progress, finished, known)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                await stop.wait()
