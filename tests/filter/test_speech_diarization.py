"""Speech segments (Silero VAD, captions, utterance splitting) and pyannote diarization."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from filter.config import FilterConfig, SpeechConfig
from filter.speech import (
    SINGLE_SPEAKER,
    Utterance,
    label_utterances,
    utterances_from_captions,
    utterances_from_regions,
)
from shqip_av.captions import Cue, write_vtt
from shqip_av.components.voice_activity import SileroVAD
from shqip_av.media import read_audio
from tests.conftest import SHARED, shared_model, shared_video


def test_silero_vad_finds_speech_and_not_silence():
    shared_model("silero_vad.onnx")
    path = SHARED / "testdata" / "audio" / "silero_test_speech_en.wav"
    if not path.is_file():
        pytest.skip("needs ../shared/testdata/audio/silero_test_speech_en.wav")
    audio = read_audio(path)[: 16000 * 20]
    vad = SileroVAD()
    regions = vad.speech_regions(audio, SpeechConfig())
    speech = sum(e - s for s, e in regions)
    assert 8 < speech < 20 and len(regions) >= 2
    silence = np.zeros(16000 * 3, dtype=np.float32)
    assert vad.speech_regions(silence, SpeechConfig()) == []


def test_utterances_join_short_pauses_split_long_speech_and_report_short_ones():
    cfg = SpeechConfig(split_pause=0.3, min_utterance=1.0, max_utterance=4.0)
    regions = [(0.0, 1.0), (1.1, 2.0), (3.0, 3.5), (5.0, 6.5), (6.7, 8.0), (8.5, 10.0), (12.0, 22.0)]
    kept, short = utterances_from_regions(regions, cfg)
    spans = [(u.start, u.end) for u in kept]
    assert (0.0, 2.0) in spans  # a 0.1 s pause does not split
    assert [(u.start, u.end) for u in short] == [(3.0, 3.5)]
    assert all(u.duration <= 4.0 + 1e-6 for u in kept)
    assert any(s >= 5.0 and e <= 10.0 for s, e in spans)  # 5–10 s split at its longest pause
    assert sum(1 for s, e in spans if s >= 12.0) == 3  # 10 s of unbroken speech cut evenly


def test_captions_give_utterances_with_nfc_text(tmp_path):
    vtt = tmp_path / "c.vtt"
    write_vtt(
        vtt,
        [
            Cue(0.5, 2.5, "Mirëdita, si jeni?"),
            Cue(2.6, 3.0, "Po."),
            Cue(3.1, 4.5, "Çfarë ka\u0308?"),
            Cue(5.0, 20.0, "shumë e gjatë"),
        ],
    )
    kept, rest = utterances_from_captions(vtt, 30.0, SpeechConfig())
    assert kept[0].text == "Mirëdita, si jeni?" and (kept[0].start, kept[0].end) == (0.5, 2.5)
    assert kept[1].text == "Po. Çfarë kä?" and kept[1].text == __import__("unicodedata").normalize("NFC", kept[1].text)
    assert [u.text for u in rest] == ["shumë e gjatë"]  # 15 s cannot be split without word timing


def test_overlapping_speech_and_labels_from_turns():
    us = [Utterance(0.0, 3.0), Utterance(4.0, 6.0), Utterance(7.0, 8.0)]
    turns = [(0.0, 3.0, "SPEAKER_00"), (2.0, 2.5, "SPEAKER_01"), (4.0, 6.0, "SPEAKER_01")]
    label_utterances(us, turns)
    assert (us[0].speaker, us[0].overlap) == ("SPEAKER_00", pytest.approx(0.5, abs=0.02))
    assert (us[1].speaker, us[1].overlap) == ("SPEAKER_01", 0.0)
    assert us[2].speaker == "unlabelled"
    label_utterances(us, None)
    assert all(u.speaker == SINGLE_SPEAKER for u in us)


@pytest.mark.slow
def test_pyannote_pipeline_from_a_local_checkpoint_runs_inside_filter(tmp_path):
    """Real pyannote.audio loading and inference code on a random-weight pipeline saved locally
    (the pretrained weights are on the Hub, which cannot be reached here)."""
    video = shared_video("retalking_face_5.mp4")
    shared_model("face_landmarker.task")
    from collect.pipeline import CollectConfig, prepare_raw
    from filter.pipeline import prepare_clips
    from filter.speech import diarize, load_diarization
    from shqip_av.manifest import read_jsonl
    from tests.filter.pyannote_tiny import build_random_pipeline

    config = build_random_pipeline(tmp_path / "pyannote")
    root = tmp_path / "root"
    (root / "incoming").mkdir(parents=True)
    shutil.copy(video, root / "incoming" / "five.mp4")
    (root / "sources.yaml").write_text(
        "sources:\n  - path: incoming/five.mp4\n    consent: {kind: release, subject: person five, reference: test}\n"
    )
    prepare_raw(CollectConfig(root=str(root)))
    cfg = FilterConfig(root=str(root))
    cfg.diarization.pipeline = str(config)

    turns = diarize(load_diarization(cfg.diarization), read_audio(video))
    assert turns and all(label.startswith("SPEAKER_") and e > s for s, e, label in turns)

    stats = prepare_clips(cfg)
    assert stats.processed == 1 and stats.failed == 0
    (record,) = list(read_jsonl(root / "raw" / "manifest.jsonl"))
    done = json.loads((root / "work" / record["video_id"] / "done.json").read_text())
    assert done["stats"]["diarization"] == str(config)
    labels = [
        u["speaker"]
        for u in json.loads((root / "work" / record["video_id"] / "decisions.json").read_text())["utterances"]
    ]
    assert labels and all(label.startswith("SPEAKER_") or label == "unlabelled" for label in labels)
    for sample in read_jsonl(root / "clips" / "manifest.jsonl"):
        assert sample["meta"]["diarization_label"] in labels


def test_a_missing_diarization_pipeline_is_one_clear_error(tmp_path):
    from filter.speech import load_diarization
    from shqip_av import ShqipError

    cfg = FilterConfig().diarization
    cfg.pipeline = str(tmp_path / "nowhere" / "config.yaml")
    with pytest.raises(ShqipError, match="diarization.pipeline"):
        load_diarization(cfg)
    from filter.pipeline import prepare_clips

    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "manifest.jsonl").write_text("")
    full = FilterConfig(root=str(tmp_path))
    full.diarization.pipeline = cfg.pipeline
    with pytest.raises(ShqipError, match="no such file or folder"):
        prepare_clips(full)
