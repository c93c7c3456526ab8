"""The landmark sync judge (DESIGN.md §7.2): is this mouth saying this audio, and how far off is it?

The pixel sync expert (``sync_expert``) has to learn identity, skin and light away before it can
judge sync, and a few minutes of real footage are not enough for that. The judge reads what
MediaPipe already factored out: the mouth's shape from the face landmarks, per frame, in
eye-distance units after a similarity fit of the eyes and nose (so pose, scale and position are
gone), each clip normalised by its own median and spread (so one speaker's wide mouth is not
another's open one). Against it, the shared log-mel front end (``audio_frontend``), four mel
columns per video frame, each clip's mean removed.

Two small temporal convolution stacks turn both into one unit embedding per frame. The score of
an offset k is the mean cosine of video frame t with audio frame t + k over the stretch; the
offset is the best k, the confidence the best score minus the median over all k (SyncNet's
peak-over-median margin), the distance 1 − the best score. Positive offsets: the audio is late.

Training (train.lipsync.judge) makes the aligned offset win a softmax over ±K offsets, and each
clip's own audio win over the other clips' audio at offset 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from shqip_av import geometry
from shqip_av.components import LANDMARK_JUDGE, KindError, load_strict, mark_kind
from shqip_av.components import audio_frontend as frontend

FEATURES = "mouth-v1"  # the version of mouth_features; a judge trained on another refuses to load
# lips (outer and inner contour) and the jaw below them
POINTS = (*geometry.MOUTH_POINTS, 152, 148, 377, 176, 400)
# (a, b) landmark pairs whose distance is a feature: lip openings, mouth width, jaw drop
PAIRS = (
    (13, 14),
    (82, 87),
    (312, 317),
    (81, 178),
    (311, 402),
    (0, 17),
    (37, 84),
    (267, 314),
    (61, 291),
    (78, 308),
    (1, 152),
    (1, 61),
    (1, 291),
    (1, 0),
    (1, 17),
)
NUM_FEATURES = len(PAIRS) + 2 * len(POINTS)
MEL_PER_FRAME = 4  # mel columns per video frame: ceil(80 / 25)
MIN_FRAMES = 25  # shorter stretches are not judged (one second: too few syllables for an offset)
_UNIT_TEMPLATE = geometry.TEMPLATE_256 / float(geometry.TEMPLATE_256[1, 0] - geometry.TEMPLATE_256[0, 0])


def frontend_signature(fps: float = frontend.VIDEO_FPS) -> dict:
    """What the judge's audio input depends on: a judge trained on other values is refused."""
    return {
        "sample_rate": frontend.SAMPLE_RATE,
        "n_fft": frontend.N_FFT,
        "hop_length": frontend.HOP_LENGTH,
        "n_mels": frontend.N_MELS,
        "f_min": frontend.F_MIN,
        "f_max": frontend.F_MAX,
        "fps": float(fps),
    }


def canonical_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """(T, 478, 2) landmarks in any pixel frame → the same in eye-distance units, each frame's eyes
    and nose fitted onto one template (rotation, scale and position removed)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    anchors = geometry.alignment_points(lm)
    out = np.empty_like(lm)
    for t in range(len(lm)):
        out[t] = geometry.apply_affine(geometry.fit_similarity(anchors[t], _UNIT_TEMPLATE), lm[t])
    return out


def mouth_features(landmarks: np.ndarray) -> np.ndarray:
    """(T, 478, 2) landmarks (source pixels or crop coordinates alike) → (T, NUM_FEATURES) float32:
    distances of PAIRS, each scaled by its own spread in the clip, then the POINTS' coordinates
    scaled by their joint spread; all relative to the clip's median."""
    lm = canonical_landmarks(landmarks)
    distances = np.stack([np.linalg.norm(lm[:, a] - lm[:, b], axis=-1) for a, b in PAIRS], axis=1)
    distances = distances - np.median(distances, axis=0)
    distances /= distances.std(axis=0) + 1e-3
    points = lm[:, list(POINTS)].reshape(len(lm), -1)
    points = points - np.median(points, axis=0)
    points /= points.std() + 1e-6
    return np.nan_to_num(np.concatenate([distances, points], axis=1)).astype(np.float32)


def audio_frames(mel: np.ndarray, first: int, count: int, fps: float = frontend.VIDEO_FPS) -> np.ndarray:
    """The audio of video frames [first, first + count) as (count, 80, 4) log-mel columns, each
    frame's own (``audio_frontend.mel_window``: silence beyond the ends)."""
    return np.stack([frontend.mel_window(mel, t, 1, fps)[..., :MEL_PER_FRAME] for t in range(first, first + count)])


def _stack(inputs: int, hidden: int, embedding: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Dropout(dropout),
        nn.Conv1d(inputs, hidden, 5, padding=2),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Conv1d(hidden, embedding, 5, padding=2),
    )


class LandmarkSyncJudge(
    nn.Module, PyTorchModelHubMixin, library_name="shqip-av", tags=["shqip-av", "sync-judge", "audio-visual"]
):
    """``members`` independent pairs of stacks (an ensemble: each judges alone, their similarities
    are averaged, which steadies the offset on unseen speakers). Per member, ``embed_video``
    (B, T, NUM_FEATURES) → (B, E, T) and ``embed_audio`` (B, N, 80, 4) → (B, E, N): one
    unit-length embedding per frame; ``similarity`` is the members' mean cosine (B, T, N)."""

    def __init__(
        self,
        hidden: int = 32,
        embedding: int = 32,
        dropout: float = 0.3,
        members: int = 1,
        features: str = FEATURES,
        num_features: int = NUM_FEATURES,
        frontend: dict | None = None,
    ):
        super().__init__()
        self.features, self.num_features, self.members = features, num_features, members
        self.frontend = dict(frontend or frontend_signature())
        mel_inputs = frontend_signature()["n_mels"] * MEL_PER_FRAME
        self.video = nn.ModuleList([_stack(num_features, hidden, embedding, dropout) for _ in range(members)])
        self.audio = nn.ModuleList([_stack(mel_inputs, hidden, embedding, dropout) for _ in range(members)])
        self.scale = nn.Parameter(torch.full((members,), 10.0))  # cosine → softmax logit during training

    @classmethod
    def build(
        cls, hidden: int = 32, embedding: int = 32, dropout: float = 0.3, members: int = 1
    ) -> "LandmarkSyncJudge":
        """A new judge for this build's features and audio front end, both recorded in its
        config.json when saved (what ``check_input`` compares with the data)."""
        return cls(
            hidden,
            embedding,
            dropout,
            members,
            features=FEATURES,
            num_features=NUM_FEATURES,
            frontend=frontend_signature(),
        )

    @property
    def fps(self) -> float:
        return float(self.frontend["fps"])

    def embed_video(self, features: torch.Tensor, member: int = 0) -> torch.Tensor:
        return nn.functional.normalize(self.video[member](features.transpose(1, 2)), dim=1)

    def embed_audio(self, frames: torch.Tensor, member: int = 0) -> torch.Tensor:
        b, n = frames.shape[:2]
        flat = frames.reshape(b, n, -1)
        flat = (flat - flat.mean(dim=1, keepdim=True)) / 4.0  # each clip's mean spectrum removed
        return nn.functional.normalize(self.audio[member](flat.transpose(1, 2)), dim=1)

    def similarity(self, features: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """(B, T, F) features and (B, N, 80, 4) audio frames → (B, T, N) mean cosine over members."""
        total = 0
        for m in range(self.members):
            total = total + torch.einsum("bet,ben->btn", self.embed_video(features, m), self.embed_audio(frames, m))
        return total / self.members

    def check_input(self, fps: float, option: str = "sync.method") -> None:
        """One line when the data's frame rate or this build's audio front end is not the one the
        judge was trained with (its audio windows would be off by a fraction of a frame)."""
        trained, here = self.frontend, frontend_signature(fps)
        if trained.get("fps") != here["fps"]:
            raise KindError(
                f"{option}: the judge was trained on {trained.get('fps')} fps video, the data is analysed "
                f"at {here['fps']} fps (probe.fps)"
            )
        other = {k: (trained.get(k), v) for k, v in here.items() if k != "fps" and trained.get(k) != v}
        if other:
            raise KindError(
                f"{option}: the judge was trained with another audio front end "
                f"({', '.join(f'{k} {a} here {b}' for k, (a, b) in sorted(other.items()))})"
            )

    @classmethod
    def from_pretrained(cls, source: str, *, option: str = "judge", **kwargs) -> "LandmarkSyncJudge":
        """From a model folder, a run folder (runs/lipsync/<name>) or a Hub id, every tensor matched;
        a folder of another kind, or a judge of another feature version, is one line."""
        model = load_strict(cls, str(source), LANDMARK_JUDGE, option, **kwargs)
        if not getattr(model, "_hub_mixin_config", {}).get("frontend"):
            raise KindError(f"{option} {source}: the judge's config.json records no audio front end")
        if model.features != FEATURES or model.num_features != NUM_FEATURES:
            raise KindError(
                f"{option} {source}: the judge reads {model.features} features, this version computes {FEATURES}"
            )
        return model

    def save_pretrained(self, save_directory: str | Path, *args: Any, **kwargs: Any) -> Any:
        out = super().save_pretrained(save_directory, *args, **kwargs)
        mark_kind(save_directory, LANDMARK_JUDGE)
        return out


@dataclass
class Judgement:
    offset: int  # frames; positive = the audio is late
    confidence: float  # best score minus the median over offsets
    distance: float  # 1 - the best score (mean cosine)
    curve: list[float]  # mean cosine per offset, -K..K (NaN where fewer than half the frames can be compared)


def judge_curve(
    model: LandmarkSyncJudge,
    features: np.ndarray,
    mel: np.ndarray,
    pad_before: int,
    audio_frames_count: int,
    max_offset: int,
) -> Judgement | None:
    """Judge one stretch: ``features`` (T, F) of its frames, ``mel`` the log-mel of its audio,
    which starts ``pad_before`` frames before the first video frame and covers
    ``audio_frames_count`` frames. None when the stretch is shorter than MIN_FRAMES."""
    n = len(features)
    if n < MIN_FRAMES:
        return None
    model.eval()
    with torch.no_grad():
        video = model.embed_video(torch.from_numpy(np.ascontiguousarray(features))[None])[0]
        audio = model.embed_audio(torch.from_numpy(audio_frames(mel, 0, audio_frames_count, model.fps)).float()[None])[
            0
        ]
    similarity = (video.T @ audio).numpy()  # (T, N): video frame t against audio frame j
    curve = np.full(2 * max_offset + 1, np.nan)
    frames = np.arange(n)
    for col, k in enumerate(range(-max_offset, max_offset + 1)):
        index = frames + pad_before + k
        ok = (index >= 0) & (index < audio_frames_count)
        if ok.sum() >= max(MIN_FRAMES // 2, n // 2):
            curve[col] = similarity[frames[ok], index[ok]].mean()
    if np.isnan(curve).all():
        return None
    best = int(np.nanargmax(curve))
    return Judgement(
        best - max_offset,
        round(float(curve[best] - np.nanmedian(curve)), 4),
        round(float(1.0 - curve[best]), 4),
        [round(float(c), 4) for c in curve],
    )


def judge_clip(model: LandmarkSyncJudge, landmarks: np.ndarray, audio: np.ndarray, max_offset: int = 15):
    """A whole clip's landmarks against its own audio (both starting at frame 0)."""
    mel = frontend.log_mel(np.asarray(audio, np.float32)).numpy()
    count = int(np.ceil(len(audio) / frontend.SAMPLE_RATE * model.fps))
    return judge_curve(model, mouth_features(landmarks), mel, 0, count, max_offset)
