"""The filter stage's configuration: every threshold of DESIGN.md §3, documented.

``python -m filter --help`` lists them; the resolved config is saved as clips/filter.yaml, and the
part that changes results (everything but root/workers) is fingerprinted into each video's done
marker so a changed threshold redoes exactly the videos it affects.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from shqip_av import __version__
from shqip_av.components.face_tracker import FaceConfig
from shqip_av.config import ConfigError, option, to_dict


class ConfigurationError(ConfigError):
    """A setting that cannot work (a missing pipeline, an unknown method): stops the whole run."""


@dataclass
class ProbeConfig:
    min_fps: float = option(23.0, "videos whose average frame rate is below this are rejected", min=1, max=1000)
    min_side: int = option(64, "smallest accepted frame width/height in pixels", min=16, max=100000)
    max_side: int = option(8192, "largest accepted frame width/height in pixels", min=16, max=100000)
    max_aspect: float = option(4.0, "largest accepted ratio of the long to the short frame side", min=1, max=100)
    fps: float = option(
        25.0, "frame rate of the analysis and of the output crops (VFR is resampled to it)", min=1, max=240
    )


@dataclass
class SpeechConfig:
    use_captions: bool = option(True, "use uploader captions as speech segments and transcripts when present")
    vad_model: str = option("silero_vad", "Silero VAD ONNX: a model name or a path")
    vad_threshold: float = option(0.5, "speech probability that starts speech", min=0, max=1)
    vad_neg_threshold: float = option(0.35, "speech probability below which speech ends", min=0, max=1)
    min_speech: float = option(0.25, "shorter speech regions are ignored (s)", min=0, max=60)
    pad: float = option(0.05, "padding added around each speech region (s)", min=0, max=10)
    split_pause: float = option(0.3, "pauses at least this long split utterances (s)", min=0, max=60)
    min_utterance: float = option(1.0, "shortest utterance kept (s)", above=0, max=600)
    max_utterance: float = option(
        12.0, "longest utterance kept (s); longer speech is split at its longest pause", above=0, max=600
    )


@dataclass
class DiarizationConfig:
    pipeline: str = option(
        "",
        "pyannote.audio pipeline: a local config.yaml / folder, or a Hub id such as "
        "pyannote/speaker-diarization-community-1 (needs a token and network). "
        "Empty: no diarization, every video is assumed to hold one speaker",
    )
    token_env: str = option("HF_TOKEN", "environment variable holding a Hub token for gated pipelines (never logged)")
    max_overlap: float = option(
        0.2, "utterances with more overlapping speech than this (s) are dropped", min=0, max=600
    )
    device: str = option("cpu", "torch device for diarization")


@dataclass
class QualityConfig:
    min_eye_distance: float = option(80.0, "smallest median eye-to-eye distance in source pixels", min=0, max=100000)
    min_sharpness: float = option(15.0, "smallest median variance of the Laplacian of the 256×256 crop", min=0)
    min_coverage: float = option(1.0, "fraction of the utterance's frames the face track must cover", min=0, max=1)
    max_yaw: float = option(
        40.0,
        "head turned left/right: largest |yaw| in degrees (90th percentile over the utterance's frames)",
        min=0,
        max=180,
    )
    max_pitch: float = option(35.0, "head tilted up/down: largest |pitch| in degrees (90th percentile)", min=0, max=180)
    max_roll: float = option(
        35.0,
        "head turned in the image plane: largest |roll| in degrees (90th percentile); "
        "a face lying sideways in the pixels (a wrong rotate tag) has |roll| near 90",
        min=0,
        max=180,
    )
    max_alignment_error: float = option(
        0.4,
        "largest distance of an eye or nose point from the crop template after "
        "alignment, as a share of the template's eye distance, in any frame "
        "(real footage with head turns reaches about 0.25)",
        above=0,
        max=10,
    )


@dataclass
class SyncConfig:
    method: str = option(
        "landmark-energy",
        "landmark-energy (training-free), or a trained landmark sync judge or sync expert: "
        "a run folder (runs/lipsync/<name>) or a Hub id",
    )
    max_offset: int = option(15, "offsets searched, in frames either way", min=1, max=100)
    min_window: float = option(
        3.0, "shorter utterances are scored on this many seconds of their face track around them", min=0, max=60
    )
    # a floor against flat curves, not a judge of sync: validated leave-one-clip-out on real clips,
    # confidence does not separate in-sync from out-of-sync speech (README, bench/sync_validation.py)
    min_confidence: float = option(
        0.15, "smallest accepted sync confidence (peak correlation minus the median over offsets)", min=0
    )
    max_abs_offset: int = option(3, "largest accepted |offset| in frames", min=0, max=100)
    expert_min_confidence: float = option(
        -1.0,
        "with a trained judge or expert: smallest accepted confidence (the expert's LSE-C, "
        "median minus minimum of the mean embedding distance over offsets; the judge's best "
        "mean cosine minus the median); -1: the value calibrated when it was trained (its thresholds.json)",
        min=-1,
    )
    expert_max_distance: float = option(
        2.0,
        "with a trained expert: largest accepted LSE-D (the minimum mean distance; "
        "embeddings have unit length, so 0..2; 2 means no limit: LSE-D varies "
        "with the face and the voice more than LSE-C does)",
        min=0,
        max=2,
    )
    correct_offset: bool = option(
        False,
        "shift the audio onto the video when the measured offset is non-zero "
        "but at most max_correction frames, instead of judging it by max_abs_offset",
    )
    max_correction: int = option(2, "largest offset (frames) correct_offset repairs", min=0, max=15)
    # DESIGN.md §7.2: a whole video is judged before its utterances (long signals are reliable
    # where a two-second utterance is not); encoder delays and lost edit lists shift whole files
    video_offset: bool = option(
        True,
        "measure one audio offset per video over all its speech (model-free: mouth opening against "
        "loudness) and, when the signals agree and the halves do not drift, correct it before the "
        "utterances are judged",
    )
    video_max_correction: int = option(15, "largest whole-video offset (frames) corrected", min=0, max=50)
    video_min_agree: int = option(3, "mouth signals (of 4) that must agree within a frame", min=1, max=4)


@dataclass
class TranscriptsConfig:
    model: str = option(
        "",
        "Whisper that identifies each utterance's language, checks its caption and writes "
        "pseudo-labels: a Hub id, a model folder, or a train.asr run (runs/asr/<name>). "
        "Empty: captions are taken as they are and caption-less utterances get no transcript",
    )
    revision: str = option("main", "Hub revision of a Hub model")
    languages: list[str] = option(
        help="spoken languages kept (Whisper codes); speech confidently identified as "
        "another language is rejected (wrong-language)",
        factory=lambda: ["sq"],
    )
    min_language_probability: float = option(
        0.5,
        "wrong-language only when the model gives the other language at "
        "least this probability (an unsure model rejects nothing)",
        min=0,
        max=1,
    )
    max_caption_cer: float = option(
        0.35,
        "captions whose character error rate against the recognizer (both "
        "normalized) exceeds this are rejected (caption-mismatch), when the "
        "recognizer itself is confident (the thresholds below)",
        min=0,
    )
    retime_captions: bool = option(
        False,
        "tighten a verified caption's start and end to where the recognizer's "
        "words start and end, when either edge is more than max_timing_drift off "
        "(needs alignment_heads in the model's generation config, as the released "
        "Whisper checkpoints have)",
    )
    max_timing_drift: float = option(
        0.3, "retime_captions: seconds of caption without words at either edge that trigger retiming", above=0, max=10
    )
    retime_margin: float = option(0.1, "retime_captions: seconds kept around the words", min=0, max=2)
    pseudo_labels: bool = option(
        True,
        "utterances without captions get the recognizer's text as their transcript "
        "(transcript_source asr:<model>) when it is confident",
    )
    min_avg_logprob: float = option(
        -0.6,
        "confident: the mean log-probability of the generated tokens is at least "
        "this (Whisper's own fallback uses -1.0; -0.6 is stricter)",
        max=0,
    )
    max_compression_ratio: float = option(
        2.4, "confident: the text's zlib compression ratio is at most this (repetition loops compress well)", above=0
    )
    max_no_speech_probability: float = option(
        0.6, "confident: Whisper's no-speech probability is at most this", min=0, max=1
    )
    max_ngram_repeats: int = option(2, "confident: no word 3-gram occurs more often than this", min=1)
    min_rms_db: float = option(
        -55.0, "utterances quieter than this (RMS, dBFS) are silent: not transcribed (skipped and counted)", max=0
    )
    batch_size: int = option(8, "utterances per recognizer batch", min=1, max=1024)
    max_new_tokens: int = option(128, "longest transcript in tokens", min=1, max=440)
    device: str = option("auto", "torch device for the recognizer: auto (a GPU when present), cpu, cuda, cuda:N")


@dataclass
class CropConfig:
    size: int = option(256, "side of the canonical face crop", min=64, max=1024)
    crf: int = option(18, "H.264 quality of the crop videos (lower is better)", min=0, max=51)


@dataclass
class FilterConfig:
    root: str = option("data", "dataset root; filter reads raw/ and writes work/ and clips/ inside it")
    workers: int = option(
        1, "videos processed in parallel (processes; with --engine ray, Ray workers of one CPU each)", min=1, max=4096
    )
    engine: str = option(
        "pool",
        "pool (local processes) or ray (Ray actors on a local or an existing cluster; "
        "every node must see the dataset root at the same path)",
    )
    ray_address: str = option(
        "local",
        "with --engine ray: 'local' starts Ray on this machine (--workers CPUs, no "
        "dashboard); otherwise the address of a running cluster (ray://host:10001 or host:6379)",
        flags=["--address"],
    )
    max_retries: int = option(
        2,
        "a video whose worker process died (pool or Ray) or that ran past video_timeout "
        "(Ray) is retried this many times, then recorded as an error",
        min=0,
        max=100,
    )
    video_timeout: float = option(
        0.0,
        "with --engine ray: seconds one video may take before its worker is "
        "restarted and the video retried (0: no limit)",
        min=0,
    )
    probe: ProbeConfig = option(factory=ProbeConfig)
    faces: FaceConfig = option(factory=FaceConfig)
    speech: SpeechConfig = option(factory=SpeechConfig)
    diarization: DiarizationConfig = option(factory=DiarizationConfig)
    quality: QualityConfig = option(factory=QualityConfig)
    sync: SyncConfig = option(factory=SyncConfig)
    transcripts: TranscriptsConfig = option(factory=TranscriptsConfig)
    crop: CropConfig = option(factory=CropConfig)

    def check(self) -> None:
        """Settings that are valid alone but contradict each other."""
        pairs = [
            ("probe.min_side", self.probe.min_side, "probe.max_side", self.probe.max_side),
            ("speech.min_utterance", self.speech.min_utterance, "speech.max_utterance", self.speech.max_utterance),
            (
                "speech.vad_neg_threshold",
                self.speech.vad_neg_threshold,
                "speech.vad_threshold",
                self.speech.vad_threshold,
            ),
            ("sync.max_abs_offset", self.sync.max_abs_offset, "sync.max_offset", self.sync.max_offset),
        ]
        for low_key, low, high_key, high in pairs:
            if low > high:
                raise ConfigurationError(f"{low_key} ({low}) must not exceed {high_key} ({high})")
        if self.engine not in ("pool", "ray"):
            raise ConfigurationError(f"engine must be pool or ray, got {self.engine!r}")

    def fingerprint(self) -> str:
        """Hash of everything that changes results (not where or how fast they are computed)."""
        from shqip_av.components import weights_digest
        from shqip_av.components.whisper import model_digest

        data = to_dict(self)
        for key in ("root", "workers", "engine", "ray_address", "max_retries", "video_timeout"):
            data.pop(key)
        data["diarization"].pop("device")
        for key in ("batch_size", "device"):
            data["transcripts"].pop(key)
        if not self.transcripts.model:  # the step is off: its thresholds change nothing
            data.pop("transcripts")
        else:
            data["transcripts_weights"] = model_digest(self.transcripts.model)
        data["version"] = __version__
        data["sync_weights"] = weights_digest(self.sync.method)  # a retrained expert at the same path redoes
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
