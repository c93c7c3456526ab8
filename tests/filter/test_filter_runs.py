"""How filter runs: resumable after a kill, a no-op when rerun, redone when the config changes,
damaged raw files become rejection records; plus the Procrustes geometry it relies on."""

from __future__ import annotations

import copy
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from filter.config import FilterConfig
from filter.pipeline import prepare_clips
from filter.video import process_video
from shqip_av import geometry
from shqip_av.manifest import read_jsonl
from tests.conftest import REPO, ffmpeg, shared_model


def _tree(folder):
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "filter.yaml"
    }


@pytest.fixture(scope="module")
def collected(sample_collected):
    """The embedded sample, collected into a root (not yet filtered; the session's: copy it)."""
    shared_model("face_landmarker.task")
    return sample_collected


def test_killed_run_resumes_to_the_same_outputs_and_reruns_are_no_ops(collected, sample_filtered, tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    shutil.copytree(sample_filtered, whole)  # the session's uninterrupted 2-worker run of the same raw/
    shutil.copytree(collected, killed)
    assert len(list(whole.glob("work/*/done.json"))) == 9
    assert len(list(read_jsonl(whole / "clips" / "manifest.jsonl"))) == 12
    rejected = sorted(r["reason"] for r in read_jsonl(whole / "clips" / "rejected.jsonl"))
    assert rejected == ["face-too-small", "no-face", "no-speech"]

    proc = subprocess.Popen(
        [sys.executable, "-m", "filter", "--root", str(killed)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while len(list(killed.glob("work/*/done.json"))) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(list(killed.glob("work/*/done.json")))
    assert 3 <= done_before < 9, "the run was not interrupted midway"
    resumed = prepare_clips(FilterConfig(root=str(killed), workers=2))
    assert resumed.skipped == done_before and resumed.processed == 9 - done_before
    for name in ("manifest.jsonl", "rejected.jsonl"):
        assert (killed / "clips" / name).read_bytes() == (whole / "clips" / name).read_bytes()
    assert _tree(killed / "clips") == _tree(whole / "clips")

    snapshot = _tree(whole / "clips")
    again = prepare_clips(FilterConfig(root=str(whole)))
    assert (again.processed, again.skipped) == (0, 9)
    assert _tree(whole / "clips") == snapshot

    # a changed threshold redoes the videos (and only the new verdicts remain)
    cfg = FilterConfig(root=str(whole), workers=2)
    cfg.quality.min_eye_distance = 500.0
    redone = prepare_clips(cfg)
    assert redone.processed == 9 and redone.utterances == 0
    assert not [p for p in (whole / "clips").iterdir() if p.is_dir()]
    reasons = {r["reason"] for r in read_jsonl(whole / "clips" / "rejected.jsonl")}
    assert "face-too-small" in reasons


def test_withdrawn_videos_are_not_filtered(collected, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(collected, root)
    (root / "takedown.txt").write_text("subject:shqip-av sample speaker A\n")
    stats = prepare_clips(FilterConfig(root=str(root)))
    subject_a = [
        r
        for r in read_jsonl(root / "raw" / "manifest.jsonl")
        if r["rights"]["consent"]["subject"] == "shqip-av sample speaker A"
    ]
    assert stats.withdrawn == len(subject_a) >= 2 and stats.videos == 9 - len(subject_a)
    assert all(r["speaker"] != "shqip-av sample speaker A" for r in read_jsonl(root / "clips" / "manifest.jsonl"))


def test_damaged_raw_files_become_rejection_records(collected, tmp_path):
    records = [r for r in read_jsonl(collected / "raw" / "manifest.jsonl") if "speaker_a_01" in r["source"]["title"]]
    record = records[0]
    root = tmp_path / "root"
    shutil.copytree(collected / "raw", root / "raw")
    video = root / record["files"]["video"]
    cfg = FilterConfig(root=str(root))

    data = video.read_bytes()
    video.write_bytes(data[: len(data) // 3])  # truncated after collection
    result = process_video(record, str(root), cfg)
    assert [r["reason"] for r in result.rejected] == ["does-not-decode"] and not result.accepted

    silent = root / "silent.mp4"
    ffmpeg("-i", str(collected / record["files"]["video"]), "-an", "-c:v", "copy", str(silent))
    os.replace(silent, video)
    result = process_video(record, str(root), cfg)
    assert [r["reason"] for r in result.rejected] == ["no-audio-stream"]

    broken = copy.deepcopy(record)
    broken["files"]["video"] = "raw/nowhere/video.mp4"
    result = process_video(broken, str(root), cfg)
    assert result.rejected[0]["reason"] == "does-not-decode"


def test_procrustes_recovers_a_similarity_and_inverts_exactly():
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 500, size=(3, 2))
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -40.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = src @ (scale * rot).T + shift
    a = geometry.fit_similarity(src, dst)
    assert np.allclose(a[:, :2], scale * rot) and np.allclose(a[:, 2], shift)
    back = geometry.apply_affine(geometry.invert_affine(a), geometry.apply_affine(a, src))
    assert np.allclose(back, src)
    # a mirrored target is not reachable without reflection: the fit stays a rotation
    mirrored = dst * np.array([-1.0, 1.0])
    m = geometry.fit_similarity(src, mirrored)[:, :2]
    assert np.linalg.det(m) > 0
    stack = np.stack([a, a])
    assert np.allclose(geometry.apply_affine(stack, np.stack([src, src])), np.stack([dst, dst]))


def test_filter_cli_help_documents_every_threshold():
    out = subprocess.run([sys.executable, "-m", "filter", "--help"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0
    for flag in ("--quality.min-eye-distance", "--sync.min-confidence", "--diarization.pipeline", "--workers"):
        assert flag in out.stdout, flag
