"""One run per stage and dataset root at a time.

Two filter runs on one root would stage, rename and delete the same files under each other.
Each stage takes an exclusive ``flock`` on ``<root>/.locks/<stage>.lock`` for the whole run
and writes its pid there; a second run is refused with the holder's pid. The kernel releases
the lock when the holder exits for any reason (a crash or ``kill -9`` included), so a stale
lock file never blocks anyone.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from shqip_av import ShqipError
from shqip_av.files import DatasetRoot


class LockedError(ShqipError):
    pass


def _holder(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip() or "unknown process"
    except OSError:
        return "unknown process"


@contextlib.contextmanager
def stage_lock(root: DatasetRoot | str | os.PathLike, stage: str, *, create: bool = False) -> Iterator[Path]:
    """Hold the lock of ``stage`` on ``root`` for the block; refuse at once when it is taken.
    Only a stage that may start a new root (collect) creates it."""
    droot = root if isinstance(root, DatasetRoot) else DatasetRoot(root)
    if not create and not droot.root.is_dir():
        raise ShqipError(f"dataset root {droot.root} does not exist")
    path = droot.path(".locks", f"{stage}.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockedError(
                f"another {stage} run is using {droot.root} ({_holder(path)}); wait for it to "
                f"finish or stop it, then rerun"
            ) from None
        started = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, started {started}: {' '.join(sys.argv[:1])}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def stage_locks(root: DatasetRoot | str | os.PathLike, *stages: str) -> Iterator[None]:
    """Several stages' locks at once (a takedown must not run beside collect, filter or shard)."""
    with contextlib.ExitStack() as stack:
        for stage in stages:
            stack.enter_context(stage_lock(root, stage))
        yield
