"""ASR fixtures: shards of espeak-ng Albanian speech (espeak_shards.py) and a tiny random Whisper."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.train.espeak_shards import TEXT, albanian_sentences, build_asr_root, missing_inputs


@pytest.fixture(scope="session")
def asr_root(tmp_path_factory) -> Path:
    """12 training utterances, 4 test utterances (another speaker), and 4 samples to be skipped."""
    if missing_inputs():
        pytest.skip(missing_inputs())
    return build_asr_root(
        tmp_path_factory.mktemp("asr") / "data", albanian_sentences(12), albanian_sentences(4, skip=12)
    )


@pytest.fixture(scope="session")
def tiny_whisper(asr_root, tmp_path_factory) -> Path:
    """python -m train.asr.tiny's model, its tokenizer trained on the shards' transcripts and Albanian text."""
    from train.asr.tiny import TinyWhisperConfig, build_tiny_whisper

    out = tmp_path_factory.mktemp("models") / "whisper-tiny-sq"
    return build_tiny_whisper(TinyWhisperConfig(out=str(out), root=str(asr_root), text=[str(TEXT)]))
