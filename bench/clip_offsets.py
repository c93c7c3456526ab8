"""Is the published footage itself in sync? A model-free check per clip of a dataset root.

    python bench/clip_offsets.py [--root data/realpool] [--table speakers.tsv] [--split validation]

For every collected video that filter scanned (work/<id>/faces.npz): the shift, within ±15
frames, at which its longest face track's lip gap and jaw drop (MediaPipe, in eye distances)
follow the speech-band loudness of its audio (log) best, over the whole clip. No model and no
training: a third opinion beside the sync judges when they find a published clip off. Positive
offsets mean the audio comes later than the mouth, as in filter's sync offsets. A clip whose two
measures agree, with a clear gain over no shift, is worth a look before it serves as "in sync".
Figures only; nothing is asserted.
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
UPPER_LIP, LOWER_LIP = 13, 14  # MediaPipe: inner lip centres


def best_offset(opening: np.ndarray, loudness: np.ndarray) -> tuple[int, float, float]:
    """(offset, r at that offset, r at 0): the audio delay in frames that best lines the mouth
    opening up with the loudness (positive: the audio is late)."""
    from shqip_av.components.audio_frontend import correlations_by_lag

    found = correlations_by_lag(opening, loudness, SEARCH, min_length=2 * SEARCH + 1)
    if not found:
        return 0, float("nan"), float("nan")
    delay = max(found, key=found.get)
    return delay, found[delay], found.get(0, float("nan"))


def clip_offset(root: Path, video_id: str) -> dict | None:
    from shqip_av import geometry
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
    eye = np.maximum(geometry.eye_distance(marks), 1e-6)
    loud = speech_loudness(read_audio(audio_path), track.start + len(marks), scan.fps)[track.start :]
    loud = np.log(loud + 1e-4)
    row = {"frames": len(marks), "fps": round(scan.fps, 2)}
    for name, opening in (
        ("lip_gap", np.linalg.norm(marks[:, UPPER_LIP] - marks[:, LOWER_LIP], axis=-1) / eye),
        ("jaw_drop", geometry.jaw_drop(marks)),
    ):
        delay, r, r0 = best_offset(opening, loud)
        row[name] = {"offset": delay, "r": round(r, 3), "r_at_0": round(r0, 3)}
    return row


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
    print(f"{'clip':52} {'frames':>6}  {'lip gap: offset r (r at 0)':>27}  {'jaw drop: offset r (r at 0)':>28}")
    for name, row in results.items():
        cells = [
            f"{row[k]['offset']:+4d} {row[k]['r']:6.2f} ({row[k]['r_at_0']:5.2f})" for k in ("lip_gap", "jaw_drop")
        ]
        print(f"{name[:52]:52} {row['frames']:>6}  {cells[0]:>27}  {cells[1]:>28}")
    out = Path(args.out) if args.out else root / "bench" / "clip-offsets.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"offsets in frames, positive: audio late; written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
