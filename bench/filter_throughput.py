"""Filter throughput on the real clips of ../shared/testdata/videos.

Prints seconds of video filtered per wall-clock second (× real time) with the process pool at 1
and 2 workers and on a local Ray with 2 workers (its start included), next to the floor measured
in the same run: decoding plus landmark detection alone, which every filter run has to do; and
each run's time per step. Also peak memory. Figures only; nothing is asserted.

    python bench/filter_throughput.py [--videos DIR] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _rss_mb(who: int) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # Linux reports KiB


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", default=str(REPO.parent / "shared" / "testdata" / "videos"))
    parser.add_argument("--keep", default="", help="keep the dataset root here instead of a temporary folder")
    parser.add_argument("--no-ray", action="store_true", help="skip the run on a local Ray")
    args = parser.parse_args()
    videos = sorted(Path(args.videos).glob("*.mp4"))
    if not videos:
        print(f"no .mp4 files in {args.videos}", file=sys.stderr)
        return 2
    models = REPO.parent / "shared" / "models"
    if models.is_dir():
        os.environ.setdefault("SHQIP_AV_MODELS", str(models))

    from collect.pipeline import CollectConfig, prepare_raw
    from filter.config import FilterConfig
    from shqip_av.components.face_tracker import scan_faces
    from filter.pipeline import prepare_clips
    from shqip_av.log import StepTimes, setup_logging
    from shqip_av.manifest import read_jsonl
    from shqip_av.media import probe

    setup_logging(False)
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="shqip-av-bench-"))
    root = base / "root"
    (root / "incoming").mkdir(parents=True, exist_ok=True)
    lines = ["sources:"]
    for v in videos:
        shutil.copy(v, root / "incoming" / v.name)
        lines += [
            f"  - path: incoming/{v.name}",
            f"    consent: {{kind: release, subject: bench {v.stem}, reference: benchmark input}}",
        ]
    (root / "sources.yaml").write_text("\n".join(lines) + "\n")
    prepare_raw(CollectConfig(root=str(root)))
    records = list(read_jsonl(root / "raw" / "manifest.jsonl"))
    seconds = sum(r["media"]["duration"] for r in records)
    print(f"{len(records)} clips, {seconds:.1f} s of video, {os.cpu_count()} CPU cores")

    cfg = FilterConfig(root=str(root))
    times = StepTimes()
    t0 = time.perf_counter()
    for r in records:  # the floor: decode at the analysis rate + MediaPipe landmarks, nothing else
        path = root / r["files"]["video"]
        with times.excluding("landmarks", "decode"):
            scan_faces(path, probe(path), cfg.faces, cfg.probe.fps, times=times)
    floor = time.perf_counter() - t0
    print(
        f"decode + landmarks only : {floor:6.1f} s wall  {seconds / floor:5.2f}× real time  "
        f"(waiting for frames {times.seconds['decode']:.1f} s, landmarks {times.seconds['landmarks']:.1f} s)"
    )

    walls = {}
    runs = [("pool", 1), ("pool", 2)] + ([("ray", 2)] if not args.no_ray else [])
    for engine, workers in runs:
        for folder in ("work", "clips"):
            shutil.rmtree(root / folder, ignore_errors=True)
        t0 = time.perf_counter()
        stats = prepare_clips(FilterConfig(root=str(root), workers=workers, engine=engine))
        wall = walls[engine, workers] = time.perf_counter() - t0
        print(
            f"filter, {engine}, {workers} worker{'s' if workers > 1 else ' '}: {wall:6.1f} s wall  "
            f"{seconds / wall:5.2f}× real time  (the floor is {floor / wall:.0%} of it; "
            f"{stats.utterances} utterances kept)"
        )
        print(f"   time per step: {stats.time_split()}")
    if ("ray", 2) in walls:
        import ray

        ray.shutdown()
        print(
            f"Ray's overhead against the pool (2 workers, local Ray started inside the run): "
            f"{walls['ray', 2] / walls['pool', 2]:.2f}×"
        )
    print(
        f"peak memory: main process {_rss_mb(resource.RUSAGE_SELF):.0f} MiB, "
        f"largest child process {_rss_mb(resource.RUSAGE_CHILDREN):.0f} MiB"
    )
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
