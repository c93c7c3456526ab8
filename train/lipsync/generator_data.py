"""Generator training data from the shards: per sample its canonical crops at the generator's
size, its landmarks, its log-mel and a reference picker; windows drawn deterministically per index
(a resumed run sees the same windows). Samples that cannot serve are skipped and counted:
no landmarks, fewer frames than a window, or no frame outside the references' exclusion zone.
"""

from __future__ import annotations

import glob
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from shqip_av import ShqipError
from shqip_av.components import audio_frontend as frontend
from shqip_av.files import DatasetRoot
from shqip_av.log import progress
from shqip_av.schema import CROP_SIZE, read_tar_samples, video_id_of_key
from train.lipsync.expert_data import decode_media
from shqip_av.components.lipsync_generator import frame_audio
from train.lipsync.references import ReferencePicker


@dataclass
class FaceSample:
    key: str
    speaker: str
    video_id: str
    crops: np.ndarray  # (N, S, S, 3) uint8
    landmarks: np.ndarray  # (N, 478, 2) float32, in the generator's crop coordinates
    mel: np.ndarray  # (80, M) log-mel of the utterance
    picker: ReferencePicker


@dataclass
class FaceData:
    samples: list[FaceSample] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)

    def summary(self) -> dict:
        return {
            "samples": len(self.samples),
            "skipped": dict(self.skipped),
            "speakers": len({s.speaker for s in self.samples}),
            "frames": int(sum(len(s.crops) for s in self.samples)),
        }


def decode_face_sample(
    key: str, members: dict, size: int, frames: int, references: int, exclude: int, seed: int = 0
) -> FaceSample | str:
    import cv2

    if not members.get("landmarks.npy"):
        return "no-landmarks"
    decoded = decode_media(members, frames)
    if isinstance(decoded, str):
        return decoded
    meta, wave, crops = decoded
    import io

    landmarks = np.load(io.BytesIO(members["landmarks.npy"])).astype(np.float32)
    if len(landmarks) != len(crops):
        return "landmarks-do-not-match-frames"
    if len(crops) < frames + 2 * exclude + 1:
        return "too-short-for-references"
    small = np.stack([cv2.resize(c, (size, size), interpolation=cv2.INTER_AREA) for c in crops])
    picker = ReferencePicker(landmarks, references, exclude, seed)
    return FaceSample(
        key,
        str(meta.get("speaker")),
        str(meta.get("video_id")),
        small,
        landmarks * (size / CROP_SIZE),
        frontend.log_mel(wave).numpy(),
        picker,
    )


def load_faces(
    root: str,
    split: str,
    *,
    size: int,
    frames: int,
    references: int,
    exclude: int,
    limit: int = 0,
    videos: set[str] | None = None,
) -> FaceData:
    """Decode the samples of a shard split (those of the given video ids only, when given)."""
    data = FaceData()
    for tar in sorted(glob.glob(str(DatasetRoot(root).path("shards", split) / "*.tar"))):
        for key, members in progress(list(read_tar_samples(tar)), desc=f"decoding {split}", unit="sample"):
            if videos is not None and video_id_of_key(key) not in videos:
                continue
            sample = decode_face_sample(key, members, size, frames, references, exclude)
            if isinstance(sample, str):
                data.skipped[sample] += 1
            else:
                data.samples.append(sample)
            if limit and len(data.samples) >= limit:
                return data
    return data


def to_chw(crops: np.ndarray) -> np.ndarray:
    """(..., S, S, 3) uint8 → (..., 3, S, S) float32 in [0, 1]."""
    return np.moveaxis(crops.astype(np.float32) / 255.0, -1, -3)


def sample_window(sample: FaceSample, first: int, frames: int):
    """The training item of the window of ``frames`` frames starting at ``first`` (``WindowDataset``)."""
    refs = sample.picker.pick(first, frames)
    target = sample.crops[first : first + frames]
    return (
        to_chw(target),
        to_chw(sample.crops[refs]),
        frame_audio(sample.mel, first, frames).astype(np.float32),
        sample.landmarks[first : first + frames],
        frontend.mel_window(sample.mel, first, frames).astype(np.float32),
    )


class WindowDataset:
    """Index → (frames (T,3,S,S), references (K,3,S,S), per-frame mel (T,80,M), landmarks
    (T,478,2), the window's own mel (80, mel_length(T)) for the sync expert), deterministic per
    (seed, index)."""

    def __init__(self, samples: list[FaceSample], frames: int, *, seed: int, length: int, start: int = 0):
        if not samples:
            raise ShqipError("no usable samples to train the generator on")
        self.samples, self.frames, self.seed, self.length, self.start = samples, frames, seed, length, start

    def __len__(self) -> int:
        return self.length - self.start

    def window(self, sample: FaceSample, first: int):
        return sample_window(sample, first, self.frames)

    def __getitem__(self, i: int):
        rng = np.random.default_rng((self.seed, self.start + i))
        sample = self.samples[int(rng.integers(len(self.samples)))]
        first = int(rng.integers(0, len(sample.crops) - self.frames + 1))
        return self.window(sample, first)


def collate(batch):
    import torch

    return tuple(torch.from_numpy(np.stack([b[j] for b in batch])) for j in range(len(batch[0])))
