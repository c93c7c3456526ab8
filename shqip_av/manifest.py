"""JSONL manifests: one JSON record per line, read lazily, written crash-safe.

Two write patterns:

- ``JsonlAppender``: append-only manifests (raw/manifest.jsonl, clips/manifest.jsonl). Each
  record is one ``write`` of one complete line followed by fsync. If a run was killed in the
  middle of a line, opening the appender again cuts the file back to its last complete line,
  so no reader ever sees half a record and a rerun re-appends the lost one.
- ``write_jsonl`` / ``KeyedJsonl``: files rewritten as a whole (rejections, takedown edits),
  via temporary file + rename.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from shqip_av import ShqipError
from shqip_av.files import atomic_output


class ManifestError(ShqipError):
    pass


def dumps(record: dict) -> str:
    # sort_keys: the same record is the same bytes, so reruns are byte-for-byte no-ops
    return json.dumps(record, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def read_jsonl(path: str | os.PathLike) -> Iterator[dict]:
    """Records of a JSONL file, lazily; a missing file has none. A trailing partial line
    (a killed writer) is ignored; a corrupt complete line is an error naming the line."""
    path = Path(path)
    if not path.exists():
        return
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            if not raw.endswith(b"\n"):
                return  # partial last line: never committed
            if not raw.strip():
                continue
            try:
                yield json.loads(raw)
            except json.JSONDecodeError as e:
                raise ManifestError(f"{path}:{number}: not a JSON record ({e.msg})") from None


def _repair_tail(path: Path) -> None:
    """Cut a file back to its last complete line (after a writer was killed mid-line)."""
    if not path.exists():
        return
    size = path.stat().st_size
    if size == 0:
        return
    with open(path, "rb+") as fh:
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return
        # scan backwards for the last newline
        pos = size
        step = 1 << 16
        keep = 0
        while pos > 0:
            start = max(0, pos - step)
            fh.seek(start)
            block = fh.read(pos - start)
            idx = block.rfind(b"\n")
            if idx >= 0:
                keep = start + idx + 1
                break
            pos = start
        fh.truncate(keep)
        fh.flush()
        os.fsync(fh.fileno())


class JsonlAppender:
    """Append complete records to a JSONL file, one fsynced line each."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _repair_tail(self.path)

    def append(self, record: dict) -> None:
        line = (dumps(record) + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(fd, line)
            if written != len(line):
                raise ManifestError(f"{self.path}: short write ({written} of {len(line)} bytes); disk full?")
            os.fsync(fd)
        finally:
            os.close(fd)


def write_jsonl(path: str | os.PathLike, records: Iterable[dict]) -> Path:
    """Replace a JSONL file atomically."""
    with atomic_output(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            for record in records:
                fh.write(dumps(record) + "\n")
    return Path(path)


class KeyedJsonl:
    """A JSONL file holding at most one record per key, rewritten atomically on change.

    Used for rejection lists: a rerun that rejects the same source for the same reason
    changes nothing, and a source that later succeeds loses its rejection.
    """

    def __init__(self, path: str | os.PathLike, key: Callable[[dict], Any]):
        self.path = Path(path)
        self._key = key
        self._records: dict[Any, dict] = {self._key(r): r for r in read_jsonl(self.path)}

    def __contains__(self, key: Any) -> bool:
        return key in self._records

    def __len__(self) -> int:
        return len(self._records)

    def get(self, key: Any) -> dict | None:
        return self._records.get(key)

    def values(self) -> list[dict]:
        return list(self._records.values())

    def put(self, record: dict, same: Callable[[dict, dict], bool] | None = None) -> bool:
        """Store ``record`` under its key; rewrite only if it differs (per ``same``)."""
        key = self._key(record)
        old = self._records.get(key)
        if old is not None and (same(old, record) if same else old == record):
            return False
        self._records[key] = record
        self._flush()
        return True

    def discard(self, key: Any) -> bool:
        if key not in self._records:
            return False
        del self._records[key]
        self._flush()
        return True

    def remove_where(self, pred: Callable[[dict], bool]) -> int:
        doomed = [k for k, r in self._records.items() if pred(r)]
        for k in doomed:
            del self._records[k]
        if doomed:
            self._flush()
        return len(doomed)

    def _flush(self) -> None:
        write_jsonl(self.path, self._records.values())
