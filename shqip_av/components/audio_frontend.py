"""The audio front end of the sync expert, the lip-sync generator and dubbing (DESIGN.md §7.1).

16 kHz mono → 80-bin log-mel: n_fft 800, window 800 (Hann), hop 200, so 80 mel frames a second;
slaney mel scale and norm, 55–7600 Hz. The STFT is centred, so mel frame m describes the audio
around m / 80 s. At 25 fps video frame t starts at t / 25 s = mel frame 3.2·t, and the audio of
the T video frames starting at frame t is the mel frames [round(3.2·t), round(3.2·t) + ceil(3.2·T)),
zero-padded beyond the ends. ``mel_window`` is the only implementation of that mapping: training
and inference both call it, because a window one frame off silently ruins sync.
"""

from __future__ import annotations

import functools
import math

from typing import TYPE_CHECKING

import numpy as np

from shqip_av.media import AUDIO_RATE
from shqip_av.schema import FPS

if TYPE_CHECKING:
    import torch

SAMPLE_RATE = AUDIO_RATE  # 16 kHz: the project's one audio rate (shqip_av.media)
N_FFT = 800
WIN_LENGTH = 800
HOP_LENGTH = 200
N_MELS = 80
F_MIN, F_MAX = 55.0, 7600.0
MEL_RATE = SAMPLE_RATE / HOP_LENGTH  # 80 mel frames per second
VIDEO_FPS = float(FPS)  # the sample schema's frame rate (shqip_av.schema)
LOG_FLOOR = 1e-5
SILENCE = math.log(LOG_FLOOR)  # the log-mel value of zero audio


def mel_per_video_frame(fps: float = VIDEO_FPS) -> float:
    return MEL_RATE / fps  # 3.2 at 25 fps


@functools.lru_cache(maxsize=1)
def _mel_basis() -> np.ndarray:
    from transformers.audio_utils import mel_filter_bank

    # (n_freq, n_mels) slaney filters, as librosa.filters.mel(htk=False, norm="slaney") makes them
    return mel_filter_bank(
        num_frequency_bins=N_FFT // 2 + 1,
        num_mel_filters=N_MELS,
        min_frequency=F_MIN,
        max_frequency=F_MAX,
        sampling_rate=SAMPLE_RATE,
        norm="slaney",
        mel_scale="slaney",
        dtype=np.float32,
    )


def log_mel(audio) -> "torch.Tensor":
    """(N,) or (B, N) float waveform at 16 kHz → (80, M) or (B, 80, M) log-mel, M = N // 200 + 1."""
    import torch

    wave = torch.as_tensor(
        np.asarray(audio, dtype=np.float32) if not isinstance(audio, torch.Tensor) else audio, dtype=torch.float32
    )
    single = wave.dim() == 1
    if single:
        wave = wave[None]
    window = torch.hann_window(WIN_LENGTH, device=wave.device)
    spec = torch.stft(
        wave,
        n_fft=N_FFT,
        hop_length=HOP_LENGTH,
        win_length=WIN_LENGTH,
        window=window,
        center=True,
        pad_mode="reflect" if wave.shape[-1] > N_FFT // 2 else "constant",
        return_complex=True,
    )
    power = spec.abs() ** 2  # (B, freq, M)
    basis = torch.from_numpy(_mel_basis()).to(wave.device)
    mel = torch.einsum("fm,bft->bmt", basis, power)
    out = torch.log(torch.clamp(mel, min=LOG_FLOOR))
    return out[0] if single else out


def mel_start(frame: int, fps: float = VIDEO_FPS) -> int:
    """The first mel frame of video frame ``frame``."""
    return int(round(mel_per_video_frame(fps) * frame))


def mel_length(num_frames: int, fps: float = VIDEO_FPS) -> int:
    """Mel frames covering ``num_frames`` video frames (16 for the expert's 5 frames at 25 fps)."""
    return int(math.ceil(mel_per_video_frame(fps) * num_frames - 1e-9))


def mel_window(mel: np.ndarray, frame: int, num_frames: int, fps: float = VIDEO_FPS) -> np.ndarray:
    """The audio of video frames [frame, frame + num_frames): mel columns
    [round(3.2·frame), + ceil(3.2·num_frames)), padded with silence (the log floor: zero audio)
    where they fall outside ``mel``; (…, 80, M) → (…, 80, L). Works on numpy arrays and torch tensors."""
    start, length = mel_start(frame, fps), mel_length(num_frames, fps)
    total = mel.shape[-1]
    lo, hi = max(start, 0), min(start + length, total)
    if isinstance(mel, np.ndarray):
        out = np.full(mel.shape[:-1] + (length,), SILENCE, dtype=mel.dtype)
    else:
        import torch

        out = torch.full(mel.shape[:-1] + (length,), SILENCE, dtype=mel.dtype, device=mel.device)
    if hi > lo:
        out[..., lo - start : hi - start] = mel[..., lo:hi]
    return out


def speech_loudness(audio: np.ndarray, num_frames: int, fps: float, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Loudness of each video frame's audio in the speech band (300–3000 Hz RMS): what a mouth
    opening should follow. Low rumble and hiss, which no mouth makes, are filtered out first."""
    from scipy.signal import butter, sosfiltfilt

    audio = np.asarray(audio, dtype=np.float64)
    if len(audio) > 30:
        audio = sosfiltfilt(butter(4, [300, 3000], btype="band", fs=sample_rate, output="sos"), audio)
    hop = sample_rate / fps
    return np.array(
        [
            np.sqrt(np.mean(audio[int(i * hop) : int((i + 1) * hop)] ** 2) + 1e-12)
            if int(i * hop) < len(audio)
            else 0.0
            for i in range(num_frames)
        ]
    )


def correlations_by_lag(a: np.ndarray, b: np.ndarray, max_lag: int, min_length: int = 4) -> dict[int, float]:
    """{lag: Pearson r of a[t] against b[t + lag]} for lags within ±``max_lag`` that leave at least
    ``min_length`` pairs in which both series vary (a positive lag: ``b`` comes later)."""
    found = {}
    for lag in range(-max_lag, max_lag + 1):
        x, y = (a[: len(a) - lag], b[lag:]) if lag >= 0 else (a[-lag:], b[:lag])
        n = min(len(x), len(y))
        x, y = x[:n], y[:n]
        if n >= min_length and x.std() > 1e-9 and y.std() > 1e-9:
            found[lag] = float(np.corrcoef(x, y)[0, 1])
    return found


def lagged_correlation(a: np.ndarray, b: np.ndarray, max_lag: int = 2) -> float:
    """The best Pearson correlation of ``a`` and ``b`` shifted by up to ``max_lag`` frames either way
    (a mouth opens a frame or two before or after the sound it makes, and footage is often a little
    off). NaN when no shift leaves two series that both vary: a silent clip has no correlation."""
    found = correlations_by_lag(a, b, max_lag)
    return max(found.values()) if found else float("nan")
