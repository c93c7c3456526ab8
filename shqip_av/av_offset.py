"""A whole video's audio offset, measured without any model (DESIGN.md §7.2).

A two-second utterance is too short to say reliably how far its audio is off; a whole video is
long enough when its mouth signals agree. Four signals of the longest face track are lined up with
the speech-band loudness of the audio (log) at every shift within ±``max_lag`` frames: the inner
lip gap and the jaw drop (in eye distances), and the frame-to-frame change of each against the
change of loudness. Each signal votes for the shift where it follows the loudness best; the video's
offset is the median vote when at least ``min_agree`` signals fall within a frame of it and that
shift beats no shift by ``min_gain`` in correlation (else the verdict is "unclear"). Positive
offsets: the audio is late, as in filter's sync offsets.

A video whose two halves are each clear and disagree by more than ``drift_frames`` is drifting:
one constant correction would be wrong for part of it, so it is flagged and never corrected.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from shqip_av import geometry

UPPER_LIP, LOWER_LIP = 13, 14  # MediaPipe: inner lip centres
MIN_FRAMES = 100  # four seconds at 25 fps: shorter stretches give no verdict
SILENT_RMS = 1e-3  # speech-band RMS below this on every frame: the audio carries no speech


@dataclass
class OffsetEstimate:
    verdict: str  # "clear", "unclear", "silent", "too-short", "drifting"
    offset: int = 0  # frames, positive: audio late (meaningful when verdict is clear)
    agree: int = 0  # signals within a frame of the offset
    gain: float = 0.0  # mean correlation at the offset minus at no shift, over the agreeing signals
    r: float = 0.0  # mean correlation at the offset over the agreeing signals (the speaking face's is high)
    frames: int = 0
    votes: dict[str, int] = field(default_factory=dict)
    halves: list[dict] = field(default_factory=list)  # the two halves' estimates (whole-video check)

    @property
    def clear(self) -> bool:
        return self.verdict == "clear"

    def to_dict(self) -> dict:
        out = asdict(self)
        out["gain"], out["r"] = round(self.gain, 4), round(self.r, 4)
        return out


def mouth_signals(landmarks: np.ndarray) -> dict[str, np.ndarray]:
    """(T, 478, 2) landmarks in pixels → the lip gap and jaw drop per frame, in eye distances."""
    marks = np.asarray(landmarks, np.float64)
    eye = np.maximum(geometry.eye_distance(marks), 1e-6)
    return {
        "lip_gap": np.linalg.norm(marks[:, UPPER_LIP] - marks[:, LOWER_LIP], axis=-1) / eye,
        "jaw_drop": geometry.jaw_drop(marks),
    }


def _votes(signals: dict[str, np.ndarray], loud: np.ndarray, max_lag: int) -> dict[str, tuple[int, float, float]]:
    from shqip_av.components.audio_frontend import correlations_by_lag

    pairs = {}
    for name, opening in signals.items():
        pairs[name] = (opening, loud)
        pairs[f"{name}_change"] = (np.diff(opening), np.diff(loud))
    out = {}
    for name, (a, b) in pairs.items():
        found = correlations_by_lag(a, b, max_lag, min_length=2 * max_lag + 1)
        if found:
            lag = max(found, key=found.get)
            out[name] = (lag, found[lag], found.get(0, float("nan")))
    return out


def estimate_offset(
    landmarks: np.ndarray,
    loudness: np.ndarray,
    *,
    max_lag: int = 15,
    min_agree: int = 3,
    min_gain: float = 0.02,
    min_frames: int = MIN_FRAMES,
) -> OffsetEstimate:
    """The offset of one stretch: ``landmarks`` (T, 478, 2) and ``loudness`` (T,) the speech-band
    RMS of each frame's audio (``audio_frontend.speech_loudness``)."""
    frames = min(len(landmarks), len(loudness))
    if frames < min_frames:
        return OffsetEstimate("too-short", frames=frames)
    loud = np.asarray(loudness[:frames], np.float64)
    if float(loud.max(initial=0.0)) < SILENT_RMS:
        return OffsetEstimate("silent", frames=frames)
    votes = _votes(mouth_signals(landmarks[:frames]), np.log(loud + 1e-4), max_lag)
    lags = {k: v[0] for k, v in votes.items()}
    if not lags:
        return OffsetEstimate("unclear", frames=frames)
    # the lag most signals agree on within a frame (ties: the smaller shift)
    best = max(range(-max_lag, max_lag + 1), key=lambda k: (sum(abs(v - k) <= 1 for v in lags.values()), -abs(k)))
    agreeing = [k for k, v in lags.items() if abs(v - best) <= 1]
    offset = int(round(float(np.median([lags[k] for k in agreeing]))))
    gain = float(np.nanmean([votes[k][1] - votes[k][2] for k in agreeing]))
    r = float(np.nanmean([votes[k][1] for k in agreeing]))
    clear = len(agreeing) >= min_agree and (abs(offset) <= 1 or gain >= min_gain)
    return OffsetEstimate(
        "clear" if clear else "unclear", offset if clear else 0, len(agreeing), gain if np.isfinite(gain) else 0.0,
        r if np.isfinite(r) else 0.0, frames, lags,
    )  # fmt: skip


def estimate_video_offset(
    landmarks: np.ndarray, loudness: np.ndarray, *, drift_frames: int = 2, **options
) -> OffsetEstimate:
    """The whole stretch's estimate, and its halves': drifting when both halves are clear and more
    than ``drift_frames`` apart."""
    whole = estimate_offset(landmarks, loudness, **options)
    if whole.verdict in ("too-short", "silent"):
        return whole
    frames = min(len(landmarks), len(loudness))
    middle = frames // 2
    halves = [
        estimate_offset(landmarks[:middle], loudness[:middle], **options),
        estimate_offset(landmarks[middle:frames], loudness[middle:frames], **options),
    ]
    whole.halves = [{"verdict": h.verdict, "offset": h.offset, "agree": h.agree} for h in halves]
    if all(h.clear for h in halves) and abs(halves[0].offset - halves[1].offset) > drift_frames:
        whole.verdict, whole.offset = "drifting", 0
    return whole


def shift_audio(audio: np.ndarray, samples: int) -> np.ndarray:
    """``audio`` moved onto the video when it is ``samples`` late (positive: its start is cut and
    silence pads the end) or early (negative: silence in front, the end cut); same length."""
    audio = np.asarray(audio)
    n = len(audio)
    if samples == 0 or n == 0:
        return audio.copy()
    k = min(abs(samples), n)
    pad = np.zeros(k, audio.dtype)
    return np.concatenate([audio[k:], pad]) if samples > 0 else np.concatenate([pad, audio[: n - k]])
