"""Mouths from the speaker's own footage (DESIGN.md §8.1): ``lipsync: retrieval`` in a bundle.

The source video is a library of this person's mouths: every frame of their face track, as a
canonical crop (eyes and nose on one template, so a library frame's lower face already sits where
the current frame's does: the similarity on the stable points is the crop itself) with its mouth
shape in the speaker's own units and its head pose. For each output frame the audio → mouth-shape
model (``shqip_av.components.mouth_shape``) says what shape the new speech needs; a library frame
is chosen for every frame of a segment at once, by dynamic programming (unit selection, as in
concatenative speech synthesis: Video Rewrite 1997, Synthesizing Obama 2017): the cost of a choice
is its distance from the wanted shape plus its pose's distance from the current frame's, and a
jump to a frame that does not follow the previous choice costs ``jump``, so runs of consecutive
source frames win when they fit. Where the selection jumps, the first frames after it are
cross-faded. The paste-back (``shqip_av.paste_back``) then puts the crop's lower face into the
frame, with the frame's own light and detail. Silence in the new audio asks for the speaker's
rest shape. Library frames whose pose is too far from the current frame's are never chosen (no
frontal mouth on a profile); shapes beyond what the speaker was seen to do are clamped, counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

CROP = 128  # library crops: the canonical 256 crop at half size (the mouth box is what is pasted)
MIN_LIBRARY_FRAMES = 50  # two seconds of tracked face at 25 fps
FADE = 3  # frames cross-faded after a jump
QUIET = -4.0  # speech-band loudness (log RMS) below this: silence, the rest shape is wanted
MAX_GAIN = 3.0  # the predicted movement is scaled to the speaker's own spread, at most this much


@dataclass
class SelectionCosts:
    """Weights of the selection. Chosen on five train speakers' clips driven by another speaker's
    speech (medians): jump 1.5 gave runs of 1.9 frames and the jaw moved by audio 0.36 of its
    spread; 15: 3.3 frames, 0.41; 40 (hold 10): 5.4 frames, 0.48; the pose weight (1 to 4)
    changed nothing there."""

    jump: float = 40.0  # cost of a non-consecutive library frame, in squared shape units
    hold: float = 10.0  # cost of showing the same library frame again (a still mouth)
    pose: float = 4.0  # weight of the pose distance
    max_pose: float = 0.25  # pose distance beyond which a library frame is never chosen


def pose_features(landmarks: np.ndarray) -> np.ndarray:
    """(T, 478, 2) landmarks → (T, 2) head-pose proxies: yaw (the nose between the face's two
    sides, as a log ratio) and pitch (the nose tip below the eyes against the face's height)."""
    lm = np.asarray(landmarks, np.float64)
    nose, left, right, top = lm[:, 1], lm[:, 234], lm[:, 454], lm[:, 10]
    eyes = (lm[:, 33] + lm[:, 263]) / 2
    yaw = np.log(np.maximum(np.abs(right[:, 0] - nose[:, 0]), 1e-3) / np.maximum(np.abs(nose[:, 0] - left[:, 0]), 1e-3))
    height = np.maximum(np.linalg.norm(nose - top, axis=-1), 1e-3)
    pitch = (nose[:, 1] - eyes[:, 1]) / height
    return np.stack([0.5 * yaw, pitch], axis=1)


def select_frames(
    targets: np.ndarray,
    library: np.ndarray,
    *,
    consecutive: np.ndarray | None = None,
    target_pose: np.ndarray | None = None,
    library_pose: np.ndarray | None = None,
    allowed: np.ndarray | None = None,
    costs: SelectionCosts | None = None,
) -> np.ndarray:
    """The library frame for each target (T,) by dynamic programming over (T, N) choices.

    ``targets`` (T, K) and ``library`` (N, K) shapes; ``consecutive`` (N,) True where library frame
    j follows frame j - 1 in the source (default: all but the first); poses (T, 2) and (N, 2);
    ``allowed`` (T, N) False where a choice is excluded (a self-dub's own neighbourhood)."""
    costs = costs or SelectionCosts()
    t_count, n = len(targets), len(library)
    cost = ((targets[:, None, :] - library[None, :, :]) ** 2).sum(-1)
    if target_pose is not None and library_pose is not None:
        pose = np.sqrt(((target_pose[:, None, :] - library_pose[None, :, :]) ** 2).sum(-1))
        cost = cost + costs.pose * pose**2
        cost[pose > costs.max_pose] = np.inf
    if allowed is not None:
        cost = np.where(allowed, cost, np.inf)
    # a frame no choice is open for (all excluded or too far turned): the nearest pose, whatever it costs
    blocked = ~np.isfinite(cost).any(axis=1)
    if blocked.any():
        fallback = ((targets[blocked, None, :] - library[None, :, :]) ** 2).sum(-1)
        cost[blocked] = fallback
    if consecutive is None:
        consecutive = np.ones(n, bool)
        consecutive[0] = False
    total = cost[0].copy()
    came_from = np.zeros((t_count, n), np.int64)
    for t in range(1, t_count):
        best = int(np.argmin(total))
        jump = total[best] + costs.jump
        stay = np.full(n, np.inf)
        stay[1:] = np.where(consecutive[1:], total[:-1], np.inf)
        hold = total + costs.hold
        previous = np.where(stay <= hold, np.arange(n) - 1, np.arange(n))
        best_local = np.minimum(stay, hold)
        came_from[t] = np.where(best_local <= jump, previous, best)
        total = cost[t] + np.minimum(best_local, jump)
    path = np.empty(t_count, np.int64)
    path[-1] = int(np.argmin(total))
    for t in range(t_count - 1, 0, -1):
        path[t - 1] = came_from[t, path[t]]
    return path


@dataclass
class Library:
    """One face track's frames as mouths to choose from."""

    frames: np.ndarray  # (N,) source frame indices
    crops: np.ndarray  # (N, CROP, CROP, 3) canonical crops
    coefficients: np.ndarray  # (N, K) mouth shapes in the speaker's own units, as the model's coefficients
    pose: np.ndarray  # (N, 2)
    rest: np.ndarray  # the speaker's rest shape vector (median), and its spread
    spread: float
    rest_coefficients: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def consecutive(self) -> np.ndarray:
        out = np.zeros(len(self.frames), bool)
        out[1:] = np.diff(self.frames) == 1
        return out


def build_library(model, landmarks: np.ndarray, crops: np.ndarray, frames: np.ndarray) -> Library:
    """A library from a track's landmarks (N, 478, 2, frame pixels), canonical crops and frame indices."""
    from shqip_av.components.mouth_shape import shape_vectors, speaker_units

    normalised, rest, spread = speaker_units(shape_vectors(landmarks))
    return Library(
        frames=np.asarray(frames),
        crops=crops,
        coefficients=model.to_coefficients(normalised),
        pose=pose_features(landmarks),
        rest=rest,
        spread=spread,
        rest_coefficients=model.to_coefficients(np.zeros((1, normalised.shape[1])))[0],
    )


@dataclass
class Choice:
    """What the mouth path chose for one segment: library frames, and what it had to bend."""

    picked: np.ndarray  # (T,) library indices
    clamped: int = 0  # predicted shapes beyond the speaker's seen range, clamped
    jumps: int = 0
    quiet: int = 0  # frames of silence, given the rest shape


def wanted_shapes(model, mel: np.ndarray, first: int, count: int, loudness: np.ndarray, library: Library):
    """The coefficients the new speech asks for at frames [first, first + count): the model's
    prediction, the rest shape where the audio is quiet, clamped to the library's range."""
    predicted = model.predict(mel, first, count)
    quiet = np.log(np.asarray(loudness[:count]) + 1e-4) < QUIET
    # a regression predicts toward the mean: its shapes move less than the speaker's did. The
    # movement around the rest is scaled up to the speaker's own spread (at most ``MAX_GAIN``×)
    speaking = ~quiet
    if speaking.sum() >= 5:
        deviation = predicted[speaking] - library.rest_coefficients
        seen = (library.coefficients - library.rest_coefficients).std(axis=0)
        gain = np.clip(seen / (deviation.std(axis=0) + 1e-6), 1.0, MAX_GAIN)
        predicted = library.rest_coefficients + (predicted - library.rest_coefficients) * gain
    predicted[quiet] = library.rest_coefficients
    lo, hi = library.coefficients.min(axis=0), library.coefficients.max(axis=0)
    outside = ((predicted < lo) | (predicted > hi)).any(axis=1)
    return np.clip(predicted, lo, hi), int(outside.sum()), int(quiet.sum())


def choose(
    library: Library,
    wanted: np.ndarray,
    target_pose: np.ndarray,
    target_frames: np.ndarray | None = None,
    exclude_seconds: float = 0.0,
    fps: float = 25.0,
    costs: SelectionCosts | None = None,
) -> np.ndarray:
    """Library indices for ``wanted`` (T, K) at frames ``target_frames`` with poses ``target_pose``;
    with ``exclude_seconds``, never a library frame that close to the target frame (self-dub)."""
    allowed = None
    if exclude_seconds > 0 and target_frames is not None:
        allowed = np.abs(library.frames[None, :] - np.asarray(target_frames)[:, None]) > exclude_seconds * fps
    return select_frames(
        wanted, library.coefficients, consecutive=library.consecutive, target_pose=target_pose,
        library_pose=library.pose, allowed=allowed, costs=costs,
    )  # fmt: skip


def faded_crops(library: Library, picked: np.ndarray) -> np.ndarray:
    """The chosen crops, the first FADE frames after each jump cross-faded from the frame that would
    have followed the previous choice."""
    out = library.crops[picked].astype(np.float32)
    n = len(library.frames)
    for t in range(1, len(picked)):
        if picked[t] in (picked[t - 1], picked[t - 1] + 1):
            continue
        for k in range(FADE):
            if t + k >= len(picked):
                break
            carry = picked[t - 1] + 1 + k
            if carry >= n:
                break
            w = (k + 1) / (FADE + 1)
            out[t + k] = w * out[t + k] + (1 - w) * library.crops[carry]
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


MAX_LIBRARY_FRAMES = 4500  # three minutes of a face at 25 fps: memory stays bounded (128² crops)


class RetrievalLipSync:
    """The retrieval mouth path of one dub: ``prepare`` once (a library per speaking face track,
    a choice per span), then ``crops_for`` each chunk of frames the render streams."""

    size = CROP

    def __init__(self, model, costs: SelectionCosts | None = None, exclude_seconds: float = 0.0):
        self.model, self.costs, self.exclude_seconds = model, costs or SelectionCosts(), exclude_seconds
        self.chosen: dict[int, dict[int, np.ndarray]] = {}  # span → frame → crop
        self.picked: dict[int, np.ndarray] = {}  # span → the source frame chosen for each of its frames
        self.report: dict = {}

    def prepare(self, video, info, fps: float, spans: list, dub_audio: np.ndarray, dub_mel: np.ndarray) -> dict:
        """Libraries of the spans' tracks (one decode of the video), then a choice per span.
        Returns what the report says of it."""
        import cv2

        from shqip_av import geometry
        from shqip_av.components.audio_frontend import speech_loudness
        from shqip_av.components.mouth_shape import opening
        from shqip_av.media import iter_frames
        from shqip_av.schema import CROP_SIZE

        tracks = {id(t): t for t, _, _ in spans}
        wanted_frames = {
            key: range(t.start, min(t.end, t.start + MAX_LIBRARY_FRAMES)) for key, t in tracks.items()
        }  # fmt: skip
        crops: dict[int, list] = {key: [] for key in tracks}
        last = max((r.stop for r in wanted_frames.values()), default=0)
        for index, frame in enumerate(iter_frames(video, fps=fps, info=info)):
            if index >= last:
                break
            for key, frames in wanted_frames.items():
                if index in frames:
                    t = tracks[key]
                    crop, _ = geometry.canonical_crop(frame, t.align[index - t.start], CROP_SIZE)
                    crops[key].append(cv2.resize(crop, (CROP, CROP), interpolation=cv2.INTER_AREA))
        libraries = {}
        for key, t in tracks.items():
            n = len(crops[key])
            if n < MIN_LIBRARY_FRAMES:
                continue
            marks = np.asarray(t.landmarks[0:n], np.float64)
            libraries[key] = build_library(self.model, marks, np.stack(crops[key]), np.arange(t.start, t.start + n))
        loudness = speech_loudness(dub_audio, max((b for _, _, b in spans), default=0), fps)
        rows, notes = [], []
        for i, (track, first, last_frame) in enumerate(spans):
            library = libraries.get(id(track))
            count = last_frame - first
            if library is None:
                notes.append(
                    f"a face has under {MIN_LIBRARY_FRAMES / fps:.0f} s of tracked frames: too few mouths to "
                    "choose from, its segment keeps its own mouth"
                )
                continue
            wanted, clamped, quiet = wanted_shapes(
                self.model, dub_mel, first, count, loudness[first:last_frame], library
            )
            marks = np.asarray(track.landmarks[first - track.start : last_frame - track.start], np.float64)
            picked = choose(library, wanted, pose_features(marks), np.arange(first, last_frame),
                            self.exclude_seconds, fps, self.costs)  # fmt: skip
            faded = faded_crops(library, picked)
            self.chosen[i] = {first + k: faded[k] for k in range(count)}
            self.picked[i] = library.frames[picked]
            jumps = int((~np.isin(np.diff(picked), (0, 1))).sum())
            seen = opening(self.model.to_shapes(library.coefficients)).max()
            asked = opening(self.model.to_shapes(wanted)).max() if len(wanted) else 0.0
            rows.append({
                "span": i, "frames": count, "library_frames": len(library.frames), "jumps": jumps,
                "mean_run_frames": round(count / (jumps + 1), 1), "clamped": clamped, "quiet": quiet,
                "open_shapes_not_found": bool(asked > seen + 1e-6),
            })  # fmt: skip
            if clamped:
                notes.append(
                    f"{clamped} frame(s) asked for a mouth shape beyond what the speaker was seen to do: clamped"
                )
        self.report = {"method": "retrieval", "spans": rows, "notes": notes}
        return self.report

    def covers(self, span: int) -> bool:
        return span in self.chosen

    def crops_for(self, span: int, frames: list[int]) -> np.ndarray:
        return np.stack([self.chosen[span][f] for f in frames])
