"""How filter's videos are run: ``process_video`` on the engine the config names (the local
process pool or Ray, shqip_av/engine.py). Results come back as videos finish; the caller commits
them (done markers, staging, manifests) the same way whichever engine ran them."""

from __future__ import annotations

import traceback
from typing import Iterator

from filter.config import ConfigurationError, FilterConfig
from filter.video import VideoResult, process_video
from shqip_av import engine
from shqip_av.log import get_logger

log = get_logger(__name__)


def run_one(record: dict, root: str, cfg: FilterConfig) -> VideoResult:
    """One video, with every failure but a configuration error turned into an error result."""
    try:
        return process_video(record, root, cfg)
    except ConfigurationError:  # a wrong setting must stop the run, not hide in rejections
        raise
    except Exception as e:  # noqa: BLE001 - one bad video never stops the others
        log.debug("%s", traceback.format_exc())
        return error_result(record, cfg, f"{type(e).__name__}: {e}")


def error_result(record: dict, cfg: FilterConfig, reason: str) -> VideoResult:
    return VideoResult(record["video_id"], cfg.fingerprint(), error=reason[:500])


def engine_of(cfg: FilterConfig) -> engine.Engine:
    return engine.Engine(
        kind=cfg.engine,
        workers=cfg.workers,
        address=cfg.ray_address,
        max_retries=cfg.max_retries,
        timeout=cfg.video_timeout,
        root=cfg.root,
        marker="raw/manifest.jsonl",
        what="video",
    )


def run_videos(todo: list[dict], cfg: FilterConfig) -> Iterator[tuple[dict, VideoResult]]:
    """(record, result) for every video of ``todo``, in the order they finish."""
    on = engine_of(cfg)
    yield from engine.run(
        run_one,
        todo,
        (engine.worker_root(on), cfg),
        on,
        name=lambda r: r["video_id"],
        lost=lambda r, why: error_result(r, cfg, why),
    )
