"""Fixtures of the filter tests."""

from __future__ import annotations

import shutil

import pytest


@pytest.fixture(scope="session")
def lid_whisper(demo_root, tmp_path_factory):
    """(a tiny Whisper that transcribes the sample sentences and tells Albanian from English, the
    same model untrained), built once per session (tests/filter/whisper_lid.py)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    from tests.filter.whisper_lid import build_lid_whisper

    out = tmp_path_factory.mktemp("lid-whisper") / "m"
    build_lid_whisper(out, demo_root, steps=300)
    return out, out.with_name("m-random")
