"""python -m train.lipsync.evaluate --expert runs/lipsync/<name> (--root data --split test | --video IN.mp4)
                                  [--generator runs/lipsync/<generator>]
   python -m train.lipsync.evaluate --video IN.mp4 --generator G --self-dub [--adapt-steps N] [--drive other.wav]

Scores audio-visual sync with a trained expert, as syncnet_python's LSE does: per sample (or per
video), LSE-D (the minimum over offsets of the mean embedding distance), LSE-C (median − minimum)
and the offset (positive: the audio is late). For shard splits it also reports the
aligned-vs-shifted accuracy: over every window and every shift of 3 to 15 frames, the share of
pairs in which the window's own audio is nearer than the shifted audio (no threshold involved). A video file's face track is found the way
filter finds it (MediaPipe, canonical crops); the longest track is scored. The same functions
will score the generator's output and dubbed videos.

With ``--generator``, each sample of the split is regenerated from its own audio (mouth masked,
references from the same sample away from each window) and scored against the real crops: L1,
PSNR and SSIM inside the mask, the largest difference outside it, LSE-D/LSE-C of the generated and
of the real crops, and the distance of the lips as MediaPipe measures them on generated vs. real
crops (in eye distances).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shqip_av import ShqipError
from shqip_av.config import option, parse_config, run_cli
from shqip_av.files import atomic_write_text
from shqip_av.log import get_logger, progress, setup_logging

log = get_logger(__name__)


@dataclass
class EvaluateConfig:
    expert: str = option(
        "", "the sync expert or landmark sync judge: runs/lipsync/<name> (or its expert/ or judge/ folder) or a Hub id"
    )
    root: str = option("data", "dataset root (for --split)")
    split: str = option("", "score every sample of this shard split")
    video: str = option("", "score this video file instead")
    max_offset: int = option(15, "offsets searched either way (frames)", min=1, max=50)
    max_samples: int = option(0, "score at most this many samples (0: all)", min=0)
    out: str = option("", "write metrics.json here")
    generator: str = option("", "score this lip-sync generator (runs/lipsync/<name>) on --split")
    landmarks: bool = option(True, "with --generator: measure the generated lips with MediaPipe")
    self_dub: bool = option(
        False,
        "with --generator and --video: lip-sync the clip from its own audio and compare with its real "
        "frames as a viewer would (seam, outside the mask, colour, sharpness, mouth region), against "
        "the un-adapted generator and a frozen mouth (train.lipsync.self_dub)",
    )
    mouth_shape: str = option(
        "",
        "with --self-dub: also (or instead of --generator) the retrieval mouth path with this audio→mouth-shape "
        "model (runs/lipsync/<name>); its library is the clip's own face without ±1 s around each frame",
    )
    adapt_steps: int = option(0, "with --self-dub: steps of per-video adaptation (on the clip's first half)", min=0)
    drive: str = option(
        "", "with --self-dub: another speaker's recording to drive the face with (jaw drop vs. loudness)"
    )


def shifted_accuracy(
    model, halves: np.ndarray, mel: np.ndarray, min_shift: int = 3, max_shift: int = 15
) -> tuple[int, int]:
    """(pairs where a window's own audio is nearer than the same audio shifted by s, pairs tried),
    over every window and every shift s with min_shift ≤ |s| ≤ max_shift."""
    import torch

    from shqip_av.components import audio_frontend as frontend

    t = model.sync_config.frames
    n = len(halves) - t + 1
    if n < 1:
        return 0, 0
    shifts = [s for s in range(-max_shift, max_shift + 1) if abs(s) >= min_shift]
    with torch.no_grad():
        video = model.embed_video(
            torch.stack([torch.as_tensor(halves[i : i + t], dtype=torch.float32) for i in range(n)])
        )
        wins = {j: frontend.mel_window(mel, j, t) for j in range(-max_shift, n + max_shift)}
        audio = model.embed_audio(torch.stack([torch.as_tensor(w, dtype=torch.float32) for w in wins.values()]))
    index = {j: k for k, j in enumerate(wins)}
    right = 0
    for i in range(n):
        own = float((video[i] - audio[index[i]]).norm())
        right += sum(own < float((video[i] - audio[index[i + s]]).norm()) for s in shifts)
    return right, n * len(shifts)


def _summary(rows: list[dict]) -> dict:
    scored = [r for r in rows if r.get("lse_d") is not None]
    if not scored:
        return {"samples": 0}
    offsets = [r["offset"] for r in scored]
    return {
        "samples": len(scored),
        "lse_d": round(float(np.mean([r["lse_d"] for r in scored])), 4),
        "lse_c": round(float(np.mean([r["lse_c"] for r in scored])), 4),
        "offset_median": float(np.median(offsets)),
        "offset_zero_share": round(float(np.mean([abs(o) <= 1 for o in offsets])), 4),
        **(
            {
                "aligned_vs_shifted_accuracy": round(
                    sum(r["right"] for r in scored) / max(1, sum(r["windows"] for r in scored)), 4
                )
            }
            if "right" in scored[0]
            else {}
        ),
    }


def load_judge(source: str):
    """The landmark sync judge ``source`` names, or None when it names something else (a sync
    expert, a Hub id): LSE is reported with either."""
    from shqip_av.components import LANDMARK_JUDGE, folder_kind, is_hub_id
    from shqip_av.components.sync_judge import LandmarkSyncJudge

    if not source or is_hub_id(source) or folder_kind(source) != LANDMARK_JUDGE:
        return None
    return LandmarkSyncJudge.from_pretrained(source, option="--expert").eval()


def judge_split(cfg: EvaluateConfig, judge) -> dict:
    """LSE with the landmark judge: per sample of the split, its distance (1 − best mean cosine,
    as LSE-D), confidence (best minus median, as LSE-C) and offset, from the shard's landmarks."""
    import glob

    from shqip_av.components import audio_frontend as frontend
    from shqip_av.components.sync_judge import judge_curve
    from shqip_av.files import DatasetRoot
    from shqip_av.schema import read_tar_samples
    from train.lipsync.judge import read_utterance

    judge.check_input(frontend.VIDEO_FPS, "--expert")
    rows, skipped = [], {}
    tars = sorted(glob.glob(str(DatasetRoot(cfg.root).path("shards", cfg.split) / "*.tar")))
    for tar in tars:
        for key, members in progress(list(read_tar_samples(tar)), desc=f"LSE {cfg.split}", unit="sample"):
            u = read_utterance(key, members)
            if isinstance(u, str):
                skipped[u] = skipped.get(u, 0) + 1
                continue
            count = int(np.ceil(u.mel.shape[1] / frontend.mel_per_video_frame()))
            j = judge_curve(judge, u.features, u.mel, 0, count, cfg.max_offset)
            rows.append(
                {
                    "key": key,
                    "lse_d": j.distance if j else None,
                    "lse_c": j.confidence if j else None,
                    "offset": j.offset if j else None,
                }
            )
            if cfg.max_samples and len(rows) >= cfg.max_samples:
                break
    if not rows:
        raise ShqipError(f"no usable samples in {cfg.root}/shards/{cfg.split} (skipped: {skipped or 'none'})")
    return {"split": cfg.split, "judge": cfg.expert, **_summary(rows), "skipped": skipped, "per_sample": rows}


def evaluate_split(cfg: EvaluateConfig) -> dict:
    from shqip_av.components.sync_expert import expert_lse, load_expert
    from train.lipsync.expert_data import load_split

    judge = load_judge(cfg.expert)
    if judge is not None:
        return judge_split(cfg, judge)
    model = load_expert(cfg.expert, "--expert").eval()
    c = model.sync_config
    data = load_split(cfg.root, cfg.split, c.frames, c.crop_size, cfg.max_samples)
    if not data.samples:
        raise ShqipError(
            f"no usable samples in {cfg.root}/shards/{cfg.split} (skipped: {dict(data.skipped) or 'none'})"
        )
    rows = []
    for s in progress(data.samples, desc=f"LSE {cfg.split}", unit="sample"):
        halves = s.video.astype(np.float32)
        lse = expert_lse(model, halves, s.mel, 0, 0, cfg.max_offset)
        right, windows = shifted_accuracy(model, halves, s.mel)
        rows.append(
            {
                "key": s.key,
                "lse_d": lse.distance if lse else None,
                "lse_c": lse.confidence if lse else None,
                "offset": lse.offset if lse else None,
                "right": right,
                "windows": windows,
            }
        )
    return {"split": cfg.split, **_summary(rows), "skipped": dict(data.skipped), "per_sample": rows}


def evaluate_video(cfg: EvaluateConfig) -> dict:
    """LSE of a video file's main face track (the longest), as filter would track and crop it."""
    from filter.config import FilterConfig
    from shqip_av.components.sync_expert import expert_lse, load_expert, lower_halves
    from shqip_av.components.face_tracker import scan_faces
    from filter.video import stream_crops
    from shqip_av.components import audio_frontend as frontend
    from shqip_av.media import probe, read_audio

    path = Path(cfg.video)
    if not path.is_file():
        raise ShqipError(f"{path}: no such video file")
    judge = load_judge(cfg.expert)
    fcfg = FilterConfig()
    if judge is not None:
        judge.check_input(fcfg.probe.fps, "--expert")
    else:
        model = load_expert(cfg.expert, "--expert").eval()
    info = probe(path)
    fps = fcfg.probe.fps
    scan = scan_faces(path, info, fcfg.faces, fps)
    if not scan.tracks:
        raise ShqipError(f"{path}: no face track found")
    track = max(scan.tracks, key=lambda t: len(t.landmarks))
    if judge is not None:  # the landmarks are all the judge reads
        from shqip_av.components.sync_judge import judge_curve, mouth_features

        n = track.end - track.start
        mel = frontend.log_mel(read_audio(path)).numpy()
        audio = frontend.mel_window(mel, track.start, n)  # the track's own audio
        j = judge_curve(judge, mouth_features(track.landmarks[0:n]), audio, 0, n, cfg.max_offset)
        if j is None:
            raise ShqipError(f"{path}: the face track is shorter than the judge's window")
        return {"video": str(path), "track_frames": n, "lse_d": j.distance, "lse_c": j.confidence,
                "offset": j.offset, "curve": j.curve}  # fmt: skip
    _, crops, _ = next(stream_crops(path, info, fps, [(None, track, track.start, track.end)], fcfg.crop.size))
    wave = read_audio(path)
    mel = frontend.mel_window(frontend.log_mel(wave).numpy(), track.start, len(crops))  # the track's own audio
    lse = expert_lse(model, lower_halves(np.stack(crops), model.sync_config.crop_size), mel, 0, 0, cfg.max_offset)
    if lse is None:
        raise ShqipError(f"{path}: the face track is shorter than the expert's window")
    return {
        "video": str(path),
        "track_frames": len(crops),
        "lse_d": lse.distance,
        "lse_c": lse.confidence,
        "offset": lse.offset,
        "curve": lse.curve,
    }


FID_SKIPPED = (
    "FID skipped: it needs the Inception-v3 FID weights (pt_inception-2015-12-05), which this "
    "project does not ship and cannot download offline"
)


def generator_metrics(generator, expert, samples, *, max_offset: int = 15, landmarks: bool = True) -> dict:
    """Scores of a generator regenerating each sample's crops from its own audio (see the module doc)."""
    import torch
    from pytorch_msssim import ssim

    from shqip_av.components.sync_expert import expert_lse, lower_halves
    from shqip_av.geometry import eye_distance
    from shqip_av.components.lipsync_generator import mouth_mask
    from train.lipsync.inference import generate_track
    from shqip_av.geometry import MOUTH_POINTS

    size = generator.generator_config.size
    mask = mouth_mask(size).astype(bool)
    ys, xs = np.nonzero(mask)
    box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    rows = []
    for s in progress(samples, desc="generator", unit="sample"):
        gen = generate_track(generator, s.crops, s.landmarks, s.mel)
        real, fake = s.crops.astype(np.float64) / 255, gen.astype(np.float64) / 255
        inside = (fake - real)[:, mask]
        mse = float(np.mean(inside**2))
        region = lambda x: torch.from_numpy(np.moveaxis(x[:, box[0], box[1]], -1, 1)).float()  # noqa: E731
        row = {
            "key": s.key,
            "frames": len(gen),
            "l1_mask": round(float(np.mean(np.abs(inside))), 5),
            "psnr_mask": round(10 * np.log10(1 / max(mse, 1e-10)), 3),
            "ssim_mask": round(float(ssim(region(fake), region(real), data_range=1.0, win_size=7)), 4),
            "outside_mask_max_diff": int(np.abs(gen[:, ~mask].astype(int) - s.crops[:, ~mask].astype(int)).max()),
        }
        if expert is not None:
            c = expert.sync_config
            for name, crops in (("generated", gen), ("real", s.crops)):
                lse = expert_lse(expert, lower_halves(crops, c.crop_size), s.mel, 0, 0, max_offset)
                row[f"lse_d_{name}"], row[f"lse_c_{name}"] = (lse.distance, lse.confidence) if lse else (None, None)
                row[f"offset_{name}"] = lse.offset if lse else None
        if landmarks:
            from shqip_av.components.face_tracker import crop_landmarks

            a, b = crop_landmarks(gen), crop_landmarks(s.crops)
            found = ~np.isnan(a[:, 0, 0]) & ~np.isnan(b[:, 0, 0])
            row["landmarks_found"] = round(float(found.mean()), 4)
            if found.any():
                lips = np.linalg.norm(a[found][:, MOUTH_POINTS] - b[found][:, MOUTH_POINTS], axis=-1).mean(axis=1)
                row["lip_distance"] = round(float(np.mean(lips / eye_distance(b[found]))), 4)
        rows.append(row)
    keys = [k for k in rows[0] if k not in ("key",)] if rows else []
    summary = {
        k: round(float(np.mean([r[k] for r in rows if r.get(k) is not None])), 4)
        for k in keys
        if any(r.get(k) is not None for r in rows)
    }
    summary["outside_mask_max_diff"] = max((r["outside_mask_max_diff"] for r in rows), default=0)
    return {"samples": len(rows), **summary, "fid": None, "fid_note": FID_SKIPPED, "per_sample": rows}


def evaluate_generator(cfg: EvaluateConfig) -> dict:
    from shqip_av.components.sync_expert import load_expert
    from train.lipsync.generator_data import load_faces
    from shqip_av.components.lipsync_generator import load_generator

    try:
        generator = load_generator(cfg.generator, "--generator")
    except (OSError, ValueError) as e:
        raise ShqipError(f"cannot load the generator {cfg.generator!r}: {str(e).splitlines()[0]}") from None
    expert = load_expert(cfg.expert, "--expert").eval() if cfg.expert else None
    g = generator.generator_config
    data = load_faces(
        cfg.root, cfg.split, size=g.size, frames=g.frames, references=g.references, exclude=5, limit=cfg.max_samples
    )
    if not data.samples:
        raise ShqipError(
            f"no usable samples in {cfg.root}/shards/{cfg.split} (skipped: {dict(data.skipped) or 'none'})"
        )
    log.info(FID_SKIPPED)
    return {
        "split": cfg.split,
        "generator": cfg.generator,
        "expert": cfg.expert or None,
        **generator_metrics(generator, expert, data.samples, max_offset=cfg.max_offset, landmarks=cfg.landmarks),
        "skipped": dict(data.skipped),
    }


def _self_dub(cfg: EvaluateConfig) -> int:
    from shqip_av.components.lipsync_generator import load_generator
    from train.lipsync.self_dub import self_dub

    if not (cfg.generator or cfg.mouth_shape) or not cfg.video:
        raise ShqipError("--self-dub needs --video IN and --generator G or --mouth-shape M (or both)")
    mouth_shape = None
    if cfg.mouth_shape:
        from shqip_av.components.mouth_shape import MouthShapeModel

        mouth_shape = MouthShapeModel.from_pretrained(cfg.mouth_shape, option="--mouth-shape")
    for name, path in (("--video", cfg.video), ("--drive", cfg.drive)):
        if path and not Path(path).is_file():
            raise ShqipError(f"{name} {path}: no such file")
    generator = None
    if cfg.generator:
        try:
            generator = load_generator(cfg.generator, "--generator")
        except (OSError, ValueError) as e:
            raise ShqipError(f"cannot load the generator {cfg.generator!r}: {str(e).splitlines()[0]}") from None
    out = Path(cfg.out) if cfg.out else None
    result = self_dub(cfg.video, generator, adapt_steps=cfg.adapt_steps, drive=cfg.drive or None, out=out,
                      landmarks=cfg.landmarks, mouth_shape=mouth_shape)  # fmt: skip
    print(quality_table({Path(cfg.video).stem: result}))
    if out is not None:
        atomic_write_text(out / "self_dub.json", json.dumps(result, indent=2) + "\n")
        print(f"pictures: {out / result['pictures']['strip']}, {out / result['pictures']['side_by_side']}")
    return 0


COLUMNS = (
    ("mouth_psnr", "PSNR"),
    ("mouth_ssim", "SSIM"),
    ("mouth_landmark_distance", "lips"),
    ("seam_ciede2000", "seam ΔE00"),
    ("seam_gradient_ratio", "edge ×"),
    ("outside_psnr", "out dB"),
    ("lower_face_lab_distance", "Lab Δ"),
    ("sharpness_ratio", "sharp ×"),
    ("jaw_loudness_correlation", "jaw~loud"),
    ("jaw_moved_by_audio", "by audio"),
    ("jaw_spread_vs_source", "jaw spread"),
    ("flicker_vs_source", "flicker ×"),
)


def quality_table(results: dict[str, dict]) -> str:
    """The self-dub figures of clips as a text table, a row per clip and variant, then the means."""
    variants = ("adapted", "base", "retrieval", "frozen", "new_speech", "retrieval_new_speech", "source")
    lines = [f"{'clip':28} {'variant':20} " + " ".join(f"{h:>9}" for _, h in COLUMNS)]
    means: dict[str, dict[str, list]] = {}
    for clip, result in results.items():
        for v in variants:
            row = result["table"].get(v)
            if not row:  # not measured, or nothing defined (the source row of a clip without speech)
                continue
            cells = " ".join(f"{row[k]:>9.3f}" if k in row else f"{'':>9}" for k, _ in COLUMNS)
            lines.append(f"{clip[:28]:28} {v:20} {cells}")
            for k, _ in COLUMNS:
                if k in row:
                    means.setdefault(v, {}).setdefault(k, []).append(row[k])
    if len(results) > 1:
        for v, cols in means.items():
            cells = " ".join(f"{np.mean(cols[k]):>9.3f}" if k in cols else f"{'':>9}" for k, _ in COLUMNS)
            lines.append(f"{'mean':28} {v:20} {cells}")
    lines.append(
        "PSNR/SSIM/lips: mouth region vs. the real frame (lips: MediaPipe mouth points, eye distances); "
        "seam ΔE00: CIEDE2000 just inside the mask's edge; edge ×: gradient across it over the source's; "
        "out dB: PSNR outside the mask; Lab Δ: mean colour inside; sharp ×: Laplacian variance over the "
        "source's; jaw~loud: jaw drop vs. loudness of another speaker's speech (source: the real face "
        "against its own speech on the same frames, what real speakers reach); by audio: how far that speech "
        "moved the jaw from where silence left it, over the real jaw's spread (0: the audio moves nothing)"
    )
    return "\n".join(lines)


def main(argv=None) -> int:
    cfg, args = parse_config(
        EvaluateConfig,
        argv,
        prog="python -m train.lipsync.evaluate",
        description="LSE-D, LSE-C and offset with a trained sync expert or landmark judge, for a shard split or a video.",
    )
    setup_logging(args.verbose, root=cfg.root)
    if not cfg.expert and not cfg.generator and not (cfg.self_dub and cfg.mouth_shape):
        raise ShqipError("give --expert runs/lipsync/<name> (or a Hub id)")
    if bool(cfg.split) == bool(cfg.video) and not cfg.self_dub:
        raise ShqipError("give either --split NAME or --video FILE")
    if cfg.self_dub:
        return _self_dub(cfg)
    if cfg.generator and not cfg.split:
        raise ShqipError("--generator is scored on a shard split (--split NAME), or on a clip with --self-dub")
    try:
        result = evaluate_generator(cfg) if cfg.generator else evaluate_video(cfg) if cfg.video else evaluate_split(cfg)
    except (OSError, ValueError) as e:  # an expert folder or Hub id that does not load
        raise ShqipError(f"cannot load the sync expert {cfg.expert!r}: {str(e).splitlines()[0]}") from None
    shown = {k: v for k, v in result.items() if k not in ("per_sample", "curve")}
    print(json.dumps(shown, indent=1))
    if cfg.out:
        atomic_write_text(Path(cfg.out) / "metrics.json", json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    run_cli(main)
