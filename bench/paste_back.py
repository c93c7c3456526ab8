"""The paste-back's settings, tuned on train speakers and reported on validation speakers.

    python bench/paste_back.py [--speakers ../shared/testdata/speakers.tsv] [--frames 6]

For every clip of a split (speakers.tsv), a few frames are tracked (MediaPipe) and a stand-in for
a generator's output is pasted back: the canonical crop of a frame 8 frames away (another mouth,
another head pose), at 192 px, with a colour cast (+12 R, -8 B) and the softness of a generator.
A small grid of mask dilation and feathering is scored on the train speakers
(seam CIEDE2000 plus the gradient jump's excess over 1, with the colour and sharpness targets as
constraints); the best setting and shqip_av.paste_back's defaults are then reported on the
validation speakers. Nothing is tuned on validation speakers.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HERE = Path(__file__).resolve().parents[1]
SPEAKERS = HERE.parent / "shared" / "testdata" / "speakers.tsv"


def clips_of(table: Path, split: str) -> list[Path]:
    rows = list(csv.DictReader(table.open(), delimiter="\t"))
    return [table.parent / r["file"] for r in rows if r["split"] == split and float(r["seconds"]) >= 2]


def cases(clips: list[Path], frames: int):
    """(frame, landmarks, stand-in crop, affine) for ``frames`` frames of each clip."""
    import cv2

    from shqip_av import geometry
    from shqip_av.components.face_tracker import FaceTracker
    from shqip_av.media import iter_frames, media_arg, probe, run_ffmpeg

    tracker = FaceTracker.from_pretrained()
    out = []
    for source in clips:
        with tempfile.TemporaryDirectory() as tmp:
            clip = Path(tmp) / "clip.mp4"  # the first 4 s are enough, and keep long clips cheap
            run_ffmpeg(["-i", media_arg(source), "-t", "4", "-an", "-c:v", "libx264", "-crf", "12", str(clip)], "cut")
            info = probe(clip)
            seconds = info.duration
            scan = tracker.scan(clip, info, 25.0, folder=Path(tmp))
            if not scan.tracks:
                continue
            track = max(scan.tracks, key=lambda t: len(t.landmarks))
            marks = np.asarray(track.landmarks[0 : len(track.landmarks)], np.float64)
            decoded = dict(enumerate(iter_frames(clip, fps=25.0, info=info)))
        picks = set(np.linspace(track.start + 8, min(track.end, int(seconds * 25)) - 1, frames).astype(int).tolist())
        kept = {f: fr for f, fr in decoded.items() if track.start <= f < track.end and (f in picks or f + 8 in picks)}
        for f in sorted(picks):
            if f - 8 not in kept or kept.get(f) is None or kept.get(f - 8) is None:
                continue
            i, j = f - track.start, f - 8 - track.start
            _, affine = geometry.canonical_crop(kept[f], track.align[i], 256)
            other, _ = geometry.canonical_crop(kept[f - 8], track.align[j], 256)
            small = cv2.resize(other, (192, 192), interpolation=cv2.INTER_AREA)
            small = cv2.GaussianBlur(small, (0, 0), 1.2).astype(np.float32) + np.array([12, 0, -8])
            out.append((kept[f], marks[i], np.clip(small, 0, 255).astype(np.uint8), affine))
    return out


def score(items, cfg) -> dict:
    from shqip_av.components.lipsync_generator import MOUTH_BOX
    from shqip_av.paste_back import Paster, face_axes
    from train.lipsync.quality import frame_quality, summarize

    paster = Paster(MOUTH_BOX, cfg)
    rows = []
    for frame, marks, crop, affine in items:
        dub, alpha = paster.paste(frame, crop, affine, marks)
        q = frame_quality(dub, frame, alpha, face_axes(marks)[2])
        if q:
            rows.append(q)
    return summarize(rows)


def objective(s: dict) -> float:
    penalty = 10 * max(0, s["lower_face_lab_distance"] - 3) + 10 * max(0, 0.6 - s["sharpness_ratio"])
    return s["seam_ciede2000"] + 5 * max(0.0, s["seam_gradient_ratio"] - 1) + penalty


def main() -> None:
    from shqip_av.paste_back import PasteConfig

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speakers", default=str(SPEAKERS))
    parser.add_argument("--frames", type=int, default=3)
    args = parser.parse_args()
    table = Path(args.speakers)
    train = cases(clips_of(table, "train"), args.frames)
    grid = list(itertools.product((0.04, 0.08, 0.15), (0.15, 0.25, 0.4), (0.5,)))  # dilation × feathering
    results = []
    for dilate, feather, sigma in grid:
        cfg = PasteConfig(dilate=dilate, feather=feather, color_sigma=sigma)
        s = score(train, cfg)
        results.append((objective(s), (dilate, feather, sigma), s))
    results.sort(key=lambda r: r[0])
    print(f"train speakers: {len(train)} frames; best 5 of {len(grid)} (dilate, feather, colour spread):")
    for obj, setting, s in results[:5]:
        print(f"  {setting}  objective {obj:.3f}  {s}")
    best = results[0][1]
    validation = cases(clips_of(table, "validation"), args.frames)
    default = PasteConfig()
    print(f"validation speakers: {len(validation)} frames")
    for name, cfg in (
        ("defaults", default),
        ("best on train", PasteConfig(dilate=best[0], feather=best[1], color_sigma=best[2])),
        ("no colour/sharpness matching", PasteConfig(color=False, sharpen=False)),
    ):
        print(f"  {name:30} {score(validation, cfg)}")
    print(f"  (defaults: dilate {default.dilate}, feather {default.feather}, colour spread {default.color_sigma})")


if __name__ == "__main__":
    main()
