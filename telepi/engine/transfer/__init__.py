"""Streaming reupload of files from protected chats; :mod:`.reupload` is the entry point."""

from telepi.engine.transfer.calls import Refresh
from telepi.engine.transfer.errors import FloodWaitTooLong, SourceChanged, TooLarge, TransferError, TransferFailed
from telepi.engine.transfer.media import upload_media
from telepi.engine.transfer.options import TransferOptions
from telepi.engine.transfer.progress import TransferProgress
from telepi.engine.transfer.reupload import StreamingReuploader, Transfers, reupload

__all__ = [
    "FloodWaitTooLong",
    "Refresh",
    "SourceChanged",
    "StreamingReuploader",
    "TooLarge",
    "TransferError",
    "TransferFailed",
    "TransferOptions",
    "TransferProgress",
    "Transfers",
    "reupload",
    "upload_media",
]
