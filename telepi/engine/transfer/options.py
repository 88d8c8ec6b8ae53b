"""Tunables of the streaming reupload (``telepi.engine.transfer``), with their defaults.

=========================  =========  ==============================================================
option                     default    meaning
=========================  =========  ==============================================================
``download_part_size``     1 MiB      bytes per ``upload.getFile`` request (power of two, 4 KiB-1 MiB)
``upload_part_size``       512 KiB    bytes per ``upload.saveBigFilePart``/``saveFilePart`` (power of
                                      two, 1-512 KiB; 512 KiB also gives the largest file under the
                                      4000/8000-part cap)
``downloads_in_flight``    8          getFile requests outstanding at once, per account
``uploads_in_flight``      16         save*FilePart requests outstanding at once, per account (as
                                      many bytes in flight as the downloads: see below)
``download_connections``   4          extra MTProto connections to the file's DC for downloads
                                      (0: use the client's own connection)
``upload_connections``     4          extra MTProto connections to the home DC for uploads
``part_retries``           5          attempts of one failed part (errors, timeouts, drops) before
                                      the item fails; flood waits and file-reference renewals do not
                                      count
``retry_delay``            0.5 s      first backoff after a failed part, doubled each time ...
``retry_delay_max``        10 s       ... up to this
``request_timeout``        60 s       one request without an answer for this long is retried
``max_flood_wait``         3600 s     a FLOOD_WAIT longer than this raises ``FloodWaitTooLong``
                                      (retryable) instead of holding the item
``reference_renewals``     5          FILE_REFERENCE_EXPIRED renewals per item via ``refresh()``
``progress_interval``      0.5 s      the progress callback runs at most this often (and at the end)
=========================  =========  ==============================================================

Memory per item is bounded by the window ``downloads_in_flight x download_part_size +
uploads_in_flight x upload_part_size`` (16 MiB with the defaults), whatever the file size; the
connections' own buffers add a few copies of the parts in flight. Measured: a 1 GiB copy peaks at about
100 MiB RSS for the whole cloner process, 52 MiB of which is Python and Telethon after login. The
in-flight counts are per account (all its items share them); the window is per item.

Why several connections, and why these numbers (measured with ``python -m bench.transfer --sweep``, a
256 MiB protected video, sandbox links of 8 MiB/s per connection and 32 MiB/s per account each way,
20 ms one-way latency; the baseline, Telethon's ``download_media`` then ``send_file``, took 126 s):

- A connection is one TCP stream, and a per-connection cap binds however many parts are in flight:
  1+1 connections (download + upload) gave 7.9 MiB/s, 2+2 15.5 MiB/s, 4+4 29.0 MiB/s (the account's
  cap, 9 s in all), 8+8 27-28.5 MiB/s (nothing left to gain).
- Without a per-connection cap (only latency and the account cap), one connection with these parts in
  flight already reaches 29 MiB/s and more connections change nothing; each costs about 1-2 MiB of RSS.
  So 4 each way is cheap where connections are not capped and 4x faster where they are. Telegram does
  not publish its limits; official clients also open several media sessions.
- Uploads need as many *bytes* in flight as downloads: the short answers of one direction queue behind
  the other direction's data on the shared account link, so both stages see a longer round trip. With
  8 uploads of 512 KiB in flight the pipeline ran at 17.5 MiB/s; with 16 it reaches 29 MiB/s.

Extra connections reuse the account's auth key with new MTProto sessions (see ``transfer_senders.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from telepi.engine.transfer.parts import KiB, MiB, valid_download_part, valid_upload_part


@dataclass(frozen=True, kw_only=True)
class TransferOptions:
    download_part_size: int = MiB
    upload_part_size: int = 512 * KiB
    downloads_in_flight: int = 8
    uploads_in_flight: int = 16
    download_connections: int = 4
    upload_connections: int = 4
    part_retries: int = 5
    retry_delay: float = 0.5
    retry_delay_max: float = 10.0
    request_timeout: float = 60.0
    max_flood_wait: float = 3600.0
    reference_renewals: int = 5
    progress_interval: float = 0.5

    def __post_init__(self) -> None:
        if not valid_download_part(self.download_part_size):
            raise ValueError("download_part_size must be a power of two from 4 KiB to 1 MiB")
        if not valid_upload_part(self.upload_part_size):
            raise ValueError("upload_part_size must be a power of two from 1 KiB to 512 KiB")
        if self.downloads_in_flight < 1 or self.uploads_in_flight < 1:
            raise ValueError("at least one part must be allowed in flight each way")
        if self.download_connections < 0 or self.upload_connections < 0:
            raise ValueError("connections cannot be negative (0 uses the client's own connection)")
        if self.part_retries < 1 or self.reference_renewals < 0:
            raise ValueError("part_retries must be at least 1 and reference_renewals not negative")
        if min(self.retry_delay, self.retry_delay_max, self.request_timeout, self.max_flood_wait) <= 0:
            raise ValueError("delays and timeouts must be positive")

    @property
    def window(self) -> int:
        """Bytes of file data one item may hold at once."""
        return self.downloads_in_flight * self.download_part_size + self.uploads_in_flight * self.upload_part_size

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1, 2, ...)."""
        return float(min(self.retry_delay_max, self.retry_delay * 2 ** (attempt - 1)))


DEFAULT_OPTIONS = TransferOptions()
