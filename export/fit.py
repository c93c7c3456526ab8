"""Fitting synthesized speech to its slot (DESIGN.md §8): the dub's speech for a segment must
start and end where the original speech did, or the mouth and the words drift apart.

In order, each step only when the one before left a misfit:
1. speaking rate at synthesis (the TTS backend's own rate; ``speaking_rate`` proposes it from a
   first synthesis);
2. a time-stretch with ffmpeg's ``atempo`` (pitch kept), within ``[min_tempo, max_tempo]``:
   faster speech beyond about 1.35× or slower below about 0.9× sounds wrong;
3. padding with silence (too short) or, when still too long, borrowing the silence after the slot
   up to the next segment; what still does not fit is cut with a short fade and reported, with
   its length, as overflow.

The fitted audio is exactly the slot (plus what was borrowed) long, to the sample.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from shqip_av.config import option

FADE_SECONDS = 0.02
SLACK_SECONDS = 0.02  # atempo's output runs a few ms long: that much is cut without counting as overflow


@dataclass
class FitConfig:
    min_tempo: float = option(0.9, "slowest stretch (atempo factor) used to fill a slot", above=0, max=1)
    max_tempo: float = option(1.35, "fastest stretch (atempo factor) used to fit a slot", min=1, max=4)
    min_rate: float = option(0.8, "slowest speaking rate asked of the TTS", above=0, max=1)
    max_rate: float = option(1.5, "fastest speaking rate asked of the TTS", min=1, max=4)
    borrow: bool = option(True, "speech still too long may run into the silence after its slot")


@dataclass
class Fitted:
    audio: np.ndarray  # float32 mono at the given rate
    synthesized: float  # seconds, as the TTS gave it
    fitted: float  # seconds, after fitting (slot + borrowed)
    tempo: float  # atempo factor applied (1: none)
    borrowed: float  # seconds taken from the silence after the slot
    overflow: float  # seconds that did not fit and were cut

    def report(self) -> dict:
        out = asdict(self)
        del out["audio"]
        return {k: round(v, 3) for k, v in out.items()}


def speaking_rate(duration: float, slot: float, cfg: FitConfig) -> float:
    """The speaking rate to ask of the TTS so that speech of ``duration`` seconds at rate 1 fills ``slot``."""
    if duration <= 0 or slot <= 0:
        return 1.0
    return float(np.clip(duration / slot, cfg.min_rate, cfg.max_rate))


def atempo(audio: np.ndarray, rate: int, tempo: float) -> np.ndarray:
    """``audio`` played ``tempo`` times faster, pitch kept (ffmpeg atempo; chained past its 0.5–2 range)."""
    import tempfile
    from pathlib import Path

    from shqip_av.media import decode_wav, run_ffmpeg, write_wav

    if abs(tempo - 1.0) < 1e-3 or len(audio) == 0:
        return audio.astype(np.float32)
    stages, left = [], tempo
    while left > 2.0 or left < 0.5:
        step = 2.0 if left > 2.0 else 0.5
        stages.append(step)
        left /= step
    stages.append(left)
    with tempfile.TemporaryDirectory() as tmp:
        src = write_wav(Path(tmp) / "in.wav", audio.astype(np.float32), sample_rate=rate)
        proc = run_ffmpeg(
            [
                "-i",
                str(src),
                "-af",
                ",".join(f"atempo={s:.6f}" for s in stages),
                "-ac",
                "1",
                "-ar",
                str(rate),
                "-f",
                "wav",
                "-",
            ],
            "time-stretch",
        )
    out, _ = decode_wav(proc.stdout)
    return out.astype(np.float32)


def _fade_out(audio: np.ndarray, rate: int) -> np.ndarray:
    n = min(len(audio), int(FADE_SECONDS * rate))
    if n:
        audio = audio.copy()
        audio[-n:] *= np.linspace(1.0, 0.0, n, dtype=np.float32)
    return audio


def fit_to_slot(
    audio: np.ndarray, rate: int, slot: float, *, gap_after: float = 0.0, cfg: FitConfig | None = None
) -> Fitted:
    """Stretch, pad, borrow or cut ``audio`` (float mono at ``rate``) to fill ``slot`` seconds;
    ``gap_after``: seconds of silence after the slot that it may borrow."""
    cfg = cfg or FitConfig()
    audio = np.asarray(audio, np.float32)
    synthesized = len(audio) / rate
    want = int(round(slot * rate))
    tempo = 1.0
    if synthesized > 0 and slot > 0:
        ratio = synthesized / slot
        if ratio > 1.0 + 1e-3:
            tempo = min(ratio, cfg.max_tempo)
        elif ratio < 1.0 - 1e-3:
            tempo = max(ratio, cfg.min_tempo)
    if tempo != 1.0:
        audio = atempo(audio, rate, tempo)
    borrowed = overflow = 0.0
    if want < len(audio) <= want + int(SLACK_SECONDS * rate):
        audio = _fade_out(audio[:want], rate)
    if len(audio) > want:
        extra = len(audio) - want
        room = int(round(max(0.0, gap_after) * rate)) if cfg.borrow else 0
        take = min(extra, room)
        borrowed = take / rate
        keep = want + take
        if len(audio) > keep:
            overflow = (len(audio) - keep) / rate
            audio = _fade_out(audio[:keep], rate)
    else:
        audio = np.concatenate([audio, np.zeros(want - len(audio), np.float32)])
    return Fitted(audio, synthesized, len(audio) / rate, tempo, borrowed, overflow)
