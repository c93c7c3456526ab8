"""Dubbed faces as a viewer sees them, on speakers the generator never saw (make bench).

    python bench/dub_quality.py [--generator data/realpool/runs/lipsync/generator-small-lips]
                                [--adapt-steps N] [--split validation] [--bundle data/realpool/exports/realpool-en]

For every clip of the split in speakers.tsv (3 s or longer): a self-dub (train.lipsync.self_dub)
with per-video adaptation on the clip's first half and the figures on its second half, against the
un-adapted generator and a frozen mouth, and the face driven by another speaker's sentence. Prints
the table, the means, and each target of the dubbed-faces issue with whether it is met. With
``--bundle``, also times a real dub (adaptation included) of the split's 10 s clip with that
bundle's generator, the user's .srt standing in for recognition and translation.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HERE = Path(__file__).resolve().parents[1]
TESTDATA = HERE.parent / "shared" / "testdata"
DRIVE = TESTDATA / "audio" / "silero_test_speech_en.wav"  # not a speaker of the pool


def targets(results: dict) -> list[tuple[str, bool, str]]:
    """(target, met, measured) for the issue's targets, over the clips' means."""

    def mean(variant, key):
        values = [r["table"][variant][key] for r in results.values() if key in r["table"].get(variant, {})]
        return float(np.mean(values)) if values else float("nan")

    best = "adapted" if any("adapted" in r["table"] for r in results.values()) else "base"
    rows = [
        ("seam CIEDE2000 ≤ 3", mean(best, "seam_ciede2000") <= 3, f"{mean(best, 'seam_ciede2000'):.2f}"),
        ("gradient across the seam ≤ the source's", mean(best, "seam_gradient_ratio") <= 1.0,
         f"{mean(best, 'seam_gradient_ratio'):.3f}×"),
        ("outside the mask ≥ 45 dB", mean(best, "outside_psnr") >= 45, f"{mean(best, 'outside_psnr'):.1f} dB"),
    ]  # fmt: skip
    for variant in (best, "new_speech"):
        lab, sharp = mean(variant, "lower_face_lab_distance"), mean(variant, "sharpness_ratio")
        rows.append((f"{variant}: lower-face Lab within 3", lab <= 3, f"{lab:.2f}"))
        rows.append((f"{variant}: sharpness ≥ 0.6 of the source's", sharp >= 0.6, f"{sharp:.2f}"))
    for key, name in (("mouth_psnr", "PSNR"), ("mouth_ssim", "SSIM")):
        ours, base, frozen = mean(best, key), mean("base", key), mean("frozen", key)
        ok = ours > frozen and (best == "base" or ours > base)
        rows.append((f"self-dub mouth {name} above both baselines", ok,
                     f"{ours:.3f} vs base {base:.3f}, frozen {frozen:.3f}"))  # fmt: skip
    lips, frozen = mean(best, "mouth_landmark_distance"), mean("frozen", "mouth_landmark_distance")
    rows.append(("mouth landmarks ≥ 25 % nearer than the frozen mouth", lips <= 0.75 * frozen,
                 f"{lips:.4f} vs {frozen:.4f} ({1 - lips / frozen:+.0%})"))  # fmt: skip
    jaw = mean("new_speech", "jaw_loudness_correlation")
    real = mean("source", "jaw_loudness_correlation")
    moved = mean("new_speech", "jaw_moved_by_audio")
    rows.append(("new speech: jaw drop vs loudness ≥ 0.5", jaw >= 0.5,
                 f"{jaw:.3f} (the real faces with their own speech: {real:.3f}; the speech moved the jaw "
                 f"{moved:.3f} of the real jaw's spread away from where silence left it)"))  # fmt: skip
    if any("retrieval" in r["table"] for r in results.values()):  # the retrieval mouth path (DESIGN.md §8.1)
        r, new = "retrieval", "retrieval_new_speech"
        lips, frozen = mean(r, "mouth_landmark_distance"), mean("frozen", "mouth_landmark_distance")
        rows += [
            ("retrieval, new speech: jaw moved by audio ≥ 0.5", mean(new, "jaw_moved_by_audio") >= 0.5,
             f"{mean(new, 'jaw_moved_by_audio'):.3f}"),
            ("retrieval, new speech: jaw drop vs loudness ≥ 0.35", mean(new, "jaw_loudness_correlation") >= 0.35,
             f"{mean(new, 'jaw_loudness_correlation'):.3f}"),
            ("retrieval, new speech: jaw spread ≥ 0.5 of the source's", mean(new, "jaw_spread_vs_source") >= 0.5,
             f"{mean(new, 'jaw_spread_vs_source'):.3f}"),
            ("retrieval self-dub (±1 s excluded): lips ≥ 30 % nearer than the frozen mouth", lips <= 0.7 * frozen,
             f"{lips:.4f} vs {frozen:.4f} ({1 - lips / frozen:+.0%})"),
            ("retrieval: lower-face sharpness ≥ 0.9 of the source's", mean(r, "sharpness_ratio") >= 0.9,
             f"{mean(r, 'sharpness_ratio'):.2f}"),
            ("retrieval: flicker ≤ 1.5× the source's", mean(r, "flicker_vs_source") <= 1.5,
             f"{mean(r, 'flicker_vs_source'):.2f}×"),
            ("retrieval: seam CIEDE2000 ≤ 3", mean(r, "seam_ciede2000") <= 3, f"{mean(r, 'seam_ciede2000'):.2f}"),
        ]  # fmt: skip
        for key in ("mouth_psnr", "mouth_ssim"):
            ours, base = mean(r, key), mean("base", key)
            rows.append((f"retrieval self-dub mouth {key[6:].upper()} above the generator's", ours > base,
                         f"{ours:.3f} vs {base:.3f}"))  # fmt: skip
    return rows


def time_dub(bundle: Path, video: Path, adapt_steps: int, out: Path) -> dict:
    """Seconds for a real dub of ``video`` (adaptation included), the .srt standing in for
    recognition and translation (the bundle's ASR may be a Hub id that is not here offline)."""
    from export.bundle import load_bundle
    from export.dub import DubConfig
    from export.pipeline import DubbingPipeline
    from export.speak import make_speaker
    from shqip_av.media import probe

    loaded = load_bundle(str(bundle))
    tts = loaded.component("tts")
    pipe = DubbingPipeline(
        loaded,
        speaker=make_speaker(tts, *loaded.source("tts", tts)),
        generator=loaded.load_generator().eval(),
        expert=loaded.load_expert().eval(),
        device="cpu",
    )
    seconds = probe(video).duration
    srt = out / "bench.srt"
    srt.write_text(
        f"1\n00:00:00,500 --> 00:00:0{int(seconds / 2)},000\nThis is a test of dubbing a real face.\n\n"
        f"2\n00:00:0{int(seconds / 2) + 1},000 --> 00:00:0{int(seconds) - 1},000\nThe mouth follows the speech.\n"
    )
    began = time.perf_counter()
    result = pipe.run(DubConfig(input=str(video), bundle=str(bundle), translation=str(srt), out=str(out / "dub"),
                                adapt_steps=adapt_steps, to="en"))  # fmt: skip
    return {"video": video.name, "seconds_of_video": round(seconds, 2), "wall_seconds": round(time.perf_counter() - began, 1),
            "adaptation": result.report["adaptation"], "step_seconds": result.report["step_seconds"]}  # fmt: skip


def main() -> None:
    from export.dub import DubConfig
    from shqip_av.components.lipsync_generator import load_generator
    from train.lipsync.evaluate import quality_table
    from train.lipsync.self_dub import self_dub

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", default="data/realpool/runs/lipsync/generator-small-lips")
    parser.add_argument("--adapt-steps", type=int, default=DubConfig().adapt_steps)
    parser.add_argument("--split", default="validation")
    parser.add_argument("--speakers", default=str(TESTDATA / "speakers.tsv"))
    parser.add_argument("--max-seconds", type=float, default=8.0)
    parser.add_argument("--bundle", default="")
    parser.add_argument(
        "--mouth-shape", default="data/realpool/runs/lipsync/mouth-shape",
        help="also measure the retrieval mouth path with this audio→mouth-shape model (make realpool-mouths)",
    )  # fmt: skip
    parser.add_argument("--out", default="data/realpool/bench/dub-quality")
    args = parser.parse_args()
    mouth_shape = None
    if Path(args.mouth_shape).exists():
        from shqip_av.components.mouth_shape import MouthShapeModel

        mouth_shape = MouthShapeModel.from_pretrained(args.mouth_shape)
    if not Path(args.generator).exists() and mouth_shape is None:
        print(
            f"dub quality: skipped (neither {args.generator} nor {args.mouth_shape} exists: run make realpool "
            "realpool-mouths or train-generator-real)"
        )
        return
    rows = list(csv.DictReader(Path(args.speakers).open(), delimiter="\t"))
    clips = [
        Path(args.speakers).parent / r["file"] for r in rows if r["split"] == args.split and float(r["seconds"]) >= 3
    ]
    generator = load_generator(args.generator) if Path(args.generator).exists() else None
    out = Path(args.out)
    results = {}
    for clip in clips:
        began = time.perf_counter()
        try:
            results[clip.stem] = self_dub(clip, generator, adapt_steps=args.adapt_steps, drive=DRIVE, out=out,
                                          max_seconds=args.max_seconds, mouth_shape=mouth_shape)  # fmt: skip
        except Exception as e:  # noqa: BLE001 - a clip the tracker cannot follow is reported, not fatal
            print(f"{clip.name}: skipped ({str(e).splitlines()[0]})")
            continue
        print(f"{clip.name}: {time.perf_counter() - began:.0f} s", flush=True)
    print(quality_table(results))
    print(f"\ntargets ({len(results)} clips of {args.split} speakers, adaptation {args.adapt_steps} steps):")
    for name, met, measured in targets(results):
        print(f"  [{'met' if met else 'NOT met'}] {name}: {measured}")
    report = {"split": args.split, "generator": args.generator, "adapt_steps": args.adapt_steps, "clips": results}
    if args.bundle and generator is not None:
        ten = [c for c in clips if 9.5 <= float(next(r["seconds"] for r in rows if r["file"].endswith(c.name))) <= 12]
        if ten:
            report["dub_timing"] = time_dub(Path(args.bundle), ten[0], args.adapt_steps, out)
            print(f"adaptation + dub of {ten[0].name}: {report['dub_timing']}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "dub_quality.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
