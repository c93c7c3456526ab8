"""export dub on a real clip from ../shared with tiny local models (the demo-sized tiny Whisper run,
a tiny random generator, the session's tiny expert, espeak-ng): the output keeps the source's
frames, size and rate, changes only the mouth region, carries the new speech and the disclosure,
and a killed dub resumes without redoing finished steps."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import torch

from export.bundle import BundleConfig, build_bundle
from export.disclose import DisclosureError, read_manifest
from export.dub import DubConfig, DubError, dub
from shqip_av.components.lipsync_generator import LipSyncGenerator
from shqip_av.media import iter_frames, probe, read_audio
from tests.conftest import shared_video
from tests.export.c2pa_certs import make_test_credentials

CLIP = "sadtalker_WDA_AlexandriaOcasioCortez_000.mp4"  # 8 s, 512×512, 25 fps, one face
SRT = (
    "1\n00:00:00,300 --> 00:00:03,500\nGood morning, this is a test of dubbing.\n\n"
    "2\n00:00:04,000 --> 00:00:07,600\nThe mouth should follow the new speech.\n"
)


@pytest.fixture(scope="module")
def bundle(tiny_dub_bundle):
    return tiny_dub_bundle


@pytest.fixture
def srt(tmp_path):
    path = tmp_path / "en.srt"
    path.write_text(SRT)
    return path


def _psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255**2 / max(mse, 1e-10))


def test_a_real_clip_is_dubbed_with_its_frames_kept_and_only_the_mouth_changed(bundle, srt, tmp_path):
    video = shared_video(CLIP)
    chain, key, root = make_test_credentials(tmp_path)
    report = dub(
        DubConfig(
            input=str(video),
            bundle=str(bundle),
            translation=str(srt),
            out=str(tmp_path / "out"),
            visible_mark=False,
            c2pa_cert=str(chain),
            c2pa_key=str(key),
        )
    )
    out = tmp_path / "out" / f"{video.stem}.dub.mp4"
    src, got = probe(video), probe(out)
    assert (got.width, got.height, got.fps) == (src.width, src.height, src.fps)
    a, b = list(iter_frames(video)), list(iter_frames(out))
    assert len(a) == len(b) == report["frames"]
    synced = [s for s in report["segments"] if s["lip_synced"]]
    assert len(synced) == 2 and report["lip_synced_frames"] > 150
    # outside the segments (and their buffer frames) the picture is the source's, re-encoded
    assert _psnr(a[0], b[0]) > 35
    # inside: the upper face is untouched, the mouth region changed
    mid = 50  # 2 s: inside the first segment
    h = a[mid].shape[0]
    assert _psnr(a[mid][: h // 3], b[mid][: h // 3]) > 35
    assert np.abs(a[mid].astype(int) - b[mid].astype(int)).max(axis=2).mean() > 1.0
    # the audio is the new speech in the segments (the original ducked under it), the original elsewhere
    original, dubbed = read_audio(video), read_audio(out)
    seg = slice(int(0.5 * 16000), int(3.3 * 16000))
    assert np.corrcoef(original[seg], dubbed[seg][: len(original[seg])])[0, 1] < 0.5
    gap = slice(int(3.55 * 16000), int(3.9 * 16000))
    if np.abs(original[gap]).max() > 0.01:
        assert np.corrcoef(original[gap], dubbed[gap])[0, 1] > 0.9
    for row in report["segments"]:  # fitted to the slot within a frame, or the overflow reported
        assert abs(row["fitted"] - (row["end"] - row["start"])) < 0.04 + row["borrowed"] or row["overflow"] > 0
        assert row["sync"] and {"lse_d", "lse_c", "offset"} <= set(row["sync"])
    tags = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format_tags=comment", "-of", "default=nw=1", str(out)],
        capture_output=True,
        text=True,
    ).stdout
    assert "synthetic" in tags and report["source_sha256"] in tags
    state, manifest = read_manifest(out, trust_anchors=root)  # signed with the test's certificate
    assert state == "Trusted" and report["c2pa_signed"]
    dubbed = next(a["data"] for a in manifest["assertions"] if a["label"] == "org.shqip-av.dub")
    assert dubbed["source_sha256"] == report["source_sha256"] and dubbed["target_language"] == "en"
    assert (tmp_path / "out" / f"{video.stem}.dub.srt").read_text().count("-->") == 2
    # adapted to this face by default; the manifest says so; the adapted weights went with the work folder
    assert report["adaptation"]["used"] and report["adaptation"]["steps"] == DubConfig().adapt_steps
    assert dubbed["adaptation"]["used"] and dubbed["adaptation"]["steps"] == report["adaptation"]["steps"]
    assert not list((tmp_path / "out").glob(".*dub-work")) and not list((tmp_path / "out").glob("*adapted*"))


@pytest.mark.parametrize("variant", ["rotated5", "vfr5"])
def test_rotated_and_vfr_sources_keep_their_picture_and_timing_and_carry_the_mark(
    bundle, real_root, variant, tmp_path, monkeypatch
):
    """rotated5: stored sideways with a rotate tag; vfr5: about 33 fps with uneven timestamps (tests/real_clips.py).
    Frames are decoded upright at the source's average rate, as filter decodes them. Chunks of 20
    frames here: each segment is regenerated in several chunks, cross-faded at their edges."""
    import export.dub as dubbing

    monkeypatch.setattr(dubbing, "CHUNK_FRAMES", 20)
    video = real_root[0] / "incoming" / f"{variant}.mp4"
    srt = tmp_path / "en.srt"
    srt.write_text(
        "1\n00:00:00,300 --> 00:00:02,200\nGood morning to you.\n\n2\n00:00:02,600 --> 00:00:04,500\nThe lips follow.\n"
    )
    report = dub(
        DubConfig(input=str(video), bundle=str(bundle), translation=str(srt), out=str(tmp_path / "out"), adapt_steps=0)
    )
    out = tmp_path / "out" / f"{variant}.dub.mp4"
    src, got = probe(video), probe(out)
    assert (got.width, got.height, got.rotation) == (src.width, src.height, 0)  # upright pixels, no tag needed
    assert abs(got.fps - src.fps) < 0.01 and abs(got.duration - src.duration) < 0.1
    assert all(row["lip_synced"] for row in report["segments"]) and report["lip_synced_frames"] > 50
    a, b = next(iter(iter_frames(video))), next(iter(iter_frames(out)))
    h, w = a.shape[:2]
    corner = (slice(int(0.9 * h), h), slice(0, int(0.5 * w)))  # the visible mark, on by default
    assert np.abs(a[corner].astype(int) - b[corner].astype(int)).mean() > 10


def test_a_killed_dub_reruns_without_redoing_finished_steps(bundle, srt, tmp_path, monkeypatch):
    import export.dub as dubbing

    video = shared_video(CLIP)
    cfg = DubConfig(input=str(video), bundle=str(bundle), translation=str(srt), out=str(tmp_path / "out"))

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(dubbing, "render", killed)
    with pytest.raises(KeyboardInterrupt):
        dub(cfg)
    work = tmp_path / "out" / f".{video.stem}.dub-work"
    # each finished step's record and files (export.pipeline.Work.step)
    assert {"segments.step.json", "speech.step.json", "faces.step.json", "dub.wav", "faces.npz"} <= {
        p.name for p in work.iterdir()
    }
    assert {"adapted.safetensors", "adapted.json"} <= {p.name for p in work.iterdir()}  # adaptation finished
    assert not list((tmp_path / "out").glob("*.mp4"))  # never a half-written output
    monkeypatch.undo()
    monkeypatch.setattr(dubbing, "speak_segments", killed)  # speech is done: it must not run again
    monkeypatch.setattr(dubbing, "scan_faces", killed, raising=False)
    monkeypatch.setattr("train.lipsync.adapt.adapt_generator", killed)  # nor adaptation: its weights are kept
    report = dub(cfg)
    assert report["lip_synced_frames"] > 0 and report["adaptation"]["reused"]


def test_bad_input_is_one_clear_line(bundle, tmp_path):
    video = shared_video(CLIP)
    late = tmp_path / "late.srt"
    late.write_text("1\n00:00:05,000 --> 00:00:12,000\nToo late.\n")
    good = tmp_path / "good.srt"
    good.write_text(SRT)
    with pytest.raises(DubError, match="ends after the video"):
        dub(DubConfig(input=str(video), bundle=str(bundle), translation=str(late), out=str(tmp_path / "a")))
    with pytest.raises(DubError, match="no translation model: give --translation"):
        dub(DubConfig(input=str(video), bundle=str(bundle), out=str(tmp_path / "b")))
    with pytest.raises(DubError, match="does not speak 'de'"):  # the bundle speaks English
        dub(DubConfig(input=str(video), bundle=str(bundle), translation=str(good), out=str(tmp_path / "e"), to="de"))
    chain, _, _ = make_test_credentials(tmp_path)
    with pytest.raises(DisclosureError, match="needs both"):
        dub(
            DubConfig(
                input=str(video),
                bundle=str(bundle),
                translation=str(good),
                out=str(tmp_path / "d"),
                c2pa_cert=str(chain),
            )
        )
    assert not (tmp_path / "d").exists()  # refused before any work
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(video.read_bytes()[:5000])
    with pytest.raises(DubError, match="cannot be read as a video"):
        dub(DubConfig(input=str(broken), bundle=str(bundle), translation=str(late), out=str(tmp_path / "c")))
    assert not list(tmp_path.glob("*/*.mp4"))


def test_no_face_anywhere_dubs_the_audio_and_says_so(bundle, srt, tmp_path):
    video = shared_video(CLIP)
    faceless = tmp_path / "faceless.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=25:duration=8",
            "-i",
            str(video),
            "-map",
            "0:v",
            "-map",
            "1:a",
            "-c:v",
            "libx264",
            "-c:a",
            "aac",
            "-shortest",
            str(faceless),
        ],
        check=True,
    )
    report = dub(DubConfig(input=str(faceless), bundle=str(bundle), translation=str(srt), out=str(tmp_path / "out")))
    assert report["lip_synced_frames"] == 0 and any("no face" in n for n in report["notes"])
    assert probe(tmp_path / "out" / "faceless.dub.mp4").has_audio


def test_a_rerun_with_another_translation_does_not_reuse_the_old_steps(bundle, srt, tmp_path, monkeypatch):
    import export.dub as dubbing

    video = shared_video(CLIP)
    out = tmp_path / "out"

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(dubbing, "render", killed)
    with pytest.raises(KeyboardInterrupt):
        dub(DubConfig(input=str(video), bundle=str(bundle), translation=str(srt), out=str(out)))
    other = tmp_path / "other.srt"
    other.write_text("1\n00:00:01,000 --> 00:00:03,000\nSomething else entirely.\n")
    with pytest.raises(KeyboardInterrupt):
        dub(DubConfig(input=str(video), bundle=str(bundle), translation=str(other), out=str(out)))
    record = json.loads(next(out.glob(".*dub-work")).joinpath("segments.step.json").read_text())
    segments = record["value"]["segments"]
    assert [s["translation"] for s in segments] == ["Something else entirely."]
    # another video under the same name: the face adapted to is its own, never the earlier video's
    import shutil

    from shqip_av.files import sha256_file

    other_video = tmp_path / "elsewhere" / video.name
    other_video.parent.mkdir()
    shutil.copy(shared_video("sadtalker_WDA_KatieHill_000.mp4"), other_video)
    with pytest.raises(KeyboardInterrupt):
        dub(DubConfig(input=str(other_video), bundle=str(bundle), translation=str(other), out=str(out)))
    adapted = json.loads(next(out.glob(".*dub-work")).joinpath("adapted.json").read_text())
    assert adapted["source_sha256"] == sha256_file(other_video) != sha256_file(video)


SHORT_SRT = (
    "1\n00:00:00,300 --> 00:00:02,400\nGood morning to you all.\n\n"
    "2\n00:00:03,600 --> 00:00:05,800\nThe lips follow the new words.\n"
)


def _ffmpeg(*args):
    subprocess.run(["ffmpeg", "-v", "error", "-y", *map(str, args)], check=True)


def _mouth_changed(a, b, region):
    return np.abs(a[region].astype(int) - b[region].astype(int)).max(axis=2).mean()


def test_frames_where_the_face_has_left_pass_through_and_the_rest_is_lip_synced(bundle, tmp_path):
    video = shared_video(CLIP)
    # the face leaves the frame from 2.4 s to 3.6 s (the picture moves out to the right) and comes back
    leaving = tmp_path / "leaving.mp4"
    _ffmpeg(
        "-i",
        video,
        "-filter_complex",
        "color=c=black:s=512x512:r=25:d=6[bg];[bg][0:v]overlay=x='if(between(t,2.4,3.6),600,0)':shortest=1[v]",
        "-map",
        "[v]",
        "-map",
        "0:a",
        "-t",
        6,
        "-c:v",
        "libx264",
        "-crf",
        12,
        "-c:a",
        "aac",
        leaving,
    )
    srt = tmp_path / "en.srt"
    srt.write_text(SHORT_SRT)
    report = dub(
        DubConfig(
            input=str(leaving),
            bundle=str(bundle),
            translation=str(srt),
            out=str(tmp_path / "out"),
            visible_mark=False,
            adapt_steps=20,
            keep_adapted=True,
        )
    )
    a, b = list(iter_frames(leaving)), list(iter_frames(tmp_path / "out" / "leaving.dub.mp4"))
    assert len(a) == len(b) == 150
    # --keep-adapted: the adapted generator is a model folder next to the dub, and differs from the base
    kept = tmp_path / "out" / report["adaptation"]["kept_as"]
    adapted, base = LipSyncGenerator.from_pretrained(kept), LipSyncGenerator.from_pretrained(bundle / "generator")
    assert report["adaptation"]["steps"] == 20 and kept.name == "leaving.adapted-generator"
    assert any(not torch.equal(p, q) for p, q in zip(adapted.parameters(), base.parameters()))
    assert all(row["lip_synced"] for row in report["segments"])  # both segments: the face is there for most
    for i in range(62, 89):  # 2.5-3.5 s: no face, the picture passes through
        assert _psnr(a[i], b[i]) > 35, i
    mouth = (slice(300, 420), slice(180, 330))
    for i in (30, 50, 110, 130):  # inside the segments, with the face in the frame: the mouth changed
        assert _mouth_changed(a[i], b[i], mouth) > 1.0, i


def test_with_two_faces_only_the_speaker_is_lip_synced(bundle, tmp_path):
    # the speaker (her own audio) on the left, another person talking silently on the right
    speaker, other = shared_video(CLIP), shared_video("sadtalker_WDA_KatieHill_000.mp4")
    pair = tmp_path / "pair.mp4"
    _ffmpeg(
        "-i",
        speaker,
        "-i",
        other,
        "-filter_complex",
        "[0:v][1:v]hstack=inputs=2[v]",
        "-map",
        "[v]",
        "-map",
        "0:a",
        "-t",
        6,
        "-c:v",
        "libx264",
        "-crf",
        12,
        "-c:a",
        "aac",
        pair,
    )
    srt = tmp_path / "en.srt"
    srt.write_text(SHORT_SRT)
    report = dub(
        DubConfig(
            input=str(pair),
            bundle=str(bundle),
            translation=str(srt),
            out=str(tmp_path / "out"),
            visible_mark=False,
            source_language="auto",
            adapt_steps=0,  # the speaker's choice is under test here, not adaptation
        )
    )
    # the source language was detected by the bundle's (tiny, demo) Whisper among the languages it knows
    detected = report["source_language_detected"]
    assert report["source_language"] == detected["language"] and 0 < detected["probability"] <= 1
    a, b = list(iter_frames(pair)), list(iter_frames(tmp_path / "out" / "pair.dub.mp4"))
    assert len(a) == len(b) and a[0].shape == b[0].shape == (512, 1024, 3)
    assert all(row["lip_synced"] for row in report["segments"])
    # the report says which face was regenerated (the left one), and counts each frame once
    assert report["lip_synced_frames"] <= report["frames"]
    assert all(row["face"]["box"][2] <= 512 for row in report["segments"])
    assert {f["track"] for f in report["faces"]} == {row["face"]["track"] for row in report["segments"]}
    mouth = (slice(300, 420), slice(180, 330))
    other_half = (slice(None), slice(512, None))
    for i in (30, 50, 110, 130):
        assert _mouth_changed(a[i], b[i], mouth) > 1.0, i  # the speaker's mouth was regenerated
        assert _psnr(a[i][other_half], b[i][other_half]) > 35, i  # the other face was left alone


def _dub_peak_mib(video, srt, bundle, out) -> tuple[float, dict]:
    """Peak resident memory (MiB) of a dub run in a fresh process, and its report."""
    import sys

    code = (
        "import json, resource\n"
        "from export.dub import DubConfig, dub\n"
        f"r = dub(DubConfig(input={str(video)!r}, bundle={str(bundle)!r}, translation={str(srt)!r}, adapt_steps=0, "
        f"out={str(out)!r}))\n"
        "print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, json.dumps(r))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next(line for line in proc.stdout.splitlines() if line.startswith("PEAK"))
    _, peak, report = line.split(" ", 2)
    return float(peak), json.loads(report)


def test_memory_stays_bounded_for_a_six_times_longer_input(bundle, tmp_path):
    short = tmp_path / "short.mp4"
    _ffmpeg("-i", shared_video(CLIP), "-t", 3, "-c:v", "libx264", "-crf", 18, "-c:a", "aac", short)
    long = tmp_path / "long.mp4"
    _ffmpeg("-stream_loop", 5, "-i", short, "-c", "copy", long)
    srt_short, srt_long = tmp_path / "short.srt", tmp_path / "long.srt"
    srt_short.write_text("1\n00:00:00,300 --> 00:00:02,700\nGood morning to you all.\n")
    srt_long.write_text(
        "\n".join(
            f"{i + 1}\n00:00:{3 * i:02d},300 --> 00:00:{3 * i + 2:02d},700\nGood morning to you all.\n"
            for i in range(6)
        )
    )
    peak_short, report_short = _dub_peak_mib(short, srt_short, bundle, tmp_path / "a")
    peak_long, report_long = _dub_peak_mib(long, srt_long, bundle, tmp_path / "b")
    assert report_long["frames"] >= 5.5 * report_short["frames"] and report_long["lip_synced_frames"] > 300
    # holding the long clip's frames would take 450 × 512 × 512 × 3 bytes = 340 MiB more
    assert peak_long - peak_short < 150 and peak_long / peak_short < 1.3, (peak_short, peak_long)


def test_audio_longer_than_the_picture_is_dubbed_up_to_the_picture_and_said_so(bundle, tmp_path):
    video = shared_video(CLIP)
    short_picture = tmp_path / "short_picture.mp4"  # 3 s of picture, 8 s of sound
    _ffmpeg("-t", 3, "-i", video, "-i", video, "-map", "0:v", "-map", "1:a", "-c", "copy", short_picture)
    srt = tmp_path / "en.srt"
    srt.write_text("1\n00:00:00,300 --> 00:00:02,500\nGood morning to you.\n")
    late = tmp_path / "late.srt"
    late.write_text("1\n00:00:04,000 --> 00:00:06,000\nToo late.\n")
    with pytest.raises(DubError, match="ends after the video"):  # a cue past the picture: refused
        dub(DubConfig(input=str(short_picture), bundle=str(bundle), translation=str(late), out=str(tmp_path / "a")))
    report = dub(
        DubConfig(
            input=str(short_picture), bundle=str(bundle), translation=str(srt), out=str(tmp_path / "b"), adapt_steps=0
        )
    )
    assert any("past the picture" in note for note in report["notes"])
    assert abs(probe(tmp_path / "b" / "short_picture.dub.mp4").duration - 3.0) < 0.15
    assert report["segments"][0]["lip_synced"]


def test_a_real_clip_dubbed_end_to_end_through_whisper_marian_and_vits(
    demo_run, demo_expert, tiny_marian, tiny_vits, tmp_path
):
    """No .srt: Silero finds the speech, the demo's tiny Whisper recognizes it, a tiny random
    Marian translates it (gibberish, and long), a tiny random VITS speaks it; fitting then has to
    cut it and say by how much."""
    from shqip_av.components.lipsync_generator import build_generator

    torch.manual_seed(0)
    build_generator({"size": 32, "frames": 5, "references": 2, "channels": [16, 32], "audio_dim": 16}).save_pretrained(
        tmp_path / "generator"
    )
    bundle = build_bundle(
        BundleConfig(
            out=str(tmp_path / "bundle"),
            asr=str(demo_run),
            mt=str(tiny_marian),
            tts=f"vits:{tiny_vits}",
            generator=str(tmp_path / "generator"),
            expert=str(demo_expert[0]),
        )
    )
    clip = tmp_path / "clip.mp4"
    _ffmpeg("-i", shared_video(CLIP), "-t", 4, "-c:v", "libx264", "-crf", 18, "-c:a", "aac", clip)
    report = dub(DubConfig(input=str(clip), bundle=str(bundle), out=str(tmp_path / "out"), to="en", adapt_steps=0))
    assert report["translation"] == json.loads((bundle / "model_index.json").read_text())["mt"]["source"]
    assert report["segments"] and report["frames"] == 100
    for row in report["segments"]:
        assert row["source_text"] and row["translation"]  # recognized, then translated
        slot = row["end"] - row["start"]
        assert abs(row["fitted"] - slot) < 0.04 + row["borrowed"] or row["overflow"] > 0
        assert row["synthesized"] > 0 and row["lip_synced"]
    a, b = list(iter_frames(clip)), list(iter_frames(tmp_path / "out" / "clip.dub.mp4"))
    assert len(a) == len(b) == 100


def test_the_python_api_refuses_bad_arguments_at_once_in_its_own_words(bundle, tmp_path):
    import time

    from export.pipeline import DubbingPipeline

    pipe = DubbingPipeline.from_pretrained(str(bundle), device="cpu")
    video = shared_video(CLIP)
    started = time.monotonic()
    with pytest.raises(DubError, match="adapt_steps must be a whole number, not 'ten'"):
        pipe(video, adapt_steps="ten", out=tmp_path / "a")
    with pytest.raises(DubError, match="unknown option adapt=3; the options are adapt_steps, "):
        pipe(video, adapt=3, out=tmp_path / "a")
    assert time.monotonic() - started < 1 and not (tmp_path / "a").exists()  # before any work
    with pytest.raises(DubError, match="is a folder; give the video file to dub"):
        pipe(tmp_path, out=tmp_path / "b")
    with pytest.raises(DubError, match="no translation model: give translation=my.srt") as error:
        pipe(video, out=tmp_path / "c")
    assert "--" not in str(error.value)


def test_the_docs_pipeline_snippet_runs(bundle, sample_set, tmp_path, monkeypatch):
    """docs/dubbing.md's DubbingPipeline use, run as written (paths under a scratch folder)."""
    from tests.conftest import REPO

    readme = (REPO / "docs" / "dubbing.md").read_text(encoding="utf-8")
    start = readme.index("```python\nfrom export.pipeline import DubbingPipeline")
    snippet = readme[start + len("```python\n") : readme.index("```", start + 10)]
    demo = tmp_path / "data" / "demo"
    (demo / "exports").mkdir(parents=True)
    (demo / "exports" / "demo-en").symlink_to(bundle)
    (demo / "incoming").mkdir()
    (demo / "incoming" / "sample").symlink_to(sample_set / "incoming" / "sample")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(snippet, "docs/dubbing.md", "exec"), scope)  # noqa: S102 - the docs' own code
    result = scope["result"]
    assert result.video.is_file() and result.srt.is_file() and result.report_path.is_file()
    assert result.report["lip_synced_frames"] > 0 and result.report["frames"] == len(list(iter_frames(result.video)))
