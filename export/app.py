"""The dubbing app (DESIGN.md §10): ``python -m export app --bundle B``, a Gradio page over
``DubbingPipeline``.

Upload a video (and, optionally, your translation as .srt), pick the target language, confirm that
the person shown agreed, and dub: the page shows each step as it runs, then plays the dub, offers its
.srt and report.json, and shows a side-by-side strip of source and dubbed mouths.

How the server keeps users apart and the machine clean:

- everything it writes is under its work folder (``--work``, default a new temporary folder):
  Gradio's uploads and cache there too; each job in ``jobs/<random id>/`` with its own inputs and
  outputs, so no two jobs share a file;
- jobs queue: one dub runs at a time (the pipeline's models are shared), the others wait their turn
  and the page says where they stand;
- a job's inputs and the dub's resumable steps are removed when it ends, whatever the outcome (the
  page closed midway included: the job finishes, then goes); its outputs are removed once the page
  has had them (``keep_seconds``);
- a bad upload is one message in the page, with no path of this machine in it; the server goes on.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shqip_av import ShqipError
from shqip_av.config import option
from shqip_av.files import atomic_write_text, safe_id
from shqip_av.log import get_logger, listening

log = get_logger(__name__)

VIDEO_TYPES = [".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v"]
STEP_NAMES = {  # what the page calls the pipeline's steps
    "audio": "reading the audio",
    "speech segments": "finding speech",
    "recognize": "recognizing speech",
    "translate": "translating",
    "speak and fit": "speaking the translation",
    "mix": "mixing the soundtrack",
    "faces": "tracking faces",
    "face tracking": "tracking faces",
    "adapting the generator to this face": "adapting to this face",
    "lip-sync and render": "lip-syncing and rendering",
    "sync score": "scoring the lip-sync",
    "c2pa": "signing",
    "strip": "drawing the side-by-side strip",
}
CONSENT_TEXT = "The person shown in this video agreed to have it dubbed (their voice and mouth are changed)"


class AppError(ShqipError):
    """A job the app refuses; the message is shown in the page."""


@dataclass
class AppCliConfig:
    bundle: str = option("", "the dubbing bundle: exports/<name> or a Hub id (python -m export bundle)")
    host: str = option("127.0.0.1", "address to serve on (0.0.0.0: every interface)")
    port: int = option(7860, "port to serve on", min=1, max=65535)
    work: str = option("", "folder for uploads, jobs and Gradio's cache (default: a new temporary folder)")
    max_seconds: float = option(
        180.0,
        "longest video accepted, in seconds (one job holds the only worker: keep it short on a public app)",
        above=0,
    )
    max_upload: str = option("500mb", "largest upload accepted (Gradio's size: 500mb, 2gb …)")
    device: str = option("auto", "where the models run: auto, cpu, cuda, cuda:N")
    revision: str = option("main", "the bundle's Hub revision (a Hub id)")


@dataclass
class AppConfig:
    work: Path  # every file the app writes lies under it
    max_seconds: float = 180.0  # longest video accepted
    max_upload: str = "500mb"  # largest upload Gradio accepts
    keep_seconds: float = 120.0  # a finished job's outputs stay this long for the page to fetch
    max_queue: int = 16  # jobs waiting beyond the running one
    per_client: int = 1  # jobs one client (address) may have queued or running at once


_ABSOLUTE_PATH = re.compile(r"(?<![\w:])/(?:[^\s/'\"]+/)+([^\s/'\"]*)")


def public_message(message: str) -> str:
    """A message fit for the page: absolute paths shortened to their file names."""
    return _ABSOLUTE_PATH.sub(lambda m: m.group(1) or "(folder)", message.splitlines()[0] if message else message)


def without_paths(value):
    """A copy of a report with every absolute path of this machine cut to its file name."""
    if isinstance(value, dict):
        return {k: without_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_paths(v) for v in value]
    if isinstance(value, str) and (value.startswith("/") or re.match(r"^[A-Za-z]:[\\/]", value)):
        return Path(value).name
    return value


def bundle_languages(pipe) -> list[str]:
    """The languages this bundle dubs into: its speech synthesizer's (an espeak voice is one)."""
    index = pipe.bundle.index
    target = index.get("target_language") or "en"
    tts = index.get("tts", {})
    if isinstance(tts, dict) and tts.get("backend") == "espeak":
        return [str(tts.get("source", target)).split("-")[0]]
    return [target]


def side_by_side(source: Path, dub: Path, report: dict, out: Path, columns: int = 4) -> Path | None:
    """A PNG strip: the source's face above the dub's, at ``columns`` moments of the lip-synced
    segments; None when no segment was lip-synced."""
    import cv2

    from shqip_av.media import frame_at

    spans = [s for s in report.get("segments", []) if s.get("lip_synced") and s.get("face")]
    if not spans:
        return None
    moments = []
    for i in range(columns):
        s = spans[i * len(spans) // columns]
        part = ((i * len(spans)) % columns + 0.5) / columns if len(spans) < columns else 0.5
        moments.append((s["start"] + part * (s["end"] - s["start"]), s["face"]["box"]))
    tiles = []
    for t, (x0, y0, x1, y1) in moments:
        pair = []
        for video in (source, dub):
            frame = frame_at(video, t)
            h, w = frame.shape[:2]
            cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, 0.65 * max(x1 - x0, y1 - y0)
            a, b = int(max(0, cx - half)), int(max(0, cy - half))
            c, d = int(min(w, cx + half)), int(min(h, cy + half))
            pair.append(cv2.resize(frame[b:d, a:c], (192, 192), interpolation=cv2.INTER_AREA))
        tiles.append(np.concatenate(pair, axis=0))
    strip = np.concatenate(tiles, axis=1)
    ok, data = cv2.imencode(".png", np.ascontiguousarray(strip[:, :, ::-1]))
    out.write_bytes(data.tobytes())
    return out


class DubbingApp:
    """The jobs behind the page: checks, a folder each, the pipeline, and clean-up."""

    def __init__(self, pipe, cfg: AppConfig):
        self.pipe, self.cfg = pipe, cfg
        self.jobs = cfg.work / "jobs"
        self.uploads = cfg.work / "gradio"  # Gradio's upload folder and cache (prepare_environment)
        self.jobs.mkdir(parents=True, exist_ok=True)
        stale = [p for p in self.jobs.iterdir()]  # jobs of a server that was killed on this work folder
        for folder in stale:
            shutil.rmtree(folder, ignore_errors=True)
        if stale:
            log.info("removed %d job folder(s) left by an earlier server in %s", len(stale), self.jobs)
        self.languages = bundle_languages(pipe)
        self._lock = threading.Lock()  # the pipeline's models serve one dub at a time
        self._clients: dict[str, int] = {}  # address → jobs queued or running
        self._clients_lock = threading.Lock()

    def require_upload(self, path: str | None, uploaded: set[str], what: str) -> None:
        """Only a file that arrived as an upload to this server may be dubbed: a path inside Gradio's
        upload folder that Gradio recorded receiving, a regular file. A path naming anything else on
        this machine (a dataset's raw video, another job's output) is refused, unread."""
        if not path:
            return
        given = Path(path)
        name = given.name
        try:
            resolved, folder = given.resolve(strict=True), self.uploads.resolve()
        except OSError:
            raise AppError(f"{what} {name} was not uploaded to this page; upload the file itself") from None
        if (
            given.is_symlink()
            or folder not in resolved.parents
            or not resolved.is_file()
            or not ({str(given), str(resolved)} & uploaded)
        ):
            log.warning("refused a %s that was not uploaded to this server: %s", what, name)
            raise AppError(f"{what} {name} was not uploaded to this page; upload the file itself")

    def forget_uploads(self, paths: list[str | None], uploaded: set[str]) -> None:
        """Gradio's copy of a finished job's uploads: its folder removed, no longer downloadable."""
        folder = self.uploads.resolve()
        for path in paths:
            if not path:
                continue
            given = Path(path)
            uploaded.discard(str(given))
            parent = given.resolve().parent
            if folder in parent.parents:  # uploads/<hash>/<name>: the hash folder goes
                shutil.rmtree(parent, ignore_errors=True)

    def forget_outputs(self, job_out: Path) -> None:
        """Gradio's cached copies of a job's outputs (uploads/<hash>/<the output's name>)."""
        names = {p.name: p.stat().st_size for p in job_out.glob("*") if p.is_file()} if job_out.is_dir() else {}
        if not names or not self.uploads.is_dir():
            return
        for folder in self.uploads.iterdir():
            files = list(folder.glob("*")) if folder.is_dir() else []
            if files and all(f.name in names and f.stat().st_size == names[f.name] for f in files):
                shutil.rmtree(folder, ignore_errors=True)

    def admit(self, client: str) -> None:
        """Count a job of ``client``; refused past ``per_client`` (one user cannot fill the queue)."""
        with self._clients_lock:
            if self._clients.get(client, 0) >= self.cfg.per_client:
                raise AppError("you already have a dub queued or running; wait for it to finish")
            self._clients[client] = self._clients.get(client, 0) + 1

    def release(self, client: str) -> None:
        with self._clients_lock:
            left = self._clients.get(client, 0) - 1
            if left > 0:
                self._clients[client] = left
            else:
                self._clients.pop(client, None)

    def _remove_later(self, folder: Path) -> None:
        def remove() -> None:
            self.forget_outputs(folder / "out")
            shutil.rmtree(folder, ignore_errors=True)

        timer = threading.Timer(self.cfg.keep_seconds, remove)
        timer.daemon = True
        timer.start()

    def dub(self, video: str | None, translation: str | None, language: str, visible_mark: bool,
            adapt_steps: int, consent: bool, report_step=None) -> dict:  # fmt: skip
        """One job; returns {video, srt, report, strip, summary}. Raises AppError (for the page)."""
        from export.dub import DubConfig
        from export.pipeline import check_inputs
        from shqip_av.media import MediaError, probe

        if not video:
            raise AppError("upload a video to dub")
        if not consent:
            raise AppError(
                "confirm that the person shown agreed to be dubbed: nothing that changes their face or voice "
                "runs without it"
            )
        if language not in self.languages:
            raise AppError(f"this bundle dubs into {', '.join(self.languages)}, not {language!r}")
        upload = Path(video)
        if upload.suffix.lower() not in VIDEO_TYPES:
            raise AppError(f"{upload.name} is not a video file ({', '.join(VIDEO_TYPES)})")
        job = self.jobs / uuid.uuid4().hex
        inputs, out = job / "in", job / "out"
        inputs.mkdir(parents=True)
        finished = False
        try:
            stem = safe_id(upload.stem, 60) or "video"
            source = inputs / f"{stem}{upload.suffix.lower()}"
            shutil.copyfile(upload, source)
            try:
                info = probe(source)
            except MediaError:
                raise AppError(f"{upload.name} cannot be read as a video") from None
            if info.duration > self.cfg.max_seconds:
                raise AppError(
                    f"{upload.name} lasts {_length(info.duration)}; this app dubs videos up to "
                    f"{_length(self.cfg.max_seconds)} (--max-seconds {self.cfg.max_seconds:g})"
                )
            srt = None
            if translation:
                srt = inputs / f"{safe_id(Path(translation).stem, 60) or 'translation'}.srt"
                shutil.copyfile(translation, srt)
            # the video decodes and the .srt passes the dub's gate: checked before any model runs
            check_inputs(DubConfig(input=str(source), translation=str(srt) if srt else ""))
            with self._lock, listening(report_step or (lambda *a: None)):
                result = self.pipe(
                    source,
                    to=language,
                    translation=srt,
                    out=out,
                    visible_mark=bool(visible_mark),
                    adapt_steps=int(adapt_steps),
                )
            if report_step is not None:
                report_step("strip", 0, None)
            strip = side_by_side(source, result.video, result.report, out / "side-by-side.png")
            # the report the page offers names files, not this machine's folders
            public = without_paths(result.report)
            public["source"], public["bundle"] = upload.name, self.pipe.bundle.name
            atomic_write_text(result.report_path, json.dumps(public, indent=2, ensure_ascii=False) + "\n")
            finished = True
            return {
                "video": result.video,
                "srt": result.srt,
                "report": result.report_path,
                "strip": strip,
                "summary": summary(result.report),
            }
        except ShqipError as e:
            raise AppError(public_message(str(e))) from None
        finally:
            shutil.rmtree(inputs, ignore_errors=True)
            if finished:
                self._remove_later(job)  # the page fetches the outputs first
            else:
                shutil.rmtree(job, ignore_errors=True)


def _length(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def summary(report: dict) -> str:
    segments = report.get("segments", [])
    synced = sum(1 for s in segments if s.get("lip_synced"))
    lines = [
        f"**{len(segments)} segment(s)** dubbed into **{report.get('target_language')}**, "
        f"{synced} lip-synced ({report.get('lip_synced_frames', 0)} frames of {report.get('frames', 0)}).",
        "The video is marked as AI-dubbed in its metadata"
        + (" and with a visible mark." if report.get("visible_mark") else "."),
    ]
    lines += [f"- {public_message(n)}" for n in report.get("notes", [])]
    return "\n".join(lines)


def build_app(pipe, cfg: AppConfig):
    """The Gradio Blocks of the app (``launch`` it, or mount it)."""
    import gradio as gr

    app = DubbingApp(pipe, cfg)
    name = pipe.bundle.index.get("name") or "bundle"

    def run(video, translation, language, visible_mark, adapt_steps, consent, request=None, progress=gr.Progress()):  # noqa: B008 (Gradio's way)
        started = time.monotonic()

        def report_step(what: str, done: int, total: int | None) -> None:
            label = STEP_NAMES.get(what)
            if label is None:
                return  # inner timings (crop, paste-back…) are not steps a user follows
            progress((done, total) if total else None, desc=label, unit="")

        client = (request.client.host if request is not None and request.client else "") or "local"
        uploaded = blocks.upload_file_set
        try:
            app.require_upload(video, uploaded, "the video")
            app.require_upload(translation, uploaded, "the translation")
            try:  # from here the uploads are this job's: gone when it ends, whatever the outcome
                app.admit(client)
                try:
                    out = app.dub(video, translation, language, visible_mark, adapt_steps, consent, report_step)
                finally:
                    app.release(client)
            finally:
                app.forget_uploads([video, translation], uploaded)
        except AppError as e:
            log.info("refused a job: %s", e)
            raise gr.Error(str(e), title="Not dubbed", duration=None, print_exception=False) from None
        text = out["summary"] + f"\n\nDone in {time.monotonic() - started:.0f} s."
        files = [str(out["srt"]), str(out["report"])]
        return str(out["video"]), files, str(out["strip"]) if out["strip"] else None, text

    # Gradio hands the request (the client's address) to a parameter annotated gr.Request; the
    # annotation is set here because this module's annotations are strings (from __future__)
    run.__annotations__["request"] = gr.Request

    with gr.Blocks(title=f"shqip-av dubbing: {name}", analytics_enabled=False, delete_cache=(600, 3600)) as blocks:
        gr.Markdown(
            f"# shqip-av dubbing\nBundle **{name}**: recognize → translate → speak → fit → lip-sync → render. "
            "Every dub is disclosed as synthetic."
        )
        with gr.Row():
            with gr.Column():
                video = gr.File(label="Video to dub", file_types=VIDEO_TYPES, elem_id="video-in")
                translation = gr.File(label="Your translation (.srt, optional)", file_types=[".srt"], elem_id="srt-in")
                language = gr.Dropdown(
                    app.languages, value=app.languages[0], label="Dub into", elem_id="language"
                )  # fmt: skip
                visible_mark = gr.Checkbox(True, label="Visible 'AI-dubbed' mark", elem_id="visible-mark")
                adapt_steps = gr.Slider(
                    0, 200, value=0, step=5, label="Adaptation steps (fine-tune on this face first; slower)",
                    elem_id="adapt-steps",
                )  # fmt: skip
                consent = gr.Checkbox(False, label=CONSENT_TEXT, elem_id="consent")
                button = gr.Button("Dub", variant="primary", elem_id="dub")
            with gr.Column():
                result = gr.Video(label="Dubbed video", elem_id="video-out", interactive=False)
                files = gr.File(label=".srt and report.json", file_count="multiple", elem_id="files-out")
                strip = gr.Image(label="Side by side: source above, dub below", elem_id="strip", interactive=False)
                status = gr.Markdown(elem_id="status")
        button.click(
            run,
            [video, translation, language, visible_mark, adapt_steps, consent],
            [result, files, strip, status],
            concurrency_limit=1,
            show_progress_on=[status],  # the steps and a refusal shown once, not on every output
        )
    blocks.queue(max_size=cfg.max_queue, default_concurrency_limit=1)
    blocks.dubbing_app = app  # the jobs behind the page (tests look at its folders)
    return blocks


def clear_stale_uploads(work: Path) -> None:
    """Gradio's uploads and cache left in the work folder by an earlier server (killed mid-job):
    removed before this one starts serving."""
    stale = work / "gradio"
    if stale.is_dir() and any(stale.iterdir()):
        log.info("removed the uploads and cache an earlier server left in %s", stale)
    shutil.rmtree(stale, ignore_errors=True)


def prepare_environment(work: Path) -> None:
    """Gradio's uploads and cache in the work folder, no usage statistics: set before Gradio loads."""
    work.mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(work / "gradio")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def launch(bundle: str, *, revision: str = "main", host: str = "127.0.0.1", port: int = 7860, work: str = "",
           max_seconds: float = 180.0, max_upload: str = "500mb", device: str = "auto", keep_seconds: float = 120.0,
           block: bool = True):  # fmt: skip
    """Load the bundle once, then serve the app (``block=False``: return (blocks, url) at once)."""
    import tempfile

    folder = Path(work) if work else Path(tempfile.mkdtemp(prefix="shqip-av-app-"))
    prepare_environment(folder)
    from export.pipeline import DubbingPipeline

    pipe = DubbingPipeline.from_pretrained(bundle, revision=revision, device=device)
    cfg = AppConfig(work=folder, max_seconds=max_seconds, max_upload=max_upload, keep_seconds=keep_seconds)
    clear_stale_uploads(folder)
    blocks = build_app(pipe, cfg)
    _, url, _ = blocks.launch(
        server_name=host,
        server_port=port,
        max_file_size=max_upload,
        prevent_thread_lock=True,
        quiet=True,
        footer_links=[],
        allowed_paths=[str(folder / "jobs")],
    )
    log.info("the dubbing app is at %s (it writes only under %s)", url, folder)
    if block:
        print(f"the dubbing app is at {url} (Ctrl+C stops it)", flush=True)
        blocks.block_thread()
    return blocks, url
