"""Shared fixtures. Tests use real ffmpeg, real yt-dlp (against a local HTTP server on
127.0.0.1), real MediaPipe, and the real clips and models in ../shared (skipped with a reason
when ../shared is absent)."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
VIDEOS = SHARED / "testdata" / "videos"
MODELS = SHARED / "models"

# Offline by default (DESIGN.md §5), and model files from ../shared/models.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "0")
os.environ.setdefault("SHQIP_AV_OFFLINE", "1")
if MODELS.is_dir():
    os.environ.setdefault("SHQIP_AV_MODELS", str(MODELS))


def shared_video(name: str) -> Path:
    path = VIDEOS / name
    if not path.is_file():
        pytest.skip(f"needs ../shared/testdata/videos/{name} (the shared test data is not present)")
    return path


def shared_model(name: str) -> Path:
    path = MODELS / name
    if not path.is_file():
        pytest.skip(f"needs ../shared/models/{name} (the shared model files are not present)")
    return path


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):  # clients that hang up early are expected
        pass


@pytest.fixture
def http_root(tmp_path):
    """A folder served over HTTP on 127.0.0.1 (random port); yields (folder, base_url)."""
    folder = tmp_path / "www"
    folder.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = _QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def sample_set(tmp_path_factory):
    """The embedded sample clips, generated once per test session."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    from collect.sample import write_sample

    root = tmp_path_factory.mktemp("sample-root")
    write_sample(root)
    return root


class _RefusingHub(http.server.BaseHTTPRequestHandler):
    """Answers every request with 403 and remembers (method, path, lower-cased headers)."""

    def _refuse(self):
        self.server.seen.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
        body = b'{"error": "refused by the test server"}'
        self.send_response(403)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _refuse

    def log_message(self, *args):
        pass


@pytest.fixture
def refusing_hub():
    """A 'Hub' on 127.0.0.1 that refuses everything: (endpoint URL for HF_ENDPOINT, requests seen)."""
    server = _QuietServer(("127.0.0.1", 0), _RefusingHub)
    server.seen = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", server.seen
    server.shutdown()
    server.server_close()


# The embedded sample collected, then filtered with the 2-worker pool, once per session: the demo
# root, the filter-run tests and the Ray tests start from copies (never change these two).
@pytest.fixture(scope="session")
def sample_collected(sample_set, tmp_path_factory) -> Path:
    from collect.pipeline import CollectConfig, prepare_raw

    root = tmp_path_factory.mktemp("sample-collected") / "root"
    root.mkdir()
    shutil.copytree(sample_set / "incoming", root / "incoming")
    shutil.copy(sample_set / "sources.yaml", root / "sources.yaml")
    prepare_raw(CollectConfig(root=str(root)))
    return root


@pytest.fixture(scope="session")
def sample_filtered(sample_collected, tmp_path_factory) -> Path:
    from filter.config import FilterConfig
    from filter.pipeline import prepare_clips

    root = tmp_path_factory.mktemp("sample-filtered") / "root"
    shutil.copytree(sample_collected, root)
    prepare_clips(FilterConfig(root=str(root), workers=2))
    return root


# A dataset made by the demo pipeline (sample → collect → filter → shard), and a short train.asr
# run on it; shared by the card, publish, takedown and safety tests (copy it before changing it).
@pytest.fixture(scope="session")
def demo_root(sample_filtered, tmp_path_factory) -> Path:
    """The embedded sample collected, filtered and sharded, with a salt that spreads its three
    speakers over more than one split (the default salt puts all of them in train)."""
    from filter.shard import ShardConfig, pack_shards, split_of
    from shqip_av.manifest import read_jsonl

    root = tmp_path_factory.mktemp("cards") / "data"
    shutil.copytree(sample_filtered, root)
    speakers = sorted({r["speaker"] for r in read_jsonl(root / "clips" / "manifest.jsonl")})
    salt = next(
        f"cards-test-{i}"
        for i in range(1000)
        if len({split_of(s, ShardConfig(salt=f"cards-test-{i}")) for s in speakers}) == 3
    )
    pack_shards(ShardConfig(root=str(root), salt=salt))
    return root


@pytest.fixture(scope="session")
def demo_run(demo_root, tmp_path_factory) -> Path:
    """A short train.asr run of a tiny Whisper on the demo shards (runs/asr/tiny under the root)."""
    from shqip_av.config import from_dict
    from train.asr.config import AsrConfig
    from train.asr.tiny import TinyWhisperConfig, build_tiny_whisper
    from train.asr.train import run_training

    model = build_tiny_whisper(TinyWhisperConfig(out=str(tmp_path_factory.mktemp("tiny") / "m"), root=str(demo_root)))
    cfg = from_dict(
        AsrConfig,
        {
            "name": "tiny",
            "model": {"name_or_path": str(model), "lora": {"target_modules": ["q_proj", "v_proj"]}},
            "data": {"root": str(demo_root), "report_splits": ["validation", "test"]},
            "training": {
                "max_steps": 2,
                "batch_size": 2,
                "save_steps": 2,
                "eval_steps": 2,
                "num_workers": 0,
                "max_new_tokens": 8,
            },
        },
    )
    run_training(cfg)
    return demo_root / "runs" / "asr" / "tiny"


@pytest.fixture(scope="session")
def demo_expert(demo_root, tmp_path_factory):
    """A tiny sync expert trained once per session on the demo shards' train split (validation:
    another speaker); (run folder, metrics). The test split's speaker is never seen by it."""
    from shqip_av.config import from_dict
    from train.lipsync.expert import ExpertConfig, run_training

    run = tmp_path_factory.mktemp("expert") / "run"
    cfg = from_dict(
        ExpertConfig,
        {
            "name": "tiny",
            "output": str(run),
            "model": {"frames": 5, "crop_size": 48, "channels": [16, 32, 64], "embedding": 64},
            "data": {"root": str(demo_root), "max_shift": 12},
            "training": {
                "max_steps": 300,
                "batch_size": 32,
                "learning_rate": 0.002,
                "eval_pairs": 256,
                "eval_steps": 100,
                "save_steps": 150,
            },
        },
    )
    return run, run_training(cfg)


@pytest.fixture(scope="session")
def demo_generator(demo_root, demo_expert, tmp_path_factory):
    """train/configs/generator-tiny.yaml trained once per session on the demo's clips sharded with
    the default salt (all three speakers in train: the generator hears every voice), 20 % of the
    samples held out for validation (held-out sentences; their keys in metrics["validation_keys"]),
    with the session's tiny expert as its sync loss; (run folder, metrics, dataset root)."""
    from filter.shard import ShardConfig, pack_shards
    from shqip_av.config import from_dict, load_yaml
    from train.lipsync.train import GeneratorTrainConfig, run_training

    base = tmp_path_factory.mktemp("generator")
    root = base / "data"
    for part in ("raw", "clips"):
        shutil.copytree(demo_root / part, root / part, ignore=shutil.ignore_patterns("*.mp4"))
    for clip in (demo_root / "clips").rglob("*.mp4"):  # crops only: the raw videos are not needed
        os.link(clip, root / clip.relative_to(demo_root))
    pack_shards(ShardConfig(root=str(root)))
    run = base / "run"
    cfg = load_yaml(REPO / "train" / "configs" / "generator-tiny.yaml")
    cfg.update(output=str(run))
    cfg["data"] = {"root": str(root)}
    cfg["loss"]["expert"] = str(demo_expert[0])
    # shorter than the demo's 300 steps, the sync loss on for the same last 100 (test time)
    cfg["training"]["max_steps"], cfg["loss"]["sync_warmup"] = 200, 100
    return run, run_training(from_dict(GeneratorTrainConfig, cfg)), root


@pytest.fixture(scope="session")
def tiny_dub_bundle(demo_run, demo_expert, tmp_path_factory) -> Path:
    """A dubbing bundle of tiny local models: the demo's tiny Whisper, the session's tiny expert, a
    tiny random generator and espeak-ng English (the dub and app tests read it; never change it)."""
    import torch

    from export.bundle import BundleConfig, build_bundle
    from shqip_av.components.lipsync_generator import build_generator

    base = tmp_path_factory.mktemp("dub-bundle")
    torch.manual_seed(0)
    build_generator({"size": 32, "frames": 5, "references": 2, "channels": [16, 32], "audio_dim": 16}).save_pretrained(
        base / "generator"
    )
    return build_bundle(
        BundleConfig(
            out=str(base / "demo-en"),
            asr=str(demo_run),
            generator=str(base / "generator"),
            expert=str(demo_expert[0]),
            tts="espeak:en",
        )
    )


# the real clips of ../shared and generated variants, filtered once per session (filter and train tests use it)
from tests.real_clips import real_root  # noqa: E402,F401

# a tiny landmark sync judge trained once per session on a slice of the real footage's train speakers
from tests.real_judge import realpool_judge, realpool_mouth_shape  # noqa: E402,F401
