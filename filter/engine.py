"""How filter's videos are run (DESIGN.md §9): ``process_video`` is pure, so any engine that can
call it with (record, root, config) and hand back its ``VideoResult`` will do. Two are built in:

- ``pool`` (default): a local process pool (``--workers N``), or the calling process for one
  worker; a pool whose worker died is started again and its videos retried;
- ``ray``: Ray actors (``--engine ray --address local|<address>``), each holding MediaPipe, Silero,
  the sync expert and Whisper for its whole life (they are cached per process), on as many nodes
  as the cluster has. Every node must see the dataset root at the same path (a shared
  filesystem): workers check this before any video is given out.

Both yield (record, result) as videos finish. The caller commits results (done markers,
staging, manifests) exactly as before, so a run started on one engine can finish on the other.
On Ray, a video whose worker dies (killed, out of memory, its node lost) or that runs past
``video_timeout`` is retried up to ``max_retries`` times on a fresh worker, then recorded as an
error with the reason; the other videos go on.
"""

from __future__ import annotations

import os
import socket
import time
import traceback
from collections import Counter, deque
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Iterator

from filter.config import ConfigurationError, FilterConfig
from filter.video import VideoResult, process_video
from shqip_av.log import get_logger
from shqip_av.workers import die_with_parent

log = get_logger(__name__)

ENGINES = ("pool", "ray")
# passed to Ray workers so they resolve model files and stay offline like the driver (never tokens)
_FORWARDED_ENV = ("SHQIP_AV_MODELS", "SHQIP_AV_OFFLINE", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE",
                  "PYANNOTE_METRICS_ENABLED", "OMP_NUM_THREADS")


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


def init_worker() -> None:
    die_with_parent()  # a killed filter must not leave workers writing into the root
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import cv2

    cv2.setNumThreads(1)


def run_videos(todo: list[dict], cfg: FilterConfig) -> Iterator[tuple[dict, VideoResult]]:
    """(record, result) for every video of ``todo``, in the order they finish."""
    if cfg.engine == "ray":
        yield from _ray(todo, cfg)
    elif cfg.workers == 1 or len(todo) <= 1:
        for record in todo:
            yield record, run_one(record, cfg.root, cfg)
    else:
        yield from _pool(todo, cfg)


def _pool(todo: list[dict], cfg: FilterConfig) -> Iterator[tuple[dict, VideoResult]]:
    """A process pool. A worker that dies (killed, out of memory) breaks the whole pool in
    concurrent.futures: the pool is then started again and the videos it was holding are retried,
    each up to max_retries times."""
    import multiprocessing
    from concurrent.futures.process import BrokenProcessPool

    # spawn: MediaPipe, onnxruntime and torch do not survive fork() reliably
    ctx = multiprocessing.get_context("spawn")
    tries: Counter = Counter()
    pending = list(todo)
    while pending:
        retry = []
        with ProcessPoolExecutor(max_workers=cfg.workers, mp_context=ctx, initializer=init_worker) as pool:
            futures = {pool.submit(run_one, r, cfg.root, cfg): r for r in pending}
            for fut in as_completed(futures):
                record = futures[fut]
                try:
                    result = fut.result()
                except ConfigurationError:
                    raise
                except BrokenProcessPool:
                    tries[record["video_id"]] += 1
                    if tries[record["video_id"]] <= cfg.max_retries:
                        retry.append(record)
                        continue
                    result = error_result(record, cfg, f"its worker process died, {tries[record['video_id']]} times")
                except Exception as e:  # noqa: BLE001 - anything else the pool raises
                    result = error_result(record, cfg, f"{type(e).__name__}: {e}")
                yield record, result
        if retry:
            log.warning("filter: a worker process died; retrying %d video(s) in a new pool", len(retry))
        pending = retry


# --- Ray -----------------------------------------------------------------------------------------

class FilterWorker:
    """A Ray actor: filters one video per call; its models stay loaded between calls."""

    def __init__(self):
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        import cv2

        cv2.setNumThreads(1)

    def where(self) -> tuple[str, int]:
        return socket.gethostname(), os.getpid()

    def sees_root(self, root: str) -> bool:
        return (Path(root) / "raw" / "manifest.jsonl").is_file()

    def process(self, record: dict, root: str, cfg: FilterConfig) -> VideoResult:
        return run_one(record, root, cfg)


def import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigurationError("--engine ray needs the ray package (make install installs it; or "
                                 "pip install 'ray>=2.40')") from None
    return ray


def connect_ray(cfg: FilterConfig):
    """Start a local Ray (address 'local' or empty) or join a running cluster; one line on failure."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    env = {k: os.environ[k] for k in _FORWARDED_ENV if k in os.environ}
    options = dict(include_dashboard=False, log_to_driver=False, configure_logging=False,
                   runtime_env={"env_vars": env} if env else None)
    address = cfg.ray_address or "local"
    _reachable(address)
    try:
        if address == "local":
            ray.init(num_cpus=cfg.workers, **options)
        else:
            ray.init(address=address, **options)
    except Exception as e:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ValueError …
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigurationError(f"cannot connect to Ray at {address!r}: {text}") from None
    return ray


def _reachable(address: str, timeout: float = 5.0) -> None:
    """A host:port (or ray://host:port) that nothing answers on is refused at once: Ray itself
    keeps retrying for minutes."""
    import re

    match = re.fullmatch(r"(?:ray://)?\[?([^\]/]+?)\]?:(\d+)", address)
    if address in ("local", "auto") or not match:
        return
    try:
        socket.create_connection((match.group(1), int(match.group(2))), timeout=timeout).close()
    except OSError as e:
        raise ConfigurationError(f"cannot connect to Ray at {address!r}: nothing answers there "
                                 f"({e.strerror or type(e).__name__}); is the cluster running "
                                 "(ray start --head) and the address right?") from None


def _ray(todo: list[dict], cfg: FilterConfig) -> Iterator[tuple[dict, VideoResult]]:
    ray = connect_ray(cfg)
    from ray.exceptions import ActorUnavailableError, GetTimeoutError, RayActorError, WorkerCrashedError

    remote = ray.remote(num_cpus=1, max_restarts=-1, max_task_retries=0)(FilterWorker)
    actors = [remote.remote() for _ in range(min(cfg.workers, max(1, len(todo))))]
    root = str(Path(cfg.root).resolve())
    try:
        seen = ray.get([a.sees_root.remote(root) for a in actors], timeout=300)
        places = ray.get([a.where.remote() for a in actors], timeout=60)
    except GetTimeoutError:
        raise ConfigurationError(f"Ray did not start {len(actors)} worker(s) within 5 minutes: does the "
                                 f"cluster have {len(actors)} free CPUs (--workers)?") from None
    blind = sorted({host for ok, (host, _) in zip(seen, places) if not ok})
    if blind:
        raise ConfigurationError(f"the Ray worker(s) on {', '.join(blind)} cannot see the dataset root {root} "
                                 "(no raw/manifest.jsonl there): put the root on storage every node mounts at "
                                 "the same path")
    log.info("filter on Ray: %d worker(s) on %s", len(actors), ", ".join(sorted({h for h, _ in places})))
    queue = deque(todo)
    tries: Counter = Counter()
    idle = list(actors)
    running: dict = {}  # object ref → (actor, record, started)
    restarting: dict = {}  # ping ref → actor: a worker that died is used again once it answers
    timed_out: set = set()
    while queue or running:
        while idle and queue:
            actor, record = idle.pop(), queue.popleft()
            running[actor.process.remote(record, root, cfg)] = (actor, record, time.monotonic())
        done, _ = ray.wait(list(running) + list(restarting), num_returns=1, timeout=1.0)
        for ref in done:
            if ref in restarting:
                actor = restarting.pop(ref)
                try:
                    ray.get(ref)
                    idle.append(actor)
                except (RayActorError, WorkerCrashedError):
                    restarting[actor.where.remote()] = actor  # still coming back
                continue
            actor, record, _ = running.pop(ref)
            vid = record["video_id"]
            try:
                result = ray.get(ref)
            except ConfigurationError:
                raise
            except ActorUnavailableError:  # the worker was restarting: the video never started
                restarting[actor.where.remote()] = actor
                queue.appendleft(record)
                continue
            except (RayActorError, WorkerCrashedError) as e:
                restarting[actor.where.remote()] = actor  # Ray restarts it (max_restarts=-1)
                why = (f"ran past video_timeout ({cfg.video_timeout:g} s)" if vid in timed_out
                       else f"its Ray worker died ({type(e).__name__})")
                timed_out.discard(vid)
                tries[vid] += 1
                if tries[vid] <= cfg.max_retries:
                    log.warning("%s: %s; retrying (%d of %d)", vid, why, tries[vid], cfg.max_retries)
                    queue.append(record)
                else:
                    yield record, error_result(record, cfg, f"{why}, {tries[vid]} times")
                continue
            idle.append(actor)
            yield record, result
        if cfg.video_timeout:
            now = time.monotonic()
            for ref, (actor, record, started) in list(running.items()):
                if now - started > cfg.video_timeout and record["video_id"] not in timed_out:
                    timed_out.add(record["video_id"])
                    ray.kill(actor, no_restart=False)  # its call fails; the actor comes back fresh
