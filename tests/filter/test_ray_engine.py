"""filter on Ray (a local Ray started by the tests: 2 CPUs, no dashboard) gives the same bytes as
the process pool, survives a worker killed mid-video, and hands over to the pool mid-run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import psutil
import pytest

from filter.config import ConfigurationError, FilterConfig
from filter.pipeline import prepare_clips
from filter.shard import ShardConfig, pack_shards
from shqip_av.config import ConfigError
from tests.conftest import REPO, shared_model

pytest.importorskip("ray")


def _tree(folder):
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in ("filter.yaml", "shard.yaml")
    }  # resolved configs: paths, the engine


@pytest.fixture(scope="module")
def pool_run(sample_collected, sample_filtered, tmp_path_factory):
    """The sample collected into a root, and a copy filtered (the session's 2-worker pool run) and
    sharded with the process pool."""
    shared_model("face_landmarker.task")
    pool = tmp_path_factory.mktemp("ray") / "pool"
    shutil.copytree(sample_filtered, pool)
    assert len(list(pool.glob("work/*/done.json"))) == 9
    pack_shards(ShardConfig(root=str(pool)))
    return sample_collected, pool


@pytest.fixture
def local_ray():
    import ray

    yield
    ray.shutdown()


def test_ray_and_the_pool_give_the_same_bytes_and_a_killed_worker_is_retried(pool_run, tmp_path, local_ray):
    collected, pool = pool_run
    root = tmp_path / "ray"
    shutil.copytree(collected, root)
    killed = []

    def kill_a_busy_worker():
        """SIGKILL the first Ray worker seen inside StageWorker.run (mid-video)."""
        deadline = time.monotonic() + 240
        while not killed and time.monotonic() < deadline:
            for proc in psutil.process_iter(["pid", "cmdline"]):
                if any("StageWorker.run" in part for part in proc.info["cmdline"] or []):
                    proc.send_signal(signal.SIGKILL)
                    killed.append(proc.info["pid"])
                    return
            time.sleep(0.05)

    import threading

    killer = threading.Thread(target=kill_a_busy_worker, daemon=True)
    killer.start()
    stats = prepare_clips(FilterConfig(root=str(root), workers=2, engine="ray", ray_address="local", max_retries=2))
    killer.join()
    assert killed, "no Ray worker was seen processing a video"
    assert stats.processed == 9 and stats.failed == 0  # the killed video was retried and done
    assert _tree(root / "clips") == _tree(pool / "clips")
    pack_shards(ShardConfig(root=str(root)))
    assert _tree(root / "shards") == _tree(pool / "shards")


def test_ray_gives_the_pool_s_bytes_on_real_clips(real_root, tmp_path, local_ray):
    """Four of the real-clip variants (a real face, two faces, rotation metadata, 60 fps) filtered
    on Ray against the 2-worker pool run of the real_root fixture: the same clip files, and the
    same manifest and rejection lines for these videos."""
    pool_root, ids, _ = real_root
    chosen = {ids[name] for name in ("aoc", "two_faces", "rotated5", "fps60_5")}
    root = tmp_path / "real-ray"
    (root / "raw").mkdir(parents=True)
    for vid in chosen:
        shutil.copytree(pool_root / "raw" / vid, root / "raw" / vid)
    lines = (pool_root / "raw" / "manifest.jsonl").read_text().splitlines(keepends=True)
    (root / "raw" / "manifest.jsonl").write_text("".join(ln for ln in lines if json.loads(ln)["video_id"] in chosen))
    cfg = FilterConfig(root=str(root), workers=2, engine="ray")
    cfg.sync.video_offset = False  # as the real_root fixture's pool run
    stats = prepare_clips(cfg)
    assert stats.processed == 4 and not stats.failed
    split = json.loads((root / "work" / ids["aoc"] / "done.json").read_text())["stats"]["seconds"]
    assert {"probe", "vad", "decode", "landmarks", "sync", "crops", "encode"} <= split.keys()
    assert split["landmarks"] > 0 and split["decode"] > 0 and split["encode"] > 0
    assert {"decode", "landmarks", "crops", "encode"} <= stats.step_seconds.keys()  # summed from the workers
    for vid in chosen:
        assert _tree(root / "clips" / vid) == _tree(pool_root / "clips" / vid), vid
    for name in ("manifest.jsonl", "rejected.jsonl"):

        def rows(r):
            return [ln for ln in (r / "clips" / name).read_text().splitlines() if json.loads(ln)["video_id"] in chosen]

        assert rows(root) == rows(pool_root) and rows(root)


def test_a_run_stopped_on_ray_finishes_on_the_pool(pool_run, tmp_path):
    collected, pool = pool_run
    root = tmp_path / "handover"
    shutil.copytree(collected, root)
    # stopped by the engine's fault-injection point after 3 videos (as by Ctrl-C): no race with the run
    env = {**os.environ, "SHQIP_AV_INTERRUPT_AFTER": "3"}
    proc = subprocess.run(
        [sys.executable, "-m", "filter", "--root", str(root), "--engine", "ray", "--workers", "2"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        timeout=600,
    )
    assert proc.returncode != 0
    done = len(list(root.glob("work/*/done.json")))
    assert 3 <= done < 9, "the Ray run was not stopped midway"
    resumed = prepare_clips(FilterConfig(root=str(root), workers=2))
    assert resumed.skipped == done and resumed.processed == 9 - done
    assert _tree(root / "clips") == _tree(pool / "clips")


def test_ray_problems_are_one_line_before_any_video(pool_run, tmp_path, monkeypatch):
    collected, _ = pool_run
    root = tmp_path / "bad"
    shutil.copytree(collected, root)
    with pytest.raises(ConfigError, match="cannot connect to Ray at '127.0.0.1:9'") as error:
        prepare_clips(FilterConfig(root=str(root), engine="ray", ray_address="127.0.0.1:9"))
    assert "\n" not in str(error.value)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if ray were not installed
    with pytest.raises(ConfigError, match="needs the ray package"):
        prepare_clips(FilterConfig(root=str(root), engine="ray"))
    with pytest.raises(ConfigurationError, match="engine must be pool or ray"):
        prepare_clips(FilterConfig(root=str(root), engine="spark"))
    assert not (root / "work").exists()


def test_a_worker_that_cannot_see_the_root_stops_the_run_before_any_item(tmp_path, local_ray):
    """One machine cannot give a Ray worker another filesystem, so the root is named by a path
    that exists nowhere: the same check and the same message as a node without the mount."""
    from shqip_av import engine

    calls = []
    blind = engine.Engine(kind="ray", workers=1, root=str(tmp_path / "not-mounted"), marker="raw/manifest.jsonl")
    with pytest.raises(
        ConfigError, match=r"the Ray worker\(s\) on .+ cannot see the dataset root .*not-mounted"
    ) as error:
        list(engine.run(calls.append, [1, 2], (), blind, name=str, lost=lambda item, why: why))
    assert "\n" not in str(error.value) and not calls


def test_a_pool_worker_killed_mid_video_is_retried_in_a_new_pool(pool_run, tmp_path):
    collected, pool = pool_run
    root = tmp_path / "pool-killed"
    shutil.copytree(collected, root)
    killed = []

    def kill_a_worker():
        """SIGKILL one of this process's pool workers once a video is done (the next is under way)."""
        deadline = time.monotonic() + 240
        while not list(root.glob("work/*/done.json")) and time.monotonic() < deadline:
            time.sleep(0.05)
        for child in psutil.Process().children(recursive=True):
            if any("spawn_main" in part for part in child.cmdline()):
                child.send_signal(signal.SIGKILL)
                killed.append(child.pid)
                return

    import threading

    killer = threading.Thread(target=kill_a_worker, daemon=True)
    killer.start()
    stats = prepare_clips(FilterConfig(root=str(root), workers=2))
    killer.join()
    assert killed, "no pool worker was killed"
    assert stats.processed == 9 and stats.failed == 0
    assert _tree(root / "clips") == _tree(pool / "clips")
