"""The shard sample schema (DESIGN.md §4), version 1: one home for member names, the sample key
and the metadata record, shared by filter (writes), shard (packs) and training (reads)."""

from __future__ import annotations

import re
from typing import Any

from shqip_av import ShqipError

SCHEMA_VERSION = 1
FPS = 25
CROP_SIZE = 256
SAMPLE_RATE = 16_000

# member suffix → what it holds; ".txt" is present only when a transcript exists
MEMBERS = {
    "mp4": "canonical face crop, 256×256, 25 fps, H.264 yuv420p, no audio",
    "wav": "the utterance's audio, 16 kHz mono PCM s16",
    "txt": "transcript, UTF-8 NFC",
    "json": "metadata: source, licence, consent, speaker, times, quality (DESIGN.md §4)",
    "landmarks.npy": "float32 (T, 478, 2) landmarks in crop coordinates",
    "affine.npy": "float32 (T, 2, 3) frame→crop transform of every frame",
}
REQUIRED = ("mp4", "wav", "json", "landmarks.npy", "affine.npy")
TRANSCRIPT_SOURCES = ("captions", "manual")  # or "asr:<model>"

META_FIELDS = ("schema_version", "video_id", "source_url", "license", "consent", "speaker", "diarization_label",
               "start", "end", "fps", "num_frames", "transcript_source", "quality")
QUALITY_FIELDS = ("eye_distance_px", "sharpness", "sync_confidence", "sync_offset_frames", "sync_method")


class SchemaError(ShqipError):
    pass


def sample_key(video_id: str, track: int | str, start: float) -> str:
    """``<video_id>_<track>_<start_ms>`` (rejections that concern no face track use track "u"); dots are replaced because WebDataset splits the key from
    the member suffix at the first dot."""
    return f"{video_id.replace('.', '-')}_{track}_{int(round(start * 1000))}"


def video_id_of_key(key: str) -> str:
    return key.rsplit("_", 2)[0]


def check_meta(meta: dict[str, Any]) -> None:
    """Raise SchemaError naming the first problem of a sample's metadata."""
    missing = [f for f in META_FIELDS if f not in meta]
    if missing:
        raise SchemaError(f"sample metadata lacks {', '.join(missing)}")
    if meta["schema_version"] != SCHEMA_VERSION:
        raise SchemaError(f"schema_version {meta['schema_version']} (this code reads {SCHEMA_VERSION})")
    missing = [f for f in QUALITY_FIELDS if f not in meta["quality"]]
    if missing:
        raise SchemaError(f"sample quality lacks {', '.join(missing)}")
    src = meta["transcript_source"]
    if src is not None and src not in TRANSCRIPT_SOURCES and not re.match(r"^asr:.+", src):
        raise SchemaError(f"transcript_source {src!r} is not captions, manual or asr:<model>")
    if not meta["end"] > meta["start"]:
        raise SchemaError("sample end is not after its start")
