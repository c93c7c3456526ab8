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
- With ``lip_sketch``, the lips are drawn for it: one more input channel shows where the lips of
  each frame are (a soft dot per mouth point, ``draw_lips``). Training draws the real lips; a dub
  draws the lips the audio predicts (``predict_lips``: the mouth head's shapes, moving as much as
  this face's own lips move, on this face's own mouth). The audio path alone left the jaw where the
  references had it: driven by new speech or by silence, the generated jaw drop was the same.
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
# the upper lip (outer and inner, corners left out): it moves least in speech, so predicted lips
# are placed where the face's own upper lip is
UPPER_LIP = (185, 40, 39, 37, 0, 267, 269, 270, 409, 191, 80, 81, 82, 13, 312, 311, 310, 415)
LIP_DOT = 0.012  # the drawn lips' dot radius (Gaussian sigma), in crop sides: 2.3 px at 192
LIP_GAIN = (1.0, 4.0)  # predicted lips move as much as the face's own, scaled within these bounds


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


def lips_of(landmarks, size: int):
    """(…, 478, 2) landmarks in crop pixels → (…, P, 2) mouth points in crop sides."""
    return landmarks[..., list(MOUTH_POINTS), :] / size


def draw_lips(lips: torch.Tensor, size: int) -> torch.Tensor:
    """(N, P, 2) mouth points in crop sides → (N, 1, size, size): a soft dot at each point (the
    Gaussians are separable, so the picture is one batched matrix product)."""
    grid = (torch.arange(size, dtype=lips.dtype, device=lips.device) + 0.5) / size
    gx = torch.exp(-((grid[None, None, :] - lips[..., 0:1]) ** 2) / (2 * LIP_DOT**2))  # (N, P, S)
    gy = torch.exp(-((grid[None, None, :] - lips[..., 1:2]) ** 2) / (2 * LIP_DOT**2))
    return torch.einsum("npy,npx->nyx", gy, gx).clamp(max=1.0).unsqueeze(1)


@dataclass
class GeneratorConfig:
    size: int = 64  # crop side the generator works at
    frames: int = 5  # T: frames generated together
    references: int = 3  # K reference crops
    channels: tuple[int, ...] = (32, 64, 128)  # U-Net widths, one per down-sampling
    audio_dim: int = 128
    lip_sketch: bool = False  # the lips are drawn in an extra input channel (``draw_lips``)


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
    references: (B, K, 3, S, S); mel: (B, T, 80, M) from ``frame_audio``; ``lips`` (B, T, P, 2), the
    mouth points to draw in crop sides, for a ``lip_sketch`` generator (``predict_lips``). Returns
    (B, T, 3, S, S); with ``return_mouth`` also the predicted mouth landmarks (B, T, P, 2),
    centred on the mouth, in crop sides (``mouth_targets``)."""

    def __init__(
        self,
        size: int = 64,
        frames: int = 5,
        references: int = 3,
        channels=(32, 64, 128),
        audio_dim: int = 128,
        lip_sketch: bool = False,
    ):
        super().__init__()
        self.config_ = GeneratorConfig(size, frames, references, tuple(channels), audio_dim, lip_sketch)
        self.register_buffer("mask", torch.from_numpy(mouth_mask(size)), persistent=False)
        widths = [32, *channels]
        self.stem = _conv(4 + 3 * references + int(lip_sketch), 32)  # masked frame, mask, references(, lips)
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

    def mouth_shapes(self, mel: torch.Tensor) -> torch.Tensor:
        """(N, 80, M) audio windows → (N, P, 2) the mouth head's shapes, centred, in crop sides."""
        return self.mouth(self.audio(((mel + 4.0) / 4.0).unsqueeze(1))).view(len(mel), -1, 2)

    @torch.no_grad()
    def predict_lips(self, mel: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """The lips to draw for a track: (N, 80, M) audio windows and the source's (N, 478, 2)
        landmarks in the generator's crop pixels → (N, P, 2) in crop sides.

        The mouth head's shapes move towards the mean (an average over what a sound may look
        like), and they are an average person's mouth. So their movement (about their mean over
        the track) is scaled to the spread of this face's own mouth shapes (within ``LIP_GAIN``),
        added to this face's mean shape, and placed where the face's upper lip is in each frame."""
        size = self.config_.size
        device = next(self.parameters()).device
        real = lips_of(np.asarray(landmarks, np.float64), size)
        centred = real - real.mean(1, keepdims=True)
        own_mean = centred.mean(0)
        windows = torch.from_numpy(np.asarray(mel, np.float32)).to(device)
        was_training = self.training
        self.eval()
        predicted = torch.cat([self.mouth_shapes(w) for w in windows.split(256)]).double().cpu().numpy()
        self.train(was_training)
        predicted = predicted - predicted.mean(1, keepdims=True)  # shapes only, as the head learned them
        moves = predicted - predicted.mean(0)
        spread = float(np.sqrt(((moves**2).sum(-1)).mean()))
        own_spread = float(np.sqrt((((centred - own_mean) ** 2).sum(-1)).mean()))
        gain = float(np.clip(own_spread / spread, *LIP_GAIN)) if spread > 1e-9 else 1.0
        shapes = own_mean + gain * moves
        upper = [MOUTH_POINTS.index(i) for i in UPPER_LIP]
        return (shapes - shapes[:, upper].mean(1, keepdims=True) + real[:, upper].mean(1, keepdims=True)).astype(
            np.float32
        )

    def forward(
        self,
        frames: torch.Tensor,
        references: torch.Tensor,
        mel: torch.Tensor,
        lips: torch.Tensor | None = None,
        return_mouth: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        b, t, _, s, _ = frames.shape
        mask = self.mask.to(frames.dtype)
        masked = frames * (1 - mask)  # whatever was under the mask never reaches the network
        refs = references.flatten(1, 2).unsqueeze(1).expand(b, t, -1, s, s)
        parts = [masked, mask.expand(b, t, 1, s, s), refs]
        if self.config_.lip_sketch:
            if lips is None:
                raise ValueError("this generator draws the lips it is given: pass lips (B, T, P, 2), see predict_lips")
            parts.append(draw_lips(lips.flatten(0, 1).to(frames.dtype), s).view(b, t, 1, s, s))
        x = torch.cat(parts, 2).flatten(0, 1)
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


def add_lip_sketch(generator: LipSyncGenerator) -> LipSyncGenerator:
    """A ``lip_sketch`` copy of a generator that has none: every weight kept, the stem's weights
    for the new lips channel zero (so it starts out as the generator it came from)."""
    config = asdict(generator.generator_config) | {"lip_sketch": True}
    sketched = build_generator(config)
    state = generator.state_dict()
    stem = state["stem.0.weight"]
    state["stem.0.weight"] = torch.cat([stem, torch.zeros_like(stem[:, :1])], 1)
    sketched.load_state_dict(state)
    return sketched


def load_generator(source: str, option: str = "generator") -> LipSyncGenerator:
    """``LipSyncGenerator.from_pretrained`` with the option name used in its one-line errors."""
    return LipSyncGenerator.from_pretrained(source, option=option)
