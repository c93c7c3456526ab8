import io
import shutil
import signal
import subprocess
import sys
import tarfile
import time

import numpy as np
import pytest

from collect.pipeline import CollectConfig, prepare_raw
from collect.sample import CLIPS, SENTENCES, TRANSLATIONS_EN, loudness_envelope
from collect.takedown import apply_takedown
from shqip_av.captions import read_srt, read_vtt
from shqip_av.manifest import read_jsonl
from shqip_av.media import iter_frames, read_audio
from tests.conftest import REPO, shared_model, shared_video

CONSENT = "{kind: release, subject: Speaker %s, reference: form %s}"
CLIPS_USED = [
    "retalking_face_2.mp4",
    "retalking_face_3.mp4",
    "retalking_face_5.mp4",
    "sadtalker_WDA_KatieHill_000.mp4",
    "sadtalker_WDA_AlexandriaOcasioCortez_000.mp4",
]


def local_root(tmp_path, name):
    root = tmp_path / name
    (root / "own").mkdir(parents=True)
    lines = ["sources:"]
    for i, clip in enumerate(CLIPS_USED):
        shutil.copy(shared_video(clip), root / "own" / clip)
        lines += [f"  - path: own/{clip}", f"    consent: {CONSENT % (i, i)}"]
    (root / "sources.yaml").write_text("\n".join(lines) + "\n")
    return root


def comparable(root):
    return sorted(
        ({k: v for k, v in r.items() if k != "collected_at"} for r in read_jsonl(root / "raw" / "manifest.jsonl")),
        key=lambda r: r["video_id"],
    )


def test_killed_run_resumes_to_the_same_manifest_and_rerun_is_noop(tmp_path):
    reference = local_root(tmp_path, "uninterrupted")
    prepare_raw(CollectConfig(root=str(reference)))
    killed = local_root(tmp_path, "killed")
    proc = subprocess.Popen(
        [sys.executable, "-m", "collect", "--root", str(killed)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    manifest = killed / "raw" / "manifest.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if manifest.exists() and manifest.read_bytes().count(b"\n") >= 2:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    lines_at_kill = manifest.read_bytes().count(b"\n")
    assert lines_at_kill < len(CLIPS_USED), "the run finished before it could be killed"
    stats = prepare_raw(CollectConfig(root=str(killed)))
    assert stats.already == lines_at_kill and stats.collected == len(CLIPS_USED) - lines_at_kill
    assert comparable(killed) == comparable(reference)
    assert sorted(p.name for p in (killed / "raw").iterdir() if p.is_dir() and not p.name.startswith(".")) == sorted(
        r["video_id"] for r in comparable(reference)
    )
    # a second run changes nothing at all
    snapshot = {p: p.read_bytes() for p in (killed / "raw").glob("*.jsonl")}
    again = prepare_raw(CollectConfig(root=str(killed)))
    assert again.collected == 0 and again.already == len(CLIPS_USED)
    assert {p: p.read_bytes() for p in (killed / "raw").glob("*.jsonl")} == snapshot


def test_takedown_removes_every_file_and_line(tmp_path):
    root = local_root(tmp_path, "data")
    prepare_raw(CollectConfig(root=str(root)))
    # a refused run (Ray at an address nothing answers) keeps the record of the run that built raw/
    record = (root / "raw" / "collect.config.yaml").read_bytes()
    from shqip_av.config import ConfigError

    with pytest.raises(ConfigError, match="cannot connect to Ray at '127.0.0.1:9'"):
        prepare_raw(CollectConfig(root=str(root), engine="ray", ray_address="127.0.0.1:9"))
    assert (root / "raw" / "collect.config.yaml").read_bytes() == record
    records = list(read_jsonl(root / "raw" / "manifest.jsonl"))
    victim = next(r for r in records if r["rights"]["consent"]["subject"] == "Speaker 1")
    vid = victim["video_id"]
    # downstream traces of the same video (later stages write these)
    (root / "work" / vid).mkdir(parents=True)
    (root / "clips").mkdir()
    (root / "clips" / "manifest.jsonl").write_text(
        f'{{"video_id": "{vid}", "key": "{vid}_0_500"}}\n{{"video_id": "other", "key": "other_0_0"}}\n'
    )
    shard = root / "shards" / "train" / "shqip-av-train-000000.tar"
    shard.parent.mkdir(parents=True)
    with tarfile.open(shard, "w") as tar:
        for key in (f"{vid}_0_500", "other_0_0"):
            for ext, data in (("wav", b"RIFF"), ("json", b"{}")):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    (root / "shards" / "index.json").write_text("{}")
    (root / "takedown.txt").write_text("subject:speaker 1\n")
    report = apply_takedown(root)
    assert report.videos == [vid] and report.samples_removed == 1
    assert not (root / "raw" / vid).exists() and not (root / "work" / vid).exists()
    assert vid not in (root / "raw" / "manifest.jsonl").read_text()
    assert vid not in (root / "clips" / "manifest.jsonl").read_text()
    with tarfile.open(shard) as tar:
        assert sorted(tar.getnames()) == ["other_0_0.json", "other_0_0.wav"]
    assert not (root / "shards" / "index.json").exists()
    assert len(list(read_jsonl(root / "raw" / "manifest.jsonl"))) == len(CLIPS_USED) - 1
    # and it is never collected again
    stats = prepare_raw(CollectConfig(root=str(root)))
    assert stats.collected == 0 and stats.rejected == {"takedown": 1}
    assert apply_takedown(root).files_removed == 0


def _landmarker():
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    opts = vision.FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(shared_model("face_landmarker.task"))),
        running_mode=vision.RunningMode.VIDEO,
        num_faces=1,
    )
    return mp, vision.FaceLandmarker.create_from_options(opts)


def mouth_track(path):
    """Per frame: inner-lip gap / iris distance (NaN where no face), and iris distance in px."""
    mp, lm = _landmarker()
    gaps, eyes = [], []
    with lm:
        for i, frame in enumerate(iter_frames(path)):
            r = lm.detect_for_video(
                mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(frame)), i * 40
            )
            if not r.face_landmarks:
                gaps.append(np.nan)
                eyes.append(np.nan)
                continue
            p = np.array([[q.x * frame.shape[1], q.y * frame.shape[0]] for q in r.face_landmarks[0]])
            eye = np.linalg.norm(p[468] - p[473])
            gaps.append(np.linalg.norm(p[13] - p[14]) / eye)
            eyes.append(eye)
    return np.array(gaps), np.array(eyes)


@pytest.mark.slow
def test_sample_clips_have_findable_faces_and_moving_mouths(sample_set):
    folder = sample_set / "incoming" / "sample"
    for spec in [c for c in CLIPS if c.kind == "good"][::2] + [c for c in CLIPS if c.kind != "good"]:
        path = folder / f"{spec.name}.mp4"
        gaps, eyes = mouth_track(path)
        found = np.mean(~np.isnan(gaps))
        if spec.kind == "no-face":
            assert found == 0, spec.name
            continue
        assert found > 0.95, spec.name
        if spec.kind == "small-face":
            assert np.nanmedian(eyes) < 80  # too small for the face-size filter
            continue
        assert np.nanmedian(eyes) >= 80, spec.name
        envelope = loudness_envelope(read_audio(path), len(gaps))
        if spec.kind == "silent":
            assert envelope.max() < 0.01 and np.nanstd(gaps) < 0.02
            continue
        assert np.corrcoef(gaps, envelope)[0, 1] > 0.7, spec.name
        cues = read_vtt(folder / f"{spec.name}.sq.vtt")
        assert [c.text for c in cues] == [SENTENCES[i] for i in spec.sentences]
        english = read_srt(folder / f"{spec.name}.en.srt")  # the translation make demo dubs with
        assert [c.text for c in english] == [TRANSLATIONS_EN[i] for i in spec.sentences]
        assert [(c.start, c.end) for c in english] == [(c.start, c.end) for c in cues]


def test_sample_collects_with_consent_and_refuses_the_unconsented(sample_set):
    stats = prepare_raw(CollectConfig(root=str(sample_set)))
    assert stats.collected + stats.already == len(CLIPS) - 1 and stats.rejected == {"no-consent": 1}
    records = list(read_jsonl(sample_set / "raw" / "manifest.jsonl"))
    speakers = {r["rights"]["consent"]["subject"] for r in records}
    assert len(speakers) == 3
    good = [r for r in records if "speaker_" in r["source"]["title"]]
    assert all(r["files"]["captions"].get("sq") for r in good)
