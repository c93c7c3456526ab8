"""python -m filter.report --root data: a short summary of a dataset root (videos in,
utterances kept, hours per split, top rejection reasons)."""

from __future__ import annotations

import argparse
import json
from collections import Counter

from shqip_av.config import run_cli
from shqip_av.files import DatasetRoot
from shqip_av.manifest import read_jsonl


_ORDER = ["train", "validation", "test"]


def report(root: str) -> str:
    droot = DatasetRoot(root)
    raw = sum(1 for _ in read_jsonl(droot.path("raw", "manifest.jsonl")))
    refused = sum(1 for _ in read_jsonl(droot.path("raw", "rejected.jsonl")))
    kept = list(read_jsonl(droot.path("clips", "manifest.jsonl")))
    rejected = Counter(r["reason"] for r in read_jsonl(droot.path("clips", "rejected.jsonl")))
    lines = [f"videos in: {raw} collected ({refused} sources refused)",
             f"utterances kept: {len(kept)} from {len({r['video_id'] for r in kept})} videos, "
             f"{sum(r['duration'] for r in kept) / 3600:.4f} h"]
    index_path = droot.path("shards", "index.json")
    if index_path.is_file():
        index = json.loads(index_path.read_text(encoding="utf-8"))
        lines.append("hours per split: " + ", ".join(
            f"{s} {v['hours']:.4f} h ({v['samples']} samples, {v['speakers']} speakers)" for s, v in sorted(index["splits"].items(), key=lambda kv: _ORDER.index(kv[0]))))
    lines.append("top rejection reasons: " + (", ".join(f"{r} {n}" for r, n in rejected.most_common(5)) or "none"))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m filter.report", description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="data")
    print(report(parser.parse_args(argv).root))
    return 0


if __name__ == "__main__":
    run_cli(main)
