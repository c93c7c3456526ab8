"""Voice activity: Silero VAD v5 (ONNX, onnxruntime), speech regions from its probabilities, and
regions joined into utterance-sized stretches. A component of the foundation: filter finds
utterances with it, the dub finds the original's speech with it."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from shqip_av.media import AUDIO_RATE
from shqip_av.models import ModelFileError, resolve_model


class RegionSettings(Protocol):
    """What ``SileroVAD.speech_regions`` reads (filter's SpeechConfig has these fields too)."""

    vad_threshold: float
    vad_neg_threshold: float
    min_speech: float
    pad: float


@dataclass
class VoiceActivityConfig:
    vad_model: str = "silero_vad"  # a model name (shqip_av.models) or an .onnx path
    vad_threshold: float = 0.5  # speech probability that starts speech
    vad_neg_threshold: float = 0.35  # speech probability below which speech ends
    min_speech: float = 0.25  # shorter speech regions are ignored (s)
    pad: float = 0.05  # padding added around each speech region (s)


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

    @classmethod
    def from_pretrained(cls, model: str = "silero_vad") -> "SileroVAD":
        """The VAD of a model name (shqip_av.models) or an .onnx path, one session per process."""
        return silero_vad(model)

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

    def speech_regions(self, audio, cfg: RegionSettings) -> list[tuple[float, float]]:
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


def join_regions(
    regions: list[tuple[float, float]], split_pause: float, min_length: float, max_length: float
) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """Join speech regions separated by less than ``split_pause`` seconds; split joined stretches
    longer than ``max_length`` at their longest inner pause (one unbroken stretch longer than that
    is cut evenly). Returns (kept, too_short) as (start, end) rounded to the millisecond."""
    merged: list[list[tuple[float, float]]] = []
    for s, e in sorted(regions):
        if merged and s - merged[-1][-1][1] < split_pause:
            merged[-1].append((s, e))
        else:
            merged.append([(s, e)])

    def split(parts: list[tuple[float, float]]) -> list[list[tuple[float, float]]]:
        if parts[-1][1] - parts[0][0] <= max_length or len(parts) == 1:
            return [parts]
        gaps = [parts[i + 1][0] - parts[i][1] for i in range(len(parts) - 1)]
        cut = int(np.argmax(gaps)) + 1
        return split(parts[:cut]) + split(parts[cut:])

    kept, short = [], []
    for group in merged:
        for parts in split(group):
            start, end = round(parts[0][0], 3), round(parts[-1][1], 3)
            if end - start < min_length:
                short.append((start, end))
            elif end - start <= max_length + 1e-6:
                kept.append((start, end))
            else:
                pieces = int(np.ceil((end - start) / max_length))
                edges = np.linspace(start, end, pieces + 1)
                kept.extend((round(a, 3), round(b, 3)) for a, b in zip(edges[:-1], edges[1:]))
    return kept, short
