"""filter with a trained sync expert (sync.method = its folder), on variants of a clip whose
speaker the expert never saw: in sync kept at offset 0, audio 0.4 s late or early found at ±10
frames and rejected, another speaker's audio rejected, small offsets corrected on request, and a
rerun with the same expert does nothing."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from shqip_av.manifest import read_jsonl
from tests.conftest import ffmpeg


@pytest.fixture(scope="module")
def variants(demo_root, demo_expert, tmp_path_factory):
    from collect.pipeline import CollectConfig, prepare_raw
    from filter.shard import ShardConfig, split_of

    salt = json.loads((demo_root / "shards" / "index.json").read_text())["config"]["salt"]
    raw = list(read_jsonl(demo_root / "raw" / "manifest.jsonl"))
    accepted = {r["video_id"] for r in read_jsonl(demo_root / "clips" / "manifest.jsonl")}
    unseen = next(
        r
        for r in raw
        if r["video_id"] in accepted and split_of(r["source"]["speaker"], ShardConfig(salt=salt)) == "test"
    )
    other = next(r for r in raw if r["video_id"] in accepted and r["source"]["speaker"] != unseen["source"]["speaker"])
    root = tmp_path_factory.mktemp("expert-filter") / "data"
    (root / "incoming").mkdir(parents=True)
    src, foreign = demo_root / unseen["files"]["video"], demo_root / other["files"]["video"]
    out = lambda name: str(root / "incoming" / f"{name}.mp4")  # noqa: E731
    shutil.copy(src, out("insync"))
    ffmpeg("-i", str(src), "-af", "adelay=400:all=1", "-c:v", "copy", "-c:a", "aac", out("late400"))
    ffmpeg("-i", str(src), "-af", "adelay=200:all=1", "-c:v", "copy", "-c:a", "aac", out("late200"))
    ffmpeg(
        "-i",
        str(src),
        "-af",
        "atrim=start=0.4,asetpts=PTS-STARTPTS,apad=pad_dur=0.4",
        "-c:v",
        "copy",
        "-c:a",
        "aac",
        out("early400"),
    )
    ffmpeg(
        "-i",
        str(src),
        "-i",
        str(foreign),
        "-map",
        "0:v",
        "-map",
        "1:a",
        "-c:v",
        "copy",
        "-c:a",
        "aac",
        "-shortest",
        out("foreign"),
    )
    lines = ["sources:"]
    for name in ("insync", "late400", "late200", "early400", "foreign"):
        lines += [
            f"  - path: incoming/{name}.mp4",
            f"    title: {name}",
            "    captions: false",
            "    consent: {kind: release, subject: unseen, reference: test, granted: 2026-01-01}",
        ]
    (root / "sources.yaml").write_text("\n".join(lines) + "\n")
    prepare_raw(CollectConfig(root=str(root)))
    ids = {r["source"]["title"]: r["video_id"] for r in read_jsonl(root / "raw" / "manifest.jsonl")}
    return root, ids, str(demo_expert[0] / "expert")


def _decisions(root, vid):
    return [
        d
        for d in json.loads((root / "work" / vid / "decisions.json").read_text())["tracks"]
        if "sync_offset_frames" in d
    ]


@pytest.mark.slow
def test_filter_with_the_expert_finds_offsets_and_rejects_foreign_audio(variants):
    from filter.config import FilterConfig
    from filter.pipeline import prepare_clips

    root, ids, expert = variants
    cfg = FilterConfig(root=str(root), workers=2)
    cfg.sync.method = expert
    cfg.sync.video_offset = False  # the utterance-level scorer alone (whole videos: test_video_sync.py)
    stats = prepare_clips(cfg)
    accepted = {r["video_id"] for r in read_jsonl(root / "clips" / "manifest.jsonl")}
    rejected = {(r["video_id"], r["reason"]) for r in read_jsonl(root / "clips" / "rejected.jsonl")}
    assert ids["insync"] in accepted
    for d in _decisions(root, ids["insync"]):
        assert abs(d["sync_offset_frames"]) <= 1 and d["sync_method"].startswith("expert:")
    for name, expected in (("late400", 10), ("early400", -10), ("late200", 5)):
        offsets = [d["sync_offset_frames"] for d in _decisions(root, ids[name])]
        assert offsets and all(abs(o - expected) <= 1 for o in offsets), (name, offsets)
        assert ids[name] not in accepted and (ids[name], "sync-offset") in rejected
    assert ids["foreign"] not in accepted
    for sample in read_jsonl(root / "clips" / "manifest.jsonl"):
        assert sample["meta"]["quality"]["sync_method"] == f"expert:{expert}"
    # the same expert again: nothing to do
    again = prepare_clips(cfg)
    assert again.processed == 0 and again.skipped == stats.videos


@pytest.mark.slow
def test_a_small_offset_is_corrected_when_asked_and_the_sample_is_then_in_sync(variants):
    from filter.config import FilterConfig
    from shqip_av.components.sync_expert import expert_lse, load_expert, lower_halves
    from filter.pipeline import prepare_clips
    from shqip_av.components import audio_frontend as frontend
    from shqip_av.media import iter_frames, read_audio

    root, ids, expert = variants
    cfg = FilterConfig(root=str(root))
    cfg.sync.method, cfg.sync.correct_offset, cfg.sync.max_correction = expert, True, 6
    cfg.sync.video_offset = False  # the utterance-level correction alone
    prepare_clips(cfg)
    late = [r for r in read_jsonl(root / "clips" / "manifest.jsonl") if r["video_id"] == ids["late200"]]
    assert late and all(abs(r["meta"]["quality"]["sync_correction_frames"] - 5) <= 1 for r in late)
    model = load_expert(expert)
    for r in late:  # the written sample itself: its audio now meets its video
        crops = np.stack(list(iter_frames(root / r["files"]["mp4"])))
        lse = expert_lse(
            model, lower_halves(crops, 48), frontend.log_mel(read_audio(root / r["files"]["wav"])), 0, 0, 15
        )
        assert abs(lse.offset) <= 1, lse
    assert not [r for r in read_jsonl(root / "clips" / "manifest.jsonl") if r["video_id"] == ids["late400"]]


def test_a_missing_expert_is_one_line_before_any_video(demo_root, tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO

    proc = subprocess.run(
        [sys.executable, "-m", "filter", "--root", str(demo_root), f"sync.method={tmp_path / 'nope'}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "sync.method" in lines[0] and "nope" in lines[0]


@pytest.mark.slow
def test_evaluate_scores_a_shard_split_and_video_files(demo_root, demo_expert, variants, tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO
    from train.lipsync.evaluate import EvaluateConfig, evaluate_split, evaluate_video

    root, _, expert = variants
    split = evaluate_split(EvaluateConfig(expert=str(demo_expert[0]), root=str(demo_root), split="test"))
    assert split["samples"] > 0 and split["aligned_vs_shifted_accuracy"] > 0.6, split
    assert split["offset_zero_share"] >= 0.5
    for name, expected in (("insync", 0), ("late400", 10), ("early400", -10)):
        result = evaluate_video(EvaluateConfig(expert=expert, video=str(root / "incoming" / f"{name}.mp4")))
        assert abs(result["offset"] - expected) <= 1, (name, result["offset"])
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "train.lipsync.evaluate",
            "--expert",
            str(tmp_path / "nope"),
            "--video",
            str(root / "incoming" / "insync.mp4"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "nope" in lines[0], proc.stderr
