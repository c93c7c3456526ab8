"""python -m train.lipsync.evaluate --expert runs/lipsync/<name> (--root data --split test | --video IN.mp4)

Scores audio-visual sync with a trained expert, as syncnet_python's LSE does: per sample (or per
video), LSE-D (the minimum over offsets of the mean embedding distance), LSE-C (median − minimum)
and the offset (positive: the audio is late). For shard splits it also reports the
aligned-vs-shifted accuracy: over every window and every shift of 3 to 15 frames, the share of
pairs in which the window's own audio is nearer than the shifted audio (no threshold involved). A video file's face track is found the way
filter finds it (MediaPipe, canonical crops); the longest track is scored. The same functions
will score the generator's output and dubbed videos.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shqip_av import ShqipError
from shqip_av.config import option, parse_config, run_cli
from shqip_av.files import atomic_write_text
from shqip_av.log import get_logger, progress, setup_logging

log = get_logger(__name__)


@dataclass
class EvaluateConfig:
    expert: str = option("", "the sync expert: runs/lipsync/<name> (or its expert/ folder) or a Hub id")
    root: str = option("data", "dataset root (for --split)")
    split: str = option("", "score every sample of this shard split")
    video: str = option("", "score this video file instead")
    max_offset: int = option(15, "offsets searched either way (frames)", min=1, max=50)
    max_samples: int = option(0, "score at most this many samples (0: all)", min=0)
    out: str = option("", "write metrics.json here")


def shifted_accuracy(model, halves: np.ndarray, mel: np.ndarray, min_shift: int = 3, max_shift: int = 15) -> tuple[int, int]:
    """(pairs where a window's own audio is nearer than the same audio shifted by s, pairs tried),
    over every window and every shift s with min_shift ≤ |s| ≤ max_shift."""
    import torch

    from shqip_av import audio as frontend

    t = model.sync_config.frames
    n = len(halves) - t + 1
    if n < 1:
        return 0, 0
    shifts = [s for s in range(-max_shift, max_shift + 1) if abs(s) >= min_shift]
    with torch.no_grad():
        video = model.embed_video(torch.stack([torch.as_tensor(halves[i:i + t], dtype=torch.float32) for i in range(n)]))
        wins = {j: frontend.mel_window(mel, j, t) for j in range(-max_shift, n + max_shift)}
        audio = model.embed_audio(torch.stack([torch.as_tensor(w, dtype=torch.float32) for w in wins.values()]))
    index = {j: k for k, j in enumerate(wins)}
    right = 0
    for i in range(n):
        own = float((video[i] - audio[index[i]]).norm())
        right += sum(own < float((video[i] - audio[index[i + s]]).norm()) for s in shifts)
    return right, n * len(shifts)


def _summary(rows: list[dict]) -> dict:
    scored = [r for r in rows if r.get("lse_d") is not None]
    if not scored:
        return {"samples": 0}
    offsets = [r["offset"] for r in scored]
    return {"samples": len(scored), "lse_d": round(float(np.mean([r["lse_d"] for r in scored])), 4),
            "lse_c": round(float(np.mean([r["lse_c"] for r in scored])), 4),
            "offset_median": float(np.median(offsets)),
            "offset_zero_share": round(float(np.mean([abs(o) <= 1 for o in offsets])), 4),
            **({"aligned_vs_shifted_accuracy": round(sum(r["right"] for r in scored) / max(1, sum(r["windows"] for r in scored)), 4)}
               if "right" in scored[0] else {})}


def evaluate_split(cfg: EvaluateConfig) -> dict:
    from filter.expert import expert_lse, load_expert
    from train.lipsync.data import load_split

    model = load_expert(cfg.expert).eval()
    c = model.sync_config
    data = load_split(cfg.root, cfg.split, c.frames, c.crop_size, cfg.max_samples)
    if not data.samples:
        raise ShqipError(f"no usable samples in {cfg.root}/shards/{cfg.split} (skipped: {dict(data.skipped) or 'none'})")
    rows = []
    for s in progress(data.samples, desc=f"LSE {cfg.split}", unit="sample"):
        halves = s.video.astype(np.float32)
        lse = expert_lse(model, halves, s.mel, 0, 0, cfg.max_offset)
        right, windows = shifted_accuracy(model, halves, s.mel)
        rows.append({"key": s.key, "lse_d": lse.distance if lse else None, "lse_c": lse.confidence if lse else None,
                     "offset": lse.offset if lse else None, "right": right, "windows": windows})
    return {"split": cfg.split, **_summary(rows), "skipped": dict(data.skipped), "per_sample": rows}


def evaluate_video(cfg: EvaluateConfig) -> dict:
    """LSE of a video file's main face track (the longest), as filter would track and crop it."""
    from filter.config import FilterConfig
    from filter.expert import expert_lse, load_expert, lower_halves
    from filter.faces import scan_faces
    from filter.video import stream_crops
    from shqip_av import audio as frontend
    from shqip_av.media import probe, read_audio

    path = Path(cfg.video)
    if not path.is_file():
        raise ShqipError(f"{path}: no such video file")
    model = load_expert(cfg.expert).eval()
    fcfg = FilterConfig()
    info = probe(path)
    fps = fcfg.probe.fps
    scan = scan_faces(path, info, fcfg.faces, fps)
    if not scan.tracks:
        raise ShqipError(f"{path}: no face track found")
    track = max(scan.tracks, key=lambda t: len(t.landmarks))
    _, crops, _ = next(stream_crops(path, info, fps, [(None, track, track.start, track.end)], fcfg.crop.size))
    wave = read_audio(path)
    mel = frontend.mel_window(frontend.log_mel(wave).numpy(), track.start, len(crops))  # the track's own audio
    lse = expert_lse(model, lower_halves(np.stack(crops), model.sync_config.crop_size), mel, 0, 0, cfg.max_offset)
    if lse is None:
        raise ShqipError(f"{path}: the face track is shorter than the expert's window")
    return {"video": str(path), "track_frames": len(crops), "lse_d": lse.distance, "lse_c": lse.confidence,
            "offset": lse.offset, "curve": lse.curve}


def main(argv=None) -> int:
    cfg, args = parse_config(EvaluateConfig, argv, prog="python -m train.lipsync.evaluate",
                             description="LSE-D, LSE-C and offset with a trained sync expert, for a shard split or a video.")
    setup_logging(args.verbose, root=cfg.root)
    if not cfg.expert:
        raise ShqipError("give --expert runs/lipsync/<name> (or a Hub id)")
    if bool(cfg.split) == bool(cfg.video):
        raise ShqipError("give either --split NAME or --video FILE")
    try:
        result = evaluate_video(cfg) if cfg.video else evaluate_split(cfg)
    except (OSError, ValueError) as e:  # an expert folder or Hub id that does not load
        raise ShqipError(f"cannot load the sync expert {cfg.expert!r}: {str(e).splitlines()[0]}") from None
    shown = {k: v for k, v in result.items() if k not in ("per_sample", "curve")}
    print(json.dumps(shown, indent=1))
    if cfg.out:
        atomic_write_text(Path(cfg.out) / "metrics.json", json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    run_cli(main)
