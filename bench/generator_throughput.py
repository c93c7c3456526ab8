"""Lip-sync generator throughput on this machine (figures only; nothing is asserted).

1. Training: streamed from the shards (data.streaming: decoding in two loader workers) and
   decoding the shards once (crops at the generator's size, landmarks, log-mel and the
   reference picker's k-means per sample), then the time of an optimizer step (L1 + SSIM) with
   its windows drawn from the decoded samples (the loader's work: slicing, reference picking,
   per-frame mel windows) vs. the same step on a batch already in memory; their ratio shows a
   loader bottleneck. Samples/s counts generated frames.
2. Inference: frames per second of the tiny and the base config (random weights) on the CPU, or
   on the GPU when one is present, with the process's peak memory after each.

    python bench/generator_throughput.py [--root DIR] [--steps 10]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root", default="", help="a dataset root with shards (default: the embedded sample, built here)"
    )
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    models = REPO.parent / "shared" / "models"
    if models.is_dir():
        os.environ.setdefault("SHQIP_AV_MODELS", str(models))
    import torch

    from bench.expert_throughput import _demo_root
    from shqip_av.config import load_yaml
    from shqip_av.log import setup_logging
    from train.lipsync.generator_data import WindowDataset, collate, load_faces
    from shqip_av.components.lipsync_generator import MOUTH_BOX, build_generator
    from train.lipsync.train import masked_l1, ssim_loss

    setup_logging(False)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tmp = tempfile.TemporaryDirectory()
    root = args.root or str(_demo_root(Path(tmp.name)))
    tiny = load_yaml(REPO / "train" / "configs" / "generator-tiny.yaml")["model"]
    base = load_yaml(REPO / "train" / "configs" / "generator-base.yaml")["model"]

    start = time.perf_counter()
    data = load_faces(root, "train", size=tiny["size"], frames=tiny["frames"], references=tiny["references"], exclude=5)
    decode = time.perf_counter() - start
    frames = sum(len(s.crops) for s in data.samples)
    print(f"decoding {len(data.samples)} samples ({frames} frames): {decode:.1f} s, {frames / decode:.0f} frames/s")

    torch.manual_seed(0)
    model = build_generator(tiny).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    s = tiny["size"]
    box = tuple(int(round(v * s)) for v in (MOUTH_BOX[1], MOUTH_BOX[3], MOUTH_BOX[0], MOUTH_BOX[2]))
    batch = 8
    windows = WindowDataset(data.samples, tiny["frames"], seed=0, length=(args.steps + 2) * batch)

    def step(x):
        target, refs, mel = (t.to(device) for t in x[:3])
        out = model(target, refs, mel)
        loss = masked_l1(out, target, model.mask) + 0.2 * ssim_loss(out, target, box)
        opt.zero_grad()
        loss.backward()
        opt.step()

    fixed = collate([windows[i] for i in range(batch)])
    step(fixed)  # warm-up
    t0 = time.perf_counter()
    for i in range(args.steps):
        step(fixed)
    memory = (time.perf_counter() - t0) / args.steps
    t0 = time.perf_counter()
    for i in range(1, args.steps + 1):
        step(collate([windows[i * batch + j] for j in range(batch)]))
    loaded = (time.perf_counter() - t0) / args.steps
    per = batch * tiny["frames"]
    from torch.utils.data import DataLoader

    from train.lipsync.stream import WindowStream, index_split

    index, _ = index_split(root, "train", frames=tiny["frames"], exclude=5)
    stream = WindowStream(
        index,
        size=s,
        frames=tiny["frames"],
        references=tiny["references"],
        exclude=5,
        seed=0,
        batch_size=batch,
        buffer=4,
    )
    batches = iter(DataLoader(stream, batch_size=batch, num_workers=2, collate_fn=collate))
    step(next(batches))  # the workers' start-up and first decodes
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step(next(batches))
    streamed = (time.perf_counter() - t0) / args.steps
    print(
        f"training step (tiny, streamed from the shards, decoding in 2 loader workers, buffer 4): "
        f"{streamed * 1000:.0f} ms ({per / streamed:.1f} frames/s); ratio to in-memory {streamed / memory:.2f}"
    )
    print(
        f"training step (tiny, batch {batch} windows × {tiny['frames']} frames, {device}): "
        f"{loaded * 1000:.0f} ms with windows from the decoded shards ({per / loaded:.1f} frames/s) vs. "
        f"{memory * 1000:.0f} ms on an in-memory batch ({per / memory:.1f} frames/s); ratio {loaded / memory:.2f}"
    )

    for name, cfg in (("tiny", tiny), ("base", base)):
        torch.manual_seed(0)
        net = build_generator(cfg).to(device).eval()
        params = sum(p.numel() for p in net.parameters())
        b, t, k, size = 4, cfg["frames"], cfg["references"], cfg["size"]
        x = (
            torch.rand(b, t, 3, size, size, device=device),
            torch.rand(b, k, 3, size, size, device=device),
            torch.randn(b, t, 80, 16, device=device),
        )
        with torch.no_grad():
            net(*x)
            runs = 3 if name == "base" else 10
            t0 = time.perf_counter()
            for _ in range(runs):
                net(*x)
            if device == "cuda":
                torch.cuda.synchronize()
        rate = runs * b * t / (time.perf_counter() - t0)
        print(
            f"inference {name} ({size} px, {params / 1e6:.1f} M parameters, {device}): {rate:.1f} frames/s; "
            f"peak memory of this process so far {peak_mib():.0f} MiB"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
