"""yt-dlp, driven through its Python API (no shell): listing sources and downloading videos.

Listing is separate from downloading so that consent and takedown are decided on the metadata
before a single media byte is fetched. Downloads go into a per-video partial folder that
survives a killed run (yt-dlp continues its ``.part`` file), and are retried with exponential
backoff. Only uploader captions are requested; automatic captions are never fetched.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import yt_dlp
from yt_dlp.utils import DownloadError, parse_bytes

from shqip_av import ShqipError
from shqip_av.files import atomic_write_text

log = logging.getLogger(__name__)

VIDEO_EXTS = {".mp4", ".mkv", ".webm", ".mov", ".m4v", ".avi", ".flv", ".3gp", ".ts", ".mpg", ".mpeg", ".ogv"}


class FetchError(ShqipError):
    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class FetchOptions:
    format: str = "bestvideo[height<=1080]+bestaudio/best[height<=1080]/best"
    retries: int = 3
    backoff_seconds: float = 5.0
    rate_limit: str = ""  # bytes per second, yt-dlp syntax ("2M"); empty = unlimited
    sleep_interval: float = 0.0  # seconds between downloads, to be gentle with the platform
    cookies: str = ""  # a Netscape cookies.txt for sources that need a login
    caption_languages: list[str] = field(default_factory=lambda: ["sq"])
    socket_timeout: float = 30.0


class _Logger:
    """Route yt-dlp's messages to our logger (debug for chatter, warnings stay warnings)."""

    def debug(self, msg: str) -> None:
        log.debug(msg)

    def info(self, msg: str) -> None:
        log.debug(msg)

    def warning(self, msg: str) -> None:
        if "Falling back on generic information extractor" not in msg:
            log.warning(msg)

    def error(self, msg: str) -> None:
        log.debug(msg)  # raised as DownloadError and reported by the caller


def archive_key(info: dict) -> tuple[str, str] | None:
    """(extractor, id) as yt-dlp writes them to its download archive for this video."""
    key = info.get("extractor_key") or info.get("ie_key")
    vid = info.get("id")
    return (key.lower(), str(vid)) if key and vid else None


def classify(error: Exception) -> str:
    """A reason code for a yt-dlp failure."""
    text = str(error).lower()
    if any(
        s in text
        for s in (
            "connection refused",
            "name or service not known",
            "timed out",
            "unreachable",
            "failed to resolve",
            "nodename nor servname",
            "temporary failure",
            "urlopen error",
        )
    ):
        return "unreachable"
    if any(s in text for s in ("http error 404", "http error 410", "not found", "unsupported url", "no video formats")):
        return "not-found"
    if any(s in text for s in ("private video", "sign in", "login", "members-only", "http error 403")):
        return "forbidden"
    if "content too short" in text or "did not get any data" in text:
        return "truncated"
    return "download-failed"


class YtDlp:
    def __init__(self, options: FetchOptions, archive: Path | None = None):
        self.options = options
        self.archive = archive
        self._sleep = time.sleep  # replaced in tests that check the backoff schedule

    def _params(self, dest: Path | None = None) -> dict:
        o = self.options
        params = {
            "logger": _Logger(),
            "quiet": True,
            "no_warnings": False,
            "noprogress": True,
            "socket_timeout": o.socket_timeout,
            "retries": o.retries,
            "fragment_retries": o.retries,
            "extractor_retries": o.retries,
            "retry_sleep_functions": {
                k: (lambda n, b=o.backoff_seconds: min(b * 2**n, 120.0)) for k in ("http", "fragment", "extractor")
            },
            "extract_flat": "in_playlist",
            "ignoreerrors": False,
            "restrictfilenames": True,
        }
        if o.cookies:
            params["cookiefile"] = o.cookies
        if dest is not None:
            langs = [lang for code in o.caption_languages for lang in (code, f"{code}-.*")]
            params.update(
                {
                    "format": o.format,
                    "noplaylist": True,
                    "continuedl": True,
                    "overwrites": False,
                    "paths": {"home": str(dest), "temp": str(dest)},
                    "outtmpl": {"default": "video.%(ext)s", "subtitle": "video.%(ext)s"},
                    "writesubtitles": True,
                    "writeautomaticsub": False,
                    "subtitleslangs": langs,
                    "subtitlesformat": "vtt/best",
                    "postprocessors": [{"key": "FFmpegSubtitlesConvertor", "format": "vtt", "when": "before_dl"}],
                }
            )
            if o.rate_limit:
                params["ratelimit"] = parse_bytes(o.rate_limit)
            if self.archive is not None:
                params["download_archive"] = str(self.archive)
        return params

    def list_videos(self, url: str, max_videos: int = 0) -> Iterator[tuple[dict | None, str, Exception | None]]:
        """Unprocessed metadata of every video behind ``url`` (a video, playlist or channel),
        as (info, url, error). A failing playlist item is reported and the listing goes on."""
        with yt_dlp.YoutubeDL(self._params()) as ydl:
            yielded = 0
            stack = [(url, None)]
            while stack:
                item_url, ie_key = stack.pop(0)
                try:
                    info = ydl.extract_info(item_url, ie_key=ie_key, download=False, process=False)
                except DownloadError as e:
                    yield None, item_url, e
                    continue
                kind = info.get("_type", "video")
                if kind in ("playlist", "multi_video"):
                    entries = []
                    for entry in info.get("entries") or []:
                        if entry is None:
                            continue
                        if entry.get("_type", "video") == "video" and entry.get("formats") is not None:
                            entries.append(entry)
                        else:
                            entries.append((entry.get("url") or entry.get("webpage_url"), entry.get("ie_key")))
                        if max_videos and len(entries) + yielded >= max_videos:
                            break
                    # full videos (rare in flat mode) are yielded as they are; URLs are extracted in turn
                    for entry in entries:
                        if isinstance(entry, dict):
                            yielded += 1
                            yield entry, entry.get("webpage_url") or item_url, None
                    stack[:0] = [e for e in entries if not isinstance(e, dict) and e[0]]
                elif kind in ("url", "url_transparent"):
                    stack.insert(0, (info["url"], info.get("ie_key")))
                else:
                    yielded += 1
                    yield info, info.get("webpage_url") or item_url, None
                    if max_videos and yielded >= max_videos:
                        return

    def download(self, info: dict, dest: Path) -> Path:
        """Download one video (and its uploader captions) into ``dest``; return the video file."""
        dest.mkdir(parents=True, exist_ok=True)
        attempts = self.options.retries + 1
        for attempt in range(attempts):
            try:
                with yt_dlp.YoutubeDL(self._params(dest)) as ydl:
                    ydl.process_ie_result(copy.deepcopy(info), download=True)
                break
            except DownloadError as e:
                reason = classify(e)
                if attempt + 1 >= attempts or reason in ("not-found", "forbidden"):
                    raise FetchError(str(e).replace("ERROR: ", "", 1), reason) from None
                delay = min(self.options.backoff_seconds * 2**attempt, 300.0)
                log.warning(
                    "download of %s failed (%s); retry %d/%d in %.0f s",
                    info.get("id"),
                    reason,
                    attempt + 1,
                    attempts - 1,
                    delay,
                )
                self._sleep(delay)
        video = downloaded_video(dest)
        if video is None:
            raise FetchError(
                f"{info.get('webpage_url') or info.get('id')}: yt-dlp finished without a video file "
                "(recorded in the download archive already?)",
                "download-failed",
            )
        return video

    def pause(self) -> None:
        if self.options.sleep_interval > 0:
            self._sleep(self.options.sleep_interval)


def downloaded_video(folder: Path) -> Path | None:
    """The finished video file in a partial folder (not a .part or a caption)."""
    if not folder.is_dir():
        return None
    for p in sorted(folder.iterdir()):
        if p.name.startswith("video.") and p.suffix.lower() in VIDEO_EXTS and p.is_file():
            return p
    return None


def drop_archive_lines(archive: Path, drop: Callable[[str, str], bool]) -> int:
    """Remove the lines ``"<extractor> <id>"`` of yt-dlp's download archive for which
    ``drop(extractor, id)`` holds; returns how many went. Used when a video yt-dlp finished is
    not in our manifest (a run killed in between: fetch it again) and by takedown."""
    if not archive.exists():
        return 0
    lines = archive.read_text(encoding="utf-8").splitlines()
    kept = [ln for ln in lines if not drop(*(ln.strip().split(" ", 1) + [""])[:2])]
    if len(kept) != len(lines):
        atomic_write_text(archive, "".join(f"{ln}\n" for ln in kept))
    return len(lines) - len(kept)
