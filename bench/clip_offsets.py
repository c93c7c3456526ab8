"""Is the published footage itself in sync? A model-free check per clip of a dataset root.

    python bench/clip_offsets.py [--root data/realpool] [--table speakers.tsv] [--split validation]

For every collected video that filter scanned (work/<id>/faces.npz): filter's own whole-video
check (shqip_av.av_offset: lip gap, jaw drop and their changes against the speech-band loudness,
a verdict when three of four agree within a frame, drifting when the halves disagree), on the
audio as collected (a table's offset already taken out). No model and no training. Positive
offsets mean the audio comes later than the mouth, as in filter's sync offsets. Figures only.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SEARCH = 15  # frames either way


def clip_offset(root: Path, video_id: str) -> dict | None:
    """filter's model-free whole-video check (shqip_av.av_offset) on the video's longest face track."""
    from shqip_av.av_offset import estimate_video_offset
    from shqip_av.components.audio_frontend import speech_loudness
    from shqip_av.components.face_tracker import FaceScan
    from shqip_av.media import read_audio

    scan_path, audio_path = root / "work" / video_id / "faces.npz", root / "raw" / video_id / "audio.wav"
    if not scan_path.is_file() or not audio_path.is_file():
        return None
    scan = FaceScan.load(scan_path)
    if not scan.tracks:
        return None
    track = max(scan.tracks, key=lambda t: len(t.landmarks))
    marks = np.asarray(track.landmarks[0 : len(track.landmarks)], np.float64)
    loud = speech_loudness(read_audio(audio_path), track.start + len(marks), scan.fps)[track.start :]
    found = estimate_video_offset(marks, loud, max_lag=SEARCH)
    return {"frames": len(marks), "fps": round(scan.fps, 2), **found.to_dict()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="data/realpool")
    parser.add_argument("--table", default=str(REPO.parent / "shared" / "testdata" / "speakers.tsv"))
    parser.add_argument("--split", default="validation", help="the table's split to check ('' for every clip)")
    parser.add_argument("--out", default="", help="JSON output (default: <root>/bench/clip-offsets.json)")
    args = parser.parse_args()
    root = Path(args.root)
    if not (root / "work").is_dir():
        print(f"clip offsets: skipped ({root}/work does not exist: run make realpool)")
        return 0
    split_of = {Path(r["file"]).name: r["split"] for r in csv.DictReader(Path(args.table).open(), delimiter="\t")}
    results = {}
    for info in sorted((root / "raw").glob("*/info.json")):
        name = json.loads(info.read_text()).get("filename", "")
        if args.split and split_of.get(name) != args.split:
            continue
        row = clip_offset(root, info.parent.name)
        if row is not None:
            results[name] = row
    print(
        f"{'clip':52} {'frames':>6}  {'verdict':>9} {'offset':>6} {'agree':>5}  votes (lip gap, jaw drop, their changes)"
    )
    for name, row in results.items():
        votes = " ".join(f"{v:+d}" for v in row["votes"].values())
        print(f"{name[:52]:52} {row['frames']:>6}  {row['verdict']:>9} {row['offset']:+6d} {row['agree']:>5}  {votes}")
    out = Path(args.out) if args.out else root / "bench" / "clip-offsets.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"offsets in frames, positive: audio late; written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
