"""Dubbing throughput per step, and peak memory against input length.

Dubs real clips of ../shared/testdata/videos end to end (speech segments, recognition, translation,
speech, fitting, faces, lip-sync, paste-back, encode, sync score) with tiny local models built
here: a tiny random Whisper and Marian (the compute of a trained tiny model; real checkpoints are
larger), espeak-ng, and the tiny generator and expert configs with random weights. Prints, per
step, seconds and source seconds per wall second, so the slowest step shows. Then dubs one clip
looped 1×, 4× and 10× in separate processes and prints each one's peak memory. Figures only.

    python bench/dub_throughput.py [--clips A.mp4,B.mp4] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(REPO))

CLIPS = "sadtalker_WDA_AlexandriaOcasioCortez_000.mp4,latentsync_demo1.mp4"
STEPS = [
    "audio",
    "speech segments",
    "recognize",
    "translate",
    "speak",
    "fit",
    "mix",
    "faces",
    "crop",
    "lip-sync",
    "paste-back",
    "decode and encode",
    "sync score",
]


def build_bundle(folder: Path) -> Path:
    import torch
    import yaml

    from export.bundle import BundleConfig, build_bundle
    from export.tiny import TinyMarianConfig, build_tiny_marian
    from shqip_av.components.sync_expert import build_expert
    from train.asr.tiny import TinyWhisperConfig, build_tiny_whisper
    from shqip_av.components.lipsync_generator import build_generator

    text = SHARED / "testdata" / "text"
    whisper = build_tiny_whisper(
        TinyWhisperConfig(out=str(folder / "whisper"), text=[str(text / "copa_4_kushtrim.txt")])
    )
    opus = text / "opus100_en_sq"
    marian = build_tiny_marian(
        TinyMarianConfig(
            out=str(folder / "marian"),
            source_text=str(opus / "opus.en-sq-dev.sq"),
            target_text=str(opus / "opus.en-sq-dev.en"),
        )
    )
    torch.manual_seed(0)
    generator_cfg = yaml.safe_load((REPO / "train" / "configs" / "generator-tiny.yaml").read_text())["model"]
    build_generator(generator_cfg).save_pretrained(folder / "generator")
    expert_cfg = yaml.safe_load((REPO / "train" / "configs" / "expert-tiny.yaml").read_text())["model"]
    build_expert(expert_cfg).save_pretrained(folder / "expert")
    return build_bundle(
        BundleConfig(
            out=str(folder / "bundle"),
            asr=str(whisper),
            mt=str(marian),
            tts="espeak:en",
            generator=str(folder / "generator"),
            expert=str(folder / "expert"),
        )
    )


def loop(video: Path, times: int, out: Path) -> Path:
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-stream_loop", str(times - 1), "-i", str(video), "-c", "copy", str(out)],
        check=True,
    )
    return out


def dub_in_process(video: Path, bundle: Path, out: Path) -> dict:
    """A dub in a fresh Python process; its report and peak resident memory (MiB)."""
    code = (
        "import json, resource, sys\n"
        "from export.dub import DubConfig, dub\n"
        "from shqip_av.log import setup_logging\n"
        "setup_logging(False)\n"
        f"r = dub(DubConfig(input={str(video)!r}, bundle={str(bundle)!r}, out={str(out)!r}, to='en', "
        "source_language='sq'))\n"
        "r['peak_mib'] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "print('REPORT' + json.dumps(r))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("REPORT")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"dub of {video.name} failed:\n{proc.stderr[-2000:]}")
    return json.loads(lines[-1][len("REPORT") :])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", default=CLIPS, help="comma-separated clip names in ../shared/testdata/videos")
    parser.add_argument("--keep", default="", help="keep the work here instead of a temporary folder")
    args = parser.parse_args()
    if (SHARED / "models").is_dir():
        os.environ.setdefault("SHQIP_AV_MODELS", str(SHARED / "models"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="shqip-av-dub-bench-"))
    bundle = build_bundle(base / "models")

    print("dubbing throughput per step (source seconds per wall second; tiny models, CPU):")
    header = f"{'step':<18}" + "".join(f"{name[:24]:>26}" for name in args.clips.split(","))
    print(header)
    reports = []
    for name in args.clips.split(","):
        video = SHARED / "testdata" / "videos" / name
        reports.append(dub_in_process(video, bundle, base / "dubs" / video.stem))
    for step in STEPS + ["total"]:
        cells = []
        for r in reports:
            seconds = sum(r["step_seconds"].values()) if step == "total" else r["step_seconds"].get(step)
            cells.append(f"{seconds:7.2f} s {r['source_seconds'] / seconds:8.1f}× " if seconds else f"{'-':>24} ")
        print(f"{step:<18}" + "".join(f"{c:>26}" for c in cells))
    for name, r in zip(args.clips.split(","), reports):
        print(
            f"  {name}: {r['source_seconds']:.1f} s, {r['size'][0]}×{r['size'][1]}, {len(r['segments'])} segments, "
            f"{r['lip_synced_frames']}/{r['frames']} frames lip-synced"
        )

    print("\npeak memory against input length (one process per dub):")
    video = SHARED / "testdata" / "videos" / args.clips.split(",")[0]
    peaks = []
    for times in (1, 4, 10):
        looped = loop(video, times, base / f"looped-{times}x.mp4")
        r = dub_in_process(looped, bundle, base / "dubs" / f"looped-{times}x")
        peaks.append(r["peak_mib"])
        print(
            f"  {times:>2}× ({r['source_seconds']:6.1f} s, {r['frames']:5d} frames): peak {r['peak_mib']:7.0f} MiB, "
            f"{sum(r['step_seconds'].values()):6.1f} s"
        )
    print(f"  10× vs 1×: peak memory ratio {peaks[-1] / peaks[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
