"""python -m filter.report --root data [--html]: a short summary of a dataset root.

It says how many videos came in, how many utterances were kept, the hours per split and the
top rejection reasons. With --html it also writes the review page, cards/review/index.html
(filter/review.py): the funnel, every rejection reason with examples to look at and play, the
kept samples with filmstrips and quality values; it opens from disk, without a server."""

from __future__ import annotations

import argparse
import json
from collections import Counter

from shqip_av import ShqipError
from shqip_av.config import run_cli
from shqip_av.files import DatasetRoot
from shqip_av.manifest import read_jsonl


_ORDER = ["train", "validation", "test"]


def report(root: str) -> str:
    droot = DatasetRoot(root)
    if not droot.root.is_dir():
        raise ShqipError(f"dataset root {droot.root} does not exist")
    if not droot.path("raw", "manifest.jsonl").is_file():
        raise ShqipError(f"{droot.root} has no raw/manifest.jsonl: run `python -m collect --root {root}` first")
    raw = sum(1 for _ in read_jsonl(droot.path("raw", "manifest.jsonl")))
    refused = sum(1 for _ in read_jsonl(droot.path("raw", "rejected.jsonl")))
    kept = list(read_jsonl(droot.path("clips", "manifest.jsonl")))
    rejected = Counter(r["reason"] for r in read_jsonl(droot.path("clips", "rejected.jsonl")))
    lines = [
        f"videos in: {raw} collected ({refused} sources refused)",
        f"utterances kept: {len(kept)} from {len({r['video_id'] for r in kept})} videos, "
        f"{sum(r['duration'] for r in kept) / 3600:.4f} h",
    ]
    index_path = droot.path("shards", "index.json")
    if index_path.is_file():
        index = json.loads(index_path.read_text(encoding="utf-8"))
        lines.append(
            "hours per split: "
            + ", ".join(
                f"{s} {v['hours']:.4f} h ({v['samples']} samples, {v['speakers']} speakers)"
                for s, v in sorted(index["splits"].items(), key=lambda kv: _ORDER.index(kv[0]))
            )
        )
    lines.append("top rejection reasons: " + (", ".join(f"{r} {n}" for r, n in rejected.most_common(5)) or "none"))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m filter.report",
        description=__doc__.split(": ", 1)[1].split("\n\n")[0],
        epilog="Run it after python -m filter and python -m filter.shard.",
    )
    parser.add_argument("--root", default="data", help="dataset root (default: data)")
    parser.add_argument("--html", action="store_true", help="also write the review page <root>/cards/review/index.html")
    args = parser.parse_args(argv)
    print(report(args.root))
    if args.html:
        from filter.review import write_review

        page, pictures = write_review(args.root)
        print(
            f"review page: {page} (pictures: {pictures['made']} made, {pictures['kept']} unchanged, "
            f"{pictures['removed']} removed"
            + (f", {pictures['failed']} failed" if pictures["failed"] else "")
            + (
                f", {pictures['outside the root']} record(s) naming a path outside the root shown as bad"
                if pictures["outside the root"]
                else ""
            )
            + ")"
        )
    return 0


if __name__ == "__main__":
    run_cli(main)
