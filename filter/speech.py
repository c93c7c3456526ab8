"""Speech segments: uploader captions when present, otherwise Silero VAD; then utterances of
min..max seconds split at pauses. Diarization labels speakers and finds overlapping speech."""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from filter.config import ConfigurationError, DiarizationConfig, SpeechConfig
from shqip_av.captions import read_vtt
from shqip_av.media import AUDIO_RATE
from shqip_av.components.voice_activity import join_regions


@dataclass
class Utterance:
    start: float
    end: float
    text: str | None = None  # transcript (captions, or a pseudo-label), NFC
    speaker: str | None = None  # diarization label
    overlap: float = 0.0  # seconds with two or more speakers active
    transcript_source: str | None = None  # captions, asr:<model>; None without a transcript
    transcript_check: dict | None = None  # the transcripts step's measurements, when it ran

    @property
    def duration(self) -> float:
        return self.end - self.start


def utterances_from_regions(
    regions: list[tuple[float, float]], cfg: SpeechConfig
) -> tuple[list[Utterance], list[Utterance]]:
    """Join speech regions separated by less than ``split_pause`` into utterances; split those
    longer than ``max_utterance`` at their longest inner pause. Returns (kept, too_short)."""
    kept, short = join_regions(regions, cfg.split_pause, cfg.min_utterance, cfg.max_utterance)
    return [Utterance(a, b) for a, b in kept], [Utterance(a, b) for a, b in short]


def utterances_from_captions(path: Path, total: float, cfg: SpeechConfig) -> tuple[list[Utterance], list[Utterance]]:
    """One utterance per caption cue; cues shorter than the minimum join the next cue when the
    pause between them is short. Cues longer than the maximum cannot be split (the text has no
    timing inside) and are returned as too long."""
    cues = [c for c in read_vtt(path) if c.text.strip() and c.end > c.start]
    out: list[Utterance] = []
    for cue in cues:
        text = unicodedata.normalize("NFC", " ".join(cue.text.split()))
        start, end = max(0.0, cue.start), min(total, cue.end)
        if out and out[-1].duration < cfg.min_utterance and start - out[-1].end < cfg.split_pause:
            out[-1] = Utterance(out[-1].start, end, f"{out[-1].text} {text}")
        else:
            out.append(Utterance(round(start, 3), round(end, 3), text))
    kept = [u for u in out if cfg.min_utterance <= u.duration <= cfg.max_utterance]
    rest = [u for u in out if u not in kept]
    return kept, rest


# --- diarization -------------------------------------------------------------------------

SINGLE_SPEAKER = "single-speaker-assumed"  # the label when no diarization pipeline is configured
UNLABELLED = "unlabelled"
_PIPELINES: dict[str, object] = {}


def load_diarization(cfg: DiarizationConfig):
    """The configured pyannote.audio pipeline (cached per process), or None when none is set."""
    if not cfg.pipeline:
        return None
    if cfg.pipeline in _PIPELINES:
        return _PIPELINES[cfg.pipeline]
    from pyannote.audio import Pipeline
    import torch

    token = os.environ.get(cfg.token_env) or None
    try:
        pipeline = Pipeline.from_pretrained(cfg.pipeline, token=token)
    except Exception as exc:  # noqa: BLE001 - pyannote raises many kinds; one clear line for the user
        raise ConfigurationError(
            f"diarization.pipeline {cfg.pipeline!r} could not be loaded: {type(exc).__name__}: {exc}"
        ) from None
    if pipeline is None:
        raise ConfigurationError(
            f"diarization.pipeline {cfg.pipeline!r} could not be loaded (gated or offline; set {cfg.token_env})"
        )
    pipeline.to(torch.device(cfg.device))
    _PIPELINES[cfg.pipeline] = pipeline
    return pipeline


def diarize(pipeline, audio: np.ndarray) -> list[tuple[float, float, str]]:
    """Speaker turns (start, end, label) of 16 kHz mono audio; turns may overlap."""
    import torch

    output = pipeline({"waveform": torch.from_numpy(audio[None, :].copy()), "sample_rate": AUDIO_RATE})
    annotation = getattr(output, "speaker_diarization", output)  # pyannote 4 wraps it; 3.x returns it
    return [
        (float(turn.start), float(turn.end), str(label)) for turn, _, label in annotation.itertracks(yield_label=True)
    ]


def label_utterances(utterances: list[Utterance], turns: list[tuple[float, float, str]] | None) -> None:
    """Give each utterance the speaker who talks most in it, and the time two or more talk."""
    for u in utterances:
        if turns is None:
            u.speaker, u.overlap = SINGLE_SPEAKER, 0.0
            continue
        grid = np.arange(u.start, u.end, 0.01)
        active: dict[str, np.ndarray] = {}
        for s, e, label in turns:
            if e > u.start and s < u.end:
                active[label] = active.get(label, np.zeros(len(grid), bool)) | ((grid >= s) & (grid < e))
        if not active:  # diarization heard nobody here (VAD or captions did)
            u.speaker, u.overlap = UNLABELLED, 0.0
            continue
        talk = np.stack(list(active.values()))
        u.speaker = max(active, key=lambda k: active[k].sum())
        u.overlap = round(float((talk.sum(axis=0) >= 2).sum()) * 0.01, 3)
