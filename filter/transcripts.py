"""Transcripts you can trust (DESIGN.md §3 step 3): with ``transcripts.model`` set, Whisper hears
every utterance before its face is looked at, and

- speech it confidently identifies as a language outside ``transcripts.languages`` is rejected
  (``wrong-language``, with the language and its probability);
- a caption that a confident recognizer disagrees with is rejected (``caption-mismatch``, with
  the character error rate of the two after the Albanian normalization); an unsure recognizer
  never overrules a caption, it leaves it unverified;
- an utterance without a caption gets the recognizer's text as a pseudo-label
  (``transcript_source: asr:<model>``) only when the recognizer is confident: mean token
  log-probability, compression ratio, no-speech probability and repeated 3-grams all within the
  configured bounds. Otherwise it stays without a transcript (lip-sync can still use it).

Silent or (nearly) empty utterances and utterances longer than the model's input window are not
transcribed; they are counted, and keep what they had. Every measurement goes to work/<video_id>/decisions.json.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from filter.config import ConfigurationError, TranscriptsConfig
from shqip_av.components.whisper import model_digest
from shqip_av import ShqipError
from shqip_av.log import get_logger
from shqip_av.media import AUDIO_RATE
from shqip_av.normalize import normalize

log = get_logger(__name__)

MIN_SECONDS = 0.2  # less audio than this holds no word: not worth a recognizer pass


def model_label(cfg: TranscriptsConfig) -> str:
    """``asr:<id>`` for transcript_source: a Hub id (with its revision when not main), or a local
    folder's name with its weights' digest; never an absolute path of the user's machine."""
    source = cfg.model
    if Path(source).expanduser().is_dir():
        name = Path(source).expanduser().resolve().name
        digest = model_digest(source)
        return f"asr:{name}@{digest[:8]}" if digest else f"asr:{name}"
    return f"asr:{source}" + (f"@{cfg.revision}" if cfg.revision != "main" else "")


@functools.lru_cache(maxsize=1)
def load_recognizer(model: str, revision: str, max_new_tokens: int, device: str):
    """The configured Whisper, loaded once per process (each filter worker holds its own)."""
    import transformers

    from shqip_av.models import torch_device
    from shqip_av.components.whisper import load_for_inference

    transformers.logging.set_verbosity_error()  # per-batch generation notices would flood the log
    loaded = load_for_inference(model, revision=revision, max_new_tokens=max_new_tokens)
    loaded.model.to(torch_device(device, "transcripts.device"))
    return loaded


def check_recognizer(cfg: TranscriptsConfig) -> None:
    """Start-up check (one line, before any video): the model loads, knows every configured
    language, and can identify languages."""
    from shqip_av.components.whisper import has_alignment_heads, language_token_id

    if not cfg.model:
        return
    from shqip_av.components import ASR_RUN, WHISPER, KindError, expect_kind

    try:  # a generator, an expert or a translation model given here: one line, before any video
        expect_kind(cfg.model, (WHISPER, ASR_RUN), "transcripts.model")
    except KindError as e:
        raise ConfigurationError(str(e)) from None
    if not cfg.languages:
        raise ConfigurationError("transcripts.languages is empty: name the spoken languages to keep (Albanian: sq)")
    try:
        loaded = load_recognizer(cfg.model, cfg.revision, cfg.max_new_tokens, cfg.device)
        for language in cfg.languages:
            language_token_id(loaded.processor.tokenizer, language)
    except ShqipError as e:
        raise ConfigurationError(f"transcripts.model: {e}") from None
    if not getattr(loaded.model.generation_config, "lang_to_id", None):
        raise ConfigurationError(
            f"transcripts.model {cfg.model!r}: its generation config has no lang_to_id, so it cannot identify languages"
        )
    if cfg.retime_captions and not has_alignment_heads(loaded):
        raise ConfigurationError(
            f"transcripts.retime_captions needs word timestamps, but {cfg.model!r} has no "
            "alignment_heads in its generation config (the released Whisper checkpoints have them)"
        )


def repeated_ngrams(text: str, n: int = 3) -> int:
    """How often the most frequent word n-gram occurs (0 for fewer than n words)."""
    words = normalize(text).split()
    grams = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    return max(grams.values(), default=0)


def confidence_problems(recognition, cfg: TranscriptsConfig) -> list[str]:
    """Why the recognizer's own text should not be trusted (empty: confident)."""
    problems = []
    if not normalize(recognition.text):
        problems.append("empty text")
    if recognition.avg_logprob < cfg.min_avg_logprob:
        problems.append(f"mean log-probability {recognition.avg_logprob:.2f} < {cfg.min_avg_logprob}")
    if recognition.compression_ratio > cfg.max_compression_ratio:
        problems.append(f"compression ratio {recognition.compression_ratio:.2f} > {cfg.max_compression_ratio}")
    if recognition.no_speech_probability > cfg.max_no_speech_probability:
        problems.append(
            f"no-speech probability {recognition.no_speech_probability:.2f} > {cfg.max_no_speech_probability}"
        )
    repeats = repeated_ngrams(recognition.text)
    if repeats > cfg.max_ngram_repeats:
        problems.append(f"a 3-gram repeated {repeats} times")
    return problems


def character_error_rate(reference: str, hypothesis: str) -> float:
    """CER of two texts after the Albanian normalization (1.0 when the hypothesis is empty)."""
    import jiwer

    ref, hyp = normalize(reference), normalize(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    if not hyp:
        return 1.0
    return float(jiwer.cer(ref, hyp))


@dataclass
class TranscriptOutcome:
    """The step's verdict on one utterance."""

    check: dict  # measurements, for decisions.json and the sample's metadata
    rejection: tuple[str, str, float] | None = None  # (reason, detail, value)


@dataclass
class TranscriptStats:
    transcribed: int = 0
    skipped: Counter = field(default_factory=Counter)  # reason → utterances not transcribed
    captions_verified: int = 0
    captions_unverified: int = 0  # the recognizer was unsure, so the caption was kept unchecked
    captions_retimed: int = 0
    pseudo_labels: int = 0
    pseudo_labels_refused: int = 0
    rejected: Counter = field(default_factory=Counter)
    seconds: float = 0.0  # audio transcribed

    def to_dict(self) -> dict:
        return {
            "transcribed": self.transcribed,
            "skipped": dict(self.skipped),
            "captions_verified": self.captions_verified,
            "captions_unverified": self.captions_unverified,
            "captions_retimed": self.captions_retimed,
            "pseudo_labels": self.pseudo_labels,
            "pseudo_labels_refused": self.pseudo_labels_refused,
            "rejected": dict(self.rejected),
            "seconds": round(self.seconds, 3),
        }


def _rms_db(samples: np.ndarray) -> float:
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if len(samples) else 0.0
    return 20 * np.log10(max(rms, 1e-10))


def check_transcripts(
    utterances: list, audio, cfg: TranscriptsConfig, *, min_duration: float = 0.0
) -> tuple[dict[int, TranscriptOutcome], TranscriptStats]:
    """Run the step over ``utterances`` (objects with start, end, text, transcript_source); fills
    in pseudo-labels and retimed caption edges in place (never shorter than ``min_duration``) and
    returns {index: outcome} for those it measured, and its counts."""
    stats = TranscriptStats()
    outcomes: dict[int, TranscriptOutcome] = {}
    if not cfg.model:
        return outcomes, stats
    loaded = load_recognizer(cfg.model, cfg.revision, cfg.max_new_tokens, cfg.device)
    window = float(loaded.processor.feature_extractor.chunk_length)
    label = model_label(cfg)
    todo: list[tuple[int, np.ndarray]] = []
    for i, u in enumerate(utterances):
        samples = np.asarray(audio[int(u.start * AUDIO_RATE) : int(u.end * AUDIO_RATE)], np.float32)
        if len(samples) < MIN_SECONDS * AUDIO_RATE:
            stats.skipped["too-short-for-model"] += 1
            outcomes[i] = TranscriptOutcome(
                {"skipped": f"{len(samples) / AUDIO_RATE:.2f} s of audio is too short to transcribe"}
            )
        elif u.end - u.start > window:
            stats.skipped["longer-than-model-window"] += 1
            outcomes[i] = TranscriptOutcome(
                {"skipped": f"{u.end - u.start:.2f} s is longer than the model's {window:g} s input"}
            )
        elif _rms_db(samples) < cfg.min_rms_db:
            stats.skipped["silent"] += 1
            outcomes[i] = TranscriptOutcome({"skipped": f"silent (RMS {_rms_db(samples):.1f} dBFS)"})
        else:
            todo.append((i, samples))
    from shqip_av.components.whisper import recognize

    for b in range(0, len(todo), cfg.batch_size):
        batch = todo[b : b + cfg.batch_size]
        heard = recognize(loaded, [s for _, s in batch], languages=list(cfg.languages), timestamps=cfg.retime_captions)
        for (i, samples), recognition in zip(batch, heard):
            stats.transcribed += 1
            stats.seconds += len(samples) / AUDIO_RATE
            outcomes[i] = _judge(utterances[i], recognition, cfg, label, stats)
            if cfg.retime_captions and outcomes[i].check.get("verified"):
                _retime(utterances[i], recognition, cfg, outcomes[i].check, stats, min_duration)
    return outcomes, stats


def _retime(u, recognition, cfg: TranscriptsConfig, check: dict, stats: TranscriptStats, min_duration: float) -> None:
    """Move a verified caption's edges to the words when either is more than max_timing_drift off."""
    if recognition.speech_start is None or recognition.speech_end is None:
        return
    duration = u.end - u.start
    lead, tail = recognition.speech_start, duration - recognition.speech_end
    if max(lead, tail) <= cfg.max_timing_drift:
        return
    start = u.start + max(0.0, recognition.speech_start - cfg.retime_margin)
    end = u.start + min(duration, recognition.speech_end + cfg.retime_margin)
    if end - start < max(min_duration, 0.0) or end <= start:
        check["retime_refused"] = f"the words span {end - start:.2f} s, shorter than an utterance may be"
        return
    check["retimed_from"] = [u.start, u.end]
    u.start, u.end = round(start, 3), round(end, 3)
    stats.captions_retimed += 1


def _judge(u, recognition, cfg: TranscriptsConfig, label: str, stats: TranscriptStats) -> TranscriptOutcome:
    check = {"model": label, **recognition.to_dict()}
    outcome = TranscriptOutcome(check)
    if recognition.language not in cfg.languages and recognition.language_probability >= cfg.min_language_probability:
        outcome.rejection = (
            "wrong-language",
            f"spoken language identified as {recognition.language!r} "
            f"(probability {recognition.language_probability:.2f}; kept: {', '.join(cfg.languages)})",
            recognition.language_probability,
        )
        stats.rejected["wrong-language"] += 1
        return outcome
    problems = confidence_problems(recognition, cfg)
    check["confident"] = not problems
    if problems:
        check["unsure"] = "; ".join(problems)
    if u.text:
        cer = character_error_rate(u.text, recognition.text)
        check["caption_cer"] = round(cer, 4)
        if problems:
            stats.captions_unverified += 1  # an unsure recognizer never overrules a caption
        elif cer > cfg.max_caption_cer:
            outcome.rejection = (
                "caption-mismatch",
                f"the caption differs from what the recognizer heard: CER "
                f"{cer:.2f} > {cfg.max_caption_cer} (heard: {recognition.text[:80]!r})",
                cer,
            )
            stats.rejected["caption-mismatch"] += 1
        else:
            check["verified"] = True
            stats.captions_verified += 1
    elif cfg.pseudo_labels:
        if problems:
            stats.pseudo_labels_refused += 1
        else:
            u.text = unicodedata.normalize("NFC", re.sub(r"\s+", " ", recognition.text).strip())
            u.transcript_source = label
            stats.pseudo_labels += 1
    return outcome
