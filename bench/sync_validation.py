"""Leave-one-clip-out validation of filter's training-free sync score (landmark-energy).

For every real clip in ../shared/testdata/videos, variants are made: in sync, audio 0.2/0.4/0.8 s
late and early, another clip's speech under the face, a heavy re-encode, 50 fps. filter runs once
over all of them with limits wide open, so every utterance's confidence and offset are recorded.
Then, for each clip in turn, the two limits (min_confidence, max_abs_offset) are chosen on the
*other* clips' variants (best balanced accuracy: in sync, re-encoded and 50 fps must be kept;
shifted by ≥ 0.2 s and foreign audio rejected) and applied to the held-out clip's variants. The
confusion table of those held-out decisions, and the one of the shipped defaults, are printed.
Figures only; nothing is asserted.

    python bench/sync_validation.py [--videos DIR] [--keep DIR]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# variant → (ffmpeg arguments after -i SRC, what filter should do: keep or reject)
X264 = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p"]
VARIANTS = {
    "insync": (["-c", "copy"], "keep"),
    "reencode": (
        ["-c:v", "libx264", "-preset", "veryfast", "-crf", "32", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "48k"],
        "keep",
    ),
    "fps50": (["-vf", "fps=50", *X264, "-c:a", "copy"], "keep"),
    **{f"late{ms}": (["-af", f"adelay={ms}:all=1", "-c:v", "copy", "-c:a", "aac"], "reject") for ms in (200, 400, 800)},
    **{
        f"early{ms}": (
            [
                "-af",
                f"atrim=start={ms / 1000},asetpts=PTS-STARTPTS,apad=pad_dur={ms / 1000}",
                "-c:v",
                "copy",
                "-c:a",
                "aac",
            ],
            "reject",
        )
        for ms in (200, 400, 800)
    },
}


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


def build(root: Path, videos: list[Path]) -> dict[str, tuple[str, str]]:
    """Write the variants and sources.yaml; returns {title: (clip, variant)}."""
    (root / "incoming").mkdir(parents=True, exist_ok=True)
    titles, lines = {}, ["sources:"]
    for i, clip in enumerate(videos):
        other = videos[(i + 1) % len(videos)]
        for variant, (args, _) in [*VARIANTS.items(), ("foreign", (None, "reject"))]:
            title = f"{clip.stem}__{variant}"
            out = root / "incoming" / f"{title}.mp4"
            if not out.exists():
                if variant == "foreign":
                    ffmpeg(
                        "-i",
                        str(clip),
                        "-i",
                        str(other),
                        "-map",
                        "0:v",
                        "-map",
                        "1:a",
                        "-c:v",
                        "copy",
                        "-c:a",
                        "aac",
                        "-shortest",
                        str(out),
                    )
                else:
                    ffmpeg("-i", str(clip), *args, str(out))
            titles[title] = (clip.stem, variant)
            lines += [
                f"  - path: incoming/{title}.mp4",
                f"    title: {title}",
                "    captions: false",
                "    consent: {kind: release, subject: " + clip.stem + ", reference: test input, granted: 2026-01-01}",
            ]
    (root / "sources.yaml").write_text("\n".join(lines) + "\n")
    return titles


def expected(variant: str) -> str:
    return "reject" if variant == "foreign" else VARIANTS[variant][1]


def decide(conf: float, offset: int, min_conf: float, max_off: int) -> str:
    return "keep" if conf >= min_conf and abs(offset) <= max_off else "reject"


def balanced(rows, min_conf, max_off) -> float:
    keep = [decide(c, o, min_conf, max_off) == "keep" for _, v, c, o in rows if expected(v) == "keep"]
    rej = [decide(c, o, min_conf, max_off) == "reject" for _, v, c, o in rows if expected(v) == "reject"]
    parts = [sum(x) / len(x) for x in (keep, rej) if x]
    return sum(parts) / len(parts) if parts else 0.0


def table(title: str, decisions: list[tuple[str, str]]) -> str:
    counts = Counter(decisions)
    lines = [title, f"{'':>16} {'kept':>6} {'rejected':>9}"]
    for truth in ("keep", "reject"):
        lines.append(
            f"{('in sync' if truth == 'keep' else 'out of sync'):>16} {counts[(truth, 'keep')]:>6} "
            f"{counts[(truth, 'reject')]:>9}"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", default=str(REPO.parent / "shared" / "testdata" / "videos"))
    parser.add_argument("--keep", default="", help="keep the dataset root here (and reuse it)")
    args = parser.parse_args()
    videos = sorted(Path(args.videos).glob("*.mp4"))
    if len(videos) < 3:
        print(f"need at least 3 clips in {args.videos}", file=sys.stderr)
        return 2
    if (REPO.parent / "shared" / "models").is_dir():
        os.environ.setdefault("SHQIP_AV_MODELS", str(REPO.parent / "shared" / "models"))
    from collect.pipeline import CollectConfig, prepare_raw
    from filter.config import FilterConfig
    from filter.pipeline import prepare_clips
    from shqip_av.log import setup_logging
    from shqip_av.manifest import read_jsonl

    setup_logging(False)
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="shqip-av-syncval-"))
    root = base / "root"
    titles = build(root, videos)
    prepare_raw(CollectConfig(root=str(root)))
    cfg = FilterConfig(root=str(root), workers=2)
    cfg.sync.min_confidence, cfg.sync.max_abs_offset = 0.0, 15  # record everything; decide below
    prepare_clips(cfg)
    rows = []  # (clip, variant, confidence, offset) per scored utterance
    for record in read_jsonl(root / "raw" / "manifest.jsonl"):
        clip, variant = titles[record["source"]["title"]]
        path = root / "work" / record["video_id"] / "decisions.json"
        if not path.is_file():
            continue
        for d in json.loads(path.read_text())["tracks"]:
            if "sync_confidence" in d:
                rows.append((clip, variant, d["sync_confidence"], d["sync_offset_frames"]))
    clips = sorted({r[0] for r in rows})
    print(f"{len(rows)} scored utterances from {len(clips)} clips × {len(VARIANTS) + 1} variants")
    grid = list(itertools.product([round(0.05 * i, 2) for i in range(0, 17)], [1, 2, 3, 4, 5, 7]))
    held_out = []
    for clip in clips:
        train = [r for r in rows if r[0] != clip]
        min_conf, max_off = max(grid, key=lambda g: (balanced(train, *g), -g[0]))
        for _, variant, c, o in (r for r in rows if r[0] == clip):
            held_out.append((expected(variant), decide(c, o, min_conf, max_off)))
        mine = [r for r in rows if r[0] == clip]
        print(
            f"  {clip:45s} tuned without it: min_confidence {min_conf:.2f}, max_abs_offset {max_off}; "
            + ", ".join(f"{v}:{decide(c, o, min_conf, max_off)[0]}({o:+d},{c:.2f})" for _, v, c, o in mine)
        )
    shipped = FilterConfig().sync
    limits = (shipped.min_confidence, shipped.max_abs_offset)
    defaults = [(expected(v), decide(c, o, *limits)) for _, v, c, o in rows]
    print(table("\nleave-one-clip-out (limits tuned on the other clips):", held_out))
    print(table(f"\nshipped defaults (min_confidence {limits[0]}, max_abs_offset {limits[1]}):", defaults))
    by_variant = Counter((v, decide(c, o, *limits)) for _, v, c, o in rows)
    print(
        "\nwith the defaults, per variant: "
        + ", ".join(
            f"{v} {by_variant[(v, 'keep')]}/{by_variant[(v, 'keep')] + by_variant[(v, 'reject')]} kept"
            for v in [*VARIANTS, "foreign"]
        )
    )
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
