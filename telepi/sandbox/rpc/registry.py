"""The sandbox's Telegram RPCs: one :class:`~telepi.sandbox.rpc.dispatch.Registry` over a world and a file store.

Telegram's API is a list of methods grouped by namespace (https://core.telegram.org/methods); handlers live
in one module per family: ``auth`` (login, SRP), ``dcs`` (exported authorizations between data centres),
``chats`` (users, chats, dialogs), ``messages`` (reading), ``send`` (sending, forwarding, editing, deleting),
``topics`` (forum topics), ``updates`` (getState/getDifference), ``misc`` (config), ``cdn`` (the CDN DC) and
``upload`` (uploads, downloads), which finds files through :class:`~telepi.sandbox.rpc.media.WorldFileLocator`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from telepi.sandbox.dcs.cdn import Cdn
from telepi.sandbox.rpc import auth, cdn, chats, dcs, messages, misc, send, topics, updates, upload
from telepi.sandbox.rpc.common import Env, part_cap_for
from telepi.sandbox.rpc.dispatch import Registry
from telepi.sandbox.rpc.media import WorldFileLocator
from telepi.sandbox.rpc.render import Renderer
from telepi.sandbox.world.files import FileStore
from telepi.sandbox.world.world import World


def build_env(world: World, files: FileStore, *, dc_id: int = 2) -> Env:
    return Env(world=world, files=files, render=Renderer(world, dc_id=dc_id), cdn=Cdn(files))


def build_registry(
    world: World,
    files: FileStore,
    *,
    endpoint: Callable[[], Mapping[int, tuple[str, int]]] = lambda: {2: ("127.0.0.1", 0)},
    dc_id: int = 2,
    env: Env | None = None,
) -> Registry:
    """Every handler; ``endpoint()`` gives each DC's (host, port), which help.getConfig advertises."""
    env = env or build_env(world, files, dc_id=dc_id)
    registry = Registry()
    misc.register(registry, env, endpoint)
    auth.register(registry, env)
    dcs.register(registry, env)
    chats.register(registry, env)
    messages.register(registry, env)
    send.register(registry, env)
    topics.register(registry, env)
    updates.register(registry, env)
    env.cdn = env.cdn or Cdn(files)
    cdn.register(registry, env.cdn)
    registry.merge(
        upload.build_registry(files, WorldFileLocator(env), lambda user_id: part_cap_for(env, user_id), cdn=env.cdn)
    )
    return registry
