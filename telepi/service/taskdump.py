"""What every task of the running session waits on, written to its log on SIGUSR1
(``systemctl kill -s USR1 telepi@session1``, then ``journalctl -u telepi@session1``): for a session that
looks alive but does nothing, the one line per task that says where it sits.

``Task.get_stack`` shows only a task's outermost coroutine; the line follows the chain of awaits down to
the innermost one, which is where the task actually waits."""

from __future__ import annotations

import asyncio
import logging
from types import CoroutineType, FrameType, GeneratorType
from typing import Any

log = logging.getLogger("telepi.tasks")


def awaited_frames(task: asyncio.Task[Any]) -> list[FrameType]:
    """The frames of the task's await chain, outermost first."""
    frames: list[FrameType] = []
    awaited: Any = task.get_coro()
    while awaited is not None and len(frames) < 50:
        if isinstance(awaited, CoroutineType):
            frame, awaited = awaited.cr_frame, awaited.cr_await
        elif isinstance(awaited, GeneratorType):
            frame, awaited = awaited.gi_frame, awaited.gi_yieldfrom
        else:  # a future, or an awaitable of a C extension: the chain ends here
            break
        if frame is not None:
            frames.append(frame)
    return frames


def task_line(task: asyncio.Task[Any]) -> str:
    """``planner: session.py:412 run <- planner.py:88 _next_page <- ...``, innermost last."""
    where = " <- ".join(
        f"{frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.f_lineno} {frame.f_code.co_name}"
        for frame in awaited_frames(task)
    )
    return f"{task.get_name()}: {where or 'not started'}"


def dump_tasks() -> None:
    tasks = sorted(asyncio.all_tasks(), key=lambda t: t.get_name())
    log.warning("%d tasks, each with what it waits on (SIGUSR1):", len(tasks), extra={"event": "task_dump"})
    for task in tasks:
        log.warning("  %s", task_line(task), extra={"event": "task_dump"})
