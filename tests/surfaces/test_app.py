"""The dubbing app (python -m export app), served for real and used from a headless chromium: a real
clip and its .srt are dubbed through the page; a corrupt upload is one message and the server goes
on; a page closed mid-job leaves nothing behind; bad inputs never run the pipeline and never show a
path of this machine; two jobs at once queue, each in its own folder."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from export.app import AppConfig, AppError, DubbingApp
from shqip_av.media import probe
from tests.browser import screenshot

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _open(driver, url: str) -> None:
    driver.get(url)
    WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#video-in input[type=file]"))


def _submit(driver, video: Path, srt: Path | None = None, consent: bool = True) -> None:
    def uploaded(box: str, path: Path):  # the file's name and its download arrow: the upload is done
        return lambda d: path.stem in (text := d.find_element(By.ID, box).text) and "⇣" in text

    driver.find_element(By.CSS_SELECTOR, "#video-in input[type=file]").send_keys(str(video))
    WebDriverWait(driver, 30).until(uploaded("video-in", video))
    if srt is not None:
        driver.find_element(By.CSS_SELECTOR, "#srt-in input[type=file]").send_keys(str(srt))
        WebDriverWait(driver, 30).until(uploaded("srt-in", srt))
    if consent:
        driver.find_element(By.CSS_SELECTOR, "#consent input[type=checkbox]").click()
    driver.find_element(By.ID, "dub").click()


def _outcome(driver, timeout: float = 180) -> str:
    """'video' once the dubbed video is in the page, else the error message shown."""

    def seen(d):
        video = d.find_elements(By.CSS_SELECTOR, "#video-out video")
        if video and video[0].get_attribute("src"):
            return "video"
        errors = [e.text for e in d.find_elements(By.CSS_SELECTOR, ".toast-body") if e.text.strip()]
        return f"error: {errors[0]}" if errors else False

    return WebDriverWait(driver, timeout, poll_frequency=0.3).until(seen)


def _empty_soon(folder: Path, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not any(folder.iterdir()):
            return True
        time.sleep(0.2)
    return False


def _gone_soon(folder: Path, pattern: str, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not any(p.is_file() for p in folder.rglob(pattern)):
            return True
        time.sleep(0.2)
    return False


def test_a_real_clip_is_dubbed_in_the_page_after_a_corrupt_upload_is_refused(
    app_server, browser, clips, app_bundle
):  # fmt: skip
    blocks, url, work = app_server
    started = time.time()
    _open(browser, url)
    screenshot(browser, "app-loaded")

    _submit(browser, clips / "broken.mp4")
    outcome = _outcome(browser)
    screenshot(browser, "app-corrupt-upload")
    assert outcome.startswith("error:") and "broken.mp4 cannot be read as a video" in outcome
    assert str(work) not in outcome and "/tmp" not in outcome

    _open(browser, url)  # the server goes on: the next upload is dubbed
    _submit(browser, clips / "presenter.mp4", clips / "presenter.en.srt")
    assert _outcome(browser) == "video"
    duration = WebDriverWait(browser, 30).until(
        lambda d: d.execute_script(
            "const v = document.querySelector('#video-out video');"
            "return v && v.readyState >= 1 && isFinite(v.duration) ? v.duration : false;"
        )
    )
    assert duration == pytest.approx(probe(clips / "presenter.mp4").duration, abs=0.15)
    downloads = browser.find_element(By.ID, "files-out").text.replace("\n", "")  # names are split at the dot
    assert "presenter.dub.srt" in downloads and "report.json" in downloads
    assert browser.find_elements(By.CSS_SELECTOR, "#strip img")  # the side-by-side strip
    assert "lip-synced" in browser.find_element(By.ID, "status").text
    screenshot(browser, "app-dubbed")
    page = browser.page_source
    for private in (str(app_bundle), str(REPO)):
        assert private not in page
    # the job's inputs went at once; its outputs once the page had them (keep_seconds=1 here), and
    # Gradio's copies of the upload and of the outputs with them: nothing of the job stays under --work
    assert _empty_soon(work / "jobs")
    assert _gone_soon(work, "presenter*"), [str(p) for p in work.rglob("presenter*")]
    # Gradio's uploads and cache are in the work folder, not in the machine's temporary folder
    default = Path(tempfile.gettempdir()) / "gradio"
    assert not [p for p in default.rglob("*") if p.is_file() and p.stat().st_mtime >= started]


def test_a_page_closed_mid_job_leaves_no_job_folder_and_the_server_serves_on(app_server, browser, clips):
    blocks, url, work = app_server
    _open(browser, url)
    _submit(browser, clips / "brief.mp4", clips / "brief.en.srt")
    WebDriverWait(browser, 30).until(lambda d: any((work / "jobs").iterdir()))  # the job has started
    browser.get("about:blank")  # the page goes away mid-job
    assert _empty_soon(work / "jobs", 120)  # the job finished (or stopped) and its folder went
    _open(browser, url)
    assert browser.find_element(By.ID, "dub").is_displayed()


@pytest.mark.parametrize(
    "upload, srt, consent, limit, message",
    [
        ("notes.txt", None, True, 600, "notes.txt is not a video file"),
        ("broken.mp4", None, True, 600, "broken.mp4 cannot be read as a video"),
        ("presenter.mp4", "late.srt", True, 600, "ends after the video"),
        ("presenter.mp4", None, False, 600, "confirm that the person shown agreed"),
        ("presenter.mp4", "presenter.en.srt", True, 2, "this app dubs videos up to 2.0 s (--max-seconds 2)"),
    ],
)
def test_bad_input_is_one_clear_message_without_paths_and_leaves_nothing(
    app_server, clips, tmp_path, monkeypatch, upload, srt, consent, limit, message
):  # fmt: skip
    blocks, _, _ = app_server
    app = DubbingApp(blocks.dubbing_app.pipe, AppConfig(work=tmp_path, max_seconds=limit))
    ran = []
    monkeypatch.setattr(type(app.pipe), "__call__", lambda *a, **k: ran.append(a) or pytest.fail("pipeline ran"))
    with pytest.raises(AppError) as e:
        app.dub(str(clips / upload), str(clips / srt) if srt else None, "en", True, 0, consent)
    text = str(e.value)
    assert message in text and "\n" not in text
    assert str(clips) not in text and str(tmp_path) not in text
    assert not ran
    assert not any((tmp_path / "jobs").iterdir())


def test_a_video_without_a_face_is_dubbed_in_sound_and_the_page_says_so(app_server, clips, tmp_path):
    blocks, _, _ = app_server
    srt = tmp_path / "no-face.srt"
    srt.write_text("1\n00:00:00,200 --> 00:00:01,800\nNobody is here.\n")
    app = DubbingApp(blocks.dubbing_app.pipe, AppConfig(work=tmp_path / "work", keep_seconds=0.1))
    out = app.dub(str(clips / "no-face.mp4"), str(srt), "en", True, 0, True)
    assert probe(out["video"]).has_audio and out["strip"] is None
    assert "no face found anywhere" in out["summary"]
    assert _empty_soon(tmp_path / "work" / "jobs")


def test_two_jobs_at_once_run_one_after_the_other_each_in_its_own_folder(app_server, clips, tmp_path):
    blocks, _, _ = app_server
    app = DubbingApp(blocks.dubbing_app.pipe, AppConfig(work=tmp_path / "work", keep_seconds=30))
    spans, results, call = [], {}, type(app.pipe).__call__

    def timed(pipe, *args, **kwargs):
        start = time.monotonic()
        try:
            return call(pipe, *args, **kwargs)
        finally:
            spans.append((start, time.monotonic()))

    def user(name: str) -> None:
        srt = tmp_path / f"{name}.srt"
        srt.write_text(f"1\n00:00:00,200 --> 00:00:01,400\nThis is what {name} said.\n")
        results[name] = app.dub(str(clips / "brief.mp4"), str(srt), "en", True, 0, True)

    type(app.pipe).__call__ = timed
    try:
        threads = [threading.Thread(target=user, args=(n,)) for n in ("alice", "bob")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
    finally:
        type(app.pipe).__call__ = call
    assert set(results) == {"alice", "bob"}
    (a0, a1), (b0, b1) = sorted(spans)
    assert a1 <= b0  # queued, not interleaved
    alice, bob = (Path(results[n]["video"]).parent.parent for n in ("alice", "bob"))  # jobs/<id>/out/
    assert alice != bob and alice.parent == bob.parent == tmp_path / "work" / "jobs"
    assert "alice" in results["alice"]["srt"].read_text() and "bob" not in results["alice"]["srt"].read_text()
    assert "bob" in results["bob"]["srt"].read_text()


def _api_call(url: str, data: list) -> str:
    """POST a job to the app's API the way any HTTP client can, and read its event stream."""
    import httpx

    answer = httpx.post(f"{url}/gradio_api/call/run", json={"data": data}, timeout=30)
    answer.raise_for_status()
    with httpx.stream("GET", f"{url}/gradio_api/call/run/{answer.json()['event_id']}", timeout=60) as events:
        return "".join(events.iter_text())


def test_the_api_dubs_only_uploads_never_a_file_on_the_server(app_server, clips, tmp_path, monkeypatch):
    """A FileData naming a file on the server's disk (a dataset's raw video), or one planted in
    Gradio's upload folder without being uploaded, is refused: no job, no model run, nothing of the
    file in the answer."""
    blocks, url, work = app_server
    ran = []
    monkeypatch.setattr(type(blocks.dubbing_app.pipe), "__call__", lambda *a, **k: ran.append(a))
    raw = tmp_path / "data" / "raw" / "local-0" / "video.mp4"  # a dataset's video, on the server
    raw.parent.mkdir(parents=True)
    shutil.copy(clips / "presenter.mp4", raw)
    planted = work / "gradio" / ("0" * 64) / "planted.mp4"  # inside the upload folder, never uploaded
    planted.parent.mkdir(parents=True)
    shutil.copy(clips / "presenter.mp4", planted)
    for path in (raw, planted):
        video = {"path": str(path), "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}
        events = _api_call(url, [video, None, "en", True, 0, True])
        assert "event: error" in events and "event: complete" not in events, events
        assert ".dub.mp4" not in events and "report.json" not in events
    assert "planted.mp4 was not uploaded to this page" in events
    assert not ran and not any((work / "jobs").iterdir())
    # the check itself, on the paths a job may be given
    app = blocks.dubbing_app
    with pytest.raises(AppError, match="video.mp4 was not uploaded to this page"):
        app.require_upload(str(raw), blocks.upload_file_set, "the video")
    link = work / "gradio" / ("1" * 64) / "link.mp4"
    link.parent.mkdir(parents=True)
    link.symlink_to(raw)
    with pytest.raises(AppError, match="link.mp4 was not uploaded"):
        app.require_upload(str(link), {str(link)}, "the video")


def test_a_restarted_server_removes_the_jobs_and_uploads_a_killed_one_left(app_server, tmp_path):
    """Files of a killed server on the same --work (a half-written job, Gradio's upload copy)
    are removed when the app starts there again."""
    blocks, _, _ = app_server
    work = tmp_path / "work"
    (work / "jobs" / "deadbeef" / "in").mkdir(parents=True)
    (work / "jobs" / "deadbeef" / "in" / "upload.mp4").write_bytes(b"half an upload")
    (work / "gradio" / "abc").mkdir(parents=True)
    (work / "gradio" / "abc" / "upload.mp4").write_bytes(b"gradio's copy")
    app = DubbingApp(blocks.dubbing_app.pipe, AppConfig(work=work))
    assert not any((work / "jobs").iterdir()) and app.jobs == work / "jobs"
    from export.app import clear_stale_uploads

    clear_stale_uploads(work)
    assert not (work / "gradio").exists()
