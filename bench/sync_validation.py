"""Sync judges on speakers they have never seen: the realpool's validation speakers.

Every validation clip of speakers.tsv with a confident sync verdict (its ``sync`` and ``av_offset``
columns; unclear and silent clips are counted apart) is first corrected by its own measured offset,
then turned into variants: in sync, re-encoded, 50 fps, stored
sideways with rotation metadata, audio 0.2/0.4/0.8 s late and early, and another validation
speaker's speech under the face. filter runs over all of them once per judge with its limits wide
open (every utterance's confidence and offset are recorded; the offset search is ±25 frames so a
0.8 s shift can be found). Then each judge's own limits decide:

- training-free landmark-energy: the shipped defaults (min_confidence, max_abs_offset);
- a trained judge (--judge): the limit calibrated on train speakers (its thresholds.json) and the
  shipped max_abs_offset; and the same with sync.correct_offset (offsets up to 15 frames shifted
  back instead of rejected).

Printed and written to --out (JSON): the confusion tables (in sync kept/rejected; out of sync
kept/rejected/corrected), the offset error per variant (against the shift applied, and against
the shift plus the offset the same judge finds on the clip as published, since a published clip
can itself be off), the confidence and distance (LSE-C/LSE-D style) in sync vs shifted, and the
judge's scoring speed per CPU core. Figures only; nothing is asserted.

    python bench/sync_validation.py [--judge data/realpool/runs/lipsync/judge] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared"

X264 = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p"]
SEARCH = 25  # frames either way: a 0.8 s shift is 20 frames


def _shift(ms: int) -> list[str]:
    if ms > 0:  # audio late: silence in front, same length
        return ["-af", f"adelay={ms}:all=1", "-c:v", "copy", "-c:a", "aac", "-shortest"]
    s = -ms / 1000
    return ["-af", f"atrim=start={s},asetpts=PTS-STARTPTS,apad=pad_dur={s}", "-c:v", "copy", "-c:a", "aac"]


# variant → (ffmpeg arguments after -i BASE, the true offset in frames; None: not this face's speech)
VARIANTS: dict[str, tuple[list[str] | None, int | None]] = {
    "insync": (["-c", "copy"], 0),
    "reencode": (
        ["-c:v", "libx264", "-preset", "veryfast", "-crf", "32", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "48k"],
        0,
    ),
    "fps50": (["-vf", "fps=50", *X264, "-c:a", "copy"], 0),
    "rotated": (None, 0),
    **{f"late{ms}": (_shift(ms), ms // 40) for ms in (200, 400, 800)},
    **{f"early{ms}": (_shift(-ms), -ms // 40) for ms in (200, 400, 800)},
    "foreign": (None, None),
}


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


def validation_clips(table: Path) -> tuple[list[tuple[Path, str, int]], Counter]:
    """The validation clips whose sync the table knows ((clip, speaker, its av_offset)), and a
    count of those left out of the sync figures by their verdict (unclear, silent)."""
    from collect.table import read_table

    rows = [r for r in read_table(table) if r.get("split") == "validation"]
    known = [r for r in rows if r.get("sync") in ("in-sync", "late", "early") and (r.get("av_offset") or "").strip()]
    left_out = Counter(r.get("sync") or "no verdict" for r in rows if r not in known)
    return [(table.parent / r["file"], r["speaker"], int(r["av_offset"])) for r in known], left_out


def _correction(offset: int, fps: float = 25.0) -> list[str]:
    """ffmpeg audio arguments that take a clip's own offset out (positive: its audio is late)."""
    if offset == 0:
        return []
    s = abs(offset) / fps
    if offset > 0:
        return ["-af", f"atrim=start={s},asetpts=PTS-STARTPTS,apad=pad_dur={s}"]
    return ["-af", f"adelay={int(round(s * 1000))}:all=1"]


def build(root: Path, clips: list[tuple[Path, str, int]]) -> dict[str, tuple[str, str, str]]:
    """The variants under root/incoming and root/sources.yaml; {title: (clip, speaker, variant)}.
    Each base is the clip with its own measured offset taken out (speakers.tsv's av_offset), so
    the in-sync variants are in sync and the shifted ones are shifted by exactly their shift."""
    from collect.table import prepare_sources
    from shqip_av.files import atomic_write_text

    import yaml

    incoming = root / "incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    bases = {}
    for clip, _, offset in clips:  # one corrected H.264/AAC mp4 per clip, so every variant can copy streams
        base = incoming / f"{clip.stem}__base.mp4"
        if not base.exists():
            ffmpeg("-i", str(clip), *X264, "-r", "25", *_correction(offset), "-c:a", "aac", "-ar", "16000", str(base))
        bases[clip] = base
    titles, lines = {}, ["file\tspeaker"]
    pairs = [(c, s) for c, s, _ in clips]
    for i, (clip, speaker) in enumerate(pairs):
        base = bases[clip]
        for variant, (args, _) in VARIANTS.items():
            title = f"{clip.stem}__{variant}"
            out = incoming / f"{title}.mp4"
            if not out.exists():
                if variant == "foreign":  # the next validation clip of another speaker, padded with silence
                    other = next(bases[c] for c, s in pairs[i + 1 :] + pairs[:i] if s != speaker)
                    ffmpeg("-i", str(base), "-i", str(other), "-map", "0:v", "-map", "1:a", "-c:v", "copy",
                           "-af", "apad", "-c:a", "aac", "-shortest", str(out))  # fmt: skip
                elif variant == "rotated":  # stored sideways, the rotation tag turns it upright
                    side = incoming / f"{title}.side.mp4"
                    ffmpeg("-i", str(base), "-vf", "transpose=1", *X264, "-c:a", "copy", str(side))
                    ffmpeg("-i", str(side), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(out))
                    side.unlink()
                else:
                    ffmpeg("-i", str(base), *args, str(out))
            titles[title] = (clip.stem, speaker, variant)
            lines.append(f"{out.name}\t{speaker}")
    table = incoming / "variants.tsv"
    table.write_text("\n".join(lines) + "\n")
    sources = prepare_sources(table, "third-party test footage: never publish it")
    atomic_write_text(root / "sources.yaml", yaml.safe_dump(sources, sort_keys=False))
    return titles


def scored(root: Path, titles: dict, method: str) -> list[dict]:
    """filter over every variant with ``method`` and open limits; one row per scored utterance."""
    from filter.config import FilterConfig
    from filter.pipeline import prepare_clips
    from shqip_av.manifest import read_jsonl

    cfg = FilterConfig(root=str(root), workers=2)
    q = cfg.sync
    q.video_offset = False  # the judge alone, per utterance (whole videos: video_figures)
    q.method, q.max_offset, q.max_abs_offset, q.min_confidence, q.expert_min_confidence = (
        method,
        SEARCH,
        SEARCH,
        0.0,
        0.0,
    )
    cfg.quality.min_eye_distance = 28  # the realpool's setting: many clips are small face crops
    prepare_clips(cfg)
    rows = []
    for record in read_jsonl(root / "raw" / "manifest.jsonl"):
        clip, speaker, variant = titles[record["source"]["title"]]
        path = root / "work" / record["video_id"] / "decisions.json"
        if not path.is_file():
            continue
        for d in json.loads(path.read_text())["tracks"]:
            if "sync_confidence" in d:
                rows.append(
                    {
                        "clip": clip,
                        "speaker": speaker,
                        "variant": variant,
                        "key": d.get("key"),
                        "confidence": d["sync_confidence"],
                        "offset": d["sync_offset_frames"],
                        "distance": d.get("sync_distance"),
                        "truth": VARIANTS[variant][1],
                        "judged": bool(d.get("sync_curve")),  # False: too short to judge (counted)
                    }
                )
    return rows


def decide(row: dict, min_conf: float, max_abs: int, correct: int) -> str:
    if not row.get("judged", True):
        return "not judged (too short)"
    if row["confidence"] < min_conf:
        return "rejected"
    if row["offset"] and correct and abs(row["offset"]) <= correct:
        return "corrected"
    return "kept" if abs(row["offset"]) <= max_abs else "rejected"


def confusion(rows: list[dict], min_conf: float, max_abs: int, correct: int = 0) -> dict:
    """{truth group: {outcome: count}}; a corrected shifted utterance counts as right only when
    the correction lands within ±1 frame of the true offset."""
    table: dict[str, Counter] = defaultdict(Counter)
    for r in rows:
        outcome = decide(r, min_conf, max_abs, correct)
        group = "in sync" if r["truth"] == 0 else "foreign audio" if r["truth"] is None else "shifted"
        if outcome == "corrected" and r["truth"] is not None:
            outcome = "corrected" if abs(r["offset"] - r["truth"]) <= 1 else "corrected wrongly"
        table[group][outcome] += 1
    return {g: dict(c) for g, c in table.items()}


def clip_offsets(rows: list[dict]) -> dict[str, float]:
    """The offset the judge finds on each clip as published (median over its in-sync copy's
    utterances): a published clip can itself be off."""
    found = defaultdict(list)
    for r in rows:
        if r["variant"] == "insync":
            found[r["clip"]].append(r["offset"])
    return {clip: float(np.median(v)) for clip, v in found.items()}


def offset_errors(rows: list[dict]) -> dict:
    """Per variant: share within ±1 frame of the shift applied, and of the shift plus the clip's
    own offset (``clip_offsets``)."""
    native = clip_offsets(rows)
    out = {}
    for variant, (_, truth) in VARIANTS.items():
        mine = [r for r in rows if r["variant"] == variant]
        if truth is None or not mine:
            continue
        relative = [abs(r["offset"] - truth - native[r["clip"]]) <= 1 for r in mine if r["clip"] in native]
        out[variant] = {
            "utterances": len(mine),
            "within_1": round(float(np.mean([abs(r["offset"] - truth) <= 1 for r in mine])), 3),
            "within_1_of_clip_offset": round(float(np.mean(relative)), 3) if relative else None,
            "median_error": float(np.median([abs(r["offset"] - truth) for r in mine])),
        }
    return out


def separation(rows: list[dict]) -> dict:
    groups = {"in sync": lambda r: r["truth"] == 0, "shifted": lambda r: r["truth"] not in (0, None),
              "foreign audio": lambda r: r["truth"] is None}  # fmt: skip
    out = {}
    for name, test in groups.items():
        mine = [r for r in rows if test(r)]
        distances = [r["distance"] for r in mine if r["distance"] is not None]
        out[name] = {
            "confidence_median": round(float(np.median([r["confidence"] for r in mine])), 4) if mine else None,
            "distance_median": round(float(np.median(distances)), 4) if distances else None,
        }
    return out


def video_figures(root: Path, titles: dict) -> dict:
    """Per whole video (filter's model-free whole-video check, shqip_av.av_offset, on the face
    tracks filter found): the share of variants whose offset is found within ±1 frame of their
    true shift, of those with a clear verdict, and how many were flagged unclear or drifting."""
    from shqip_av.av_offset import estimate_video_offset
    from shqip_av.components.audio_frontend import speech_loudness
    from shqip_av.components.face_tracker import FaceScan
    from shqip_av.manifest import read_jsonl
    from shqip_av.media import read_audio

    verdicts, right, rows = Counter(), [], []
    for record in read_jsonl(root / "raw" / "manifest.jsonl"):
        clip, _, variant = titles[record["source"]["title"]]
        truth = VARIANTS[variant][1]
        scan_path = root / "work" / record["video_id"] / "faces.npz"
        if truth is None or not scan_path.is_file():
            continue
        scan = FaceScan.load(scan_path)
        if not scan.tracks:
            continue
        track = max(scan.tracks, key=lambda t: len(t.landmarks))
        marks = np.asarray(track.landmarks[0 : len(track.landmarks)], np.float64)
        end = track.start + len(marks)
        loud = speech_loudness(read_audio(root / record["files"]["audio"]), end, scan.fps)[track.start :]
        found = estimate_video_offset(marks, loud, max_lag=SEARCH)
        verdicts[found.verdict] += 1
        if found.clear:
            right.append(abs(found.offset - truth) <= 1)
        rows.append(
            {"clip": clip, "variant": variant, "truth": truth, "verdict": found.verdict, "offset": found.offset}
        )
    return {
        "videos": sum(verdicts.values()),
        "verdicts": dict(verdicts),
        "within_1_of_truth": round(float(np.mean(right)), 3) if right else None,
        "within_1_of_truth_all_videos": round(sum(right) / max(1, sum(verdicts.values())), 3),
        "rows": rows,
    }


def judge_speed(judge: str, root: Path) -> dict:
    """Seconds of media the judge scores per second of one CPU core, on the in-sync variants'
    face tracks (the landmarks filter found) and their audio."""
    import torch

    from filter.sync import JudgeSync, SyncInput
    from shqip_av.components.face_tracker import FaceScan
    from shqip_av.manifest import read_jsonl
    from shqip_av.media import read_audio

    torch.set_num_threads(1)
    scorer = JudgeSync(judge, 15)
    media, spent = 0.0, 0.0
    for record in read_jsonl(root / "raw" / "manifest.jsonl"):
        if not record["source"]["title"].endswith("__insync"):
            continue
        scan_path = root / "work" / record["video_id"] / "faces.npz"
        if not scan_path.is_file():
            continue
        scan = FaceScan.load(scan_path)
        audio = read_audio(root / record["files"]["audio"]) if record.get("files", {}).get("audio") else None
        for track in scan.tracks:
            n = track.end - track.start
            if audio is None or n < 25:
                continue
            segment = audio[int(track.start * 640) : int(track.end * 640)]
            item = SyncInput(track.landmarks[0:n], segment, 16000, 25.0, 0, 0)
            t0 = time.perf_counter()
            scorer.score(item)
            spent += time.perf_counter() - t0
            media += n / 25.0
    return {"media_seconds": round(media, 1), "cpu_seconds": round(spent, 3),
            "real_time_factor_per_core": round(media / spent, 1) if spent else None}  # fmt: skip


def print_report(name: str, report: dict) -> None:
    print(f"\n== {name}")
    for policy, table in report["confusion"].items():
        print(f"  {policy}:")
        for group in ("in sync", "shifted", "foreign audio"):
            counts = table.get(group, {})
            total = sum(counts.values()) or 1
            print(f"    {group:14s} " + ", ".join(f"{k} {v} ({v / total:.0%})" for k, v in sorted(counts.items())))
    print("  offset within ±1 frame (of the shift | of the shift plus the clip's own offset), per variant:")
    for variant, e in report["offsets"].items():
        relative = "-" if e["within_1_of_clip_offset"] is None else f"{e['within_1_of_clip_offset']:.0%}"
        print(f"    {variant:9s} n={e['utterances']:3d}  {e['within_1']:.0%} | {relative}"
              f"  median error {e['median_error']:g}")  # fmt: skip
    print("  median confidence / distance: " + "; ".join(
        f"{g} {s['confidence_median']} / {s['distance_median']}" for g, s in report["separation"].items()))  # fmt: skip
    native = report["clip_offsets"]
    print("  offset found on each published clip (in-sync copy): " + ", ".join(f"{c} {o}" for c, o in native.items()))
    if report.get("speed"):
        print(f"  speed: {report['speed']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", default=str(SHARED / "testdata" / "speakers.tsv"))
    parser.add_argument("--judge", default=str(REPO / "data" / "realpool" / "runs" / "lipsync" / "judge"),
                        help="a trained landmark sync judge (make realpool-judge); skipped when missing")  # fmt: skip
    parser.add_argument("--keep", default="", help="keep the variants' dataset root here (and reuse it)")
    parser.add_argument("--out", default=str(REPO / "data" / "realpool" / "bench" / "sync-validation.json"))
    args = parser.parse_args()
    if (SHARED / "models").is_dir():
        os.environ.setdefault("SHQIP_AV_MODELS", str(SHARED / "models"))
    from collect.pipeline import CollectConfig, prepare_raw
    from filter.config import FilterConfig
    from shqip_av.components import calibration
    from shqip_av.log import setup_logging

    setup_logging(False)
    clips, left_out = validation_clips(Path(args.table))
    print(
        f"{len(clips)} validation clips with a confident sync verdict; left out of the sync figures: "
        + (", ".join(f"{n} {v}" for v, n in sorted(left_out.items())) or "none")
    )
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="shqip-av-syncval-"))
    root = base / "root"
    titles = build(root, clips)
    prepare_raw(CollectConfig(root=str(root)))
    shipped = FilterConfig().sync
    methods = {"landmark-energy (training-free)": ("landmark-energy", shipped.min_confidence)}
    if Path(args.judge).is_dir():
        methods[f"landmark judge ({args.judge})"] = (args.judge, calibration(args.judge).get("min_confidence", 0.0))
    else:
        print(f"no judge at {args.judge} (make realpool-judge): the training-free score only", file=sys.stderr)
    results = {
        "clips": len(clips),
        "left_out": dict(left_out),
        "speakers": sorted({s for _, s, _ in clips}),
        "methods": {},
    }
    for name, (method, limit) in methods.items():
        t0 = time.time()
        rows = scored(root, titles, method)
        report = {
            "limit": limit,
            "rows": rows,
            "confusion": {
                f"reject (min_confidence {limit}, max_abs_offset {shipped.max_abs_offset})": confusion(
                    rows, limit, shipped.max_abs_offset
                ),
                "correct (sync.correct_offset, offsets up to 15 frames shifted back)": confusion(
                    rows, limit, shipped.max_abs_offset, correct=15
                ),
            },
            "offsets": offset_errors(rows),
            "separation": separation(rows),
            "clip_offsets": clip_offsets(rows),
            "filter_seconds": round(time.time() - t0, 1),
        }
        if method != "landmark-energy":
            report["speed"] = judge_speed(method, root)
        results["methods"][name] = report
        print_report(name, report)
    results["whole_videos"] = video_figures(root, titles)
    w = results["whole_videos"]
    print(
        f"\nwhole videos (model-free check): {w['videos']} variants, verdicts {w['verdicts']}; offset within ±1 "
        f"frame of the truth on {w['within_1_of_truth']} of the clear ones ({w['within_1_of_truth_all_videos']} of all)"
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {out}")
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
