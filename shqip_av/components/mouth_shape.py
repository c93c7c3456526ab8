"""Audio → mouth shape (DESIGN.md §8.1): how the mouth moves, apart from what it looks like.

A network that paints mouth pixels from audio needs GPU-days and hours of footage; predicting the
mouth's *shape* needs neither. The shape is the lips and jaw of the face landmarks (the landmark
sync judge's points) in eye-distance units after a similarity fit of the eyes and nose (pose,
scale and position gone), each clip relative to its own median (the speaker's rest) and divided by
its own spread (one speaker's wide mouth is not another's open one), so it transfers across
speakers and languages. A few principal components of that (fitted on the training speakers) are
what the model predicts per video frame, from the shared log-mel front end over about ±0.3 s (a
mouth moves before and after the sound it makes).

The dub turns the prediction back into a shape in the source speaker's own units (their rest and
spread) and retrieves the speaker's own frames whose mouth matches it (``shqip_av.mouth_retrieval``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from shqip_av.components import MOUTH_SHAPE, KindError, load_strict, mark_kind
from shqip_av.components import audio_frontend as frontend
from shqip_av.components.sync_judge import MEL_PER_FRAME, POINTS, audio_frames, canonical_landmarks, frontend_signature

FEATURES = "mouth-shape-v1"
UPPER_LIP, LOWER_LIP = POINTS.index(13), POINTS.index(14)  # inner lip centres, in the shape vector
CHIN = POINTS.index(152)  # the jaw's lowest point


def shape_vectors(landmarks: np.ndarray) -> np.ndarray:
    """(T, 478, 2) landmarks (any pixel frame) → (T, 2 × len(POINTS)) lips and jaw in eye-distance
    units, pose removed."""
    lm = canonical_landmarks(landmarks)
    return lm[:, list(POINTS)].reshape(len(lm), -1)


def speaker_units(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(normalised vectors, rest, spread): relative to the clip's median, over its spread."""
    rest = np.median(vectors, axis=0)
    spread = float((vectors - rest).std()) + 1e-6
    return (vectors - rest) / spread, rest, spread


def opening(normalised: np.ndarray) -> np.ndarray:
    """The inner-lip gap of normalised shape vectors (T, 2P) → (T,): how open the mouth is."""
    v = normalised.reshape(len(normalised), -1, 2)
    return v[:, LOWER_LIP, 1] - v[:, UPPER_LIP, 1]


def jaw(normalised: np.ndarray) -> np.ndarray:
    """How low the chin is in normalised shape vectors (T, 2P) → (T,)."""
    return normalised.reshape(len(normalised), -1, 2)[:, CHIN, 1]


class MouthShapeModel(
    nn.Module, PyTorchModelHubMixin, library_name="shqip-av", tags=["shqip-av", "mouth-shape", "audio-visual"]
):
    """Log-mel frames (B, T, 80, 4) → (B, T, K) principal-component coefficients of the mouth
    shape, per video frame; ``mean``/``components`` map coefficients to normalised shape vectors."""

    def __init__(
        self,
        hidden: int = 128,
        coefficients: int = 6,
        dropout: float = 0.1,
        features: str = FEATURES,
        num_points: int = len(POINTS),
        frontend: dict | None = None,
    ):
        super().__init__()
        self.features, self.num_points, self.coefficients = features, num_points, coefficients
        self.frontend = dict(frontend or frontend_signature())
        inputs = frontend_signature()["n_mels"] * MEL_PER_FRAME
        # receptive field 1 + 4 + 8 + 4 = 17 frames: ±8 frames, about ±0.3 s at 25 fps
        self.net = nn.Sequential(
            nn.Conv1d(inputs, hidden, 5, padding=2),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Conv1d(hidden, hidden, 5, padding=4, dilation=2),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Conv1d(hidden, hidden, 5, padding=2),
            nn.ReLU(),
            nn.Conv1d(hidden, coefficients, 1),
        )
        self.register_buffer("mean", torch.zeros(2 * num_points))
        self.register_buffer("components", torch.zeros(coefficients, 2 * num_points))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        b, n = frames.shape[:2]
        flat = frames.reshape(b, n, -1)
        flat = (flat - flat.mean(dim=1, keepdim=True)) / 4.0  # each clip's mean spectrum removed
        return self.net(flat.transpose(1, 2)).transpose(1, 2)

    # ------------------------------------------------------------------ shapes ↔ coefficients
    def to_coefficients(self, normalised: np.ndarray) -> np.ndarray:
        mean, comps = self.mean.cpu().numpy(), self.components.cpu().numpy()
        return (np.asarray(normalised, np.float64) - mean) @ comps.T

    def to_shapes(self, coefficients: np.ndarray) -> np.ndarray:
        mean, comps = self.mean.cpu().numpy(), self.components.cpu().numpy()
        return mean + np.asarray(coefficients, np.float64) @ comps

    @torch.no_grad()
    def predict(self, mel: np.ndarray, first: int, count: int) -> np.ndarray:
        """(count, K) coefficients for video frames [first, first + count) of the log-mel ``mel``."""
        self.eval()
        frames = torch.from_numpy(audio_frames(mel, first, count, self.fps)).float()[None]
        return self(frames)[0].cpu().numpy().astype(np.float64)

    @property
    def fps(self) -> float:
        return float(self.frontend.get("fps", frontend.VIDEO_FPS))

    @classmethod
    def from_pretrained(cls, source: str, *, option: str = "mouth shape model", **kwargs) -> "MouthShapeModel":
        model = load_strict(cls, str(source), MOUTH_SHAPE, option, **kwargs)
        if model.features != FEATURES or model.num_points != len(POINTS):
            raise KindError(f"{option} {source}: reads {model.features} shapes, this version computes {FEATURES}")
        return model

    def save_pretrained(self, save_directory: str | Path, *args: Any, **kwargs: Any) -> Any:
        out = super().save_pretrained(save_directory, *args, **kwargs)
        mark_kind(save_directory, MOUTH_SHAPE)
        return out


def fit_components(normalised: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean, components (k, D)) of normalised shape vectors: their principal directions."""
    mean = normalised.mean(axis=0)
    _, _, vt = np.linalg.svd(normalised - mean, full_matrices=False)
    return mean, vt[:k]
