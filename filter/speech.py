"""Speech segments: uploader captions when present, otherwise Silero VAD; then utterances of
min..max seconds split at pauses. Diarization labels speakers and finds overlapping speech."""

from __future__ import annotations

import functools
import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from filter.config import ConfigurationError, DiarizationConfig, SpeechConfig
from shqip_av.captions import read_vtt
from shqip_av.media import AUDIO_RATE
from shqip_av.models import ModelFileError, resolve_model


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


class SileroVAD:
    """Silero VAD v5 (ONNX) run with onnxruntime: 512-sample windows at 16 kHz, each with the
    previous 64 samples as context, and a recurrent state carried from window to window."""

    WINDOW, CONTEXT = 512, 64

    def __init__(self, model: str = "silero_vad"):
        import onnxruntime as ort

        path = model if model.endswith(".onnx") else str(resolve_model(model))
        if not Path(path).expanduser().is_file():
            raise ModelFileError(f"{path}: no such model file")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])

    BLOCK = 30 * AUDIO_RATE // WINDOW * WINDOW  # audio is read ~30 s at a time

    def probabilities(self, audio) -> np.ndarray:
        """Speech probability per 32 ms window. ``audio`` is an array or anything sliceable with a
        length (``shqip_av.media.PcmWav``); it is read in blocks, never whole."""
        n = int(np.ceil(len(audio) / self.WINDOW))
        state = np.zeros((2, 1, 128), dtype=np.float32)
        sr = np.array(AUDIO_RATE, dtype=np.int64)
        out = np.empty(n, dtype=np.float32)
        context = np.zeros(self.CONTEXT, dtype=np.float32)
        i = 0
        for block_start in range(0, n * self.WINDOW, self.BLOCK):
            block = np.asarray(audio[block_start : block_start + self.BLOCK], dtype=np.float32)
            windows = int(np.ceil(len(block) / self.WINDOW)) if len(block) else 0
            padded = np.zeros(self.CONTEXT + windows * self.WINDOW, dtype=np.float32)
            padded[: self.CONTEXT] = context
            padded[self.CONTEXT : self.CONTEXT + len(block)] = block
            for w in range(windows):
                chunk = padded[w * self.WINDOW : (w + 1) * self.WINDOW + self.CONTEXT][None, :]
                prob, state = self.session.run(None, {"input": chunk, "state": state, "sr": sr})
                out[i] = float(prob[0, 0])
                i += 1
            context = padded[-self.CONTEXT :].copy()
        return out[:i]

    def speech_regions(self, audio, cfg: SpeechConfig) -> list[tuple[float, float]]:
        probs = self.probabilities(audio)
        step = self.WINDOW / AUDIO_RATE
        regions, start, speaking = [], 0.0, False
        for i, p in enumerate(probs):
            if not speaking and p >= cfg.vad_threshold:
                speaking, start = True, i * step
            elif speaking and p < cfg.vad_neg_threshold:
                speaking = False
                regions.append((start, i * step))
        if speaking:
            regions.append((start, len(probs) * step))
        total = len(audio) / AUDIO_RATE
        return [(max(0.0, s - cfg.pad), min(total, e + cfg.pad)) for s, e in regions if e - s >= cfg.min_speech]


@functools.lru_cache(maxsize=2)
def silero_vad(model: str = "silero_vad") -> SileroVAD:
    """One VAD session per process, reused for every video (the recurrent state is per call)."""
    return SileroVAD(model)


def utterances_from_regions(
    regions: list[tuple[float, float]], cfg: SpeechConfig
) -> tuple[list[Utterance], list[Utterance]]:
    """Join speech regions separated by less than ``split_pause`` into utterances; split those
    longer than ``max_utterance`` at their longest inner pause. Returns (kept, too_short)."""
    merged: list[list[tuple[float, float]]] = []
    for s, e in sorted(regions):
        if merged and s - merged[-1][-1][1] < cfg.split_pause:
            merged[-1].append((s, e))
        else:
            merged.append([(s, e)])

    def split(parts: list[tuple[float, float]]) -> list[list[tuple[float, float]]]:
        if parts[-1][1] - parts[0][0] <= cfg.max_utterance or len(parts) == 1:
            return [parts]
        gaps = [parts[i + 1][0] - parts[i][1] for i in range(len(parts) - 1)]
        cut = int(np.argmax(gaps)) + 1
        return split(parts[:cut]) + split(parts[cut:])

    kept, short = [], []
    for group in merged:
        for parts in split(group):
            u = Utterance(round(parts[0][0], 3), round(parts[-1][1], 3))
            if u.duration < cfg.min_utterance:
                short.append(u)
            elif u.duration <= cfg.max_utterance + 1e-6:
                kept.append(u)
            else:  # one unbroken stretch of speech longer than the maximum: cut it evenly
                pieces = int(np.ceil(u.duration / cfg.max_utterance))
                edges = np.linspace(u.start, u.end, pieces + 1)
                kept.extend(Utterance(round(a, 3), round(b, 3)) for a, b in zip(edges[:-1], edges[1:]))
    return kept, short


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
