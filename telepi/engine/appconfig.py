"""The account's content limits as Telegram publishes them in its app config (``help.getAppConfig``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from telethon.tl import functions, types

from telepi.engine.content import CAPTION_LIMIT, CAPTION_LIMIT_PREMIUM

log = logging.getLogger(__name__)


def config_numbers(app_config: Any) -> dict[str, float]:
    """The numeric keys of a ``help.AppConfig`` (``caption_length_limit_default`` → 1024.0, …)."""
    config = getattr(app_config, "config", None)
    if not isinstance(config, types.JsonObject):
        return {}
    return {entry.key: float(entry.value.value) for entry in config.value if isinstance(entry.value, types.JsonNumber)}


@dataclass(frozen=True)
class AccountLimits:
    caption: int  # UTF-16 code units
    premium: bool


async def account_limits(client: Any) -> AccountLimits:
    """This account's caption limit in UTF-16 code units — the app config's default, or premium for a
    premium account (https://core.telegram.org/api/config#caption-length-limit-default) — and whether it is
    premium."""
    premium = bool(getattr(await client.get_me(), "premium", False))
    key, fallback = (
        ("caption_length_limit_premium", CAPTION_LIMIT_PREMIUM)
        if premium
        else (
            "caption_length_limit_default",
            CAPTION_LIMIT,
        )
    )
    try:
        numbers = config_numbers(await client(functions.help.GetAppConfigRequest(hash=0)))
    except Exception as exc:  # without the config the published default is still right for most accounts
        log.debug("app config unavailable (%s): caption limit %d", type(exc).__name__, fallback)
        return AccountLimits(fallback, premium)
    return AccountLimits(int(numbers.get(key, fallback)), premium)


async def caption_limit(client: Any) -> int:
    """This account's caption limit in UTF-16 code units (see ``account_limits``)."""
    return (await account_limits(client)).caption
