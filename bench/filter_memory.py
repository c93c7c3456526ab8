"""Peak memory of filter on a short and a 10× longer video (the same talking head, looped).

Filter reads audio on demand and streams frames, so its peak RSS should barely grow with the
length of a video. Each run is a separate `python -m filter` process (one worker); its peak
RSS comes from the kernel (wait4). Figures only; nothing is asserted.

    python bench/filter_memory.py [--seconds 60] [--factor 10]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def _peak_rss_mib(cmd: list[str], env: dict) -> tuple[float, float, int]:
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    out = proc.stdout.read()
    proc.stdout.close()
    return (
        usage.ru_maxrss / 1024,
        time.perf_counter() - start,
        os.waitstatus_to_exitcode(status) or (0 if "filter:" in out else 1),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", default=str(SHARED / "testdata" / "videos" / "retalking_face_5.mp4"))
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the short input")
    parser.add_argument("--factor", type=int, default=10, help="the long input is this many times longer")
    args = parser.parse_args()
    env = dict(os.environ)
    if (SHARED / "models").is_dir():
        env.setdefault("SHQIP_AV_MODELS", str(SHARED / "models"))
    base = Path(tempfile.mkdtemp(prefix="shqip-av-mem-"))
    results = {}
    try:
        for label, seconds in (("short", args.seconds), ("long", args.seconds * args.factor)):
            root = base / label
            (root / "incoming").mkdir(parents=True)
            subprocess.run(
                [
                    "ffmpeg",
                    "-nostdin",
                    "-v",
                    "error",
                    "-stream_loop",
                    "-1",
                    "-i",
                    args.video,
                    "-t",
                    str(seconds),
                    "-c:v",
                    "libx264",
                    "-preset",
                    "ultrafast",
                    "-crf",
                    "23",
                    "-c:a",
                    "aac",
                    str(root / "incoming" / "v.mp4"),
                ],
                check=True,
            )
            (root / "sources.yaml").write_text(
                "sources:\n  - path: incoming/v.mp4\n    consent: {kind: release, subject: bench, reference: bench}\n"
            )
            subprocess.run(
                [sys.executable, "-m", "collect", "--root", str(root)],
                cwd=REPO,
                env=env,
                check=True,
                capture_output=True,
            )
            rss, wall, code = _peak_rss_mib([sys.executable, "-m", "filter", "--root", str(root)], env)
            results[label] = rss
            print(
                f"filter on {seconds / 60:5.1f} min of video: peak RSS {rss:6.0f} MiB, {wall:6.1f} s wall"
                + ("" if code == 0 else f"  (exit {code})")
            )
        print(f"peak RSS ratio long/short: {results['long'] / results['short']:.2f} (input {args.factor}× longer)")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
