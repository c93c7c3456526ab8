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

META_FIELDS = (
    "schema_version",
    "video_id",
    "source_url",
    "license",
    "consent",
    "speaker",
    "diarization_label",
    "start",
    "end",
    "fps",
    "num_frames",
    "transcript_source",
    "quality",
)
QUALITY_FIELDS = ("eye_distance_px", "sharpness", "sync_confidence", "sync_offset_frames", "sync_method")


class SchemaError(ShqipError):
    pass


def sample_key(video_id: str, track: int | str, start: float) -> str:
    """``<video_id>_<track>_<start_ms>`` (rejections that concern no face track use track "u"); dots are replaced because WebDataset splits the key from
    the member suffix at the first dot."""
    return f"{video_id.replace('.', '-')}_{track}_{int(round(start * 1000))}"


def split_member(name: str) -> tuple[str, str]:
    """A tar member name → (sample key, member suffix), split where WebDataset splits: at the
    first dot of the file name (so "k_0_480.landmarks.npy" → ("k_0_480", "landmarks.npy"))."""
    key, _, suffix = name.rsplit("/", 1)[-1].partition(".")
    return key, suffix


def read_tar_samples(path, wanted=None):
    """(key, {suffix: bytes}) per sample of a WebDataset tar, in order. With ``wanted`` (suffixes),
    only those members are read; the others map to None."""
    import tarfile

    samples: dict[str, dict] = {}
    with tarfile.open(path) as tar:
        for member in tar:
            if not member.isfile():
                continue
            key, suffix = split_member(member.name)
            read = wanted is None or suffix in wanted
            samples.setdefault(key, {})[suffix] = tar.extractfile(member).read() if read else None
    yield from samples.items()


def tar_member_spans(path) -> dict[str, dict[str, tuple[int, int]]]:
    """{key: {suffix: (byte offset, size)}} of a WebDataset tar's members: what streaming readers
    keep to read one sample later without scanning the tar again (``read_member_spans``)."""
    import tarfile

    spans: dict[str, dict] = {}
    with tarfile.open(path) as tar:
        for member in tar:
            if member.isfile():
                key, suffix = split_member(member.name)
                spans.setdefault(key, {})[suffix] = (member.offset_data, member.size)
    return spans


def read_member_spans(path, spans: dict[str, tuple[int, int]]) -> dict[str, bytes]:
    """{suffix: bytes} of one sample, read at the spans ``tar_member_spans`` gave."""
    out = {}
    with open(path, "rb") as f:
        for suffix, (offset, size) in spans.items():
            f.seek(offset)
            out[suffix] = f.read(size)
    return out


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


# Landmarks of the whole face in crop coordinates: the template puts eyes and nose well inside
# the crop; the face outline may reach a little past its edges. Anything further out means the
# alignment failed (a sideways face, a tracking jump), and the sample is not valid.
LANDMARK_MARGIN = 0.5  # of the crop side, either side
MIN_CROP, MAX_CROP = 64, 1024


def check_arrays(landmarks, affine, num_frames: int, crop_size: int) -> None:
    """Raise SchemaError naming the first problem of a sample's arrays (filter writes, shard packs)."""
    import numpy as np

    if not MIN_CROP <= crop_size <= MAX_CROP:
        raise SchemaError(f"crop size {crop_size} is outside {MIN_CROP}..{MAX_CROP}")
    lm, af = np.asarray(landmarks), np.asarray(affine)
    if lm.dtype != np.float32 or lm.ndim != 3 or lm.shape[1:] != (478, 2):
        raise SchemaError(f"landmarks are {lm.dtype} {lm.shape}, expected float32 (T, 478, 2)")
    if af.dtype != np.float32 or af.ndim != 3 or af.shape[1:] != (2, 3):
        raise SchemaError(f"affine is {af.dtype} {af.shape}, expected float32 (T, 2, 3)")
    if not len(lm) == len(af) == num_frames or num_frames < 1:
        raise SchemaError(f"frame counts differ: landmarks {len(lm)}, affine {len(af)}, num_frames {num_frames}")
    if not (np.isfinite(lm).all() and np.isfinite(af).all()):
        raise SchemaError("landmarks or affine hold NaN or infinite values")
    lo, hi = -LANDMARK_MARGIN * crop_size, (1 + LANDMARK_MARGIN) * crop_size
    if lm.min() < lo or lm.max() > hi:
        raise SchemaError(
            f"landmarks reach {lm.min():.0f}..{lm.max():.0f} px, outside {lo:.0f}..{hi:.0f} "
            f"for a {crop_size} px crop (the alignment failed)"
        )
    scale = np.sqrt(np.abs(np.linalg.det(af[:, :, :2].astype(np.float64))))
    if (scale <= 0).any():
        raise SchemaError("an affine transform is degenerate (zero scale)")


def check_meta_values(meta: dict[str, Any]) -> None:
    """Value ranges of the metadata, beyond the fields being present (``check_meta``)."""
    import math

    check_meta(meta)
    if meta["start"] < 0:
        raise SchemaError(f"sample start {meta['start']} is negative")
    if not (isinstance(meta["fps"], (int, float)) and meta["fps"] > 0):
        raise SchemaError(f"fps {meta['fps']!r} is not positive")
    if not (isinstance(meta["num_frames"], int) and meta["num_frames"] >= 1):
        raise SchemaError(f"num_frames {meta['num_frames']!r} is not a positive integer")
    for name in ("eye_distance_px", "sharpness", "sync_confidence"):
        value = meta["quality"][name]
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise SchemaError(f"quality.{name} {value!r} is not a finite number")


def check_sample_files(files: dict, meta: dict[str, Any]) -> None:
    """Check a staged sample on disk (``files``: member → path) against its metadata: array
    shapes and ranges, the crop video's size and frame count, the audio format and length."""
    import numpy as np

    from shqip_av.media import MediaError, probe, wav_header

    check_meta_values(meta)
    try:
        info = probe(files["mp4"])
    except MediaError as e:
        raise SchemaError(f"crop video: {e}") from None
    if info.width != info.height or not info.has_video or info.has_audio:
        raise SchemaError(
            f"crop video is {info.width}x{info.height}{' with audio' if info.has_audio else ''}; "
            f"expected a square video without audio"
        )
    if info.num_frames and info.num_frames != meta["num_frames"]:
        raise SchemaError(f"crop video has {info.num_frames} frames, metadata says {meta['num_frames']}")
    try:
        lm = np.load(files["landmarks.npy"], allow_pickle=False, mmap_mode="r")
        af = np.load(files["affine.npy"], allow_pickle=False, mmap_mode="r")
    except (OSError, ValueError) as e:
        raise SchemaError(f"unreadable .npy member: {e}") from None
    check_arrays(lm, af, meta["num_frames"], info.width)
    with open(files["wav"], "rb") as fh:
        try:
            header = wav_header(fh.read())
        except MediaError as e:
            raise SchemaError(f"audio: {e}") from None
    if (header.sample_rate, header.channels, header.sample_width) != (SAMPLE_RATE, 1, 2):
        raise SchemaError(
            f"audio is {header.sample_rate} Hz, {header.channels} channel(s), "
            f"{8 * header.sample_width}-bit; expected {SAMPLE_RATE} Hz mono 16-bit"
        )
    expected = meta["num_frames"] / meta["fps"]
    if abs(header.seconds - expected) > 1.5 / meta["fps"]:
        raise SchemaError(f"audio lasts {header.seconds:.3f} s, the video {expected:.3f} s")
