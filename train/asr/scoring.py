"""Transcribe a split with a Whisper model and score it: the one evaluator of the project.

Used by ``python -m train.asr.evaluate``, by the final report of a training run (fine-tuned and
base model side by side) and by the demo, so every WER the project prints means the same thing.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

from shqip_av.log import get_logger, progress
from shqip_av.manifest import write_jsonl

from train.asr.data import Eligibility, FeaturePreparer, load_split, select_eligible
from train.asr.metric import score

log = get_logger(__name__)

RATE_KEYS = ("wer", "wer_normalized", "cer", "cer_normalized")


def max_audio_seconds(limit: float, feature_extractor) -> float:
    """The longest usable audio: the configured limit, never more than the model's input window."""
    return min(limit, float(feature_extractor.chunk_length))


def eligible_split(
    root: str | Path,
    split: str,
    tokenizer,
    *,
    max_seconds: float = 30.0,
    min_seconds: float = 0.0,
    max_label_tokens: int = 448,
    streaming: bool = False,
    pseudo_labels: bool = False,
):
    """(dataset, eligibility) for scoring; dataset is None when the split has no shards. Scores are
    against human transcripts unless ``pseudo_labels`` admits a recognizer's too."""
    dataset = load_split(root, split, streaming=streaming)
    eligibility = Eligibility(tokenizer, max_label_tokens, min_seconds, max_seconds, pseudo_labels)
    if dataset is None:
        return None, eligibility
    return select_eligible(dataset, eligibility, desc=f"checking {split}"), eligibility


def transcribe(
    model,
    processor,
    dataset,
    *,
    batch_size: int = 16,
    max_samples: int = 0,
    num_beams: int = 1,
    desc: str = "transcribing",
) -> list[dict]:
    """Greedy/beam transcripts of a (raw, eligible) split: [{key, reference, prediction}]."""
    import torch

    device = next(model.parameters()).device
    preparer = FeaturePreparer(processor.feature_extractor, processor.tokenizer)
    examples = iter(dataset)
    if max_samples:
        examples = itertools.islice(examples, max_samples)
    total = min(len(dataset), max_samples or len(dataset)) if hasattr(dataset, "__len__") else None
    rows: list[dict] = []
    was_training = model.training
    model.eval()
    bar = progress(examples, desc=desc, total=total, unit="sample")
    try:
        while batch := list(itertools.islice(bar, batch_size)):
            prepared = [preparer.one(example) for example in batch]
            features = torch.from_numpy(np.stack([p["input_features"] for p in prepared]))
            features = features.to(device=device, dtype=next(model.parameters()).dtype)
            with torch.inference_mode():
                ids = model.generate(input_features=features, num_beams=num_beams)
            texts = processor.tokenizer.batch_decode(ids, skip_special_tokens=True)
            rows += [
                {"key": p["key"], "source": p["source"], "reference": p["text"], "prediction": t.strip()}
                for p, t in zip(prepared, texts)
            ]
    finally:
        model.train(was_training)
    return rows


def score_rows(rows: list[dict]) -> dict:
    """The project metric over transcription rows, plus the sample count and, when the references
    come from more than one transcript source, the metric per source."""
    if not rows:
        return {"samples": 0}
    result = {"samples": len(rows), **score([r["prediction"] for r in rows], [r["reference"] for r in rows])}
    sources = sorted({r.get("source", "captions") for r in rows})
    result["by_source"] = {
        s: {"samples": len(part), **score([r["prediction"] for r in part], [r["reference"] for r in part])}
        for s in sources
        for part in [[r for r in rows if r.get("source", "captions") == s]]
    }
    return result


def write_predictions(path: Path, rows: list[dict]) -> Path:
    from shqip_av.normalize import normalize

    return write_jsonl(
        path,
        (
            {
                **r,
                "reference_normalized": normalize(r["reference"]),
                "prediction_normalized": normalize(r["prediction"]),
            }
            for r in rows
        ),
    )


def _pct(value) -> str:
    return "   n/a" if value is None else f"{100 * value:6.1f}"


def format_table(results: list[dict]) -> str:
    """Rows of {split, model, samples, wer, ...} as an aligned text table (rates in %)."""
    width = max([len(r["model"]) for r in results] + [5])
    lines = [f"{'split':<12} {'model':<{width}} {'samples':>7}   WER  WER-n    CER  CER-n"]
    for r in results:
        rates = " ".join(_pct(r.get(k)) for k in RATE_KEYS)
        lines.append(f"{r['split']:<12} {r['model']:<{width}} {r.get('samples', 0):>7} {rates}")
    lines.append("(rates in %; -n: after Albanian normalization, shqip_av/normalize.py)")
    return "\n".join(lines)
