"""The surfaces people look at (DESIGN.md §10), served and opened for real: the dubbing app on a
bundle of the session's tiny models (the demo's tiny Whisper, the session's tiny expert, a tiny
random generator, espeak-ng), and a headless chromium to use it."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest

from tests.browser import start_browser, stop_browser
from tests.conftest import shared_video

REAL_CLIP = "sadtalker_WDA_AlexandriaOcasioCortez_000.mp4"  # one face, 25 fps
SRT = "1\n00:00:00,300 --> 00:00:02,600\nGood morning, this is a dubbing test.\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def app_bundle(tiny_dub_bundle):
    return tiny_dub_bundle


@pytest.fixture(scope="session")
def clips(tmp_path_factory):
    """Uploads: 3 s of a real clip and its first 1.6 s, their English .srt, one past the clip's end,
    a corrupt .mp4, and a picture with no face (a test pattern with a tone)."""
    folder = tmp_path_factory.mktemp("uploads")
    real = folder / "presenter.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(shared_video(REAL_CLIP)), "-t", "3", "-c:v", "libx264",
         "-preset", "veryfast", "-c:a", "aac", str(real)],
        check=True,
    )  # fmt: skip
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(real), "-t", "1.6", "-c:v", "libx264", "-preset", "veryfast",
         "-c:a", "aac", str(folder / "brief.mp4")],
        check=True,
    )  # fmt: skip
    (folder / "presenter.en.srt").write_text(SRT)
    (folder / "brief.en.srt").write_text("1\n00:00:00,200 --> 00:00:01,400\nHello there.\n")
    (folder / "late.srt").write_text("1\n00:00:01,000 --> 00:00:09,000\nThis cue runs past the end.\n")
    (folder / "broken.mp4").write_bytes(os.urandom(30_000))
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2", "-f", "lavfi",
         "-i", "sine=frequency=220:duration=2", "-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac", "-shortest",
         str(folder / "no-face.mp4")],
        check=True,
    )  # fmt: skip
    (folder / "notes.txt").write_text("not a video\n")
    return folder


@pytest.fixture(scope="module")
def app_server(app_bundle, tmp_path_factory):
    """The app (python -m export app) served in this process on a free port; (blocks, url, work)."""
    from export.app import launch

    work = tmp_path_factory.mktemp("app-work")
    before = os.environ.get("GRADIO_TEMP_DIR")
    blocks, url = launch(str(app_bundle), port=free_port(), work=str(work), device="cpu", keep_seconds=1.0, block=False)
    yield blocks, url.rstrip("/"), work
    blocks.close()
    if before is None:
        os.environ.pop("GRADIO_TEMP_DIR", None)
    else:
        os.environ["GRADIO_TEMP_DIR"] = before


@pytest.fixture(scope="module")
def browser():
    driver = start_browser()
    yield driver
    stop_browser(driver)
