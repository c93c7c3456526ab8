"""The takedown list (``<root>/takedown.txt``) that every stage honours.

One entry per line; ``#`` starts a comment. An entry is either prefixed with what it names, or
bare and then matched against all of them:

    video:yt-dQw4w9WgXcQ      a video id of the dataset (or the platform's own id: video:dQw4w9WgXcQ)
    channel:UCxxxxxxxxxxxx    a channel id or channel name: every video of it
    subject:Arta Krasniqi     a consent subject: everything recorded under their consent
    https://example.org/v.mp4 a bare entry: any of the above, or the source URL

Channel names and consent subjects compare case-insensitively; ids and URLs exactly.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from shqip_av import ShqipError
from shqip_av.files import read_text_file

KINDS = ("video", "channel", "subject", "url")
# A training run lists the videos it learned from as sha256 digests (not the ids: the run must
# not become another copy of who is in the data); a takedown marks runs whose list it hits.
TRAINED_ON = "trained_on.json"
WITHDRAWN_MARKER = "withdrawn.json"


def video_digest(video_id: str) -> str:
    return hashlib.sha256(video_id.encode("utf-8")).hexdigest()


@dataclass
class TakedownList:
    entries: list[tuple[str | None, str]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)  # where each entry is in takedown.txt

    @classmethod
    def load(cls, path: str | Path) -> "TakedownList":
        path = Path(path)
        if not path.exists():
            return cls()
        entries, lines = [], []
        for number, line in enumerate(read_text_file(path, "takedown list").splitlines(), 1):
            line = line.split("#", 1)[0].strip() if not line.lstrip().startswith("http") else line.strip()
            if not line:
                continue
            kind, sep, value = line.partition(":")
            if sep and kind.strip().lower() in KINDS and not value.startswith("//"):
                value = value.strip()
                if not value:
                    raise ShqipError(f"{path}:{number}: '{kind}:' needs a value")
                entries.append((kind.strip().lower(), value))
            else:
                entries.append((None, line))
            lines.append(number)
        return cls(entries, lines)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def describe(self, index: int) -> str:
        kind, value = self.entries[index]
        where = f"line {self.lines[index]}: " if index < len(self.lines) else ""
        return f"{where}{kind + ':' if kind else ''}{value}"

    def match(
        self,
        *,
        video_id: str | None = None,
        platform_id: str | None = None,
        url: str | None = None,
        channel_id: str | None = None,
        channel: str | None = None,
        subject: str | None = None,
    ) -> str | None:
        """The entry that withdraws this item, or None."""
        hits = self.matching(
            video_id=video_id, platform_id=platform_id, url=url, channel_id=channel_id, channel=channel, subject=subject
        )
        if not hits:
            return None
        kind, value = self.entries[hits[0]]
        return f"{kind}:{value}" if kind else value

    def matching(
        self,
        *,
        video_id: str | None = None,
        platform_id: str | None = None,
        url: str | None = None,
        channel_id: str | None = None,
        channel: str | None = None,
        subject: str | None = None,
    ) -> list[int]:
        """Indexes of every entry that withdraws this item."""
        exact = {"video": {video_id, platform_id}, "url": {url}, "channel": {channel_id}}
        folded = {"channel": {(channel or "").casefold()}, "subject": {(subject or "").casefold()}}
        hits = []
        for i, (kind, value) in enumerate(self.entries):
            kinds = [kind] if kind else list(KINDS)
            if any(
                value in (exact.get(k) or set()) - {None} or value.casefold() in (folded.get(k) or set()) - {""}
                for k in kinds
            ):
                hits.append(i)
        return hits

    def match_record(self, record: dict) -> str | None:
        """Match a raw-manifest-like record (any stage's record that carries these fields)."""
        return self.match(**_fields(record))

    def matching_record(self, record: dict) -> list[int]:
        return self.matching(**_fields(record))


def _fields(record: dict) -> dict:
    source = record.get("source") or {}
    consent = (record.get("rights") or {}).get("consent") or {}
    return dict(
        video_id=record.get("video_id"),
        platform_id=source.get("id"),
        url=source.get("url") or record.get("url"),
        channel_id=source.get("channel_id"),
        channel=source.get("channel"),
        subject=consent.get("subject") or record.get("speaker"),
    )


def restrictions_of(root, video_ids) -> list[str]:
    """The use restrictions (sources.yaml ``restriction``) of these videos in ``root``'s raw manifest."""
    from shqip_av.files import DatasetRoot
    from shqip_av.manifest import read_jsonl

    manifest, wanted = DatasetRoot(str(root)).path("raw", "manifest.jsonl"), set(video_ids)
    if not manifest.is_file():
        return []
    found = {(r.get("rights") or {}).get("restriction") for r in read_jsonl(manifest) if r.get("video_id") in wanted}
    return sorted(x for x in found if x)


def trained_on_restrictions(folder: Path) -> list[str]:
    """The restrictions a run or bundle folder's trained_on.json carries (empty when none)."""
    import json

    path = Path(folder) / TRAINED_ON
    try:
        return list(json.loads(path.read_text(encoding="utf-8")).get("restrictions") or [])
    except (OSError, ValueError, AttributeError):
        return []


def record_trained_on(run: Path, video_ids, splits: list[str] | None = None, restrictions=()) -> Path:
    """``<run>/trained_on.json``: the sha256 of every video a run learned from (never the ids:
    the run must not become another list of who is in the data). collect.takedown marks the run,
    and any bundle built from it, when one of them is withdrawn."""
    import json

    from shqip_av.files import atomic_write_text

    run.mkdir(parents=True, exist_ok=True)
    record = {"splits": splits, "video_sha256": sorted({video_digest(v) for v in video_ids})}
    if restrictions:  # what the footage may not be used for travels with everything learned from it
        record["restrictions"] = sorted(set(restrictions))
    return atomic_write_text(run / TRAINED_ON, json.dumps(record, indent=1) + "\n")
