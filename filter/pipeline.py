"""Run filter over a dataset root: every collected video not yet done (and not withdrawn) goes
through ``process_video`` on an engine (a local process pool, or Ray: filter/engine.py); each finished video gets a done marker tied to the
config, and clips/manifest.jsonl + clips/rejected.jsonl are rebuilt from the markers."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from filter.config import ConfigurationError, FilterConfig
from filter.engine import engine_of, run_videos
from shqip_av.engine import connect_ray
from shqip_av.components.face_tracker import create_landmarker
from shqip_av.components.voice_activity import silero_vad
from filter.sync import load_sync_scorer
from filter.transcripts import check_recognizer
from filter.video import VideoResult
from shqip_av import ShqipError
from shqip_av.config import save_config, validate
from shqip_av.files import DatasetRoot, atomic_write_text, remove_tree
from shqip_av.lock import stage_lock
from shqip_av.log import get_logger, native_stderr_filtered, progress
from shqip_av.manifest import dumps, read_jsonl, write_jsonl
from shqip_av.records import utc_now
from shqip_av.takedown import TakedownList

log = get_logger(__name__)
DONE = "done.json"


@dataclass
class FilterStats:
    videos: int = 0  # in raw/manifest.jsonl, not withdrawn
    processed: int = 0  # this run
    skipped: int = 0  # done before with the same config
    failed: int = 0  # crashed this run (retried next run)
    withdrawn: int = 0
    utterances: int = 0  # accepted, all videos
    seconds: float = 0.0
    rejected: Counter = field(default_factory=Counter)
    step_seconds: Counter = field(default_factory=Counter)  # wall seconds per step, summed over this run's videos
    wall: float = 0.0  # seconds this run spent on its videos
    video_seconds: float = 0.0  # length of the videos it processed

    def time_split(self) -> str:
        total = sum(self.step_seconds.values())
        return (
            ", ".join(
                f"{step} {sec:.1f} s ({100 * sec / total:.0f} %)" for step, sec in self.step_seconds.most_common()
            )
            if total
            else ""
        )

    def summary(self) -> str:
        top = ", ".join(f"{r} {n}" for r, n in self.rejected.most_common(6)) or "none"
        text = (
            f"filter: {self.videos} videos ({self.processed} processed now, {self.skipped} already done, "
            f"{self.failed} failed, {self.withdrawn} withdrawn); {self.utterances} utterances kept "
            f"({self.seconds / 3600:.3f} h); rejections: {top}"
        )
        if self.processed and self.wall > 0:
            text += (
                f"\nfilter: {self.processed} videos in {self.wall:.0f} s: {self.processed / self.wall:.2f} videos/s, "
                f"{self.video_seconds / self.wall:.2f} s of video per s"
            )
        if self.step_seconds:
            text += f"\nfilter: time per step (all workers): {self.time_split()}"
        if self.failed:
            text += (
                f"\nfilter: {self.failed} video(s) failed (see the warnings above); their earlier results, "
                f"if any, were kept; rerun the same command to retry them"
            )
        return text


def read_done(root: DatasetRoot, video_id: str) -> dict | None:
    path = root.path("work", video_id, DONE)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return None  # a torn marker means not done


def _is_current(root: DatasetRoot, done: dict | None, cfg: FilterConfig, record: dict) -> bool:
    """Done with this config and this video, and every file it accepted still in place (a clip
    deleted by hand makes the video redo instead of failing shard forever)."""
    if (
        not done
        or done.get("fingerprint") != cfg.fingerprint()
        or done.get("video_sha256") != record["media"]["sha256"]
    ):
        return False
    return all(root.path(rel).is_file() for sample in done.get("accepted", []) for rel in sample["files"].values())


def _commit(root: DatasetRoot, record: dict, result: VideoResult) -> None:
    """Replace the video's previous output by the new one. The old clips stay in place until the
    new ones are there: they are moved aside (clips/<id>.old), the staged folder moved in, the
    done marker written, and only then the old folder removed. ``_recover`` finishes or undoes
    a commit that a kill interrupted."""
    vid = record["video_id"]
    staging, final, old = (root.path("clips", f"{vid}{s}") for s in (".partial", "", ".old"))
    remove_tree(old)
    if final.exists():
        os.replace(final, old)
    if staging.is_dir():
        os.replace(staging, final)
    marker = {
        "video_id": vid,
        "fingerprint": result.fingerprint,
        "video_sha256": record["media"]["sha256"],
        "finished_at": utc_now(),
        **result.to_dict(),
    }
    atomic_write_text(root.path("work", vid, DONE), dumps(marker) + "\n")
    remove_tree(old)


def _recover(root: DatasetRoot) -> None:
    """A commit killed between moving the old clips aside and moving the new ones in: put the
    old ones back (their done marker still describes them)."""
    for old in root.path("clips").glob("*.old"):
        final = old.with_name(old.name[: -len(".old")])
        if final.exists():
            remove_tree(old)
        else:
            os.replace(old, final)


def _forget(root: DatasetRoot, vid: str) -> None:
    """Remove a withdrawn video's result (takedown: nothing of it may stay in clips/)."""
    for suffix in ("", ".partial", ".old"):
        remove_tree(root.path("clips", f"{vid}{suffix}"))
    marker = root.path("work", vid, DONE)
    if marker.exists():
        marker.unlink()


def check_config(cfg: FilterConfig) -> None:
    """Settings that cannot work stop the run before any video is touched: ranges, model files
    (each is opened once here, so a missing or broken file is one line, not N failed videos)."""
    try:
        validate(cfg)
    except ShqipError as e:
        raise ConfigurationError(str(e)) from None
    cfg.check()
    try:
        with native_stderr_filtered():
            create_landmarker(cfg.faces).close()
    except ShqipError as e:
        raise ConfigurationError(f"faces.model: {e}") from None
    except Exception as e:  # noqa: BLE001 - MediaPipe raises RuntimeError/ValueError on a bad file
        raise ConfigurationError(
            f"faces.model {cfg.faces.model!r} cannot be loaded by MediaPipe: "
            f"{str(e).splitlines()[0] if str(e) else type(e).__name__}"
        ) from None
    try:
        silero_vad(cfg.speech.vad_model)
    except ShqipError as e:
        raise ConfigurationError(f"speech.vad_model: {e}") from None
    except Exception as e:  # noqa: BLE001 - onnxruntime's errors on a bad file
        raise ConfigurationError(
            f"speech.vad_model {cfg.speech.vad_model!r} cannot be loaded: "
            f"{str(e).splitlines()[0] if str(e) else type(e).__name__}"
        ) from None
    load_sync_scorer(cfg.sync, cfg.probe.fps)
    check_recognizer(cfg.transcripts)
    p = cfg.diarization.pipeline
    if p and not Path(p).expanduser().exists() and not re.fullmatch(r"[\w.-]+/[\w.-]+", p):
        raise ConfigurationError(
            f"diarization.pipeline {p!r}: no such file or folder, and not a Hub id "
            f"such as pyannote/speaker-diarization-community-1"
        )


def prepare_clips(cfg: FilterConfig) -> FilterStats:
    """The filter stage: raw/ → clips/. Resumable; a rerun with the same config does nothing."""
    root = DatasetRoot(cfg.root)
    manifest = root.path("raw", "manifest.jsonl")
    if not manifest.is_file():
        raise ShqipError(f"{manifest} does not exist: run `python -m collect --root {cfg.root}` first")
    check_config(cfg)
    with stage_lock(root, "filter"):
        return _prepare_clips(root, cfg, manifest)


def _prepare_clips(root: DatasetRoot, cfg: FilterConfig, manifest: Path) -> FilterStats:
    root.path("clips").mkdir(parents=True, exist_ok=True)
    _recover(root)
    takedown = TakedownList.load(root.takedown)
    stats = FilterStats()
    records, todo, withdrawn = [], [], []
    for record in read_jsonl(manifest):
        if takedown.match_record(record):
            withdrawn.append(record["video_id"])
            continue
        records.append(record)
        if _is_current(root, read_done(root, record["video_id"]), cfg, record):
            stats.skipped += 1
        else:  # redone; its previous output stays until the new one is committed
            todo.append(record)
    stats.videos, stats.withdrawn = len(records), len(withdrawn)
    save_config(cfg, root.path("clips", "filter.yaml"))
    for vid in withdrawn:  # withdrawn videos never reach clips/, even if filtered before the takedown
        _forget(root, vid)

    def finish(record: dict, result: VideoResult) -> None:
        if result.error:
            stats.failed += 1
            log.warning("%s: %s", record["video_id"], result.error)
            return
        _commit(root, record, result)
        stats.processed += 1
        stats.step_seconds.update(result.stats.get("seconds", {}))
        stats.video_seconds += result.stats.get("duration", 0.0)

    if todo:
        log.info("filter: %d videos to process with %d worker(s) (%s)", len(todo), cfg.workers, cfg.engine)
        if cfg.engine == "ray":
            connect_ray(engine_of(cfg))  # an unreachable cluster is one line before any video
    started = time.monotonic()
    for record, result in progress(run_videos(todo, cfg), desc="filter", total=len(todo), unit="video"):
        finish(record, result)
    stats.wall = time.monotonic() - started

    rebuild_manifests(root, records, stats)
    if stats.failed:  # reported, but not marked done: the next run retries them
        stats.rejected["error"] += stats.failed
    return stats


def rebuild_manifests(root: DatasetRoot, records: list[dict], stats: FilterStats) -> None:
    """clips/manifest.jsonl and clips/rejected.jsonl from the done markers, in a stable order."""
    accepted, rejected = [], []
    for record in sorted(records, key=lambda r: r["video_id"]):
        done = read_done(root, record["video_id"])
        if not done:
            continue
        accepted.extend(done["accepted"])
        rejected.extend(done["rejected"])
    stats.utterances = len(accepted)
    stats.seconds = sum(a["duration"] for a in accepted)
    stats.rejected.update(r["reason"] for r in rejected)
    write_jsonl(root.path("clips", "manifest.jsonl"), accepted)
    write_jsonl(root.path("clips", "rejected.jsonl"), rejected)
    # staged folders of videos that are no longer in raw/ (withdrawn, or a crash mid-commit)
    for path in [*root.path("clips").glob("*.partial"), *root.path("clips").glob("*.old")]:
        shutil.rmtree(path, ignore_errors=True)
