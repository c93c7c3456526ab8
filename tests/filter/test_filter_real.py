"""filter on the real clips of ../shared/testdata and variants made from them (see conftest)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from shqip_av import geometry
from shqip_av.manifest import read_jsonl

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _load(root):
    accepted = list(read_jsonl(root / "clips" / "manifest.jsonl"))
    rejected = list(read_jsonl(root / "clips" / "rejected.jsonl"))
    return accepted, rejected


def _of(records, vid):
    return [r for r in records if r["video_id"] == vid]


def _decisions(root, vid):
    return json.loads((root / "work" / vid / "decisions.json").read_text())["tracks"]


def test_in_sync_real_clips_are_accepted_with_schema_metadata(real_root):
    root, ids, _ = real_root
    accepted, _ = _load(root)
    for name in ("insync5", "aoc"):
        samples = _of(accepted, ids[name])
        assert samples, f"{name}: no accepted utterance"
        for s in samples:
            q = s["meta"]["quality"]
            assert q["sync_confidence"] >= 0.3 and abs(q["sync_offset_frames"]) <= 3
            assert q["eye_distance_px"] >= 80 and q["sharpness"] > 15
            assert s["meta"]["speaker"] == f"person {'five' if name == 'insync5' else 'aoc'}"
            assert s["meta"]["diarization_label"] == "single-speaker-assumed"  # no pipeline configured
            assert s["meta"]["num_frames"] == round((s["meta"]["end"] - s["meta"]["start"]) * 25)
            assert 1.0 <= s["duration"] <= 12.0


def test_audio_shifted_by_0_4_s_reports_a_10_frame_offset_and_is_rejected(real_root):
    root, ids, _ = real_root
    accepted, rejected = _load(root)
    assert not _of(accepted, ids["shifted5"])
    reasons = {r["reason"] for r in _of(rejected, ids["shifted5"])}
    assert reasons <= {"sync-offset", "sync-low-confidence"} and reasons
    base = {round(d["start"], 1): d["sync_offset_frames"] for d in _decisions(root, ids["insync5"])}
    for d in _decisions(root, ids["shifted5"]):
        # positive = audio late; the clip's own offset (−2..−1 frames) plus the 10 frames added
        assert 7 <= d["sync_offset_frames"] <= 12, d
    long_shifted = max(_decisions(root, ids["shifted5"]), key=lambda d: d["end"] - d["start"])
    assert long_shifted["sync_offset_frames"] - base[0.0] == pytest.approx(10, abs=1)


def test_foreign_speech_gets_a_low_sync_confidence(real_root):
    root, ids, _ = real_root
    accepted, rejected = _load(root)
    assert not _of(accepted, ids["mismatch5"])
    assert {r["reason"] for r in _of(rejected, ids["mismatch5"])} <= {"sync-offset", "sync-low-confidence"}
    own = max(d["sync_confidence"] for d in _decisions(root, ids["insync5"]))
    for d in _decisions(root, ids["mismatch5"]):
        assert d["sync_confidence"] < 0.7 * own


def test_rotated_and_high_frame_rate_variants_become_upright_25_fps_crops(real_root):
    root, ids, _ = real_root
    accepted, _ = _load(root)
    ref = _of(accepted, ids["insync5"])
    for name in ("rotated5", "fps50_5", "fps60_5", "vfr5"):
        samples = _of(accepted, ids[name])
        assert [round(s["meta"]["start"], 1) for s in samples] == [round(s["meta"]["start"], 1) for s in ref], name
        for s, r in zip(samples, ref):
            assert s["meta"]["fps"] == 25
            assert s["meta"]["num_frames"] == r["meta"]["num_frames"]
            # upright: the same eye distance as the original (a sideways face would not even be found)
            assert s["meta"]["quality"]["eye_distance_px"] == pytest.approx(
                r["meta"]["quality"]["eye_distance_px"], rel=0.03
            )
            lm = np.load(root / s["files"]["landmarks.npy"])
            eyes = geometry.alignment_points(lm)
            assert (eyes[:, 0, 0] < eyes[:, 1, 0]).all()  # the subject's right eye on the image left
            assert (eyes[:, 2, 1] > eyes[:, 0, 1]).all()  # nose below the eyes


def test_low_average_frame_rate_is_rejected_with_the_rate(real_root):
    root, ids, _ = real_root
    _, rejected = _load(root)
    (r,) = _of(rejected, ids["vfr1"])
    assert r["reason"] == "low-frame-rate" and 21.5 < r["value"] < 23


def test_small_face_is_rejected_with_the_measured_eye_distance(real_root):
    root, ids, _ = real_root
    accepted, rejected = _load(root)
    assert not _of(accepted, ids["small_demo1"])
    rs = _of(rejected, ids["small_demo1"])
    assert rs and all(r["reason"] == "face-too-small" for r in rs)
    assert all(20 < r["value"] < 40 for r in rs)  # a third of the ~85 px at full resolution


def test_face_leaving_the_frame_is_rejected(real_root):
    root, ids, _ = real_root
    accepted, rejected = _load(root)
    assert not _of(accepted, ids["leaving_aoc"])
    incomplete = [r for r in _of(rejected, ids["leaving_aoc"]) if r["reason"] == "face-track-incomplete"]
    assert incomplete and all(r["value"] < 0.6 for r in incomplete)


def test_two_faces_keep_the_speaking_one_and_record_the_other(real_root):
    root, ids, _ = real_root
    accepted, rejected = _load(root)
    samples = _of(accepted, ids["two_faces"])
    assert samples
    for s in samples:
        lm = np.load(root / s["files"]["landmarks.npy"])
        affine = np.load(root / s["files"]["affine.npy"])
        nose_x = geometry.apply_affine(geometry.invert_affine(affine), lm)[:, geometry.NOSE_TIP, 0]
        assert (nose_x < 524).all()  # the left face is the one whose audio this is
    others = [r for r in _of(rejected, ids["two_faces"]) if not r["key"].endswith(("_u_0",))]
    assert len(others) >= len(samples)  # the other face got a rejection record for each utterance


def test_absurd_resolution_is_rejected_and_did_not_stop_the_run(real_root):
    root, ids, stats = real_root
    _, rejected = _load(root)
    (r,) = _of(rejected, ids["tiny"])
    assert r["reason"] == "absurd-resolution" and r["value"] == "32x32"
    assert stats.failed == 0 and stats.processed == len(ids)


def test_every_rejection_has_stage_reason_and_value(real_root):
    root, _, _ = real_root
    _, rejected = _load(root)
    assert rejected
    for r in rejected:
        assert r["stage"].startswith("filter.") and r["reason"] and "value" in r and r["video_id"]


def test_canonical_crops_are_stable_and_invertible(real_root):
    root, ids, _ = real_root
    accepted, _ = _load(root)
    from shqip_av.components.face_tracker import FaceScan

    for s in _of(accepted, ids["aoc"]) + _of(accepted, ids["insync5"]):
        lm = np.load(root / s["files"]["landmarks.npy"]).astype(np.float64)
        affine = np.load(root / s["files"]["affine.npy"]).astype(np.float64)
        assert lm.shape == (s["meta"]["num_frames"], 478, 2) and affine.shape == (s["meta"]["num_frames"], 2, 3)
        # eye and nose points stay within a few pixels of the template through the whole clip
        # (the crop is fitted to smoothed points; raw landmarks jitter about 1 px around them)
        points = geometry.alignment_points(lm)
        dev = np.linalg.norm(points - geometry.template(256), axis=-1)
        assert dev.max() < 8.0, dev.max()
        assert points.std(axis=0).max() < 2.5
        # the stored frame→crop affine maps crop landmarks back onto the source-frame landmarks
        scan = FaceScan.load(root / "work" / s["video_id"] / "faces.npz")
        track = scan.tracks[s["meta"]["track"]]
        first = int(round(s["meta"]["start"] * 25))
        source = track.landmarks[first - track.start : first - track.start + len(lm)]
        back = geometry.apply_affine(geometry.invert_affine(affine), lm)
        assert np.abs(back - source).max() < 0.5


def test_crop_files_decode_to_the_schema(real_root):
    root, ids, _ = real_root
    accepted, _ = _load(root)
    from shqip_av.media import probe

    s = _of(accepted, ids["aoc"])[0]
    info = probe(root / s["files"]["mp4"])
    assert (info.width, info.height, info.has_audio, info.vcodec) == (256, 256, False, "h264")
    assert info.num_frames == s["meta"]["num_frames"]
    wav = probe(root / s["files"]["wav"])
    assert (wav.audio_rate, wav.audio_channels) == (16000, 1)
    assert wav.duration == pytest.approx(s["duration"], abs=0.02)


def test_filter_itself_honours_rotation_metadata(real_root, tmp_path):
    """collect already stores phone videos upright; filter must also cope with a raw file that
    still carries the rotation tag (collected by an older version, or placed by hand)."""
    root, ids, _ = real_root
    from filter.config import FilterConfig
    from filter.video import process_video
    from shqip_av.media import probe

    record = next(r for r in read_jsonl(root / "raw" / "manifest.jsonl") if r["video_id"] == ids["rotated5"])
    other = tmp_path / "root"
    (other / "raw" / record["video_id"]).mkdir(parents=True)
    sideways = root / "incoming" / "rotated5.mp4"
    assert probe(sideways).rotation in (90, 270)
    shutil.copy(sideways, other / record["files"]["video"])
    shutil.copy(root / record["files"]["audio"], other / record["files"]["audio"])
    cfg = FilterConfig(root=str(other))
    cfg.sync.video_offset = False  # as the fixture filtered the reference
    result = process_video(record, str(other), cfg)
    ref = _of(_load(root)[0], ids["insync5"])
    assert [round(a["meta"]["start"], 1) for a in result.accepted] == [round(r["meta"]["start"], 1) for r in ref]
    for a, r in zip(result.accepted, ref):
        assert a["meta"]["quality"]["eye_distance_px"] == pytest.approx(
            r["meta"]["quality"]["eye_distance_px"], rel=0.03
        )


def test_a_face_lying_sideways_is_rejected_by_head_pose(real_root):
    """Upright pixels with a wrong rotate tag: MediaPipe still finds the face, but on its side;
    the head-pose filter (roll from MediaPipe's transformation matrix) rejects every utterance."""
    root, ids, _ = real_root
    accepted, rejected = _load(root)
    assert not _of(accepted, ids["sideways5"])
    mine = _of(rejected, ids["sideways5"])
    assert mine and {r["reason"] for r in mine} == {"head-pose"}
    assert all(r["value"] > 60 and "sideways" in r["detail"] for r in mine)
    # the correctly tagged rotated clip and the upright ones pass the same filter
    assert _of(accepted, ids["rotated5"]) and _of(accepted, ids["insync5"])
    for d in _decisions(root, ids["insync5"]):
        assert d["roll"] < 35 and d["alignment_error"] < 0.2
