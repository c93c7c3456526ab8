"""Speech synthesis for dubbing: two backends behind one call, ``speaker.speak(text, rate, voice)``
→ float32 mono at 16 kHz (the project's audio rate, ``shqip_av.components.audio_frontend``).

- ``espeak``: espeak-ng (offline, no model files, an Albanian voice among ~100 languages). The
  speaking rate is its words-per-minute; the voice follows the original speaker where espeak
  allows: the gender picks the male or female variant, the median pitch sets espeak's pitch and
  the pitch spread its range.
- ``vits``: a transformers ``VitsModel`` (MMS-TTS: one model per language, one voice), with the
  speaking rate passed per call; its output is resampled to 16 kHz. The one voice is brought to
  the original speaker's median pitch (``shift_pitch``, within 0.7–1.45×), which also moves it
  across the male/female range; timbre stays the model's.

``voice_of(audio)`` measures the original speaker's pitch (autocorrelation over voiced 40 ms
frames) for the voice choice.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shqip_av import ShqipError
from shqip_av.media import AUDIO_RATE

RATE = AUDIO_RATE  # what the TTS output is resampled to
ESPEAK_WPM = 175  # espeak-ng's default words per minute: speaking rate 1
# espeak-ng's -p setting → the median F0 voice_of measures, for its m3 and f3 variants (sq voice)
ESPEAK_PITCH = {
    "male": ((68, 78, 91, 111, 138, 169), (0, 20, 40, 60, 80, 99)),
    "female": ((139, 160, 188, 222, 271, 327), (0, 20, 40, 60, 80, 99)),
}
MALE_BELOW_HZ = 150.0  # median F0 under this reads as a male voice (typical: 85-155 male, 165-255 female)


class SpeechError(ShqipError):
    pass


@dataclass(frozen=True)
class Voice:
    """What is known of the original speaker's voice."""

    median_hz: float | None = None
    spread_hz: float | None = None  # interquartile range of F0

    @property
    def gender(self) -> str | None:
        return None if self.median_hz is None else ("male" if self.median_hz < MALE_BELOW_HZ else "female")


def voice_of(audio: np.ndarray, rate: int = RATE) -> Voice:
    """Median and spread of F0 over the voiced 40 ms frames of ``audio`` (60–400 Hz)."""
    frame, hop = int(0.04 * rate), int(0.01 * rate)
    lo, hi = int(rate / 400), int(rate / 60)
    audio = np.asarray(audio, np.float64)
    if len(audio) < frame:
        return Voice()
    loud = np.sqrt(np.mean(audio**2)) * 0.5
    f0 = []
    for start in range(0, len(audio) - frame, hop):
        x = audio[start : start + frame]
        if np.sqrt(np.mean(x**2)) < loud:
            continue
        x = x - x.mean()
        ac = np.correlate(x, x, "full")[frame - 1 :]
        if ac[0] <= 0:
            continue
        window = ac[lo:hi]
        best = float(window.max())
        if best / ac[0] <= 0.5:  # not clearly periodic: unvoiced
            continue
        # the shortest lag nearly as strong as the best: multiples of the period score as high
        peaks = [
            i
            for i in range(1, len(window) - 1)
            if window[i] >= window[i - 1] and window[i] >= window[i + 1] and window[i] >= 0.85 * best
        ]
        f0.append(rate / (lo + (peaks[0] if peaks else int(np.argmax(window)))))
    if len(f0) < 5:
        return Voice()
    q1, med, q3 = np.percentile(f0, [25, 50, 75])
    return Voice(float(med), float(q3 - q1))


class EspeakSpeaker:
    backend = "espeak"

    def __init__(self, voice: str):
        if shutil.which("espeak-ng") is None:
            raise SpeechError("espeak-ng not found: install it (apt-get install espeak-ng), or use a vits: TTS")
        self.voice = voice
        known = subprocess.run(["espeak-ng", f"--voices={voice}"], capture_output=True, text=True).stdout
        if len(known.strip().splitlines()) < 2:
            raise SpeechError(f"espeak-ng has no voice for language {voice!r} (espeak-ng --voices lists them)")

    def voice_settings(self, voice: Voice) -> tuple[str, int, int]:
        """(espeak voice name with variant, pitch 0–99, pitch range 0–99) for the original voice."""
        name = self.voice + {"male": "+m3", "female": "+f3"}.get(voice.gender or "", "")
        hz, setting = ESPEAK_PITCH[voice.gender] if voice.gender else ESPEAK_PITCH["male"]
        pitch = 50 if voice.median_hz is None else int(round(np.interp(voice.median_hz, hz, setting)))
        spread = 50 if voice.spread_hz is None else int(np.clip(voice.spread_hz / 60 * 50, 10, 99))
        return name, pitch, spread

    def speak(self, text: str, rate: float = 1.0, voice: Voice = Voice()) -> np.ndarray:
        from shqip_av.media import read_audio

        name, pitch, spread = self.voice_settings(voice)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "tts.wav"
            proc = subprocess.run(
                [
                    "espeak-ng",
                    "-v",
                    name,
                    "-p",
                    str(pitch),
                    "-a",
                    "120",
                    "-s",
                    str(int(round(ESPEAK_WPM * rate))),
                    "-w",
                    str(out),
                    "--",
                    text,
                ],
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0 or not out.is_file():
                raise SpeechError(f"espeak-ng failed: {proc.stderr.strip() or proc.returncode}")
            return _trim(read_audio(out, sample_rate=RATE))


class VitsSpeaker:
    backend = "vits"

    def __init__(self, source: str, revision: str = "main"):
        from transformers import AutoTokenizer, VitsModel

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(source, revision=revision)
            self.model = VitsModel.from_pretrained(source, revision=revision).eval()
        except (OSError, ValueError) as e:
            raise SpeechError(f"cannot load the VITS model {source!r}: {str(e).splitlines()[0]}") from None

    def speak(self, text: str, rate: float = 1.0, voice: Voice = Voice(), seed: int = 0) -> np.ndarray:
        import torch
        import torchaudio

        inputs = self.tokenizer(text, return_tensors="pt")
        if inputs["input_ids"].shape[-1] == 0:
            raise SpeechError(f"the VITS tokenizer keeps nothing of {text[:40]!r} (a language it does not cover?)")
        self.model.speaking_rate = float(rate)
        torch.manual_seed(seed)  # VITS samples its durations and noise: the same call gives the same speech
        with torch.no_grad():
            wave = self.model(**inputs).waveform[0]
        source_rate = self.model.config.sampling_rate
        if source_rate != RATE:
            wave = torchaudio.functional.resample(wave, source_rate, RATE)
        speech, _ = match_pitch(_trim(wave.numpy().astype(np.float32)), voice)
        return speech


MAX_PITCH_SHIFT = (0.7, 1.45)  # beyond this a shifted voice sounds processed


def shift_pitch(audio: np.ndarray, factor: float, rate: int = RATE) -> np.ndarray:
    """``audio`` with its pitch times ``factor`` and its length kept: resampled (pitch and tempo
    both × factor), then time-stretched back with ffmpeg's atempo."""
    import torch
    import torchaudio

    from export.fit import atempo

    if abs(factor - 1.0) < 0.02 or len(audio) == 0:
        return audio.astype(np.float32)
    faster = torchaudio.functional.resample(
        torch.from_numpy(np.asarray(audio, np.float32)), int(round(rate * factor)), rate
    ).numpy()
    return atempo(faster, rate, 1.0 / factor)


def match_pitch(audio: np.ndarray, voice: Voice) -> tuple[np.ndarray, float]:
    """``audio`` shifted so that its median F0 is the original speaker's; (audio, factor applied)."""
    own = voice_of(audio)
    if voice.median_hz is None or own.median_hz is None:
        return audio, 1.0
    factor = float(np.clip(voice.median_hz / own.median_hz, *MAX_PITCH_SHIFT))
    return shift_pitch(audio, factor), factor


def _trim(audio: np.ndarray, threshold: float = 0.01) -> np.ndarray:
    """Without the synthesizer's own leading and trailing silence (10 ms kept each side)."""
    loud = np.flatnonzero(np.abs(audio) > threshold * max(1e-6, float(np.abs(audio).max())))
    if not loud.size:
        return audio.astype(np.float32)
    return audio[max(0, loud[0] - 160) : loud[-1] + 160].astype(np.float32)


def make_speaker(entry: dict, source: str, revision: str = "main"):
    """The speaker of a bundle's tts entry (``source``: the folder or id to load from)."""
    if entry.get("backend") == "espeak":
        return EspeakSpeaker(source)
    if entry.get("backend") == "vits":
        return VitsSpeaker(source, revision)
    raise SpeechError(f"unknown TTS backend {entry.get('backend')!r} (espeak or vits)")
