"""The real_root fixture (registered in tests/conftest.py): a dataset root built once per session from the real clips in ../shared/testdata and
generated variants of them (shifted audio, foreign audio, rotation, 50/60 fps, small face,
two faces, a face leaving the frame, an absurd resolution), collected and filtered for real."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import SHARED, VIDEOS, ffmpeg

AUDIO = SHARED / "testdata" / "audio"

# name → (speaker, how to make it); speakers are the people on screen
VARIANTS = {
    "insync5": "five",
    "vfr1": "one",
    "vfr5": "five",
    "aoc": "aoc",
    "shifted5": "five",
    "mismatch5": "five",
    "rotated5": "five",
    "fps50_5": "five",
    "fps60_5": "five",
    "small_demo1": "demo1",
    "two_faces": "five",
    "leaving_aoc": "aoc",
    "tiny": "nobody",
    "sideways5": "five",
}


def make_variants(folder: Path) -> None:
    v5, v1, v3 = VIDEOS / "retalking_face_5.mp4", VIDEOS / "retalking_face_1.mp4", VIDEOS / "retalking_face_3.mp4"
    aoc, demo1 = VIDEOS / "sadtalker_WDA_AlexandriaOcasioCortez_000.mp4", VIDEOS / "latentsync_demo1.mp4"
    out = lambda name: str(folder / f"{name}.mp4")  # noqa: E731
    shutil.copy(v5, out("insync5"))
    shutil.copy(v1, out("vfr1"))
    shutil.copy(aoc, out("aoc"))
    x264 = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p"]
    # the same clip with its audio 0.4 s late (10 frames at 25 fps), same length
    ffmpeg("-i", str(v5), "-af", "adelay=400:all=1", "-c:v", "copy", "-c:a", "aac", "-shortest", out("shifted5"))
    # the same face with someone else's speech
    ffmpeg(
        "-i",
        str(v5),
        "-i",
        str(AUDIO / "latentsync_demo1_audio.wav"),
        "-map",
        "0:v",
        "-map",
        "1:a",
        "-c:v",
        "copy",
        "-c:a",
        "aac",
        "-shortest",
        out("mismatch5"),
    )
    # stored sideways, with rotation metadata that turns it upright
    ffmpeg("-i", str(v5), "-vf", "transpose=1", *x264, "-c:a", "copy", str(folder / "side.mp4"))
    ffmpeg("-i", str(folder / "side.mp4"), "-c", "copy", "-metadata:s:v:0", "rotate=90", out("rotated5"))
    (folder / "side.mp4").unlink()
    # upright pixels with a wrong rotate tag: decoded "upright", the face lies on its side
    ffmpeg("-i", str(v5), "-c", "copy", "-metadata:s:v:0", "rotate=90", out("sideways5"))
    for rate in (50, 60):
        ffmpeg("-i", str(v5), "-vf", f"fps={rate}", *x264, "-c:a", "copy", out(f"fps{rate}_5"))
    # variable frame rate: 50 fps with every third frame dropped (timestamps kept), about 33 fps
    ffmpeg(
        "-i",
        out("fps50_5"),
        "-vf",
        "select='not(eq(mod(n\\,3)\\,1))'",
        "-fps_mode",
        "vfr",
        *x264,
        "-c:a",
        "copy",
        out("vfr5"),
    )
    # a full-body shot at a third of its resolution: the face is far too small
    ffmpeg("-i", str(demo1), "-vf", "scale=360:640", *x264, "-c:a", "aac", out("small_demo1"))
    # two people side by side, the audio of the left one
    ffmpeg(
        "-i",
        str(v5),
        "-i",
        str(v3),
        "-filter_complex",
        "[1:v]scale=524:524[r];[0:v][r]hstack=inputs=2[v]",
        "-map",
        "[v]",
        "-map",
        "0:a",
        *x264,
        "-c:a",
        "aac",
        "-shortest",
        out("two_faces"),
    )
    # the camera pans away: the face slides out of the frame after about 2.5 s
    ffmpeg(
        "-i",
        str(aoc),
        "-vf",
        "pad=iw*2:ih:0:0,crop=512:512:'min(t*110,512)':0",
        *x264,
        "-c:a",
        "aac",
        out("leaving_aoc"),
    )
    # 32×32 pixels
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=32x32:rate=25:duration=3",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=300:duration=3",
        *x264,
        "-c:a",
        "aac",
        "-shortest",
        out("tiny"),
    )


def write_sources(root: Path, names) -> None:
    lines = ["defaults:", "  language: sq", "sources:"]
    for name in names:
        speaker = VARIANTS[name]
        lines += [
            f"  - path: incoming/{name}.mp4",
            f"    title: {name}",
            f"    speaker: person {speaker}",
            f"    consent: {{kind: release, subject: person {speaker}, reference: test fixture, granted: 2026-01-01}}",
        ]
    (root / "sources.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def ids_by_name(root: Path) -> dict[str, str]:
    from shqip_av.manifest import read_jsonl

    return {r["source"]["title"]: r["video_id"] for r in read_jsonl(root / "raw" / "manifest.jsonl")}


@pytest.fixture(scope="session")
def real_root(tmp_path_factory):
    """(root, {variant name: video_id}) after collect and filter (2 workers) ran on all variants."""
    for name in (
        "retalking_face_1.mp4",
        "retalking_face_3.mp4",
        "retalking_face_5.mp4",
        "sadtalker_WDA_AlexandriaOcasioCortez_000.mp4",
        "latentsync_demo1.mp4",
    ):
        if not (VIDEOS / name).is_file():
            pytest.skip(f"needs ../shared/testdata/videos/{name} (the shared test data is not present)")
    if not (SHARED / "models" / "face_landmarker.task").is_file():
        pytest.skip("needs ../shared/models/face_landmarker.task")
    from collect.pipeline import CollectConfig, prepare_raw
    from filter.config import FilterConfig
    from filter.pipeline import prepare_clips

    root = tmp_path_factory.mktemp("real")
    (root / "incoming").mkdir()
    make_variants(root / "incoming")
    write_sources(root, VARIANTS)
    prepare_raw(CollectConfig(root=str(root)))
    cfg = FilterConfig(root=str(root), workers=2)
    cfg.sync.video_offset = False  # the utterance-level checks (whole videos: tests/filter/test_video_sync.py)
    stats = prepare_clips(cfg)
    return root, ids_by_name(root), stats
