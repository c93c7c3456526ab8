"""filter's transcripts step (DESIGN.md §3 step 3): language ID, caption verification and
pseudo-labels, with a tiny Whisper trained in the session (tests/filter/whisper_lid.py) and
with its untrained twin."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from filter.config import ConfigurationError, FilterConfig, TranscriptsConfig
from filter.pipeline import prepare_clips
from filter.speech import Utterance
from filter.transcripts import check_transcripts, confidence_problems, repeated_ngrams
from shqip_av.captions import read_vtt
from shqip_av.manifest import read_jsonl
from shqip_av.components.whisper import Recognition, compression_ratio
from tests.conftest import SHARED, ffmpeg

ENGLISH = SHARED / "testdata" / "audio" / "silero_test_speech_en.wav"
OTHER_SENTENCE = "Qyteti ynë ka një park të madh me pemë të larta."  # said in another sample clip


@pytest.fixture(scope="module")
def transcript_root(sample_set, tmp_path_factory):
    """Four sample videos, collected: speaker_a_01 without its captions, speaker_b_01 with a caption
    replaced by another sentence, speaker_c_01 as it is, and speaker_c_02's face with unseen
    English speech under it (no captions)."""
    from collect.pipeline import CollectConfig, prepare_raw
    from shqip_av.config import load_yaml
    import yaml

    root = tmp_path_factory.mktemp("transcripts") / "data"
    incoming = root / "incoming" / "sample"
    incoming.mkdir(parents=True)
    src = sample_set / "incoming" / "sample"
    for name in (
        "speaker_a_01.mp4",
        "speaker_b_01.mp4",
        "speaker_b_01.sq.vtt",
        "speaker_c_01.mp4",
        "speaker_c_01.sq.vtt",
    ):
        shutil.copy(src / name, incoming / name)
    vtt = incoming / "speaker_b_01.sq.vtt"
    first = read_vtt(vtt)[0].text
    vtt.write_text(vtt.read_text(encoding="utf-8").replace(first, OTHER_SENTENCE, 1), encoding="utf-8")
    ffmpeg(
        "-i",
        src / "speaker_c_02.mp4",
        "-ss",
        "20",
        "-i",
        ENGLISH,
        "-map",
        "0:v",
        "-map",
        "1:a",
        "-c:v",
        "copy",
        "-c:a",
        "aac",
        "-shortest",
        incoming / "english_under_face.mp4",
    )
    sources = load_yaml(sample_set / "sources.yaml")
    entries = {e["path"].rsplit("/", 1)[1]: e for e in sources["sources"]}
    english = dict(entries["speaker_c_02.mp4"], path="incoming/sample/english_under_face.mp4", title="english")
    sources["sources"] = [
        entries["speaker_a_01.mp4"],
        entries["speaker_b_01.mp4"],
        entries["speaker_c_01.mp4"],
        english,
    ]
    (root / "sources.yaml").write_text(yaml.safe_dump(sources, allow_unicode=True), encoding="utf-8")
    prepare_raw(CollectConfig(root=str(root)))
    captions = {c.text for c in read_vtt(src / "speaker_a_01.sq.vtt")}
    return root, captions, first


def _by_video(root, title):
    raw = {r["source"]["title"]: r["video_id"] for r in read_jsonl(root / "raw" / "manifest.jsonl")}
    vid = raw[title]
    accepted = [r for r in read_jsonl(root / "clips" / "manifest.jsonl") if r["video_id"] == vid]
    rejected = [r for r in read_jsonl(root / "clips" / "rejected.jsonl") if r["video_id"] == vid]
    return vid, accepted, rejected


def test_pseudo_labels_caption_mismatch_and_wrong_language(transcript_root, lid_whisper):
    root, sentences, replaced = transcript_root
    model, random_model = lid_whisper
    cfg = FilterConfig(root=str(root), workers=2, transcripts=TranscriptsConfig(model=str(model)))
    stats = prepare_clips(cfg)
    assert stats.processed == 4 and not stats.failed

    # no captions: the recognizer's text, which is the sentence spoken
    vid, accepted, _ = _by_video(root, "shqip-av sample speaker_a_01")
    assert accepted
    for sample in accepted:
        text = (root / sample["files"]["txt"]).read_text(encoding="utf-8")
        assert text in sentences
        assert sample["meta"]["transcript_source"].startswith("asr:m@")  # the model folder's name, its digest
    decisions = json.loads((root / "work" / vid / "decisions.json").read_text())
    assert all(u["transcript_check"]["confident"] for u in decisions["utterances"])

    # a caption that is another sentence: rejected with its error; the true caption verified
    vid, accepted, rejected = _by_video(root, "shqip-av sample speaker_b_01")
    mismatch = [r for r in rejected if r["reason"] == "caption-mismatch"]
    assert len(mismatch) == 1 and mismatch[0]["stage"] == "filter.transcripts" and mismatch[0]["value"] > 0.35
    assert all(
        r["meta"]["transcript_source"] == "captions" and r["meta"]["transcript_check"]["verified"] for r in accepted
    )
    assert all((root / r["files"]["txt"]).read_text(encoding="utf-8") != OTHER_SENTENCE for r in accepted)

    # English under a sample face: rejected before its face is looked at
    vid, accepted, rejected = _by_video(root, "english")
    assert not accepted
    assert rejected and {r["reason"] for r in rejected} == {"wrong-language"}
    assert all("'en'" in r["detail"] and r["value"] >= 0.5 for r in rejected)
    step = json.loads((root / "work" / vid / "done.json").read_text())["stats"]["transcript_step"]
    assert step["rejected"]["wrong-language"] == len(rejected)

    # the card counts transcripts by source and shows the step in the funnel
    from cards.dataset_card import DatasetCardConfig, build_dataset_card
    from filter.shard import ShardConfig, pack_shards

    pack_shards(ShardConfig(root=str(root)))
    card = build_dataset_card(DatasetCardConfig(root=str(root))).read_text(encoding="utf-8")
    assert "| captions, verified | captions, unverified | pseudo-label | none |" in card
    assert "| transcripts |" in card and "wrong-language" in card and "caption-mismatch" in card
    assert "`transcripts.max_caption_cer`" in card or "transcripts.max_caption_cer" in card

    # the same model again: nothing to do; another model: the step is redone everywhere
    assert prepare_clips(cfg).processed == 0
    again = prepare_clips(
        FilterConfig(root=str(root), workers=2, transcripts=TranscriptsConfig(model=str(random_model)))
    )
    assert again.processed == 4
    # an untrained model is unsure of everything: no pseudo-labels, and it overrules no caption
    samples = list(read_jsonl(root / "clips" / "manifest.jsonl"))
    assert samples and not any((s["meta"]["transcript_source"] or "").startswith("asr:") for s in samples)
    _, accepted, _ = _by_video(root, "shqip-av sample speaker_a_01")
    assert accepted and not any("txt" in s["files"] for s in accepted)
    reasons = {r["reason"] for r in read_jsonl(root / "clips" / "rejected.jsonl")}
    assert "caption-mismatch" not in reasons


def test_a_model_that_cannot_serve_stops_the_run_before_any_video(transcript_root, lid_whisper, tmp_path):
    root, _, _ = transcript_root
    before = sorted(p.name for p in (root / "work").iterdir()) if (root / "work").exists() else []
    cases = [
        (TranscriptsConfig(model=str(tmp_path / "nowhere")), "transcripts.model"),
        (TranscriptsConfig(model=str(lid_whisper[0]), languages=["zz"]), "not a Whisper language"),
        (TranscriptsConfig(model=str(lid_whisper[0]), languages=[]), "transcripts.languages is empty"),
        (TranscriptsConfig(model=str(lid_whisper[0]), retime_captions=True), "no alignment_heads"),
    ]
    for transcripts, message in cases:
        with pytest.raises(ConfigurationError, match=message) as error:
            prepare_clips(FilterConfig(root=str(root), transcripts=transcripts))
        assert "\n" not in str(error.value)
    after = sorted(p.name for p in (root / "work").iterdir()) if (root / "work").exists() else []
    assert after == before


def test_silent_and_too_long_utterances_are_skipped_and_counted(lid_whisper):
    rng = np.random.default_rng(0)
    audio = np.concatenate([np.zeros(16000 * 3, np.float32), 0.1 * rng.standard_normal(16000 * 14).astype(np.float32)])
    # silent; longer than the 10 s window; empty (past the audio's end)
    utterances = [Utterance(0.5, 2.5, "Një titull."), Utterance(3.0, 15.0), Utterance(17.5, 18.5)]
    outcomes, stats = check_transcripts(utterances, audio, TranscriptsConfig(model=str(lid_whisper[0])))
    assert stats.skipped == {"silent": 1, "longer-than-model-window": 1, "too-short-for-model": 1}
    assert stats.transcribed == 0
    assert all(o.rejection is None for o in outcomes.values())
    assert utterances[0].text == "Një titull." and utterances[1].text is None  # nothing invented, nothing lost


def test_confidence_measures():
    sure = Recognition("Deti është i qetë.", "sq", 0.99, "sq", -0.1, 0.9, 0.01)
    assert confidence_problems(sure, TranscriptsConfig()) == []
    loop = "dhe pastaj dhe pastaj dhe pastaj dhe pastaj dhe pastaj"
    assert repeated_ngrams(loop) > 2 and compression_ratio(loop * 3) > 2.4
    unsure = Recognition(loop, "sq", 0.99, "sq", -1.5, compression_ratio(loop), 0.9)
    problems = " ".join(confidence_problems(unsure, TranscriptsConfig()))
    assert "log-probability" in problems and "no-speech" in problems and "3-gram" in problems
    assert confidence_problems(Recognition(" ", "sq", 0.9, "sq", -0.1, 0.0, 0.0), TranscriptsConfig()) == ["empty text"]


def test_caption_edges_are_tightened_to_the_words(lid_whisper, tmp_path, monkeypatch):
    """retime_captions, first for real: the tiny model, given alignment heads, reports where its
    words lie (its cross-attention is not trained for timing, so only the path and the ranges are
    checked). Then the rule, on recognizer timings set by the test: a model whose alignment heads
    give reliable word times (the released Whisper checkpoints) cannot be downloaded here."""
    import filter.transcripts as step
    from shqip_av.media import read_audio
    from shqip_av.components.whisper import Recognition

    model = tmp_path / "with-heads"
    shutil.copytree(lid_whisper[0], model)
    generation = json.loads((model / "generation_config.json").read_text())
    generation["alignment_heads"] = [[1, 1], [1, 3]]
    (model / "generation_config.json").write_text(json.dumps(generation))
    step.load_recognizer.cache_clear()
    demo = json.loads((lid_whisper[0] / "training.json").read_text())
    assert demo["examples"] > 20
    speech = read_audio(SHARED / "testdata" / "audio" / "silero_test_speech_en.wav")[: 16000 * 3]
    audio = np.concatenate([np.zeros(16000, np.float32), speech, np.zeros(16000 * 2, np.float32)])
    u = Utterance(0.0, 6.0, "A caption.")
    outcomes, _ = check_transcripts(
        [u], audio, TranscriptsConfig(model=str(model), retime_captions=True, languages=["sq", "en"])
    )
    check = outcomes[0].check
    assert 0.0 <= check["speech_start"] <= check["speech_end"] <= 10.0  # the model's 10 s window
    step.load_recognizer.cache_clear()

    def heard(start, end):
        def fake(loaded, audios, *, languages, timestamps=False, **_):
            assert timestamps
            return [Recognition("Deti është i qetë.", "sq", 0.99, "sq", -0.1, 0.9, 0.0, start, end) for _ in audios]

        return fake

    cfg = TranscriptsConfig(model=str(model), retime_captions=True)
    cases = [
        ((1.0, 3.0), (1.4, 3.6), 1),  # 1 s of caption before the words, 3 s after: tightened
        ((0.2, 5.8), (0.5, 6.5), 0),  # within max_timing_drift (0.3 s): left alone
        ((1.0, 1.4), (0.5, 6.5), 0),
    ]  # the words would make an utterance under 1 s: refused
    for (start, end), expected, retimed in cases:
        monkeypatch.setattr("shqip_av.components.whisper.recognize", heard(start, end))
        u = Utterance(0.5, 6.5, "Deti është i qetë.")
        outcomes, stats = check_transcripts([u], np.full(16000 * 8, 0.1, np.float32), cfg, min_duration=1.0)
        assert (u.start, u.end) == expected and stats.captions_retimed == retimed
        assert outcomes[0].check["verified"]
        if retimed:
            assert outcomes[0].check["retimed_from"] == [0.5, 6.5]
    step.load_recognizer.cache_clear()
