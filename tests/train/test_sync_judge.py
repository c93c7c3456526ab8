"""The landmark sync judge on real footage: it learns from train speakers, is calibrated on train
speakers only, and finds shifts on a validation speaker's clip through filter."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ffmpeg
from tests.real_judge import FOREIGN_AUDIO, table_rows, validation_clip


def _speakers_by_split(table: Path) -> dict[str, set[str]]:
    lines = table.read_text().splitlines()
    header = lines[0].split("\t")
    out: dict[str, set[str]] = {}
    for line in lines[1:]:
        row = dict(zip(header, line.split("\t")))
        out.setdefault(row["split"], set()).add(row["speaker"])
    return out


def test_training_and_calibration_read_train_speakers_only(realpool_judge):
    run, metrics, _, table = realpool_judge
    splits = _speakers_by_split(table)
    learnt, calibrated = set(metrics["train"]["speakers"]), set(metrics["calibration"]["speakers"])
    assert learnt and calibrated and not learnt & calibrated  # held-out train speakers calibrate
    assert learnt | calibrated <= splits["train"]
    assert not (learnt | calibrated) & splits["validation"]
    thresholds = json.loads((run / "judge" / "thresholds.json").read_text())
    assert thresholds["speakers"] == sorted(calibrated) and thresholds["min_confidence"] > 0
    trained_on = json.loads((run / "trained_on.json").read_text())
    assert trained_on["splits"] == ["train"]


@pytest.fixture(scope="module")
def judged_copies(realpool_judge, tmp_path_factory):
    """The validation speaker's clip, its copy with the audio 0.4 s late, one 0.4 s early and one
    with a train speaker's audio, filtered with the trained judge and its calibrated limit:
    (root, {title: video id})."""
    from collect.pipeline import CollectConfig, prepare_raw
    from filter.config import FilterConfig
    from filter.pipeline import prepare_clips
    from shqip_av.manifest import read_jsonl

    run = realpool_judge[0]
    clip, speaker = validation_clip()
    other = Path(table_rows([FOREIGN_AUDIO])[1][0])
    root = tmp_path_factory.mktemp("judged") / "data"
    incoming = root / "incoming"
    incoming.mkdir(parents=True)
    shutil.copy(clip, incoming / "insync.mp4")
    ffmpeg("-i", str(clip), "-af", "adelay=400:all=1", "-c:v", "copy", "-c:a", "aac", "-shortest",
           str(incoming / "late.mp4"))  # fmt: skip
    ffmpeg("-i", str(clip), "-af", "atrim=start=0.4,asetpts=PTS-STARTPTS,apad=pad_dur=0.4", "-c:v", "copy",
           "-c:a", "aac", str(incoming / "early.mp4"))  # fmt: skip
    ffmpeg("-i", str(clip), "-stream_loop", "-1", "-i", str(other), "-map", "0:v", "-map", "1:a", "-c:v", "copy",
           "-c:a", "aac", "-shortest", str(incoming / "foreign.mp4"))  # fmt: skip
    consent = "{kind: release, subject: %s, reference: test input, granted: 2026-01-01}" % speaker
    titles = ("insync", "late", "early", "foreign")
    (root / "sources.yaml").write_text(
        "sources:\n"
        + "".join(
            f"  - path: incoming/{name}.mp4\n    title: {name}\n    captions: false\n    consent: {consent}\n"
            for name in titles
        )
    )
    prepare_raw(CollectConfig(root=str(root)))
    cfg = FilterConfig(root=str(root), workers=2)
    cfg.sync.method, cfg.quality.min_eye_distance = str(run), 28
    cfg.sync.video_offset = False  # the judge alone, per utterance (whole videos: test_video_sync.py)
    prepare_clips(cfg)
    ids = {r["source"]["title"]: r["video_id"] for r in read_jsonl(root / "raw" / "manifest.jsonl")}
    return root, ids


def _scored(root: Path, video_id: str) -> list[dict]:
    decisions = json.loads((root / "work" / video_id / "decisions.json").read_text())["tracks"]
    return [d for d in decisions if "sync_offset_frames" in d]


def test_the_judge_finds_the_shifts_and_prefers_own_audio(judged_copies, realpool_judge):
    """A learning check on real footage: a judge trained for seconds on 12 other speakers finds
    0.4 s (10 frames) either way on a speaker it never saw, finds the original in sync, and scores
    its own audio above another speaker's. Nothing here hangs on the learned confidence limit."""
    root, ids = judged_copies
    for title, truth in (("insync", 0), ("late", 10), ("early", -10)):
        scored = _scored(root, ids[title])
        assert scored, title
        for d in scored:  # the offset is recorded per sample, and it is the shift
            assert abs(d["sync_offset_frames"] - truth) <= 2, (title, d["sync_offset_frames"], d["sync_curve"])
    own = np.mean([d["sync_confidence"] for d in _scored(root, ids["insync"])])
    foreign = [d["sync_confidence"] for d in _scored(root, ids["foreign"])]
    assert foreign and own > np.mean(foreign), (own, foreign)


def test_filter_applies_the_calibrated_limit_and_rejects_the_shifted_copies(judged_copies, realpool_judge):
    """The keep/reject decision: the shifted copies never pass (their offset is past the limit
    whatever the confidence); each in-sync sample is kept exactly when its confidence reaches the
    limit calibrated on held-out train speakers, and that limit kept the share of their own audio
    it was chosen to keep."""
    from shqip_av.manifest import read_jsonl

    root, ids = judged_copies
    run, metrics = realpool_judge[0], realpool_judge[1]
    calibration = metrics["calibration"]
    limit = json.loads((run / "judge" / "thresholds.json").read_text())["min_confidence"]
    assert limit == calibration["min_confidence"]
    if "warning" not in calibration:  # a sane calibration keeps what it promised of its own held-out audio
        assert calibration["own_kept"] >= calibration["keep_share"]
    kept = {r["video_id"]: r for r in read_jsonl(root / "clips" / "manifest.jsonl")}
    assert ids["late"] not in kept and ids["early"] not in kept
    rejections = read_jsonl(root / "clips" / "rejected.jsonl")
    shifted = {r["reason"] for r in rejections if r["video_id"] in (ids["late"], ids["early"])}
    assert shifted and shifted <= {"sync-offset", "sync-low-confidence"}
    insync = _scored(root, ids["insync"])
    if any(d["sync_confidence"] >= limit for d in insync):
        assert ids["insync"] in kept
        quality = kept[ids["insync"]]["meta"]["quality"]
        assert abs(quality["sync_offset_frames"]) <= 2 and quality["sync_confidence"] >= limit
        assert quality["sync_method"] == f"judge:{run}"
    insync_rejected = [r for r in rejections if r["video_id"] == ids["insync"] and r["stage"] == "filter.sync"]
    assert all(r["reason"] == "sync-low-confidence" and r["value"] <= limit for r in insync_rejected)


def test_a_calibration_on_overlapping_scores_keeps_its_share_of_own_audio_and_says_so():
    """Own and foreign confidences that overlap: the limit keeps the stated share of own audio
    (rather than the best separation, which rejects most of it), reports the foreign audio it lets
    through, and warns when the held-out set is too small."""
    from train.lipsync.judge import Calibration, choose_limit

    rng = np.random.default_rng(0)
    own, foreign = rng.normal(0.25, 0.08, 60).tolist(), rng.normal(0.2, 0.08, 300).tolist()
    chosen = choose_limit(own, foreign, Calibration(keep_share=0.9, floor=0.0, ceiling=1.0))
    assert chosen["own_kept"] >= 0.9 and np.mean(np.asarray(own) >= chosen["min_confidence"]) >= 0.9
    assert 0.3 < chosen["foreign_let_through"] < 1 and "warning" not in chosen
    assert chosen["foreign_rejected"] == pytest.approx(1 - chosen["foreign_let_through"], abs=1e-3)
    # a handful of held-out utterances, all low: kept, and a warning says the limit is a guess
    few = choose_limit([0.29, 0.31, 0.35], [0.1, 0.5], Calibration(keep_share=0.9, min_samples=20))
    assert few["min_confidence"] <= 0.29 and few["own_kept"] == 1.0
    assert "only 3 held-out own-audio utterances" in few["warning"]
    # the ceiling and the floor bound it; a floor that costs own audio says so
    assert choose_limit([0.8] * 30, [0.1] * 30, Calibration(ceiling=0.3))["min_confidence"] == 0.3
    floored = choose_limit([0.01] * 30, [0.0] * 30, Calibration(floor=0.05))
    assert floored["min_confidence"] == 0.05 and floored["clamped"] == "floor" and "floor" in floored["warning"]


def test_with_correction_the_judge_shifts_the_audio_back(judged_copies, realpool_judge, tmp_path):
    """sync.correct_offset with a 12-frame allowance: the late copy becomes a sample whose audio
    was moved onto the face by the offset the judge found."""
    from filter.config import FilterConfig
    from filter.pipeline import prepare_clips
    from shqip_av.manifest import read_jsonl

    source, ids = judged_copies
    root = tmp_path / "data"
    shutil.copytree(source / "raw", root / "raw")
    manifest = root / "raw" / "manifest.jsonl"  # the late copy alone
    manifest.write_text("".join(line + "\n" for line in manifest.read_text().splitlines() if ids["late"] in line))
    cfg = FilterConfig(root=str(root), workers=1)
    cfg.sync.method, cfg.quality.min_eye_distance = str(realpool_judge[0]), 28
    cfg.sync.video_offset = False  # the judge's own per-utterance correction
    cfg.sync.correct_offset, cfg.sync.max_correction = True, 12
    prepare_clips(cfg)
    corrected = [r for r in read_jsonl(root / "clips" / "manifest.jsonl") if r["video_id"] == ids["late"]]
    assert corrected
    for r in corrected:
        assert (
            abs(r["meta"]["quality"].get("sync_correction_frames", r["meta"]["quality"]["sync_offset_frames"]) - 10)
            <= 2
        )


# ------------------------------------------------------------------ bad input: one line, nothing touched
@pytest.fixture(scope="module")
def untrained_judge(tmp_path_factory) -> Path:
    """A judge folder with random weights (the error paths need no training)."""
    import torch

    from shqip_av.components.sync_judge import LandmarkSyncJudge

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("judge") / "judge"
    LandmarkSyncJudge.build().save_pretrained(folder)
    (folder / "thresholds.json").write_text('{"min_confidence": 0.1}\n')
    return folder


def test_a_folder_of_another_kind_or_broken_weights_is_one_line(untrained_judge, tmp_path):
    from filter.config import ConfigurationError, SyncConfig
    from filter.sync import load_sync_scorer
    from shqip_av.components import KindError
    from shqip_av.components.sync_expert import build_expert
    from shqip_av.components.sync_judge import LandmarkSyncJudge

    expert = tmp_path / "expert"
    build_expert({"frames": 5, "crop_size": 32, "channels": [8], "embedding": 8}).save_pretrained(expert)
    with pytest.raises(KindError, match=r"is a sync expert, not a landmark sync judge"):
        LandmarkSyncJudge.from_pretrained(str(expert))
    asr_run = tmp_path / "runs" / "asr" / "small"  # what a train.asr run folder is recognised by
    (asr_run / "processor").mkdir(parents=True)
    (asr_run / "config.yaml").write_text("name: small\n")
    with pytest.raises(ConfigurationError, match=r"is a train.asr run, not a sync expert or landmark sync judge"):
        load_sync_scorer(SyncConfig(method=str(asr_run)))
    broken = tmp_path / "broken"
    shutil.copytree(untrained_judge, broken)
    data = (broken / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ConfigurationError) as error:
        load_sync_scorer(SyncConfig(method=str(broken)))
    assert "\n" not in str(error.value) and "cannot load the landmark sync judge" in str(error.value)


def test_a_judge_for_another_frame_rate_or_front_end_stops_filter_before_any_video(untrained_judge, tmp_path):
    from filter.config import ConfigurationError, FilterConfig
    from filter.pipeline import prepare_clips

    root = tmp_path / "data"
    (root / "raw").mkdir(parents=True)
    (root / "raw" / "manifest.jsonl").write_text('{"video_id": "local-0"}\n')  # checked before it is read
    cfg = FilterConfig(root=str(root))
    cfg.sync.method, cfg.probe.fps = str(untrained_judge), 30.0
    with pytest.raises(ConfigurationError, match=r"trained on 25.0 fps video, the data is analysed at 30.0 fps"):
        prepare_clips(cfg)
    other = tmp_path / "hop160"
    shutil.copytree(untrained_judge, other)
    config = json.loads((other / "config.json").read_text())
    config["frontend"]["hop_length"] = 160
    (other / "config.json").write_text(json.dumps(config))
    cfg = FilterConfig(root=str(root))
    cfg.sync.method = str(other)
    with pytest.raises(ConfigurationError, match=r"another audio front end \(hop_length 160 here 200\)"):
        prepare_clips(cfg)
    assert not (root / "clips").exists() and not (root / "work").exists()


def test_a_stretch_too_short_to_judge_is_counted_not_decided(untrained_judge):
    from filter.config import FilterConfig
    from filter.sync import JudgeSync, SyncInput
    from filter.video import _sync_limits

    scorer = JudgeSync(str(untrained_judge))
    rng = np.random.default_rng(0)
    landmarks = rng.normal(100, 20, (20, 478, 2)).astype(np.float32)  # 0.8 s: under the one-second window
    result = scorer.score(SyncInput(landmarks, rng.normal(0, 0.1, 20 * 640).astype(np.float32), 16000, 25.0, 0, 0))
    assert result.judged is False and result.curve == []
    reason, detail, _ = _sync_limits(FilterConfig(), scorer)(result)
    assert reason == "sync-too-short" and "not judged" in detail


def test_evaluate_reports_lse_with_the_judge(realpool_judge):
    """train.lipsync.evaluate takes the judge where it takes the expert: LSE-D/LSE-C and the
    offset of every sample of the validation split (the speaker the judge never saw)."""
    from train.lipsync.evaluate import EvaluateConfig, evaluate_split

    run, _, root, _ = realpool_judge
    result = evaluate_split(EvaluateConfig(expert=str(run), root=str(root), split="validation"))
    assert result["samples"] >= 1 and result["judge"] == str(run)
    assert 0 < result["lse_d"] < 1 and result["lse_c"] > 0
    assert all(abs(r["offset"]) <= 2 for r in result["per_sample"])

    # the same from Python, on one sample's landmarks and audio, and with the audio 10 frames late
    import glob
    import io

    from shqip_av.components.sync_judge import LandmarkSyncJudge, judge_clip
    from shqip_av.media import decode_wav
    from shqip_av.schema import read_tar_samples

    judge = LandmarkSyncJudge.from_pretrained(str(run))
    tar = sorted(glob.glob(str(root / "shards" / "validation" / "*.tar")))[0]
    _, members = next(read_tar_samples(tar))
    landmarks, (wave, _) = np.load(io.BytesIO(members["landmarks.npy"])), decode_wav(members["wav"])
    assert abs(judge_clip(judge, landmarks, wave).offset) <= 2
    late = np.concatenate([np.zeros(6400, np.float32), wave])[: len(wave)]
    assert abs(judge_clip(judge, landmarks, late).offset - 10) <= 2


def test_the_judge_gets_a_model_card_with_its_held_out_figures(realpool_judge, tmp_path):
    from cards.model_card import ModelCardConfig, build_model_card

    run, metrics, root, _ = realpool_judge
    copy = tmp_path / "judge-run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("checkpoints"))
    card = build_model_card(ModelCardConfig(run=str(copy), root=str(root))).read_text()
    assert "sync-judge" in card and "landmark sync judge" in card
    assert ", ".join(metrics["calibration"]["speakers"]) in card  # measured on held-out train speakers
    assert "LandmarkSyncJudge.from_pretrained" in card
