"""Speech samples for Whisper from the WebDataset shards (DESIGN.md §4), through `datasets`.

Only the audio (``wav``), the transcript (``txt``) and a few metadata fields are read; the face
members stay in the tar files. The `datasets` WebDataset builder is given the features up front,
so shards where some samples have no transcript load (the builder would otherwise refuse samples
whose members differ) and the large landmark arrays are never converted.

Every sample passes ``Eligibility`` first. Those that cannot be learned from are skipped and
counted by reason, never crashed on:

- ``no-transcript``, ``empty-transcript``;
- ``pseudo-label-excluded``: the transcript is a recognizer's pseudo-label (``transcript_source``
  ``asr:<model>``) in a split that uses human transcripts only (``data.pseudo_labels``);
- ``transcript-too-long``: more label tokens than Whisper's decoder takes (448, special tokens
  included);
- ``audio-too-long`` (beyond ``max_seconds`` or the model's 30 s input window),
  ``audio-too-short``;
- ``bad-audio``: the wav member is missing, unreadable, or not 16 kHz mono 16-bit PCM.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shqip_av import ShqipError
from shqip_av.files import DatasetRoot
from shqip_av.log import get_logger
from shqip_av.media import AUDIO_RATE, MediaError, decode_wav, wav_header

log = get_logger(__name__)

SKIP_REASONS = (
    "no-transcript",
    "empty-transcript",
    "pseudo-label-excluded",
    "transcript-too-long",
    "audio-too-long",
    "audio-too-short",
    "bad-audio",
)


class DataError(ShqipError):
    pass


def asr_features():
    """The columns train.asr reads from a shard sample (the rest of the sample is left out)."""
    from datasets import Audio, Features, Value

    return Features(
        {
            "__key__": Value("string"),
            "__url__": Value("string"),
            "txt": Value("string"),
            "wav": Audio(decode=False),
            "json": {
                "speaker": Value("string"),
                "video_id": Value("string"),
                "start": Value("float64"),
                "end": Value("float64"),
                "transcript_source": Value("string"),
            },
        }
    )


def shard_files(root: str | Path, split: str) -> list[str]:
    """The shard tars of ``split``, in order; empty when the split has none."""
    folder = DatasetRoot(root).path("shards", split)
    return [str(p) for p in sorted(folder.glob("*.tar"))] if folder.is_dir() else []


def check_shards(root: str | Path) -> None:
    base = DatasetRoot(root).path("shards")
    if not base.is_dir():
        raise DataError(f"no shards under {base}: run `python -m filter.shard --root {root}` first")


def load_split(root: str | Path, split: str, *, streaming: bool = False):
    """A `datasets` Dataset (or IterableDataset when streaming) of one split, or None if empty.

    The Arrow cache of a non-streamed split is kept under <root>/cache/datasets, so nothing is
    written outside the dataset root.
    """
    import datasets

    files = shard_files(root, split)
    if not files:
        return None
    cache = DatasetRoot(root).path("cache", "datasets")
    with _quiet_datasets():
        return datasets.load_dataset(
            "webdataset",
            data_files={split: files},
            split=split,
            features=asr_features(),
            streaming=streaming,
            cache_dir=None if streaming else str(cache),
        )


class _quiet_datasets:
    """Hide `datasets`' per-split progress bars (ours already say what is loading)."""

    def __enter__(self):
        import datasets

        self.was_enabled = datasets.utils.logging.is_progress_bar_enabled()
        datasets.utils.logging.disable_progress_bar()

    def __exit__(self, *exc):
        import datasets

        if self.was_enabled:
            datasets.utils.logging.enable_progress_bar()


@dataclass
class Eligibility:
    """Decides whether a sample can be trained on, and counts why the others are skipped."""

    tokenizer: Any
    max_label_tokens: int
    min_seconds: float
    max_seconds: float
    pseudo_labels: bool = False  # use transcripts written by a recognizer (asr:<model>)

    def __post_init__(self):
        self.kept = 0
        self.skipped: Counter[str] = Counter()
        self.sources: Counter[str] = Counter()  # transcript source of the kept samples

    def reason(self, example: dict) -> str | None:
        text = example.get("txt")
        if text is None:
            return "no-transcript"
        if not text.strip():
            return "empty-transcript"
        if transcript_source(example).startswith("asr:") and not self.pseudo_labels:
            return "pseudo-label-excluded"
        wav = example.get("wav") or {}
        try:
            header = wav_header(wav.get("bytes") or b"")
        except MediaError:
            return "bad-audio"
        if header.sample_rate != AUDIO_RATE or header.channels != 1 or header.sample_width != 2:
            return "bad-audio"
        if header.seconds > self.max_seconds:
            return "audio-too-long"
        if header.seconds < self.min_seconds:
            return "audio-too-short"
        if len(self.tokenizer(text.strip()).input_ids) > self.max_label_tokens:
            return "transcript-too-long"
        return None

    def __call__(self, example: dict) -> bool:
        """Filter predicate: True to keep; counts every decision."""
        why = self.reason(example)
        if why is None:
            self.kept += 1
            self.sources[transcript_source(example)] += 1
            return True
        self.skipped[why] += 1
        return False

    def summary(self) -> dict:
        return {
            "kept": self.kept,
            "skipped": dict(sorted(self.skipped.items())),
            "transcript_sources": dict(sorted(self.sources.items())),
        }


def transcript_source(example: dict) -> str:
    """captions, manual or asr:<model>; samples written before the field existed count as captions."""
    return (example.get("json") or {}).get("transcript_source") or "captions"


def select_eligible(dataset, eligibility: Eligibility, *, desc: str):
    """Keep the eligible samples of a split.

    A map-style split is scanned once up front (audio headers and transcripts only), so the
    counts are complete before training starts. A streamed split is filtered lazily: its counts
    grow as the stream is read.
    """
    import datasets

    from shqip_av.log import progress

    if isinstance(dataset, datasets.IterableDataset):
        return dataset.filter(eligibility)
    keep = [
        i
        for i, example in enumerate(progress(dataset, desc=desc, total=len(dataset), unit="sample"))
        if eligibility(example)
    ]
    return dataset.select(keep)


@dataclass
class FeaturePreparer:
    """Shard sample → Whisper inputs: log-mel features, label ids, and the key/text for reports."""

    feature_extractor: Any
    tokenizer: Any

    def one(self, example: dict) -> dict:
        try:
            samples, rate = decode_wav(example["wav"]["bytes"])
        except MediaError as e:
            raise DataError(f"{example.get('__key__')}: {e}") from None
        features = self.feature_extractor(samples, sampling_rate=rate, return_tensors="np").input_features[0]
        text = example["txt"].strip()
        return {
            "input_features": features.astype(np.float32),
            "labels": self.tokenizer(text).input_ids,
            "key": example["__key__"],
            "text": text,
            "source": transcript_source(example),
        }

    def batch(self, batch: dict) -> dict:
        """For ``Dataset.with_transform``: a dict of lists in, a dict of lists out."""
        rows = [self.one(dict(zip(batch, values))) for values in zip(*batch.values())]
        return {name: [row[name] for row in rows] for name in ("input_features", "labels", "key", "text", "source")}


def prepare(dataset, preparer: FeaturePreparer):
    """Features computed on the fly (never cached: 30 s of log-mel is ~1 MB per sample)."""
    import datasets

    if isinstance(dataset, datasets.IterableDataset):
        return dataset.map(preparer.one, remove_columns=["__url__", "json", "wav", "txt"])
    return dataset.with_transform(preparer.batch)


@dataclass
class SpeechCollator:
    """Stacks features and pads labels with -100 (ignored by the loss).

    Whisper prepends ``decoder_start_token_id`` itself when it shifts the labels right, so a
    leading ``<|startoftranscript|>`` is removed from the labels here.
    """

    decoder_start_token_id: int

    def __call__(self, rows: list[dict]) -> dict:
        import torch

        features = torch.from_numpy(np.stack([np.asarray(r["input_features"], dtype=np.float32) for r in rows]))
        labels = [list(r["labels"]) for r in rows]
        labels = [ids[1:] if ids and ids[0] == self.decoder_start_token_id else ids for ids in labels]
        width = max(len(ids) for ids in labels)
        padded = torch.full((len(rows), width), -100, dtype=torch.long)
        for i, ids in enumerate(labels):
            padded[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return {"input_features": features, "labels": padded}
