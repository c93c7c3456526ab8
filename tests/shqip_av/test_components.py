"""The components layer's one place for "what is this folder" and "is this a Hub id", and the
external model families' from_pretrained."""

from __future__ import annotations

import json

import pytest

from shqip_av.components import (
    ASR_RUN,
    BUNDLE,
    GENERATOR,
    SYNC_EXPERT,
    WHISPER,
    KindError,
    expect_kind,
    folder_kind,
    is_hub_id,
)
from tests.conftest import shared_model


def _folder(tmp_path, name, config):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_a_folder_says_what_it_is(tmp_path):
    assert folder_kind(_folder(tmp_path, "w", {"model_type": "whisper"})) == WHISPER
    assert folder_kind(_folder(tmp_path, "e", {"frames": 5, "crop_size": 48, "channels": [8], "embedding": 8})) == (
        SYNC_EXPERT
    )
    assert folder_kind(_folder(tmp_path, "g", {"size": 32, "references": 2, "audio_dim": 8})) == GENERATOR
    assert folder_kind(_folder(tmp_path, "k", {"shqip_av_kind": GENERATOR})) == GENERATOR  # recorded wins
    run = tmp_path / "run"
    (run / "processor").mkdir(parents=True)
    (run / "config.yaml").write_text("name: x\n")
    assert folder_kind(run) == ASR_RUN
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "model_index.json").write_text("{}")
    assert folder_kind(tmp_path / "b") == BUNDLE
    with pytest.raises(KindError, match=r"--expert .*/w is a Whisper model, not a sync expert"):
        expect_kind(str(tmp_path / "w"), SYNC_EXPERT, "--expert")
    with pytest.raises(KindError, match="no such folder"):
        expect_kind(str(tmp_path / "nope"), SYNC_EXPERT, "--expert")
    assert expect_kind("someone/expert", SYNC_EXPERT, "--expert") is None  # a Hub id: checked when downloaded


@pytest.mark.parametrize(
    "source, hub",
    [("user/name", True), ("openai/whisper-small", True), ("me/..", False), ("/", False), ("a/b/c", False),
     ("./x", False), ("-me/x", False), ("me/x.git", False), ("x" * 97 + "/y", False)],
)  # fmt: skip
def test_one_rule_for_hub_ids(source, hub):
    assert is_hub_id(source) is hub


def test_the_external_families_load_by_from_pretrained(tmp_path):
    from shqip_av.components.face_tracker import FaceTracker
    from shqip_av.components.voice_activity import SileroVAD
    from shqip_av.models import ModelFileError

    shared_model("face_landmarker.task")
    shared_model("silero_vad.onnx")
    assert FaceTracker.from_pretrained(max_faces=2).config.max_faces == 2
    with pytest.raises(ModelFileError, match="no such model file"):
        FaceTracker.from_pretrained(str(tmp_path / "missing.task"))
    assert SileroVAD.from_pretrained() is SileroVAD.from_pretrained()  # one session per process
