"""A self-dub: a real clip lip-synced from its own audio and compared with its real frames, the
way a viewer would compare them (DESIGN.md §8; ``train.lipsync.evaluate --self-dub``).

The clip's longest face track is split in time: the first part (``adapt_share``) is what
per-video adaptation may learn from, the rest is what is measured, so an adapted generator is
never scored on frames it was fine-tuned on. On the measured frames, three mouths are pasted back
(``shqip_av.paste_back``) and measured (``train.lipsync.quality``):

- ``adapted``: the generator after ``adapt_steps`` steps of adaptation (when asked for);
- ``base``: the generator as given;
- ``frozen``: no generator, no audio: the most typical mouth of the adaptation part pasted on every
  frame (what a dub would show if lip-sync did nothing).

With ``drive`` (another speaker's recording) the generator is also driven by speech the face
never spoke: the jaw drop of the result (MediaPipe) against the loudness of that speech, the colour
and sharpness figures, and (with landmarks) how far that speech moved the jaw from where the same
generator, driven by silence, left it. Writes a strip (source | dub | difference) as PNG and a short
side-by-side mp4 when ``out`` is given.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shqip_av import ShqipError
from shqip_av.log import get_logger

log = get_logger(__name__)


@dataclass
class Clip:
    """The measured face of a clip: per frame of its track (up to ``max_seconds``)."""

    fps: float
    frames: list[int]  # frame numbers of the track
    affines: np.ndarray  # (N, 2, 3) frame → 256 crop
    marks: np.ndarray  # (N, 478, 2) frame landmarks
    crops: np.ndarray  # (N, S, S, 3) at the generator's size
    crop_marks: np.ndarray  # (N, 478, 2) in those crops' pixels
    speech: np.ndarray  # (N,) bool: inside a speech region of the clip's audio
    audio: np.ndarray  # the clip's audio, 16 kHz mono


def read_clip(video: Path, size: int, max_seconds: float = 10.0) -> Clip:
    """Track the clip's faces (MediaPipe) and keep its longest track's crops at ``size``."""
    import cv2

    from shqip_av import geometry
    from shqip_av.components.face_tracker import FaceTracker
    from shqip_av.components.voice_activity import SileroVAD, VoiceActivityConfig
    from shqip_av.media import extract_audio, iter_frames, probe, read_audio
    from shqip_av.schema import CROP_SIZE, FPS

    info = probe(video)
    if not info.has_video:
        raise ShqipError(f"{video}: no video stream")
    with tempfile.TemporaryDirectory() as tmp:
        scan = FaceTracker.from_pretrained().scan(video, info, FPS, folder=Path(tmp))
        if not scan.tracks:
            raise ShqipError(f"{video}: no face found")
        track = max(scan.tracks, key=lambda t: len(t.landmarks))
        if info.has_audio:
            extract_audio(video, Path(tmp) / "audio.wav")
            audio = read_audio(Path(tmp) / "audio.wav")
        else:
            raise ShqipError(f"{video}: no audio (a self-dub needs the clip's own speech)")
        last = min(track.end, track.start + int(max_seconds * FPS))
        marks = np.asarray(track.landmarks[0 : last - track.start], np.float64)
    regions = SileroVAD.from_pretrained().speech_regions(audio, VoiceActivityConfig())
    crops, affines, crop_marks = [], [], []
    for f, frame in enumerate(iter_frames(video, fps=FPS, info=info)):
        if f >= last:
            break
        if f < track.start:
            continue
        i = f - track.start
        crop, affine = geometry.canonical_crop(frame, track.align[i], CROP_SIZE)
        crops.append(cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA))
        affines.append(affine)
        crop_marks.append(geometry.apply_affine(affine, marks[i]) * (size / CROP_SIZE))
    frames = list(range(track.start, track.start + len(crops)))
    times = np.array(frames) / FPS
    speech = np.array([any(a <= t < b for a, b in regions) for t in times], bool)
    return Clip(
        FPS, frames, np.array(affines), marks[: len(crops)], np.array(crops), np.array(crop_marks), speech, audio
    )


def _runs(mask: np.ndarray) -> list[slice]:
    """Runs of consecutive True values."""
    out, start = [], None
    for i, v in enumerate([*mask, False]):
        if v and start is None:
            start = i
        elif not v and start is not None:
            out.append(slice(start, i))
            start = None
    return out


def self_dub(
    video: str | Path,
    generator,
    *,
    adapt_steps: int = 0,
    drive: str | Path | None = None,
    out: str | Path | None = None,
    max_seconds: float = 10.0,
    adapt_share: float = 0.5,
    landmarks: bool = True,
    seed: int = 0,
    mouth_shape=None,
    exclude_seconds: float = 1.0,
) -> dict:
    """The figures of one clip (see the module's docstring); ``generator`` is a LipSyncGenerator
    (or None); with ``mouth_shape`` (a MouthShapeModel) the retrieval mouth path is measured too,
    its library the clip's own track without the ±``exclude_seconds`` around each frame."""
    from shqip_av import geometry
    from shqip_av.components import audio_frontend as frontend
    from shqip_av.components.face_tracker import crop_landmarks
    from shqip_av.components.lipsync_generator import MOUTH_BOX, audio_windows
    from shqip_av.media import AUDIO_RATE, iter_frames, read_audio
    from shqip_av.paste_back import Paster, face_axes
    from shqip_av.schema import CROP_SIZE
    from train.lipsync.adapt import adapt_generator
    from train.lipsync.inference import generate_track
    from train.lipsync.quality import (
        frame_quality,
        jaw_moved_by_audio,
        mouth_landmark_distance,
        mouth_region,
        summarize,
    )
    from train.lipsync.references import mouth_features

    from shqip_av import mouth_retrieval as retrieval

    video = Path(video)
    if generator is None and mouth_shape is None:
        raise ShqipError("a self-dub needs a generator or a mouth shape model")
    size = generator.generator_config.size if generator is not None else retrieval.CROP
    clip = read_clip(video, size, max_seconds)
    n = len(clip.frames)
    split = int(n * adapt_share)
    least = 2 * generator.generator_config.frames if generator is not None else 10
    if n - split < least:
        raise ShqipError(f"{video}: {n} frames of face; too short to measure a self-dub on")
    own_mel = frontend.log_mel(clip.audio).numpy()
    own = audio_windows(own_mel, np.array(clip.frames) / clip.fps)
    measured = slice(split, n)
    variants: dict[str, np.ndarray] = {}
    result: dict = {"video": video.name, "frames_measured": n - split, "frames_for_adaptation": split}

    library = None
    if mouth_shape is not None:  # the speaker's own mouths, never from within ±exclude_seconds
        library = retrieval.build_library(mouth_shape, clip.marks, clip.crops, np.asarray(clip.frames))
        first, count = clip.frames[split], n - split
        pose = retrieval.pose_features(clip.marks[measured])

        def retrieve(mel: np.ndarray, audio: np.ndarray, start: int, exclude: float) -> np.ndarray:
            loud = frontend.speech_loudness(audio, start + count, clip.fps)[start:]
            wanted, _, _ = retrieval.wanted_shapes(mouth_shape, mel, start, count, loud, library)
            picked = retrieval.choose(library, wanted, pose, np.asarray(clip.frames[split:]), exclude, clip.fps)
            return picked

        picked = retrieve(own_mel, clip.audio, first, exclude_seconds)
        gap = np.abs(library.frames[picked] - np.asarray(clip.frames[split:]))
        result["retrieval"] = {
            "library_frames": len(library.frames),
            "excluded_seconds": exclude_seconds,
            "nearest_chosen_frame": int(gap.min()),  # > exclude_seconds × fps: the truth was never copied
            "mean_run_frames": round(count / (1 + int((~np.isin(np.diff(picked), (0, 1))).sum())), 1),
        }
        variants["retrieval"] = retrieval.faded_crops(library, picked)

    if generator is not None:
        variants["base"] = generate_track(generator, clip.crops[measured], clip.crop_marks[measured], None,
                                          audio_windows=own[measured], seed=seed)  # fmt: skip
    adapted = generator
    if adapt_steps > 0 and generator is not None:
        part = np.zeros(n, bool)
        part[:split] = clip.speech[:split]
        runs = _runs(part)
        done = adapt_generator(
            generator,
            [clip.crops[r] for r in runs],
            [clip.crop_marks[r] for r in runs],
            [own[r] for r in runs],
            steps=adapt_steps,
            seed=seed,
            show_progress=False,
        )
        result["adaptation"] = {"steps": done.steps, "frames": done.frames, "seconds": round(done.seconds, 1),
                                "masked_l1_first_last": done.loss, "note": done.note}  # fmt: skip
        adapted = done.model
        variants["adapted"] = generate_track(adapted, clip.crops[measured], clip.crop_marks[measured], None,
                                             audio_windows=own[measured], seed=seed)  # fmt: skip
    features = mouth_features(clip.crop_marks[:split])
    typical = int(np.argmin(np.linalg.norm(features - np.median(features, 0), axis=1)))
    variants["frozen"] = np.repeat(clip.crops[typical : typical + 1], n - split, axis=0)

    new_speech = None
    if drive is not None:
        speech = read_audio(Path(drive))
        drive_mel = frontend.log_mel(speech).numpy()
        silent = np.zeros(int((n - split) / clip.fps * frontend.SAMPLE_RATE) + 1, np.float32)
        if adapted is not None:
            driven = audio_windows(drive_mel, np.arange(n - split) / clip.fps)
            new_speech = generate_track(adapted, clip.crops[measured], clip.crop_marks[measured], None,
                                        audio_windows=driven, seed=seed)  # fmt: skip
            variants["new_speech"] = new_speech
            if landmarks:  # the same face driven by silence: what of its jaw's movement the audio made
                quiet = audio_windows(frontend.log_mel(silent).numpy(), np.arange(n - split) / clip.fps)
                variants["silence"] = generate_track(adapted, clip.crops[measured], clip.crop_marks[measured], None,
                                                     audio_windows=quiet, seed=seed)  # fmt: skip
        if library is not None:  # new speech may take any of the speaker's frames
            speech_all = np.resize(speech, max(len(speech), len(silent)))
            variants["retrieval_new_speech"] = retrieval.faded_crops(
                library, retrieve(frontend.log_mel(speech_all).numpy(), speech_all, 0, 0.0)
            )
            if landmarks:
                variants["retrieval_silence"] = retrieval.faded_crops(
                    library, retrieve(frontend.log_mel(silent).numpy(), silent, 0, 0.0)
                )

    paster = Paster(MOUTH_BOX)
    rows: dict[str, list] = {k: [] for k in variants if not k.endswith("silence")}  # silence: a control, jaw only
    crops256: dict[str, list] = {k: [] for k in [*variants, "source"]}  # canonical, for MediaPipe
    side_by_side, strip = [], []
    picks = set(np.linspace(split, n - 1, 4).round().astype(int).tolist())
    shown = "adapted" if "adapted" in variants else "base" if "base" in variants else "retrieval"
    wanted = {clip.frames[i]: i for i in range(split, n)}
    for f, frame in enumerate(iter_frames(video, fps=clip.fps)):
        if f > clip.frames[-1]:
            break
        i = wanted.get(f)
        if i is None:
            continue
        eye = face_axes(clip.marks[i])[2]
        crops256["source"].append(geometry.warp_crop(frame, clip.affines[i], CROP_SIZE))
        for name, crops in variants.items():
            dub, alpha = paster.paste(frame, crops[i - split], clip.affines[i], clip.marks[i])
            crops256[name].append(geometry.warp_crop(dub, clip.affines[i], CROP_SIZE))
            if name not in rows:
                continue
            q = frame_quality(dub, frame, alpha, eye) or {}
            if not name.endswith("new_speech"):
                q.update(mouth_region(dub, frame, alpha) or {})
            rows[name].append(q)
            if name == shown:
                side_by_side.append(_small(np.concatenate([frame, dub], axis=1)))
                if i in picks:
                    diff = np.clip(np.abs(dub.astype(int) - frame.astype(int)) * 4, 0, 255).astype(np.uint8)
                    strip.append(_small(np.concatenate([frame, dub, diff], axis=1)))
    table = {name: summarize(r) for name, r in rows.items()}
    # flicker: the mean frame-to-frame change inside the mouth box, against the source's own there
    x0, y0, x1, y1 = (int(v * CROP_SIZE) for v in MOUTH_BOX)

    def change(crops: list) -> float:
        box = np.stack(crops)[:, y0:y1, x0:x1].astype(np.float32)
        return float(np.abs(np.diff(box, axis=0)).mean()) if len(box) > 1 else float("nan")

    source_change = change(crops256["source"])
    for name in rows:
        if source_change > 0:
            table[name]["flicker_vs_source"] = round(change(crops256[name]) / source_change, 4)
    jaws: dict[str, np.ndarray] = {}
    if landmarks:
        truth = crop_landmarks(np.stack(crops256["source"]))
        # the reference for the new-speech figure: the real face with its own speech, same frames
        start = int(clip.frames[split] / clip.fps * frontend.SAMPLE_RATE)
        own_loud = frontend.speech_loudness(clip.audio[start:], len(truth), clip.fps)
        real_jaw = geometry.jaw_drop(truth)
        ok = np.isfinite(real_jaw)
        table["source"] = _correlation(real_jaw[ok], own_loud[ok])
        for name in variants:
            marks = crop_landmarks(np.stack(crops256[name]))
            if name.endswith(("new_speech", "silence")):  # no truth for these mouths: their jaws are measured
                jaws[name] = geometry.jaw_drop(marks)
            else:
                d = mouth_landmark_distance(marks, truth)
                table[name]["mouth_landmark_distance"] = round(float(np.nanmean(d)), 4)
        spread = float(np.nanstd(real_jaw))
        for prefix in ("", "retrieval_"):
            if f"{prefix}new_speech" in jaws:
                jaw = jaws[f"{prefix}new_speech"]
                loud = frontend.speech_loudness(speech, len(jaw), clip.fps)
                ok = np.isfinite(jaw)
                table[f"{prefix}new_speech"].update(_correlation(jaw[ok], loud[ok]))
                # the jaw's spread under new speech against the source's own over the same frames
                table[f"{prefix}new_speech"]["jaw_spread_vs_source"] = round(float(np.nanstd(jaw)) / spread, 4)
            if f"{prefix}silence" in jaws:
                moved = jaw_moved_by_audio(jaws[f"{prefix}new_speech"], jaws[f"{prefix}silence"], real_jaw)
                if np.isfinite(moved):
                    table[f"{prefix}new_speech"]["jaw_moved_by_audio"] = round(moved, 4)
    result["table"] = table
    if out is not None:
        start = clip.frames[split] / clip.fps
        audio = clip.audio[int(start * AUDIO_RATE) : int((start + len(side_by_side) / clip.fps) * AUDIO_RATE)]
        result["pictures"] = write_pictures(Path(out), video.stem, strip, side_by_side, audio, clip.fps)
    return result


def _correlation(jaw: np.ndarray, loudness: np.ndarray) -> dict[str, float]:
    """{"jaw_loudness_correlation": r}, or nothing where it is undefined (no speech, a still face)."""
    from shqip_av.components.audio_frontend import lagged_correlation

    r = lagged_correlation(jaw, loudness)
    return {"jaw_loudness_correlation": round(r, 4)} if np.isfinite(r) else {}


def _small(image: np.ndarray, height: int = 256) -> np.ndarray:
    """``image`` scaled to ``height`` rows, even sides (H.264 needs them)."""
    import cv2

    width = int(round(image.shape[1] * height / image.shape[0])) // 2 * 2
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def write_pictures(out: Path, stem: str, strip: list, side_by_side: list, audio: np.ndarray, fps: float) -> dict:
    """<stem>.strip.png (source | dub | difference ×4, a row per frame) and <stem>.side-by-side.mp4
    (source | dub, with the audio that drove it)."""
    import cv2

    from shqip_av.files import atomic_output
    from shqip_av.media import write_video, write_wav

    out.mkdir(parents=True, exist_ok=True)
    png, mp4 = out / f"{stem}.strip.png", out / f"{stem}.side-by-side.mp4"
    with atomic_output(png, suffix=".png") as tmp:
        cv2.imwrite(str(tmp), cv2.cvtColor(np.concatenate(strip, axis=0), cv2.COLOR_RGB2BGR))
    with tempfile.TemporaryDirectory() as tmp:
        write_wav(Path(tmp) / "audio.wav", audio)
        write_video(mp4, side_by_side, fps=fps, audio=Path(tmp) / "audio.wav")
    return {"strip": png.name, "side_by_side": mp4.name}
