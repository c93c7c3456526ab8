"""The sync expert (DESIGN.md §7.2): a SyncNet-style pair of encoders, and the LSE metrics.

A component of the foundation: filter scores with it (``sync.method: <folder or Hub id>``),
train.lipsync trains it and uses it as the generator's sync loss, export scores dubs with it;
none of them owns it.

- Video: the lower half of T consecutive canonical crops (the crop is canonical, so the mouth
  region is fixed), grey, stacked as T channels.
- Audio: the log-mel window of those frames from ``shqip_av.components.audio_frontend`` (80 × ceil(3.2·T)).
- Each encoder ends in an L2-normalised embedding; the distance of a pair is the Euclidean
  distance of the embeddings (0..2), the score their cosine similarity.

LSE, as syncnet_python defines it: for each video window, the distance to the audio at every
offset within ±K frames; the mean over windows per offset; LSE-D is the minimum of that curve,
LSE-C the median minus the minimum. One difference, on purpose: the offset's sign follows
filter's convention (positive = the audio is late), where syncnet_python reports the opposite.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from shqip_av.components import SYNC_EXPERT, load_strict, mark_kind
from shqip_av.components import audio_frontend as frontend


@dataclass
class SyncExpertConfig:
    frames: int = 5  # T video frames per window
    crop_size: int = 96  # canonical crops are resized to this side; the lower half is used
    channels: tuple[int, ...] = (32, 64, 128, 256)  # conv widths of both encoders
    embedding: int = 256

    @property
    def mel_frames(self) -> int:
        return frontend.mel_length(self.frames)


def _block(cin: int, cout: int, stride) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class SyncExpert(
    nn.Module, PyTorchModelHubMixin, library_name="shqip-av", tags=["shqip-av", "sync-expert", "audio-visual"]
):
    """``forward(video, mel)`` → (video embedding, audio embedding), each (B, embedding), unit length.

    video: (B, T, H/2, H) grey lower halves in [0, 1]; mel: (B, 80, ceil(3.2·T))."""

    def __init__(self, frames: int = 5, crop_size: int = 96, channels=(32, 64, 128, 256), embedding: int = 256):
        super().__init__()
        self.config_ = SyncExpertConfig(frames, crop_size, tuple(channels), embedding)
        widths = [frames, *channels]
        self.video = nn.Sequential(
            *[_block(a, b, 2) for a, b in zip(widths[:-1], widths[1:])],
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(channels[-1], embedding),
        )
        widths = [1, *channels]
        # mel windows are short in time (16 columns): stride over frequency only after the first block
        self.audio = nn.Sequential(
            *[_block(a, b, (2, 1) if i else 1) for i, (a, b) in enumerate(zip(widths[:-1], widths[1:]))],
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(channels[-1], embedding),
        )

    @property
    def sync_config(self) -> SyncExpertConfig:
        return self.config_

    def embed_video(self, video: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.video(video), dim=-1)

    def embed_audio(self, mel: torch.Tensor) -> torch.Tensor:
        # log-mel values are around -11..+5: a fixed affine keeps them near unit scale
        return nn.functional.normalize(self.audio(((mel + 4.0) / 4.0).unsqueeze(1)), dim=-1)

    def forward(self, video: torch.Tensor, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.embed_video(video), self.embed_audio(mel)

    @classmethod
    def from_pretrained(cls, source: str, *, option: str = "expert", **kwargs) -> "SyncExpert":
        """From a model folder, a run folder (runs/lipsync/<name>) or a Hub id: a folder of another
        kind is one line naming what it is, and every tensor must match (``load_strict``)."""
        return load_strict(cls, str(source), SYNC_EXPERT, option, **kwargs)

    def save_pretrained(self, save_directory: str | Path, *args: Any, **kwargs: Any) -> Any:
        out = super().save_pretrained(save_directory, *args, **kwargs)
        mark_kind(save_directory, SYNC_EXPERT)  # config.json says what the folder is
        return out


def build_expert(config: SyncExpertConfig | dict) -> SyncExpert:
    return SyncExpert(**(asdict(config) if isinstance(config, SyncExpertConfig) else dict(config)))


def load_expert(source: str, option: str = "expert") -> SyncExpert:
    """``SyncExpert.from_pretrained`` with the option name used in its one-line errors."""
    return SyncExpert.from_pretrained(source, option=option)


def lower_halves(crops: np.ndarray, size: int) -> np.ndarray:
    """(N, H, W, 3) uint8 canonical crops → (N, size/2, size) float32 grey lower halves in [0, 1]."""
    import cv2

    out = np.empty((len(crops), size // 2, size), np.float32)
    for i, crop in enumerate(crops):
        grey = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2GRAY)
        small = cv2.resize(grey, (size, size), interpolation=cv2.INTER_AREA)
        out[i] = small[size // 2 :] / 255.0
    return out


@dataclass
class LSE:
    distance: float  # LSE-D: the minimum of the mean distance per offset
    confidence: float  # LSE-C: median minus minimum
    offset: int  # frames; positive = the audio is late
    curve: list[float]  # mean distance per offset, -K..K


def lse_from_distances(distances: np.ndarray) -> LSE:
    """``distances[i, j]``: video window i against the audio shifted by j - K frames (K = the
    number of offsets either way). Averaged over the windows (NaN entries, where the audio runs
    out, are left out), then syncnet_python's minimum and median − minimum."""
    distances = np.asarray(distances, dtype=np.float64)
    k = (distances.shape[1] - 1) // 2
    curve = np.nanmean(distances, axis=0)
    best = int(np.nanargmin(curve))
    minimum = float(curve[best])
    return LSE(
        round(minimum, 4), round(float(np.nanmedian(curve)) - minimum, 4), best - k, [round(float(c), 4) for c in curve]
    )


def _batches(items, size: int):
    items = list(items)
    for i in range(0, len(items), size):
        yield items[i : i + size]


def expert_lse(model, halves, mel, pad_before: int, pad_after: int, max_offset: int, device: str = "cpu") -> LSE | None:
    """LSE of one stretch of video: ``halves`` (N, s/2, s) lower halves of its crops, ``mel`` the
    log-mel of its audio with ``pad_before``/``pad_after`` extra frames either side. Each window of
    T frames is compared with the audio at every offset within ±max_offset; offsets that fewer
    than half of the windows can see are left out. None when the stretch is shorter than a window.
    The one implementation filter, training calibration and evaluation share."""
    t, k = model.sync_config.frames, max_offset
    halves = torch.as_tensor(np.asarray(halves, dtype=np.float32))
    n = len(halves) - t + 1
    if n < 1:
        return None
    starts = range(0, pad_before + len(halves) + pad_after - t + 1)  # audio windows, in audio frames
    with torch.no_grad():
        video = (
            torch.cat(
                [
                    model.embed_video(torch.stack([halves[i : i + t] for i in batch]).to(device))
                    for batch in _batches(range(n), 256)
                ]
            )
            .cpu()
            .numpy()
        )
        audio = (
            torch.cat(
                [
                    model.embed_audio(
                        torch.stack([torch.as_tensor(frontend.mel_window(mel, j, t)) for j in batch]).float().to(device)
                    )
                    for batch in _batches(starts, 256)
                ]
            )
            .cpu()
            .numpy()
        )
    distances = np.full((n, 2 * k + 1), np.nan)
    for col, offset in enumerate(range(-k, k + 1)):
        index = np.arange(n) + pad_before + offset  # the audio window `offset` frames later
        ok = (index >= 0) & (index < len(audio))
        distances[ok, col] = np.linalg.norm(video[ok] - audio[index[ok]], axis=1)
    usable = np.isfinite(distances).sum(axis=0) >= max(1, n // 2)
    if not usable.any():
        return None
    distances[:, ~usable] = np.nan
    return lse_from_distances(distances)


def calibrate(model, samples: list, max_offset: int = 15, device: str = "cpu") -> dict:
    """Limits for filter from held-out samples ((halves, mel) pairs): LSE-C and LSE-D of each
    sample with its own audio and with another sample's audio; the limits sit halfway between the
    10th percentile of the first and the 90th of the second (LSE-D: the other way round)."""
    own, foreign = [], []
    for i, (halves, mel) in enumerate(samples):
        a = expert_lse(model, halves, mel, 0, 0, max_offset, device)
        other = samples[(i + 1) % len(samples)][1]
        m = other[:, : mel.shape[1]]
        if m.shape[1] < mel.shape[1]:
            m = np.concatenate([m, np.full((m.shape[0], mel.shape[1] - m.shape[1]), frontend.SILENCE, m.dtype)], axis=1)
        b = expert_lse(model, halves, m, 0, 0, max_offset, device) if len(samples) > 1 else None
        if a is not None:
            own.append(a)
        if b is not None:
            foreign.append(b)
    if not own or not foreign:
        return {}
    c_own, c_foreign = (
        np.percentile([x.confidence for x in own], 10),
        np.percentile([x.confidence for x in foreign], 90),
    )
    d_own, d_foreign = np.percentile([x.distance for x in own], 90), np.percentile([x.distance for x in foreign], 10)
    return {
        "min_confidence": round(float((c_own + c_foreign) / 2), 4),
        "distance_midpoint": round(float((d_own + d_foreign) / 2), 4),  # informational: filter limits LSE-C
        "samples": len(own),
        "own_offset_zero": round(float(np.mean([abs(x.offset) <= 1 for x in own])), 4),
        "own_confidence_p10": round(float(c_own), 4),
        "foreign_confidence_p90": round(float(c_foreign), 4),
        "own_distance_p90": round(float(d_own), 4),
        "foreign_distance_p10": round(float(d_foreign), 4),
    }


def distance_matrix(video_emb: np.ndarray, audio_emb: np.ndarray, max_offset: int) -> np.ndarray:
    """(N, D) video-window embeddings and (N + 2K, D) audio-window embeddings where audio row
    i + K is aligned with video row i → (N, 2K + 1) Euclidean distances; column j pairs video i
    with the audio of frames i + (j - K), i.e. audio that is j - K frames late."""
    n, k = len(video_emb), max_offset
    if len(audio_emb) != n + 2 * k:
        raise ValueError(f"{len(audio_emb)} audio windows for {n} video windows and ±{k} offsets")
    out = np.empty((n, 2 * k + 1))
    for j in range(2 * k + 1):
        out[:, j] = np.linalg.norm(video_emb - audio_emb[j : j + n], axis=1)
    return out
