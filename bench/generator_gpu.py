"""The lip-sync generator's GPU figures (nothing is asserted): what the base config needs.

On synthetic tensors (no shards: the training data's content does not change the cost), for the
tiny and base configs of train/configs:
- inference frames/s (batch of 16 windows, fp32 and bf16 autocast);
- a full training step as train.lipsync runs it (generator forward, L1 + SSIM + mouth-landmark +
  the frozen expert's sync loss, backward, Adam), bf16 autocast, at several batch sizes: step time,
  frames/s and the peak GPU memory PyTorch allocated.
Runs on the CPU too (small batches only), but is meant for a GPU:

    python bench/generator_gpu.py [--batches 8,16,32] [--steps 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="8,16,32", help="training batch sizes (windows) for the base config")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument(
        "--base",
        default=str(REPO / "train" / "configs" / "generator-base.yaml"),
        help="the config whose training step is measured (a quick check: generator-tiny.yaml)",
    )
    args = parser.parse_args()
    import torch

    from shqip_av.components.sync_expert import build_expert
    from shqip_av.components import audio_frontend as frontend
    from shqip_av.config import load_yaml
    from shqip_av.components.lipsync_generator import MOUTH_BOX, build_generator, mouth_targets
    from train.lipsync.train import ExpertJudge, masked_l1, ssim_loss

    device = "cuda" if torch.cuda.is_available() else "cpu"
    name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
    print(f"device: {name}, torch {torch.__version__}")
    configs = {
        "tiny": load_yaml(REPO / "train" / "configs" / "generator-tiny.yaml")["model"],
        "base": load_yaml(args.base)["model"],
    }
    expert_cfg = load_yaml(REPO / "train" / "configs" / "expert-base.yaml")["model"]

    def sync(fn):
        if device == "cuda":
            torch.cuda.synchronize()
        return fn

    for label, cfg in configs.items():
        torch.manual_seed(0)
        net = build_generator(cfg).to(device).eval()
        params = sum(p.numel() for p in net.parameters())
        b, t, k, s = 16, cfg["frames"], cfg["references"], cfg["size"]
        x = (
            torch.rand(b, t, 3, s, s, device=device),
            torch.rand(b, k, 3, s, s, device=device),
            torch.randn(b, t, 80, frontend.mel_length(5), device=device),
        )
        for precision in ("fp32", "bf16") if device == "cuda" else ("fp32",):  # CPU bf16 is emulated: slow
            with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16"):
                net(*x)
                sync(None)
                runs = 10 if device == "cuda" else 2
                t0 = time.perf_counter()
                for _ in range(runs):
                    net(*x)
                sync(None)
            rate = runs * b * t / (time.perf_counter() - t0)
            print(
                f"inference {label} ({s} px, {params / 1e6:.1f} M parameters, {precision}, {device}): {rate:.0f} frames/s"
            )

    # a training step of the base config with the expert-base sync loss, bf16
    cfg = configs["base"]
    s, t, k = cfg["size"], cfg["frames"], cfg["references"]
    box = tuple(int(round(v * s)) for v in (MOUTH_BOX[1], MOUTH_BOX[3], MOUTH_BOX[0], MOUTH_BOX[2]))
    expert = build_expert(expert_cfg).to(device).eval()
    judge = ExpertJudge.__new__(ExpertJudge)  # the training's judge around an untrained expert-base
    judge.model, judge.size, judge.t, judge.torch = expert, expert_cfg["crop_size"], expert_cfg["frames"], torch
    for p in expert.parameters():
        p.requires_grad_(False)
    batches = [int(v) for v in args.batches.split(",")] if device == "cuda" else [2]
    for batch in batches:
        torch.manual_seed(0)
        gen = build_generator(cfg).to(device).train()
        opt = torch.optim.Adam(gen.parameters(), lr=2e-4, betas=(0.5, 0.999))
        frames = torch.rand(batch, t, 3, s, s, device=device)
        refs = torch.rand(batch, k, 3, s, s, device=device)
        mel = torch.randn(batch, t, 80, frontend.mel_length(5), device=device)
        marks = torch.rand(batch, t, 478, 2, device=device) * s
        sync_mel = torch.randn(batch, 80, frontend.mel_length(judge.t), device=device)
        if device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()

        def step():
            with torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda"):
                out, mouth = gen(frames, refs, mel, return_mouth=True)
                loss = (
                    masked_l1(out, frames, gen.mask)
                    + 0.2 * ssim_loss(out.float(), frames, box)
                    + 0.1 * 10 * (mouth - mouth_targets(marks, s)).abs().mean()
                    + 0.03 * judge.distance(out, sync_mel).mean()
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        try:
            step()
            sync(None)
            t0 = time.perf_counter()
            for _ in range(args.steps if device == "cuda" else 1):
                step()
            sync(None)
        except torch.OutOfMemoryError:
            print(f"training base, batch {batch}: out of memory")
            break
        per = (time.perf_counter() - t0) / (args.steps if device == "cuda" else 1)
        peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
        precision = "bf16" if device == "cuda" else "fp32"
        print(
            f"training base ({precision}, batch {batch} windows × {t} frames, sync loss from expert-base): "
            f"{per * 1000:.0f} ms/step, {batch * t / per:.0f} frames/s, peak GPU memory {peak:.1f} GiB"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
