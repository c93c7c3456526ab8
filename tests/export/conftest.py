"""Fixtures shared by the export tests: tiny random translation and speech models built offline."""

from __future__ import annotations

from pathlib import Path

import pytest

OPUS = Path(__file__).resolve().parents[2].parent / "shared" / "testdata" / "text" / "opus100_en_sq"


@pytest.fixture(scope="session")
def tiny_marian(tmp_path_factory) -> Path:
    """A tiny random Marian sq→en built offline (export.tiny), with opus-mt's file layout."""
    if not OPUS.is_dir():
        pytest.skip("../shared/testdata is absent")
    from export.tiny import TinyMarianConfig, build_tiny_marian

    out = tmp_path_factory.mktemp("marian") / "opus-mt-tiny-sq-en"
    return build_tiny_marian(
        TinyMarianConfig(
            out=str(out), source_text=str(OPUS / "opus.en-sq-dev.sq"), target_text=str(OPUS / "opus.en-sq-dev.en")
        )
    )


@pytest.fixture(scope="session")
def tiny_vits(tmp_path_factory) -> Path:
    """A tiny random VITS laid out like MMS-TTS (export.tiny)."""
    from export.tiny import build_tiny_vits

    return build_tiny_vits(tmp_path_factory.mktemp("vits") / "mms-tts-tiny")


TINY_GENERATOR = {"size": 32, "frames": 5, "references": 2, "channels": [16, 32], "audio_dim": 16}


@pytest.fixture(scope="session")
def generator_folder(tmp_path_factory) -> Path:
    """A tiny random lip-sync generator saved as a model folder."""
    import torch

    from shqip_av.components.lipsync_generator import build_generator

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("gen") / "generator"
    build_generator(TINY_GENERATOR).save_pretrained(folder)
    return folder
