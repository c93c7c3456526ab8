"""The project's ASR metric, shipped as a local ``evaluate`` module (no Hub access needed)."""

from __future__ import annotations

from pathlib import Path

METRIC_DIR = Path(__file__).parent / "shqip_asr"


def load_metric(**kwargs):
    """``evaluate.load`` of the local shqip_asr module, by path."""
    import evaluate

    return evaluate.load(str(METRIC_DIR), **kwargs)


def score(predictions: list[str], references: list[str]) -> dict:
    """WER/CER, raw and normalized, of transcripts against references (see shqip_asr.py)."""
    return load_metric().compute(predictions=predictions, references=references)
