"""Where a stage's per-item work runs (DESIGN.md §9): collect's downloads and filter's videos
are pure functions of (item, root, config), so any engine that can call them and hand back the
result will do. Two are built in:

- ``pool`` (default): the calling process for one worker, else a local process pool (spawned:
  MediaPipe, onnxruntime and torch do not survive fork()); a pool whose worker died is started
  again and its items retried;
- ``ray``: Ray actors of one CPU each, on a local Ray (``address='local'``) or on a running
  cluster. An actor lives for the whole run, so the models a stage caches per process (MediaPipe,
  Silero, the sync expert, Whisper) are loaded once per worker, not once per item. Every node
  must see the dataset root at the same path (a shared filesystem): each worker checks this
  before any item is given out.

Both yield (item, result) as items finish; the caller commits results, so a run started on one
engine can finish on the other. An item whose worker dies (killed, out of memory, its node lost)
or that runs past ``timeout`` (Ray) is retried up to ``max_retries`` times, then handed to the
caller's ``lost`` function, which turns the reason into that item's failure record.
"""

from __future__ import annotations

import os
import re
import socket
import time
from collections import Counter, deque
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from shqip_av.config import ConfigError
from shqip_av.log import get_logger
from shqip_av.workers import die_with_parent

log = get_logger(__name__)

ENGINES = ("pool", "ray")
# passed to Ray workers so they resolve model files and stay offline like the driver (never tokens)
FORWARDED_ENV = (
    "SHQIP_AV_MODELS",
    "SHQIP_AV_OFFLINE",
    "HF_HUB_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "PYANNOTE_METRICS_ENABLED",
    "OMP_NUM_THREADS",
)


@dataclass(frozen=True)
class Engine:
    kind: str = "pool"  # pool | ray
    workers: int = 1
    address: str = "local"  # ray: 'local' starts Ray here with `workers` CPUs; else a cluster address
    max_retries: int = 2  # tries after a worker died under an item
    timeout: float = 0.0  # ray: seconds one item may run before its worker is killed (0: no limit)
    root: str = ""  # the dataset root every worker must see
    marker: str = ""  # a file under root that proves it (raw/manifest.jsonl, …)
    what: str = "item"  # in messages: "video"


def worker_root(engine: Engine) -> str:
    """The dataset root as workers are given it: absolute on Ray (every node mounts it at the same
    path, and a worker's working directory is not the driver's), as given otherwise."""
    return str(Path(engine.root).resolve()) if engine.kind == "ray" else engine.root


def quiet_threads() -> None:
    """One item per CPU: the libraries below must not each start a thread per core as well."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import cv2

    cv2.setNumThreads(1)


def _pool_worker_init() -> None:
    die_with_parent()  # a killed run must not leave workers writing into the root
    quiet_threads()


def run(
    fn: Callable,
    items: list,
    args: tuple,
    engine: Engine,
    *,
    name: Callable[[Any], str],
    lost: Callable[[Any, str], Any],
) -> Iterator[tuple[Any, Any]]:
    """(item, fn(item, *args)) for every item, in the order they finish. ``fn`` must be a
    module-level function that turns every failure of an item into a result, and raises only
    ConfigError, which stops the run. ``lost(item, reason)`` is the result of an item whose
    worker kept dying.

    ``$SHQIP_AV_INTERRUPT_AFTER=N`` is a fault-injection point for tests: the run is interrupted
    (as by Ctrl-C) once N items have been handed back, so a test of "stopped midway" cannot lose
    a race against the run."""
    if engine.kind == "ray":
        results = _ray(fn, items, args, engine, name, lost)
    elif engine.workers == 1 or len(items) <= 1:
        results = ((item, fn(item, *args)) for item in items)
    else:
        results = _pool(fn, items, args, engine, name, lost)
    interrupt_after = int(os.environ.get("SHQIP_AV_INTERRUPT_AFTER") or 0)
    for count, pair in enumerate(results, 1):
        yield pair
        if interrupt_after and count >= interrupt_after:
            results.close()
            raise KeyboardInterrupt(f"interrupted after {count} items ($SHQIP_AV_INTERRUPT_AFTER)")


def _pool(fn, items, args, engine: Engine, name, lost) -> Iterator[tuple[Any, Any]]:
    """A worker that dies breaks the whole pool in concurrent.futures, and every future it held:
    a new pool then takes those items over."""
    import multiprocessing
    from concurrent.futures.process import BrokenProcessPool

    ctx = multiprocessing.get_context("spawn")
    tries: Counter = Counter()
    pending = list(items)
    while pending:
        retry = []
        pool = ProcessPoolExecutor(max_workers=engine.workers, mp_context=ctx, initializer=_pool_worker_init)
        try:
            futures = {pool.submit(fn, item, *args): item for item in pending}
            for fut in as_completed(futures):
                item = futures[fut]
                try:
                    result = fut.result()
                except ConfigError:
                    raise
                except BrokenProcessPool:
                    tries[name(item)] += 1
                    if tries[name(item)] <= engine.max_retries:
                        retry.append(item)
                        continue
                    result = lost(item, f"its worker process died, {tries[name(item)]} times")
                except Exception as e:  # noqa: BLE001 - anything else the pool raises
                    result = lost(item, f"{type(e).__name__}: {e}")
                yield item, result
        finally:  # stopping early (an error, the caller gone) must not wait for the queued items
            pool.shutdown(wait=True, cancel_futures=True)
        if retry:
            log.warning("a worker process died; retrying %d %s(s) in a new pool", len(retry), engine.what)
        pending = retry


# --- Ray -----------------------------------------------------------------------------------------


class StageWorker:
    """A Ray actor: runs one item per call; what its process caches stays loaded between calls."""

    def __init__(self):
        quiet_threads()

    def where(self) -> tuple[str, int]:
        return socket.gethostname(), os.getpid()

    def sees(self, path: str) -> bool:
        return Path(path).exists()

    def run(self, fn, item, args):
        return fn(item, *args)


def import_ray():
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "--engine ray needs the ray package (make install installs it; or pip install 'ray>=2.40')"
        ) from None
    return ray


def connect_ray(engine: Engine):
    """Start a local Ray (address 'local' or empty) or join a running cluster; one line on failure."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    options = dict(
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        runtime_env={"env_vars": env} if env else None,
    )
    address = engine.address or "local"
    _reachable(address)
    try:
        if address == "local":
            ray.init(num_cpus=engine.workers, **options)
        else:
            ray.init(address=address, **options)
    except Exception as e:  # noqa: BLE001 - Ray raises ConnectionError, RuntimeError, ValueError …
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"cannot connect to Ray at {address!r}: {text}") from None
    return ray


def _reachable(address: str, timeout: float = 5.0) -> None:
    """A host:port (or ray://host:port) that nothing answers on is refused at once: Ray itself
    keeps retrying for minutes."""
    match = re.fullmatch(r"(?:ray://)?\[?([^\]/]+?)\]?:(\d+)", address)
    if address in ("local", "auto") or not match:
        return
    try:
        socket.create_connection((match.group(1), int(match.group(2))), timeout=timeout).close()
    except OSError as e:
        raise ConfigError(
            f"cannot connect to Ray at {address!r}: nothing answers there "
            f"({e.strerror or type(e).__name__}); is the cluster running "
            "(ray start --head) and the address right?"
        ) from None


def _start_actors(ray, engine: Engine, count: int) -> list:
    remote = ray.remote(num_cpus=1, max_restarts=-1, max_task_retries=0)(StageWorker)
    actors = [remote.remote() for _ in range(count)]
    marker = str(Path(engine.root).resolve() / engine.marker)
    from ray.exceptions import GetTimeoutError

    try:
        seen = ray.get([a.sees.remote(marker) for a in actors], timeout=300)
        places = ray.get([a.where.remote() for a in actors], timeout=60)
    except GetTimeoutError:
        raise ConfigError(
            f"Ray did not start {count} worker(s) within 5 minutes: does the "
            f"cluster have {count} free CPUs (--workers)?"
        ) from None
    blind = sorted({host for ok, (host, _) in zip(seen, places) if not ok})
    if blind:
        raise ConfigError(
            f"the Ray worker(s) on {', '.join(blind)} cannot see the dataset root "
            f"{Path(engine.root).resolve()} (no {engine.marker} there): put the root on "
            "storage every node mounts at the same path"
        )
    log.info("on Ray: %d worker(s) on %s", count, ", ".join(sorted({h for h, _ in places})))
    return actors


def _ray(fn, items, args, engine: Engine, name, lost) -> Iterator[tuple[Any, Any]]:
    ray = connect_ray(engine)
    from ray.exceptions import ActorUnavailableError, RayActorError, WorkerCrashedError

    idle = _start_actors(ray, engine, min(engine.workers, max(1, len(items))))
    shared_args = ray.put(args)  # the config goes to the object store once, not once per item
    queue = deque(items)
    tries: Counter = Counter()
    running: dict = {}  # object ref → (actor, item, started)
    restarting: dict = {}  # ping ref → actor: a worker that died is used again once it answers
    timed_out: set = set()
    while queue or running:
        while idle and queue:
            actor, item = idle.pop(), queue.popleft()
            running[actor.run.remote(fn, item, shared_args)] = (actor, item, time.monotonic())
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
            actor, item, _ = running.pop(ref)
            key = name(item)
            try:
                result = ray.get(ref)
            except ConfigError:
                raise
            except ActorUnavailableError:  # the worker was restarting: the item never started
                restarting[actor.where.remote()] = actor
                queue.appendleft(item)
                continue
            except (RayActorError, WorkerCrashedError) as e:
                restarting[actor.where.remote()] = actor  # Ray restarts it (max_restarts=-1)
                why = (
                    f"ran past the time limit ({engine.timeout:g} s)"
                    if key in timed_out
                    else f"its Ray worker died ({type(e).__name__})"
                )
                timed_out.discard(key)
                tries[key] += 1
                if tries[key] <= engine.max_retries:
                    log.warning("%s: %s; retrying (%d of %d)", key, why, tries[key], engine.max_retries)
                    queue.append(item)
                else:
                    yield item, lost(item, f"{why}, {tries[key]} times")
                continue
            idle.append(actor)
            yield item, result
        if engine.timeout:
            now = time.monotonic()
            for ref, (actor, item, started) in list(running.items()):
                if now - started > engine.timeout and name(item) not in timed_out:
                    timed_out.add(name(item))
                    ray.kill(actor, no_restart=False)  # its call fails; the actor comes back fresh
