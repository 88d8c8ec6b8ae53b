"""``telepi checkpoint copy SRC DST``: move a checkpoint between SQLite and PostgreSQL while no session runs."""

from __future__ import annotations

from pathlib import Path

from telepi.checkpoint import Checkpoint, is_url, open_checkpoint
from telepi.checkpoint.copy import Copied, copy_checkpoint
from telepi.commands.sessionhealth import ago, judge
from telepi.commands.status import shown
from telepi.errors import CheckpointError, PassingError

# A session whose heartbeat is fresh: it may write any moment, and what it writes after the copy is lost.
_RUNNING = ("running", "reconnecting", "flood-wait")


def target(text: str) -> Path | str:
    return text if is_url(text) else Path(text).expanduser().absolute()


def _open_source(where: Path | str) -> Checkpoint:
    """SRC at this telepi's schema: read-only when it already is (a backup on a read-only disk works),
    otherwise upgraded first, as a session of this telepi would."""
    try:
        return open_checkpoint(where, create=False, read_only=True)
    except CheckpointError as exc:
        if "has schema" not in str(exc):
            raise
    return open_checkpoint(where, create=False)


def copy(source_text: str, dest_text: str) -> list[str]:
    """Copy SRC into the empty DST, verified row for row; the lines to print."""
    source, dest = target(source_text), target(dest_text)
    if not is_url(source) and not Path(source).is_file():
        raise CheckpointError(f"{shown(source)} does not exist: name a checkpoint file or a postgresql:// URL.")
    if shown(source) == shown(dest):
        raise CheckpointError(f"SRC and DST are both {shown(source)}: name two different checkpoints.")
    store = _open_source(source)
    try:
        report = store.report(failures=0, skipped_ids=0)
    finally:
        store.close()
    running = [
        f"{s.name} on {s.host} (pid {s.pid}, heartbeat {ago(report.generated_at - s.last_seen)} ago)"
        for s in report.sessions
        if judge(s, report.generated_at).state in _RUNNING
    ]
    if running:
        raise PassingError(
            f"{shown(source)} is in use by {len(running)} running session(s): {'; '.join(running)}: "
            "stop them (systemctl stop telepi@…), then copy again."
        )
    open_checkpoint(dest).close()  # created or upgraded to this telepi's schema, like SRC
    copied = copy_checkpoint(source, dest, source_where=shown(source), dest_where=shown(dest))
    return [f"copied {shown(source)} -> {shown(dest)}, verified row for row:"] + [_line(c) for c in copied]


def _line(copied: Copied) -> str:
    return f"  {copied.table:<16} {copied.rows:>12,} rows"
