"""The dataset root, safe paths inside it, atomic writes and checksums.

Every path a stage writes is built by ``DatasetRoot.path``: relative parts only, resolved and
checked to stay under the root, so a name taken from sources.yaml or from remote metadata
(``../../etc``, an absolute path, a symlink out) can never write elsewhere.
Every file is written to a temporary name in the same folder and renamed into place, so a
killed run leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from shqip_av import ShqipError


class UnsafePathError(ShqipError):
    pass


_SAFE_ID = re.compile(r"[^A-Za-z0-9_-]+")


def safe_id(text: str, max_len: int = 80) -> str:
    """A name usable as one path component and as part of a WebDataset key (no dots)."""
    cleaned = _SAFE_ID.sub("_", text).strip("_-")
    return cleaned[:max_len] or "x"


class DatasetRoot:
    """The folder every stage reads from and writes into (``--root``, default ``data/``)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser().resolve()

    def __repr__(self) -> str:
        return f"DatasetRoot({str(self.root)!r})"

    def path(self, *parts: str | os.PathLike) -> Path:
        """``root/parts...``, refusing anything that would resolve outside the root."""
        for part in parts:
            if Path(part).is_absolute():
                raise UnsafePathError(f"absolute path {str(part)!r} is not allowed inside the dataset root")
        candidate = self.root.joinpath(*parts).resolve()
        if candidate != self.root and self.root not in candidate.parents:
            raise UnsafePathError(f"path {'/'.join(map(str, parts))!r} leaves the dataset root {self.root}")
        return candidate

    def relative(self, path: str | os.PathLike) -> str:
        """The root-relative form stored in manifests (portable when the root moves)."""
        return Path(path).resolve().relative_to(self.root).as_posix()

    # Fixed places of DESIGN.md §2
    @property
    def sources(self) -> Path:
        return self.path("sources.yaml")

    @property
    def takedown(self) -> Path:
        return self.path("takedown.txt")


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp creates 0600 files; outputs get the mode any new file would get (0644 with umask 022)
FILE_MODE = 0o666 & ~_current_umask()


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed onto ``path``.

    ``suffix`` keeps an extension on the temporary name for tools that infer the format from
    it (ffmpeg). On any error the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, FILE_MODE)
        os.replace(tmp_path, path)
        _fsync_dir(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_copy(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    with atomic_output(dst) as tmp:
        shutil.copyfile(src, tmp)
    return Path(dst)


MAX_TEXT_BYTES = 16 * 1024 * 1024  # a sources list, takedown list or config is never this big


def read_text_file(path: str | os.PathLike, what: str, max_bytes: int = MAX_TEXT_BYTES) -> str:
    """A user-written UTF-8 text file (sources.yaml, takedown.txt, a config), with one-line errors
    naming the file (and the line of a bad byte) instead of a traceback."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ShqipError(
                f"{path}: {what} is {size / 1e6:.0f} MB; more than {max_bytes / 1e6:.0f} MB is not a {what}"
            )
        data = path.read_bytes()
    except OSError as e:
        raise ShqipError(f"{path}: cannot read the {what}: {e.strerror}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ShqipError(
            f"{path}:{line}: the {what} is not UTF-8 text (byte 0x{data[e.start]:02x}); save it as UTF-8"
        ) from None


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


_WEIGHT_DIGESTS: dict[tuple, str] = {}


def weights_digest(paths: list[Path]) -> str:
    """sha256 of a model's weight file (of the files' sha256s in order when there are several;
    '' for none), computed once per version of the files (path, mtime, size): config
    fingerprints, taken for every video, include it, so retrained weights at the same path are
    noticed."""
    if not paths:
        return ""
    key = tuple((str(Path(p).resolve()), Path(p).stat().st_mtime_ns, Path(p).stat().st_size) for p in paths)
    if key not in _WEIGHT_DIGESTS:
        digests = [sha256_file(p) for p in paths]
        _WEIGHT_DIGESTS[key] = (
            digests[0] if len(digests) == 1 else hashlib.sha256("".join(digests).encode()).hexdigest()
        )
    return _WEIGHT_DIGESTS[key]


def remove_tree(path: Path) -> bool:
    """Remove a folder (or file) if present; True when something was removed."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
        return True
    if path.exists() or path.is_symlink():
        path.unlink()
        return True
    return False


# ------------------------------------------------------------------- folders the project owns
# The rule for output folders given by the user (a bundle's --out, a dub's --out): the project
# writes only files it can show it wrote, and deletes only those. An owner record in the folder
# lists them; a name already present that the record does not list belongs to someone else.
OWNER_RECORD = ".shqip-av-owner.json"


def owned_files(folder: str | os.PathLike, kind: str) -> set[str] | None:
    """The files (folder-relative) that ``kind`` recorded writing in ``folder``; None when the
    folder has no owner record of that kind."""
    import json

    path = Path(folder) / OWNER_RECORD
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("kind") != kind:
        return None
    return {str(f) for f in record.get("files", [])}


def record_owned(folder: str | os.PathLike, kind: str, files: set[str] | list[str]) -> None:
    """Add ``files`` to the owner record of ``kind`` in ``folder``."""
    import json

    known = owned_files(folder, kind) or set()
    atomic_write_text(
        Path(folder) / OWNER_RECORD,
        json.dumps(
            {
                "kind": kind,
                "files": sorted(known | set(files)),
                "note": "files written by shqip-av; it overwrites or deletes only these",
            },
            indent=2,
        )
        + "\n",
    )


def foreign_files(folder: str | os.PathLike, kind: str, names: list[str] | None = None) -> list[str]:
    """Files in ``folder`` that ``kind`` did not record writing: among ``names`` (the ones it is
    about to write), or every file under the folder when ``names`` is None."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    ours = (owned_files(folder, kind) or set()) | {OWNER_RECORD}
    if names is not None:
        return [n for n in names if (folder / n).exists() or (folder / n).is_symlink() if n not in ours]
    present = [p.relative_to(folder).as_posix() for p in sorted(folder.rglob("*")) if not p.is_dir() or p.is_symlink()]
    # a recorded folder owns everything under it
    return [p for p in present if p not in ours and not any(p.startswith(o + "/") for o in ours)]


def inside(folder: str | os.PathLike, relative: str) -> Path:
    """``folder/relative`` when ``relative`` is a relative path that stays inside ``folder`` with
    every symlink resolved; UnsafePathError otherwise (a bundle's component, an upload's file)."""
    base = Path(folder).resolve()
    if not relative or Path(relative).is_absolute() or "\\" in relative or "\0" in relative:
        raise UnsafePathError(f"{relative!r} is not a relative path inside {base}")
    target = (base / relative).resolve()
    if target != base and base not in target.parents:
        raise UnsafePathError(f"{relative!r} leads outside {base}")
    return target


def symlinks_leaving(folder: str | os.PathLike) -> list[str]:
    """Symlinks under ``folder`` (folder-relative) whose target is outside it, or dangling."""
    base = Path(folder).resolve()
    out = []
    for path in sorted(Path(folder).rglob("*")):
        if path.is_symlink():
            target = path.resolve()
            if not target.exists() or (target != base and base not in target.parents):
                out.append(path.relative_to(folder).as_posix())
    return out


def copy_folder(src: str | os.PathLike, dst: str | os.PathLike, skip: tuple[str, ...] = ()) -> None:
    """The one copy rule for folders that leave this machine (a bundle's components, a Space's
    bundle): a symlink that leads out of ``src`` (or nowhere) is refused, never followed, so no file
    outside the source is ever copied in as a regular file; a symlink inside it is copied as the
    file it names; ``dst`` inside ``src`` (a copy into itself) is refused. Raises UnsafePathError."""
    src, dst = Path(src), Path(dst)
    base, target = src.resolve(), dst.resolve()
    if target == base or base in target.parents:
        raise UnsafePathError(f"{dst} is inside {src}: a folder cannot be copied into itself")
    leaving = symlinks_leaving(src)
    if leaving:
        raise UnsafePathError(
            f"{src / leaving[0]} is a symlink to a file outside {src} (or to nothing); "
            "replace it with the file itself or remove it"
        )
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(*skip) if skip else None, symlinks=False)


def forget_owned(folder: str | os.PathLike, kind: str, names: list[str]) -> None:
    """Drop ``names`` from the owner record (their files were removed)."""
    known = owned_files(folder, kind)
    if known is None:
        return
    remaining = known - set(names)
    record = Path(folder) / OWNER_RECORD
    record.unlink()
    record_owned(folder, kind, remaining)
