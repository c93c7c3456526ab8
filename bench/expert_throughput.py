"""Sync-expert throughput on this machine (figures only; nothing is asserted).

1. Scoring in filter: the trained expert (ExpertSync, LSE over ±15 frames) beside the
   training-free landmark-energy score on the same utterances of the embedded sample, in windows
   per second and × real time (video seconds scored per wall second).
2. Training: decoding the shards once (the expert keeps decoded samples in memory), then the time
   of an optimizer step with its pairs drawn from them (the loader's work) vs. the same step on
   tensors already batched in memory; their ratio shows a loader bottleneck.

    python bench/expert_throughput.py [--root DIR] [--steps 40]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _demo_root(base: Path) -> Path:
    from collect.pipeline import CollectConfig, prepare_raw
    from collect.sample import write_sample
    from filter.config import FilterConfig
    from filter.pipeline import prepare_clips
    from filter.shard import ShardConfig, pack_shards

    root = base / "data"
    write_sample(root)
    prepare_raw(CollectConfig(root=str(root)))
    prepare_clips(FilterConfig(root=str(root), workers=2))
    pack_shards(ShardConfig(root=str(root)))
    return root


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root", default="", help="a dataset root with shards (default: the embedded sample, built here)"
    )
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    models = REPO.parent / "shared" / "models"
    if models.is_dir():
        os.environ.setdefault("SHQIP_AV_MODELS", str(models))
    import torch

    from shqip_av.components.sync_expert import build_expert
    from filter.sync import ExpertSync, LandmarkEnergySync, SyncInput
    from shqip_av.log import setup_logging
    from shqip_av.media import iter_frames, read_audio
    from train.lipsync.expert_data import PairDataset, collate, load_split

    setup_logging(False)
    torch.set_num_threads(os.cpu_count() or 1)
    base = Path(tempfile.mkdtemp(prefix="shqip-av-expert-bench-"))
    root = Path(args.root) if args.root else _demo_root(base)
    model_cfg = {"frames": 5, "crop_size": 48, "channels": [16, 32, 64], "embedding": 64}
    folder = base / "expert"
    build_expert(model_cfg).save_pretrained(folder)  # speed does not depend on the weights

    # 1. scoring: the accepted samples' crops and audio, as filter hands them to a scorer
    from shqip_av.manifest import read_jsonl

    items = []
    for r in read_jsonl(root / "clips" / "manifest.jsonl"):
        crops = np.stack(list(iter_frames(root / r["files"]["mp4"])))
        landmarks = np.load(root / r["files"]["landmarks.npy"])
        items.append(SyncInput(landmarks, read_audio(root / r["files"]["wav"]), 16000, 25.0, 0, 0, crops))
    seconds = sum(len(i.crops) for i in items) / 25.0
    windows = sum(len(i.crops) - 4 for i in items) * 31  # window × offset pairs
    for scorer in (LandmarkEnergySync(15), ExpertSync(str(folder), 15)):
        t0 = time.perf_counter()
        for item in items:
            scorer.score(item)
        wall = time.perf_counter() - t0
        print(
            f"scoring, {scorer.name.split(':')[0]:15s}: {wall:6.2f} s for {seconds:.1f} s of video "
            f"({seconds / wall:6.1f}× real time, {windows / wall:8.0f} window-offset pairs/s)"
        )

    # 2. training step: from decoded shard samples vs. in-memory tensors
    t0 = time.perf_counter()
    data = load_split(str(root), "train", 5, 48)
    decode = time.perf_counter() - t0
    frames = sum(len(s.video) for s in data.samples)
    print(
        f"decoding the train shards once (crop video → lower halves, audio → log-mel): {decode:.1f} s for "
        f"{len(data.samples)} samples ({frames / 25 / decode:.1f}× real time)"
    )
    pairs = PairDataset(data.samples, 5, seed=0, length=args.steps * 32)
    expert = build_expert(model_cfg)
    head = torch.nn.Linear(1, 1)
    opt = torch.optim.Adam([*expert.parameters(), *head.parameters()], lr=1e-3)
    bce = torch.nn.BCEWithLogitsLoss()

    def step(video, mel, label):
        v, a = expert(video, mel)
        loss = bce(head((v * a).sum(-1, keepdim=True)).squeeze(-1), label)
        opt.zero_grad()
        loss.backward()
        opt.step()

    batches = [collate([pairs[b * 32 + i] for i in range(32)]) for b in range(args.steps)]
    t0 = time.perf_counter()
    for b in range(args.steps):
        video, mel, label, _ = collate([pairs[b * 32 + i] for i in range(32)])
        step(video, mel, label)
    loader = (time.perf_counter() - t0) / args.steps
    t0 = time.perf_counter()
    for video, mel, label, _ in batches:
        step(video, mel, label)
    memory = (time.perf_counter() - t0) / args.steps
    print(
        f"training step (batch 32, tiny expert): {loader * 1000:6.1f} ms with pairs drawn from shard samples, "
        f"{memory * 1000:6.1f} ms on in-memory tensors (ratio {loader / memory:.2f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
