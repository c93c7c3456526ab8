"""Running the generator over a whole face track: canonical crops + any audio → crops whose mouth
speaks that audio. Used by evaluation, the demo, and (downstream) dubbing.

The track is cut into windows of T frames; each window hears its own frames' audio and sees K
references from the same track, picked away from it (``ReferencePicker``). Windows overlap by
``overlap`` frames and the overlapping frames are cross-faded, so a window's edge (where the
temporal layer sees no neighbour) never shows as a jump. Memory holds one batch of windows.
"""

from __future__ import annotations

import numpy as np

from train.lipsync.generator_data import to_chw
from shqip_av.components.lipsync_generator import frame_audio
from train.lipsync.references import ReferencePicker


def window_starts(n: int, frames: int, overlap: int) -> list[int]:
    """Window starts covering 0..n-1 with windows of ``frames`` overlapping by ``overlap``; the last
    window ends at the last frame."""
    if n <= frames:
        return [0]
    step = max(1, frames - overlap)
    starts = list(range(0, n - frames + 1, step))
    if starts[-1] != n - frames:
        starts.append(n - frames)
    return starts


def generate_track(
    model,
    crops: np.ndarray,
    landmarks: np.ndarray,
    mel: np.ndarray | None,
    *,
    exclude: int = 5,
    overlap: int = 1,
    batch: int = 8,
    device: str = "cpu",
    seed: int = 0,
    audio_windows: np.ndarray | None = None,
) -> np.ndarray:
    """crops: (N, S, S, 3) uint8 at the generator's size; landmarks: (N, 478, 2) (any crop
    scale: only mouth shapes are compared); mel: (80, M) log-mel of the driving audio, aligned
    with frame 0 of a 25 fps track, or ``audio_windows``: (N, 80, M) each frame's own window
    (``frame_audio``'s layout; dubbing computes them for sources at other frame rates). Returns
    (N, S, S, 3) uint8 generated crops. Tracks shorter than a window are padded by repeating
    their last frame."""
    import torch

    cfg = model.generator_config
    t, n = cfg.frames, len(crops)
    if n == 0:
        return crops.copy()
    if audio_windows is not None:
        audio_windows = np.asarray(audio_windows, np.float32)
        if n < t:
            audio_windows = np.concatenate([audio_windows, np.repeat(audio_windows[-1:], t - n, axis=0)])
    padded = np.concatenate([crops, np.repeat(crops[-1:], max(0, t - n), axis=0)]) if n < t else crops
    marks = np.concatenate([landmarks, np.repeat(landmarks[-1:], max(0, t - n), axis=0)]) if n < t else landmarks
    # a short track cannot keep references `exclude` frames away from every window: narrow the
    # zone so that the middle window still has some; a track of one window uses its own frames
    exclude = min(exclude, max(0, (len(padded) - t) // 2 - 1))
    picker = ReferencePicker(marks, cfg.references, exclude, seed)
    own = np.linspace(0, len(padded) - 1, cfg.references).round().astype(int).tolist()
    total = np.zeros((len(padded), cfg.size, cfg.size, 3), np.float64)
    weight = np.zeros(len(padded), np.float64)
    ramp = np.ones(t)
    if overlap:  # cross-fade weights: rise over the first `overlap` frames, fall over the last
        edge = np.linspace(0.0, 1.0, overlap + 2)[1:-1]
        ramp[:overlap], ramp[t - overlap :] = edge, edge[::-1]
    starts = window_starts(len(padded), t, overlap)
    model.eval()
    with torch.no_grad():
        for i in range(0, len(starts), batch):
            chunk = starts[i : i + batch]
            frames = torch.from_numpy(np.stack([to_chw(padded[s : s + t]) for s in chunk])).to(device)
            refs = torch.from_numpy(np.stack([to_chw(padded[picker.pick(s, t) or own]) for s in chunk])).to(device)
            audio = (
                torch.from_numpy(
                    np.stack(
                        [
                            audio_windows[s : s + t] if audio_windows is not None else frame_audio(mel, s, t)
                            for s in chunk
                        ]
                    )
                )
                .float()
                .to(device)
            )
            out = model(frames, refs, audio).permute(0, 1, 3, 4, 2).cpu().numpy()
            for s, window in zip(chunk, out):
                w = ramp.copy()
                if s == 0:
                    w[:overlap] = 1.0
                if s == starts[-1]:
                    w[t - overlap :] = 1.0
                total[s : s + t] += window * w[:, None, None, None]
                weight[s : s + t] += w
    result = total / np.maximum(weight, 1e-8)[:, None, None, None]
    return (np.clip(result[:n], 0, 1) * 255 + 0.5).astype(np.uint8)
