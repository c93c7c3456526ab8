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

from dataclasses import dataclass, field
from pathlib import Path

from shqip_av import ShqipError

KINDS = ("video", "channel", "subject", "url")


@dataclass
class TakedownList:
    entries: list[tuple[str | None, str]] = field(default_factory=list)

    @classmethod
    def load(cls, path: str | Path) -> "TakedownList":
        path = Path(path)
        if not path.exists():
            return cls()
        entries = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
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
        return cls(entries)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def match(self, *, video_id: str | None = None, platform_id: str | None = None, url: str | None = None,
              channel_id: str | None = None, channel: str | None = None, subject: str | None = None) -> str | None:
        """The entry that withdraws this item, or None."""
        exact = {"video": {video_id, platform_id}, "url": {url}, "channel": {channel_id}}
        folded = {"channel": {(channel or "").casefold()}, "subject": {(subject or "").casefold()}}
        for kind, value in self.entries:
            kinds = [kind] if kind else list(KINDS)
            for k in kinds:
                if value in (exact.get(k) or set()) - {None} or value.casefold() in (folded.get(k) or set()) - {""}:
                    return f"{kind}:{value}" if kind else value
        return None

    def match_record(self, record: dict) -> str | None:
        """Match a raw-manifest-like record (any stage's record that carries these fields)."""
        source = record.get("source") or {}
        consent = ((record.get("rights") or {}).get("consent") or {})
        return self.match(video_id=record.get("video_id"), platform_id=source.get("id"), url=source.get("url"),
                          channel_id=source.get("channel_id"), channel=source.get("channel"),
                          subject=consent.get("subject") or record.get("speaker"))
