"""A dataset made by the demo pipeline (sample → collect → filter → shard) for the card tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def demo_root(sample_set, tmp_path_factory) -> Path:
    """The embedded sample collected, filtered and sharded, with a salt that spreads its three
    speakers over more than one split (the default salt puts all of them in train)."""
    from collect.pipeline import CollectConfig, prepare_raw
    from filter.config import FilterConfig
    from filter.pipeline import prepare_clips
    from filter.shard import ShardConfig, pack_shards, split_of
    from shqip_av.manifest import read_jsonl

    root = tmp_path_factory.mktemp("cards") / "data"
    root.mkdir()
    shutil.copytree(sample_set / "incoming", root / "incoming")
    shutil.copy(sample_set / "sources.yaml", root / "sources.yaml")
    prepare_raw(CollectConfig(root=str(root)))
    prepare_clips(FilterConfig(root=str(root), workers=2))
    speakers = sorted({r["speaker"] for r in read_jsonl(root / "clips" / "manifest.jsonl")})
    salt = next(f"cards-test-{i}" for i in range(1000)
                if len({split_of(s, ShardConfig(salt=f"cards-test-{i}")) for s in speakers}) == 3)
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
    cfg = from_dict(AsrConfig, {
        "name": "tiny", "model": {"name_or_path": str(model), "lora": {"target_modules": ["q_proj", "v_proj"]}},
        "data": {"root": str(demo_root), "report_splits": ["validation", "test"]},
        "training": {"max_steps": 2, "batch_size": 2, "save_steps": 2, "eval_steps": 2, "num_workers": 0,
                     "max_new_tokens": 8}})
    run_training(cfg)
    return demo_root / "runs" / "asr" / "tiny"
