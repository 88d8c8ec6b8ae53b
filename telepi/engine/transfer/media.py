"""Source media in, send input out: which file to copy, its thumbnail, and the ``InputMedia`` to send.

Pure functions over Telethon's TL objects (no requests), except :func:`upload_media`, which turns an
uploaded file into reusable media for an album (``messages.sendMultiMedia`` only takes
``InputMediaDocument``/``InputMediaPhoto``, so each member goes through ``messages.uploadMedia`` first).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from telethon import utils
from telethon.tl import functions, types

THUMB_MAX_SIDE = 320  # Telegram's limits for an uploaded document thumbnail: JPEG, 320 px, 200 KB
THUMB_MAX_BYTES = 200 * 1024

# Attributes that make a document more than a file (Telegram shows it as video, audio, sticker...).
_KIND_ATTRIBUTES = (
    types.DocumentAttributeVideo,
    types.DocumentAttributeAudio,
    types.DocumentAttributeAnimated,
    types.DocumentAttributeSticker,
    types.DocumentAttributeCustomEmoji,
)


@dataclass(frozen=True)
class SourceFile:
    """What to download: the location of the file (the largest size of a photo), its size and DC."""

    media: Any | None  # MessageMediaDocument / MessageMediaPhoto, when known (flags such as spoiler)
    obj: Any  # the Document or Photo
    location: Any  # InputDocumentFileLocation / InputPhotoFileLocation
    size: int
    dc_id: int
    name: str


def unwrap(source: Any) -> tuple[Any | None, Any]:
    """(message media or None, Document/Photo) from a Message, MessageMedia*, Document or Photo."""
    media = source.media if isinstance(source, types.Message) else source
    if isinstance(media, types.MessageMediaDocument) and isinstance(media.document, types.Document):
        return media, media.document
    if isinstance(media, types.MessageMediaPhoto) and isinstance(media.photo, types.Photo):
        return media, media.photo
    if isinstance(media, types.Document | types.Photo):
        return None, media
    raise TypeError(f"no file to transfer in {type(media).__name__}")


def _size_bytes(size: Any) -> int:
    if isinstance(size, types.PhotoSizeProgressive):
        return int(max(size.sizes))
    if isinstance(size, types.PhotoCachedSize | types.PhotoStrippedSize):
        return len(size.bytes)
    if isinstance(size, types.PhotoSize):
        return int(size.size)
    return 0


def largest_photo_size(photo: Any) -> Any:
    """The photo size to copy: the largest downloadable one."""
    sizes = [s for s in photo.sizes if isinstance(s, types.PhotoSize | types.PhotoSizeProgressive)]
    if not sizes:
        raise TypeError("the photo has no downloadable size")
    return max(sizes, key=_size_bytes)


def file_name(obj: Any) -> str:
    if isinstance(obj, types.Photo):
        return "photo.jpg"
    for attr in obj.attributes:
        if isinstance(attr, types.DocumentAttributeFilename) and attr.file_name:
            return str(attr.file_name)
    return "file" + (utils.get_extension(obj) or ".bin")


def source_file(source: Any) -> SourceFile:
    media, obj = unwrap(source)
    if isinstance(obj, types.Photo):
        size = largest_photo_size(obj)
        location: Any = types.InputPhotoFileLocation(
            id=obj.id, access_hash=obj.access_hash, file_reference=obj.file_reference, thumb_size=size.type
        )
        return SourceFile(media, obj, location, _size_bytes(size), obj.dc_id, file_name(obj))
    location = types.InputDocumentFileLocation(
        id=obj.id, access_hash=obj.access_hash, file_reference=obj.file_reference, thumb_size=""
    )
    return SourceFile(media, obj, location, int(obj.size), obj.dc_id, file_name(obj))


# ---- thumbnails -----------------------------------------------------------------------------------


def pick_thumbnail(document: Any) -> Any | None:
    """The document thumbnail worth copying: the largest real one that fits Telegram's thumbnail limits
    (PhotoSize, PhotoSizeProgressive or PhotoCachedSize), else the smallest real one, else the
    stripped preview (a tiny JPEG); None when there is no thumbnail at all."""
    thumbs = list(getattr(document, "thumbs", None) or [])
    real = [t for t in thumbs if isinstance(t, types.PhotoSize | types.PhotoSizeProgressive | types.PhotoCachedSize)]
    fitting = [t for t in real if max(t.w, t.h) <= THUMB_MAX_SIDE and _size_bytes(t) <= THUMB_MAX_BYTES]
    if fitting:
        return max(fitting, key=_size_bytes)
    if real:
        return min(real, key=_size_bytes)
    stripped = [t for t in thumbs if isinstance(t, types.PhotoStrippedSize)]
    return stripped[0] if stripped else None


def inline_thumbnail(size: Any) -> bytes | None:
    """The bytes of a thumbnail that came inside the message (no download), as a JPEG."""
    if isinstance(size, types.PhotoStrippedSize):
        data: bytes = utils.stripped_photo_to_jpg(size.bytes)
        return data
    if isinstance(size, types.PhotoCachedSize):
        return bytes(size.bytes)
    return None


def thumbnail_size(size: Any) -> int:
    """Bytes to download for a PhotoSize/PhotoSizeProgressive thumbnail."""
    return _size_bytes(size)


# ---- what to send ---------------------------------------------------------------------------------


def _flag(obj: Any, name: str) -> bool | None:
    return bool(getattr(obj, name, None)) or None


def sent_as_file(media: Any | None, document: Any) -> bool:
    """Was the document sent as a plain file ("send as file" / force document)?

    A document without a video/audio/animation/sticker attribute is a file. A video is shown as a
    video only when Telegram says so in the message (``MessageMediaDocument.video``/``round``); without
    that flag it was sent as a file and must stay one (else Telegram would make it a playable video).
    """
    attributes = document.attributes
    if not any(isinstance(a, _KIND_ATTRIBUTES) for a in attributes):
        return True
    video = next((a for a in attributes if isinstance(a, types.DocumentAttributeVideo)), None)
    if video is None or media is None:
        return False
    if any(isinstance(a, types.DocumentAttributeAnimated | types.DocumentAttributeSticker) for a in attributes):
        return False
    return not (media.video or media.round or video.round_message)


def no_sound_video(document: Any) -> bool:
    """A video without audio: a GIF (even as MPEG-4) or a video marked ``nosound``."""
    attributes = document.attributes
    video = next((a for a in attributes if isinstance(a, types.DocumentAttributeVideo)), None)
    if video is None:
        return False
    return bool(video.nosound) or any(isinstance(a, types.DocumentAttributeAnimated) for a in attributes)


def input_media(source: Any, file: Any, *, thumb: Any | None = None) -> Any:
    """The ``InputMediaUploaded*`` that sends ``file`` (the uploaded copy) as the source media was:
    same MIME type and every attribute (file name, video duration/size/streaming/round, audio and
    voice, animation, sticker), the thumbnail, the spoiler, and force-file / no-sound where they apply."""
    media, obj = unwrap(source)
    spoiler = _flag(media, "spoiler")
    ttl = getattr(media, "ttl_seconds", None)
    if isinstance(obj, types.Photo):
        return types.InputMediaUploadedPhoto(file=file, spoiler=spoiler, ttl_seconds=ttl)
    return types.InputMediaUploadedDocument(
        file=file,
        mime_type=obj.mime_type or "application/octet-stream",
        attributes=list(obj.attributes),
        thumb=thumb,
        spoiler=spoiler,
        force_file=sent_as_file(media, obj) or None,
        nosound_video=no_sound_video(obj) or None,
        video_timestamp=getattr(media, "video_timestamp", None),
        ttl_seconds=ttl,
    )


def reusable_media(uploaded: Any, *, spoiler: bool | None = None) -> Any:
    """``InputMediaDocument``/``InputMediaPhoto`` for what ``messages.uploadMedia`` returned."""
    if isinstance(uploaded, types.MessageMediaDocument) and isinstance(uploaded.document, types.Document):
        doc = uploaded.document
        return types.InputMediaDocument(
            types.InputDocument(doc.id, doc.access_hash, doc.file_reference), spoiler=spoiler or None
        )
    if isinstance(uploaded, types.MessageMediaPhoto) and isinstance(uploaded.photo, types.Photo):
        photo = uploaded.photo
        return types.InputMediaPhoto(
            types.InputPhoto(photo.id, photo.access_hash, photo.file_reference), spoiler=spoiler or None
        )
    raise TypeError(f"uploadMedia returned {type(uploaded).__name__}, not a document or photo")


async def upload_media(client: Any, peer: Any, media: Any) -> Any:
    """Turn uploaded input media into media by reference for one album member (``messages.uploadMedia``
    against the target ``peer``); the spoiler flag is kept."""
    uploaded = await client(functions.messages.UploadMediaRequest(peer=peer, media=media))
    return reusable_media(uploaded, spoiler=bool(getattr(media, "spoiler", None)))
