"""Train the audio → mouth-shape model (shqip_av.components.mouth_shape) on the train split.

    python -m train.lipsync.mouth_shape --root data/realpool [--name mouth-shape] [--steps 1500]
    (make train-mouth-shape)

Only samples whose sync is known to be right learn (filter's quality.sync_truth: verified or
measured): a late clip would teach the mouth to move after the sound. The principal components of
the lips-and-jaw shape are fitted on the train speakers; the network learns their coefficients
from the log-mel. Reported on the validation split's speakers (never learnt from): per clip, the
correlation of the predicted mouth opening (inner-lip gap) with the real one, and the lag at which
it is best (0 when the prediction is in time with the mouth).

Writes runs/lipsync/<name>/: mouth-shape/ (the model, ``MouthShapeModel.from_pretrained``),
metrics.json, trained_on.json.
"""

from __future__ import annotations

import argparse
import glob
import io
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shqip_av import ShqipError
from shqip_av.config import run_cli
from shqip_av.files import DatasetRoot, atomic_write_text
from shqip_av.log import get_logger, progress, setup_logging

log = get_logger(__name__)
TRUSTED = ("verified", "measured")  # filter's sync truths a model may learn timing from


@dataclass
class Clip:
    video_id: str
    speaker: str
    normalised: np.ndarray  # (T, 2P) shape vectors in the clip's own units
    frames: np.ndarray  # (T, 80, 4) log-mel frames


def read_split(root: str, split: str, trusted_only: bool) -> tuple[list[Clip], dict[str, int]]:
    """The split's samples grouped per video (one normalisation per video: the speaker's rest and
    spread over all their speech), and the counts of samples left out by reason."""
    from shqip_av.components import audio_frontend as frontend
    from shqip_av.components.mouth_shape import shape_vectors, speaker_units
    from shqip_av.components.sync_judge import audio_frames
    from shqip_av.media import decode_wav
    from shqip_av.schema import read_tar_samples

    per_video: dict[str, list] = defaultdict(list)
    skipped: dict[str, int] = defaultdict(int)
    tars = sorted(glob.glob(str(DatasetRoot(root).path("shards", split) / "*.tar")))
    for tar in tars:
        for _, members in progress(list(read_tar_samples(tar, {"landmarks.npy", "wav", "json"})), desc=f"reading {split}", unit="sample"):  # fmt: skip
            meta = json.loads(members["json"])
            truth = (meta.get("quality") or {}).get("sync_truth")
            if trusted_only and truth is not None and truth not in TRUSTED:
                skipped[f"sync-truth-{truth}"] += 1
                continue
            landmarks = np.load(io.BytesIO(members["landmarks.npy"]))
            wave, _ = decode_wav(members["wav"])
            if len(landmarks) < 10:
                skipped["too-short"] += 1
                continue
            mel = frontend.log_mel(wave).numpy()
            per_video[meta["video_id"]].append(
                (str(meta.get("speaker")), shape_vectors(landmarks), audio_frames(mel, 0, len(landmarks)))
            )
    clips = []
    for vid, items in per_video.items():
        _, rest, spread = speaker_units(np.concatenate([v for _, v, _ in items]))
        for speaker, vectors, frames in items:
            clips.append(Clip(vid, speaker, (vectors - rest) / spread, frames.astype(np.float32)))
    return clips, dict(skipped)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 4 or a.std() < 1e-9 or b.std() < 1e-9:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def evaluate(model, clips: list[Clip]) -> dict:
    """Per video: the correlation of the predicted opening with the real one, over its samples
    joined, and the lag (frames, ±5) at which it is best."""
    import torch

    from shqip_av.components.audio_frontend import correlations_by_lag
    from shqip_av.components.mouth_shape import opening

    model.eval()
    by_video: dict[str, list] = defaultdict(list)
    with torch.no_grad():
        for c in clips:
            coefs = model(torch.from_numpy(c.frames)[None])[0].numpy()
            by_video[c.video_id].append((opening(model.to_shapes(coefs)), opening(c.normalised)))
    rows = {}
    for vid, pairs in by_video.items():
        predicted = np.concatenate([p for p, _ in pairs])
        real = np.concatenate([r for _, r in pairs])
        lags = correlations_by_lag(real, predicted, 5, min_length=20)
        rows[vid] = {
            "frames": len(real),
            "r": round(_correlation(predicted, real), 4),
            "best_lag": max(lags, key=lags.get) if lags else None,
        }
    values = [r["r"] for r in rows.values() if np.isfinite(r["r"])]
    return {"clips": rows, "median_r": round(float(np.median(values)), 4) if values else None}


def train(root: str, name: str = "mouth-shape", steps: int = 600, coefficients: int = 6, seed: int = 0,
          segment: int = 50, batch: int = 32, output: str = "") -> dict:  # fmt: skip
    import torch

    from shqip_av.components.mouth_shape import MouthShapeModel, fit_components
    from shqip_av.takedown import record_trained_on, restrictions_of

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    train_clips, skipped = read_split(root, "train", trusted_only=True)
    train_clips = [c for c in train_clips if len(c.frames) >= 12]
    if len({c.speaker for c in train_clips}) < 2:
        raise ShqipError(f"{root}/shards/train: fewer than 2 speakers with trusted sync; nothing to learn from")
    model = MouthShapeModel(coefficients=coefficients)
    mean, comps = fit_components(np.concatenate([c.normalised for c in train_clips]), coefficients)
    model.mean.copy_(torch.from_numpy(mean).float())
    model.components.copy_(torch.from_numpy(comps).float())
    targets = [model.to_coefficients(c.normalised).astype(np.float32) for c in train_clips]
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.01)
    model.train()
    losses = []
    for step in progress(range(steps), desc="mouth shape", unit="step"):
        picks = rng.integers(0, len(train_clips), batch)
        length = min(segment, min(len(train_clips[i].frames) for i in picks))
        xs, ys = [], []
        for i in picks:
            start = int(rng.integers(0, len(train_clips[i].frames) - length + 1))
            xs.append(train_clips[i].frames[start : start + length])
            ys.append(targets[i][start : start + length])
        x, y = torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))
        loss = torch.nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    validation, _ = read_split(root, "validation", trusted_only=False)
    run = Path(output) if output else DatasetRoot(root).path("runs", "lipsync", name)
    run.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(run / "mouth-shape")
    metrics = {
        "steps": steps,
        "final_loss": round(float(np.mean(losses[-50:])), 4),
        "train": {
            "samples": len(train_clips),
            "speakers": sorted({c.speaker for c in train_clips}),
            "skipped": skipped,
        },
        "train_fit": evaluate(model, train_clips)["median_r"],
        "validation": evaluate(model, validation) if validation else None,
    }
    atomic_write_text(run / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    videos = {c.video_id for c in train_clips}
    record_trained_on(run, videos, ["train"], restrictions_of(root, videos))
    return metrics


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.lipsync.mouth_shape", description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="data")
    parser.add_argument("--name", default="mouth-shape")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--coefficients", type=int, default=6)
    args = parser.parse_args(argv)
    setup_logging(False, root=args.root)
    metrics = train(args.root, args.name, args.steps, args.coefficients)
    v = metrics.get("validation") or {}
    print(
        f"mouth shape: {metrics['steps']} steps on {metrics['train']['samples']} samples; predicted against real "
        f"opening, median per-clip r: train {metrics['train_fit']}, validation speakers {v.get('median_r')}"
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
