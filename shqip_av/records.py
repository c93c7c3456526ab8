"""Typed records passed between stages (DESIGN.md §2).

``RawVideo`` is one line of raw/manifest.jsonl; ``Rejection`` one line of any rejected.jsonl.
Records are plain dataclasses with ``to_dict``/``from_dict`` so that manifests stay readable JSON
and downstream stages get attribute access and a clear error on a malformed line.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from dataclasses import dataclass, field
from typing import Any

from shqip_av import ShqipError

CONSENT_KINDS = ("licence", "release", "channel-permission")


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass
class Consent:
    """An explicit consent basis recorded by the collector (sources.yaml)."""

    kind: str  # one of CONSENT_KINDS
    subject: str  # who consented: the person filmed, or the channel owner
    reference: str  # where the evidence is kept (document id, e-mail, URL of the licence statement)
    granted: str | None = None  # ISO date

    def __post_init__(self):
        if self.kind not in CONSENT_KINDS:
            raise ShqipError(f"consent kind must be one of {', '.join(CONSENT_KINDS)}, got {self.kind!r}")
        for name in ("subject", "reference"):
            if not str(getattr(self, name) or "").strip():
                raise ShqipError(f"consent record needs a non-empty '{name}'")
        if self.granted is not None:
            self.granted = str(self.granted)


@dataclass
class Rights:
    license: str | None  # normalised licence name ("CC BY 4.0") when one is known
    consent: Consent | None  # explicit consent record, when the basis is not the licence alone
    basis: str = "licence"  # "licence" (allow-listed licence) or "consent" (explicit record)
    restriction: str | None = None  # e.g. "never publish": cards publish refuses the data and its models


@dataclass
class SourceInfo:
    url: str
    extractor: str  # yt-dlp extractor key in lower case ("youtube", "generic") or "local"
    id: str | None = None  # the platform's own id
    channel_id: str | None = None
    channel: str | None = None
    title: str | None = None
    upload_date: str | None = None  # ISO date
    language: str | None = None
    speaker: str | None = None  # who is on camera, when the collector knows (sources.yaml 'speaker')
    dialect: str | None = None  # gheg, tosk or mixed, when the collector knows (sources.yaml 'dialect')


@dataclass
class RawFiles:
    video: str  # root-relative paths
    audio: str
    info: str
    captions: dict[str, str] = field(default_factory=dict)


@dataclass
class MediaSummary:
    duration: float
    fps: float  # average frame rate of the stored video
    width: int  # stored (upright) frame size
    height: int
    rotation: int  # rotation still to apply to the stored frames (0 after normalisation)
    vcodec: str | None
    acodec: str | None
    sha256: str
    variable_frame_rate: bool = False
    source_rotation: int = 0  # rotation metadata of the file as it was downloaded


@dataclass
class RawVideo:
    video_id: str
    source: SourceInfo
    rights: Rights
    files: RawFiles
    media: MediaSummary
    collected_at: str
    version: str
    # what is known of the recording's audio/video sync before filter measures it: the verdict of a
    # table of clips (in-sync / late / early / unclear / silent) and a correction applied at collect
    sync: dict | None = None

    def to_dict(self) -> dict:
        record = dataclasses.asdict(self)
        if record["rights"].get("restriction") is None:  # unrestricted records stay as they were
            record["rights"].pop("restriction", None)
        if record.get("sync") is None:
            record.pop("sync", None)
        return record

    @classmethod
    def from_dict(cls, d: dict) -> "RawVideo":
        try:
            rights = dict(d["rights"])
            consent = rights.get("consent")
            rights["consent"] = Consent(**consent) if consent else None
            return cls(
                video_id=d["video_id"],
                source=SourceInfo(**d["source"]),
                rights=Rights(**rights),
                files=RawFiles(**d["files"]),
                media=MediaSummary(**d["media"]),
                collected_at=d["collected_at"],
                version=d["version"],
                sync=d.get("sync"),
            )
        except (KeyError, TypeError) as e:
            raise ShqipError(f"malformed raw manifest record {d.get('video_id', '?')!r}: {e}") from None


@dataclass
class Rejection:
    """Why something did not make it to the next stage; ``value`` is the measured quantity."""

    key: str  # what was rejected: a video id, or the source URL/path when no id is known yet
    stage: str  # "collect", "filter.probe", "filter.faces", ...
    reason: str  # a stable reason code ("no-consent", "not-a-video", ...)
    detail: str = ""
    value: Any = None
    video_id: str | None = None
    url: str | None = None
    at: str = field(default_factory=utc_now)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @staticmethod
    def same(a: dict, b: dict) -> bool:
        """Equal apart from the time stamp (so a rerun's identical verdict is a no-op)."""
        return {k: v for k, v in a.items() if k != "at"} == {k: v for k, v in b.items() if k != "at"}
