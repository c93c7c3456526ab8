"""Sync-expert training data from the shards: decoded samples and deterministic pairs.

A sample is decoded once (crop video → grey lower halves at the expert's size, audio → log-mel
with ``shqip_av.components.audio_frontend``). A pair is drawn from an index with its own random generator, so the
pairs of step N are the same in a run that was killed and resumed: positives are aligned windows,
negatives the same utterance's audio shifted by at least ``min_shift`` frames, or the audio of
another speaker. Samples whose audio is shorter than their frames, or with fewer frames than a
window, are skipped and counted.
"""

from __future__ import annotations

import glob
import json
import tempfile
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from shqip_av.components.sync_expert import lower_halves
from shqip_av import ShqipError
from shqip_av.components import audio_frontend as frontend
from shqip_av.files import DatasetRoot
from shqip_av.log import get_logger, progress
from shqip_av.media import decode_wav, iter_frames
from shqip_av.schema import read_tar_samples

log = get_logger(__name__)


@dataclass
class DecodedSample:
    key: str
    speaker: str
    video: np.ndarray  # (N, s/2, s) float16 grey lower halves in [0, 1]
    mel: np.ndarray  # (80, M) float32 log-mel of the whole utterance


@dataclass
class SplitData:
    samples: list[DecodedSample] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)


def decode_media(members: dict[str, bytes], frames: int):
    """(metadata, 16 kHz wave, RGB crops (N, 256, 256, 3)) of a shard sample, or the reason it
    cannot be used: the one place the expert's and the generator's data are decoded."""
    if not {"mp4", "wav", "json"} <= set(members):
        return "missing-members"
    meta = json.loads(members["json"])
    fps = float(meta.get("fps", frontend.VIDEO_FPS))
    if abs(fps - frontend.VIDEO_FPS) > 1e-6:
        return "not-25-fps"
    try:
        wave, rate = decode_wav(members["wav"])
    except ShqipError:
        return "bad-audio"
    if rate != frontend.SAMPLE_RATE:
        return "bad-audio"
    with tempfile.NamedTemporaryFile(suffix=".mp4") as tmp:
        tmp.write(members["mp4"])
        tmp.flush()
        try:
            crops = np.stack(list(iter_frames(tmp.name)))
        except (ShqipError, ValueError):
            return "bad-video"
    if len(crops) < frames:
        return "fewer-frames-than-a-window"
    if len(wave) < (len(crops) - 1) * frontend.SAMPLE_RATE / fps:
        return "audio-shorter-than-frames"
    return meta, wave, crops


def decode_sample(key: str, members: dict[str, bytes], frames: int, size: int) -> DecodedSample | str:
    """A DecodedSample, or the reason it cannot be used."""
    decoded = decode_media(members, frames)
    if isinstance(decoded, str):
        return decoded
    meta, wave, crops = decoded
    mel = frontend.log_mel(wave).numpy()
    return DecodedSample(key, str(meta.get("speaker")), lower_halves(crops, size).astype(np.float16), mel)


def load_split(root: str, split: str, frames: int, size: int, limit: int = 0) -> SplitData:
    """Decode every sample of a shard split (CPU-sized data; the samples stay in memory)."""
    droot = DatasetRoot(root)
    tars = sorted(glob.glob(str(droot.path("shards", split) / "*.tar")))
    data = SplitData()
    for tar in tars:
        for key, members in progress(list(read_tar_samples(tar)), desc=f"decoding {split}", unit="sample"):
            decoded = decode_sample(key, members, frames, size)
            if isinstance(decoded, str):
                data.skipped[decoded] += 1
            else:
                data.samples.append(decoded)
            if limit and len(data.samples) >= limit:
                return data
    return data


class PairDataset:
    """Index → (video window, mel window, label, shift). Deterministic per (seed, index)."""

    def __init__(
        self,
        samples: list[DecodedSample],
        frames: int,
        *,
        seed: int,
        min_shift: int = 3,
        max_shift: int = 15,
        other_speaker_share: float = 0.25,
        length: int = 1 << 30,
        start: int = 0,
    ):
        if not samples:
            raise ShqipError("no usable samples to train the sync expert on")
        self.samples, self.frames, self.seed = samples, frames, seed
        self.min_shift, self.max_shift, self.other_share = min_shift, max_shift, other_speaker_share
        self.length, self.start = length, start
        self.mel_len = frontend.mel_length(frames)

    def __len__(self) -> int:
        return self.length - self.start

    def _window(self, sample: DecodedSample, t: int):
        return frontend.mel_window(sample.mel, t, self.frames)

    def __getitem__(self, i: int):
        index = self.start + i
        rng = np.random.default_rng((self.seed, index))
        sample = self.samples[int(rng.integers(len(self.samples)))]
        n = len(sample.video)
        t = int(rng.integers(0, n - self.frames + 1))
        video = sample.video[t : t + self.frames].astype(np.float32)
        label, shift = 1.0, 0
        if rng.random() < 0.5:
            label = 0.0
            others = [s for s in self.samples if s.speaker != sample.speaker]
            if others and rng.random() < self.other_share:
                other = others[int(rng.integers(len(others)))]
                mel = self._window(other, int(rng.integers(0, max(1, len(other.video) - self.frames + 1))))
                shift = 999  # foreign audio
                return video, mel.astype(np.float32), np.float32(label), shift
            choices = [s for s in range(-self.max_shift, self.max_shift + 1) if abs(s) >= self.min_shift]
            shift = int(choices[int(rng.integers(len(choices)))])
        mel = self._window(sample, t + shift)
        return video, mel.astype(np.float32), np.float32(label), shift


def collate(batch):
    import torch

    video = torch.from_numpy(np.stack([b[0] for b in batch]))
    mel = torch.from_numpy(np.stack([b[1] for b in batch]))
    label = torch.from_numpy(np.stack([b[2] for b in batch]))
    shift = torch.tensor([b[3] for b in batch])
    return video, mel, label, shift


def summary(data: SplitData) -> dict:
    return {
        "samples": len(data.samples),
        "skipped": dict(data.skipped),
        "speakers": len({s.speaker for s in data.samples}),
        "frames": int(sum(len(s.video) for s in data.samples)),
    }
