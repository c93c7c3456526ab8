"""Turn one fetched video file into a raw/<video_id>/ folder and its manifest record.

Checks (each failure is a rejection with a reason code, never a crash):
probe (``not-a-video``), streams (``no-video-stream``, ``no-audio-stream``), decoding of the
tail (``does-not-decode``: truncated or corrupt), duration (``too-short``).
Normalisation: a file with rotation metadata is re-encoded upright; audio is extracted to
16 kHz mono PCM s16; captions are kept only for the configured languages, renamed
``captions.<lang>.vtt``. Everything is assembled in the partial folder and moved into place
with one rename, so raw/<video_id>/ is either complete or absent.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from shqip_av import __version__
from shqip_av.files import DatasetRoot, atomic_write_text, remove_tree, sha256_file
from shqip_av.media import MediaError, check_decodes, extract_audio, probe, transcode_upright
from shqip_av.records import MediaSummary, RawFiles, RawVideo, Rights, SourceInfo, utc_now


class Rejected(Exception):
    """A video that must not enter raw/: carries the reason code and the measured value."""

    def __init__(self, reason: str, detail: str, value=None):
        super().__init__(detail)
        self.reason, self.detail, self.value = reason, detail, value


@dataclass
class StoreOptions:
    min_duration: float = 1.0
    caption_languages: tuple[str, ...] = ("sq",)


_CAPTION = re.compile(r"^video\.([A-Za-z]{2,3})(?:[-_][A-Za-z0-9-]+)?\.vtt$")


def collect_captions(folder: Path, languages: tuple[str, ...]) -> dict[str, Path]:
    """Caption files yt-dlp (or the sample writer) left as video.<lang>[-REGION].vtt."""
    found: dict[str, Path] = {}
    for p in sorted(folder.glob("video.*.vtt")):
        m = _CAPTION.match(p.name)
        if m and m.group(1).lower() in languages and m.group(1).lower() not in found:
            found[m.group(1).lower()] = p
    return found


def store_video(
    root: DatasetRoot,
    partial: Path,
    video_file: Path,
    *,
    video_id: str,
    source: SourceInfo,
    rights: Rights,
    info: dict,
    options: StoreOptions,
    sync: str | None = None,
    av_offset: int | None = None,
) -> RawVideo:
    """Check and normalise ``video_file`` (inside ``partial``), move the folder to raw/<video_id>/
    and return its record. Raises ``Rejected``."""
    try:
        media = probe(video_file)
    except MediaError as e:
        raise Rejected("not-a-video", str(e)) from None
    if not media.has_video:
        raise Rejected("no-video-stream", f"{video_file.name} has no video stream", media.format_name)
    if not media.has_audio:
        raise Rejected("no-audio-stream", f"{video_file.name} has no audio stream", media.vcodec)
    try:
        check_decodes(video_file)
    except MediaError as e:
        raise Rejected("does-not-decode", str(e)) from None
    if media.duration < options.min_duration:
        raise Rejected(
            "too-short", f"{media.duration:.2f} s is shorter than {options.min_duration} s", round(media.duration, 3)
        )

    stage = partial / "stage"
    remove_tree(stage)
    stage.mkdir(parents=True)
    try:
        if media.rotation:
            stored = transcode_upright(video_file, stage / "video.mp4")
        else:
            stored = stage / f"video{video_file.suffix.lower()}"
            if _same_fs(video_file, stage):
                os.link(video_file, stored)  # no copy of a large file; the partial folder goes away later
            else:
                shutil.copyfile(video_file, stored)
        extract_audio(stored, stage / "audio.wav")
    except MediaError as e:
        raise Rejected("does-not-decode", str(e)) from None
    final = probe(stored)
    sync_record = _correct_offset(stage / "audio.wav", final, sync, av_offset)
    captions = {}
    for lang, path in collect_captions(partial, options.caption_languages).items():
        target = stage / f"captions.{lang}.vtt"
        target.write_bytes(path.read_bytes())
        captions[lang] = target
    atomic_write_text(stage / "info.json", json.dumps(info, ensure_ascii=False, indent=1, sort_keys=True, default=str))

    dest = root.path("raw", video_id)
    remove_tree(dest)  # leftovers of a run killed after the move but before the manifest line
    os.replace(stage, dest)

    def rel(p: Path) -> str:
        return root.relative(dest / p.name)

    return RawVideo(
        video_id=video_id,
        source=source,
        rights=rights,
        files=RawFiles(
            video=rel(stored),
            audio=rel(dest / "audio.wav"),
            info=rel(dest / "info.json"),
            captions={lang: rel(p) for lang, p in captions.items()},
        ),
        media=MediaSummary(
            duration=round(final.duration, 3),
            fps=final.fps,
            width=final.width,
            height=final.height,
            rotation=final.rotation,
            vcodec=final.vcodec,
            acodec=final.acodec,
            sha256=sha256_file(dest / stored.name),
            variable_frame_rate=final.variable_frame_rate,
            source_rotation=media.rotation,
        ),
        collected_at=utc_now(),
        version=f"shqip-av {__version__}",
        sync=sync_record,
    )


def _correct_offset(audio_path: Path, media, verdict: str | None, av_offset: int | None) -> dict | None:
    """A known offset (frames at the clip's own rate, positive: audio late) taken out of audio.wav,
    which every later stage reads: late audio loses its first frames and is padded with silence at
    the end, early audio the other way round, so its length stays the video's. The video file keeps
    its own soundtrack untouched. Returns what was done, for the record."""
    if verdict is None and av_offset is None:
        return None
    record: dict = {"truth": verdict or ("in-sync" if av_offset == 0 else "late" if av_offset > 0 else "early")}
    if not av_offset:
        if av_offset == 0:
            record["table_offset_frames"] = 0
        return record
    from shqip_av.av_offset import shift_audio
    from shqip_av.media import AUDIO_RATE, read_audio, write_wav

    fps = media.fps or 25.0
    seconds = av_offset / fps
    if abs(seconds) >= media.duration:
        raise Rejected(
            "bad-av-offset", f"av_offset {av_offset} frames ({seconds:.2f} s) is not shorter than the clip", av_offset
        )
    audio = read_audio(audio_path)
    samples = int(round(seconds * AUDIO_RATE))
    write_wav(audio_path, shift_audio(audio, samples))
    record.update(
        table_offset_frames=av_offset,
        corrected_frames=av_offset,
        corrected_seconds=round(seconds, 4),
        padded_seconds=round(min(abs(samples), len(audio)) / AUDIO_RATE, 4),  # silence at the end or front
        fps=round(fps, 3),
    )
    return record


def _same_fs(a: Path, folder: Path) -> bool:
    try:
        return a.stat().st_dev == folder.stat().st_dev
    except OSError:
        return False
