"""One part request, made to succeed: retries with backoff, flood pauses, file-reference renewal.

A failed part is retried alone; the parts already transferred stay done. Flood waits pause the
account's transfers in that direction (see ``transfer_pacing.py``); FILE_REFERENCE_* renews the source
location through the caller's ``refresh()`` (once for all parts that saw the same stale reference);
transient errors (5xx, -503 timeouts, lost connections, short answers) are retried up to
``part_retries`` times with backoff; anything else raises
:class:`~telepi.engine.transfer.errors.TransferFailed` at once, named after Telegram's error.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from telethon import errors
from telethon.errors import RPCError
from telethon.errors.rpcerrorlist import rpc_errors_dict, rpc_errors_re
from telethon.tl import functions, types

from telepi.engine.transfer.cdn import CdnFile, CdnHashMismatch
from telepi.engine.transfer.errors import FloodWaitTooLong, SourceChanged, TransferFailed
from telepi.engine.transfer.options import TransferOptions
from telepi.engine.transfer.pacing import Pacer
from telepi.engine.transfer.senders import SenderPool

log = logging.getLogger(__name__)

Refresh = Callable[[], Awaitable[Any]]
"""Returns the source again with a fresh file reference: the re-fetched Message, its media, the
Document/Photo, or an input file location."""

_LOCATIONS = (types.InputDocumentFileLocation, types.InputPhotoFileLocation)
_HAS_REFERENCE = (types.Document, types.Photo, types.InputDocument, types.InputPhoto, *_LOCATIONS)


def fresh_reference(fresh: Any, location: Any) -> bytes:
    """The file reference in what ``refresh()`` returned, checked to be the same file as ``location``."""
    obj = fresh
    if isinstance(obj, types.Message):
        obj = obj.media
    if isinstance(obj, types.MessageMediaDocument):
        obj = obj.document
    elif isinstance(obj, types.MessageMediaPhoto):
        obj = obj.photo
    if not isinstance(obj, _HAS_REFERENCE):
        raise SourceChanged(f"the source no longer has this file (refresh() gave {type(fresh).__name__})")
    if obj.id != location.id:
        raise SourceChanged("the source message now has a different file")
    reference: bytes = obj.file_reference
    return reference


def with_reference(location: Any, reference: bytes, *, thumb_size: str | None = None) -> Any:
    """A copy of ``location`` carrying ``reference`` (the caller's objects are never changed)."""
    return type(location)(
        id=location.id,
        access_hash=location.access_hash,
        file_reference=reference,
        thumb_size=location.thumb_size if thumb_size is None else thumb_size,
    )


class SourceLocation:
    """Where the source file (and its thumbnail) is read from; renewed when Telegram says the file
    reference expired. One per item, shared by all its requests."""

    def __init__(self, location: Any, refresh: Refresh | None, *, renewals: int, timeout: float) -> None:
        if not isinstance(location, _LOCATIONS):
            raise TypeError(f"cannot download from {type(location).__name__}")
        self.location = location
        self.generation = 0  # bumped on each renewal
        self.renewals = 0
        self._refresh = refresh
        self._max_renewals = renewals
        self._timeout = timeout
        self._lock = asyncio.Lock()

    def get(self, thumb_size: str | None = None) -> Any:
        """The current location of the file, or of its thumbnail ``thumb_size`` (same reference)."""
        if thumb_size is None or thumb_size == self.location.thumb_size:
            return self.location
        return with_reference(self.location, self.location.file_reference, thumb_size=thumb_size)

    async def renew(self, seen: int, error: str) -> None:
        """Fetch a fresh reference, unless another part already did since it used generation ``seen``."""
        async with self._lock:
            if self.generation != seen:
                return
            if self._refresh is None:
                raise TransferFailed(f"{error} and no refresh() was given to renew it", error=error, retryable=True)
            if self.renewals >= self._max_renewals:
                raise TransferFailed(f"{error} after {self.renewals} renewals", error=error, retryable=True)
            self.renewals += 1
            log.info("file reference of %d expired (%s); refreshing it", self.location.id, error)
            async with asyncio.timeout(self._timeout):
                fresh = await self._refresh()
            self.location = with_reference(self.location, fresh_reference(fresh, self.location))
            self.generation += 1


# Telethon's known error classes keep only a generic ``message`` ("BAD_REQUEST"): map them back.
_NAMES: dict[type, str] = {cls: name for name, cls in rpc_errors_dict.items()}
_PATTERNS: dict[type, str] = {cls: pattern for pattern, cls in rpc_errors_re}


def rpc_error_name(exc: RPCError) -> str:
    """Telegram's error name, e.g. ``FILE_REFERENCE_EXPIRED`` or ``FLOOD_WAIT_X``."""
    name = _NAMES.get(type(exc))
    if name is None and type(exc) in _PATTERNS:
        name = re.sub(r"\(\\d\+\)", "X", _PATTERNS[type(exc)])
    return name or str(getattr(exc, "message", "") or type(exc).__name__)


def _refreshable(exc: RPCError, name: str) -> bool:
    if isinstance(exc, errors.FileReferenceExpiredError | errors.FilerefUpgradeNeededError):
        return True
    return name.startswith("FILE_REFERENCE_")


def _transient(exc: RPCError) -> bool:
    """Telegram's own trouble (500 and friends, -503 timeouts): worth another try."""
    code = int(getattr(exc, "code", 0) or 0)
    return isinstance(exc, errors.ServerError | errors.TimedOutError) or code < 0 or code >= 500


class PartCalls:
    """Makes part requests of one direction on one pool of connections, paced per account."""

    def __init__(
        self,
        pool: SenderPool,
        pacer: Pacer,
        options: TransferOptions,
        *,
        migrate: Callable[[int], SenderPool] | None = None,
        cdn: Callable[[int], SenderPool] | None = None,
    ) -> None:
        """``migrate(dc_id)`` gives the pool of another DC, for a file Telegram says lives there;
        ``cdn(dc_id)`` the pool of a CDN DC, for a file Telegram redirects there."""
        self.pool = pool
        self.pacer = pacer
        self.options = options
        self.migrate = migrate
        self.cdn = cdn
        self.cdn_file: CdnFile | None = None
        self.retries = 0  # failed attempts retried, for tests and logs
        self.migrations = 0

    async def _call(self, request: Any) -> Any:
        """``request``'s answer; a part of a file on a CDN read there and given as ``upload.file``; None
        when the answer was a redirect to a CDN (the caller asks again)."""
        timeout = self.options.request_timeout
        if self.cdn_file is not None and isinstance(request, functions.upload.GetFileRequest):
            data = await self.cdn_file.read(request.offset, request.limit, timeout)
            return types.upload.File(type=types.storage.FilePartial(), mtime=0, bytes=data)
        result = await self.pool.call(request, timeout)
        if isinstance(result, types.upload.FileCdnRedirect):
            if self.cdn is None:
                raise TransferFailed("Telegram redirected the file to a CDN", error="FILE_CDN_REDIRECT")
            if self.cdn_file is None:  # parts in flight meet the redirect together: the first one counts
                log.info("file redirected to CDN DC %d", result.dc_id)
                self.cdn_file = CdnFile(result, self.cdn(int(result.dc_id)), self.pool)
            return None
        return result

    async def call(
        self,
        make: Callable[[], Any],
        what: str,
        *,
        source: SourceLocation | None = None,
        accept: Callable[[Any], str | None] = lambda _result: None,
    ) -> Any:
        """``make()`` builds the request (again on each attempt, with the current location);
        ``accept(result)`` names what is wrong with an answer that must be retried, or None."""
        attempt = 0
        while True:
            generation = source.generation if source is not None else 0
            try:
                async with self.pacer.slot():
                    result = await self._call(make())
                if result is None:  # redirected to a CDN: ask there
                    continue
            except RPCError as exc:
                name = rpc_error_name(exc)
                if self.cdn_file is not None and name == "FILE_TOKEN_INVALID":
                    self.cdn_file = None  # the CDN forgot the token: ask the file's DC again (core.telegram.org/cdn)
                    continue
                if source is not None and _refreshable(exc, name):
                    await source.renew(generation, name)
                    continue
                if isinstance(exc, errors.FileMigrateError) and self.migrate is not None and self.migrations < 5:
                    # The file lives on another DC than its dc_id said (core.telegram.org/api/datacenter).
                    self.migrations += 1
                    log.info("%s: %s, reading it from DC %d", what, name, exc.new_dc)
                    self.pool = self.migrate(int(exc.new_dc))
                    continue
                if isinstance(exc, errors.FloodError):  # FLOOD_WAIT_X, FLOOD_PREMIUM_WAIT_X
                    seconds = max(1, int(getattr(exc, "seconds", 0) or 0))
                    if seconds > self.options.max_flood_wait:
                        raise FloodWaitTooLong(seconds, name) from exc
                    log.info("%s on %s: pausing this account's %ss %d s", name, what, self.pool.name, seconds)
                    self.pacer.flooded(seconds)
                    continue
                if not _transient(exc):
                    raise TransferFailed(f"{what}: {name}", error=name) from exc
                failure = name
            except (ConnectionError, TimeoutError, OSError, CdnHashMismatch) as exc:
                failure = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                problem = accept(result)
                if problem is None:
                    self.pacer.succeeded()
                    return result
                failure = problem
            attempt += 1
            if attempt >= self.options.part_retries:
                raise TransferFailed(f"{what} failed {attempt} times; last: {failure}", error=failure, retryable=True)
            self.retries += 1
            delay = self.options.backoff(attempt)
            log.info("%s failed (%s); retry %d in %.1f s", what, failure, attempt, delay)
            await asyncio.sleep(delay)
