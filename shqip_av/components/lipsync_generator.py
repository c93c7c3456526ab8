"""The lip-sync generator (DESIGN.md §7.3): T canonical crops with the mouth masked, K reference
crops of the same face and the audio of each frame → the T crops with the mouth regenerated.

- The mask is fixed in crop coordinates (the crop is canonical: eyes and nose tip sit on a template),
  generous: from just below the nose tip to the bottom edge, cheek to cheek. ``mouth_mask``.
- Per frame, a small U-Net sees the masked frame, the mask and the K references; the frame's audio
  (the log-mel of the 5 frames centred on it, ``shqip_av.components.audio_frontend``) enters at the bottleneck and
  modulates every decoder level (a per-channel scale and shift); a temporal convolution across the
  T frames of the window keeps the mouth smooth in time.
- The mouth-landmark head reads the audio embedding alone: only the audio can say how open the
  target's mouth is, so this loss trains the audio path directly. (Concatenated at the bottleneck
  only, with the head on the image features, the audio was ignored: the references already give a
  plausible average mouth, and swapping the audio for silence changed the output by 0.01/255.)
- The output keeps the input outside the mask: only the masked pixels are generated, so nothing
  under the mask of the input can leak into the result, and paste-back only changes the mouth.

Saves and loads like a Hub model (config.json + model.safetensors; ``from_pretrained``, ``push_to_hub``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn
from torch.nn import functional as F

from shqip_av.components import GENERATOR, load_strict, mark_kind
from shqip_av.components import audio_frontend as frontend
from shqip_av.geometry import MOUTH_POINTS

# relative box (x0, y0, x1, y1) of the mask in a canonical crop: the template's nose tip is at
# y = 140/256 = 0.55 and its eyes 66/256 apart, centred; real upper lips reach 0.56, chins the bottom edge
MOUTH_BOX = (0.2, 0.52, 0.8, 1.0)
AUDIO_FRAMES = 5  # video frames of audio each generated frame hears (centred on it)


def mouth_mask(size: int) -> np.ndarray:
    """(size, size) float32, 1 inside the mouth box."""
    x0, y0, x1, y1 = (int(round(v * size)) for v in MOUTH_BOX)
    mask = np.zeros((size, size), np.float32)
    mask[y0:y1, x0:x1] = 1.0
    return mask


def frame_audio(mel: np.ndarray, first: int, frames: int) -> np.ndarray:
    """(frames, 80, mel_length(AUDIO_FRAMES)) log-mel windows, one centred on each video frame
    first..first+frames-1 (``shqip_av.components.audio_frontend.mel_window``; silence beyond the ends)."""
    half = AUDIO_FRAMES // 2
    return np.stack([frontend.mel_window(mel, t - half, AUDIO_FRAMES) for t in range(first, first + frames)])


def audio_windows(mel: np.ndarray, times: np.ndarray) -> np.ndarray:
    """(N, 80, mel_length(AUDIO_FRAMES)) windows of the frames' worth of audio (at 25 fps) centred
    on each time (seconds): what the generator heard in training, whatever the video's frame rate."""
    return np.stack(
        [frontend.mel_window(mel, int(round(t * frontend.VIDEO_FPS)) - AUDIO_FRAMES // 2, AUDIO_FRAMES) for t in times]
    )


def mouth_targets(landmarks: torch.Tensor, size: int) -> torch.Tensor:
    """(B, T, 478, 2) landmarks in crop pixels → (B, T, P, 2) mouth points centred on the mouth,
    in crop sides: what the mouth head regresses (shape, not position)."""
    points = landmarks[:, :, list(MOUTH_POINTS)] / size
    return points - points.mean(dim=2, keepdim=True)


@dataclass
class GeneratorConfig:
    size: int = 64  # crop side the generator works at
    frames: int = 5  # T: frames generated together
    references: int = 3  # K reference crops
    channels: tuple[int, ...] = (32, 64, 128)  # U-Net widths, one per down-sampling
    audio_dim: int = 128


def _conv(cin: int, cout: int, stride=1) -> nn.Module:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(min(8, cout), cout), nn.SiLU())


class LipSyncGenerator(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="shqip-av",
    tags=["shqip-av", "lip-sync", "talking-head", "audio-visual"],
):
    """``forward(frames, references, mel)`` → generated frames.

    frames: (B, T, 3, S, S) canonical crops in [0, 1] (the mouth is masked inside);
    references: (B, K, 3, S, S); mel: (B, T, 80, M) from ``frame_audio``. Returns (B, T, 3, S, S);
    with ``return_mouth`` also the predicted mouth landmarks (B, T, P, 2), centred on the
    mouth, in crop sides (``mouth_targets``)."""

    def __init__(
        self, size: int = 64, frames: int = 5, references: int = 3, channels=(32, 64, 128), audio_dim: int = 128
    ):
        super().__init__()
        self.config_ = GeneratorConfig(size, frames, references, tuple(channels), audio_dim)
        self.register_buffer("mask", torch.from_numpy(mouth_mask(size)), persistent=False)
        widths = [32, *channels]
        self.stem = _conv(4 + 3 * references, 32)  # masked frame, mask, references
        self.down = nn.ModuleList([nn.Sequential(_conv(a, b, 2), _conv(b, b)) for a, b in zip(widths[:-1], widths[1:])])
        bottom = channels[-1]
        self.audio = nn.Sequential(
            _conv(1, 32),
            _conv(32, 64, (2, 1)),
            _conv(64, 128, 2),
            _conv(128, 128, 2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(128, audio_dim),
        )
        self.fuse = _conv(bottom + audio_dim, bottom)
        self.temporal = nn.Conv3d(bottom, bottom, (3, 1, 1), padding=(1, 0, 0))
        ups = [*reversed(channels[:-1]), 32]
        skips = [*reversed(widths[:-1])]
        self.up = nn.ModuleList()
        self.film = nn.ModuleList()  # audio → per-channel (scale, shift) of each decoder level
        cin = bottom
        for cout, skip in zip(ups, skips):
            self.up.append(nn.Sequential(_conv(cin + skip, cout), _conv(cout, cout)))
            self.film.append(nn.Linear(audio_dim, 2 * cout))
            cin = cout
        self.out = nn.Conv2d(cin, 3, 1)
        # mouth-landmark regression from the audio (training only)
        self.mouth = nn.Sequential(
            nn.Linear(audio_dim, audio_dim), nn.SiLU(), nn.Linear(audio_dim, 2 * len(MOUTH_POINTS))
        )

    @property
    def generator_config(self) -> GeneratorConfig:
        return self.config_

    @classmethod
    def from_pretrained(cls, source: str, *, option: str = "generator", **kwargs) -> "LipSyncGenerator":
        """From a model folder, a run folder (runs/lipsync/<name>) or a Hub id: a folder of another
        kind is one line naming what it is, and every tensor must match (``load_strict``)."""
        return load_strict(cls, str(source), GENERATOR, option, **kwargs)

    def save_pretrained(self, save_directory: str | Path, *args: Any, **kwargs: Any) -> Any:
        out = super().save_pretrained(save_directory, *args, **kwargs)
        mark_kind(save_directory, GENERATOR)  # config.json says what the folder is
        return out

    def forward(
        self, frames: torch.Tensor, references: torch.Tensor, mel: torch.Tensor, return_mouth: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        b, t, _, s, _ = frames.shape
        mask = self.mask.to(frames.dtype)
        masked = frames * (1 - mask)  # whatever was under the mask never reaches the network
        refs = references.flatten(1, 2).unsqueeze(1).expand(b, t, -1, s, s)
        x = torch.cat([masked, mask.expand(b, t, 1, s, s), refs], 2).flatten(0, 1)
        skips = [self.stem(x)]
        h = skips[0]
        for down in self.down:
            h = down(h)
            skips.append(h)
        a = self.audio(((mel.flatten(0, 1) + 4.0) / 4.0).unsqueeze(1))
        h = self.fuse(torch.cat([h, a[:, :, None, None].expand(-1, -1, *h.shape[2:])], 1))
        c, hh, ww = h.shape[1:]
        seq = h.view(b, t, c, hh, ww).transpose(1, 2)
        h = (seq + self.temporal(seq)).transpose(1, 2).reshape(b * t, c, hh, ww)
        mouth = self.mouth(a).view(b, t, -1, 2) if return_mouth else None
        for up, film, skip in zip(self.up, self.film, reversed(skips[:-1])):
            h = F.interpolate(h, size=skip.shape[2:], mode="bilinear", align_corners=False)
            scale, shift = film(a)[:, :, None, None].chunk(2, dim=1)
            h = up(torch.cat([h, skip], 1)) * (1 + scale) + shift
        generated = torch.sigmoid(self.out(h)).view(b, t, 3, s, s)
        out = masked + generated * mask  # outside the mask: the input itself
        return (out, mouth) if return_mouth else out


def build_generator(config: GeneratorConfig | dict) -> LipSyncGenerator:
    return LipSyncGenerator(**(asdict(config) if isinstance(config, GeneratorConfig) else dict(config)))


def load_generator(source: str, option: str = "generator") -> LipSyncGenerator:
    """``LipSyncGenerator.from_pretrained`` with the option name used in its one-line errors."""
    return LipSyncGenerator.from_pretrained(source, option=option)
