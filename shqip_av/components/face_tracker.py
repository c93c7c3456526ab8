"""Face tracking: MediaPipe FaceLandmarker (Tasks API, VIDEO running mode) on upright frames at
the analysis rate, detections linked into face tracks, alignment points smoothed over time."""

from __future__ import annotations

import os
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter1d

from shqip_av import geometry
from shqip_av.config import option
from shqip_av.log import StepTimes, native_stderr_filtered
from shqip_av.media import MediaInfo, iter_frames
from shqip_av.models import ModelFileError, resolve_model

NUM_LANDMARKS = 478
JAW_OPEN = "jawOpen"


@dataclass
class FaceConfig:
    model: str = option(
        "face_landmarker", "MediaPipe FaceLandmarker: a model name (resolved by shqip_av.models) or a .task path"
    )
    max_faces: int = option(4, "faces tracked per frame", min=1, max=32)
    detection_confidence: float = option(0.5, "MediaPipe min_face_detection_confidence", min=0, max=1)
    presence_confidence: float = option(0.5, "MediaPipe min_face_presence_confidence", min=0, max=1)
    tracking_confidence: float = option(0.5, "MediaPipe min_tracking_confidence", min=0, max=1)
    detect_max_side: int = option(
        1280,
        "frames are scaled down to at most this side for detection (landmarks are mapped back to source pixels)",
        min=64,
        max=100000,
    )
    link_iou: float = option(
        0.3,
        "a detection continues a track when its box overlaps the track's last box by at least this IoU",
        min=0,
        max=1,
    )
    max_gap: int = option(2, "missing frames a track may bridge (interpolated)", min=0, max=1000)
    min_track_frames: int = option(12, "shorter tracks are dropped", min=2, max=1000000)
    edge_margin: float = option(
        0.02,
        "a face whose eye/nose points come closer than this fraction of the frame to an edge counts as leaving the frame",
        min=0,
        max=0.49,
    )
    smooth_sigma: float = option(
        1.5, "Gaussian smoothing (in frames) of the eye and nose points used for alignment", min=0, max=100
    )


class LandmarkStore:
    """A track's (T, 478, 2) float32 landmarks in a .npy file, read by slices with ``pread``: a
    track of a three-hour video (about 1 GB of landmarks) never sits in memory, and nothing is
    memory-mapped (mapped pages would count as the process's memory as soon as they are read)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        with open(self.path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = read_header(fh)
            self.offset = fh.tell()
        if fortran or dtype != np.float32 or len(shape) != 3 or shape[1:] != (NUM_LANDMARKS, 2):
            raise ValueError(f"{self.path}: not a (T, {NUM_LANDMARKS}, 2) float32 landmark file")
        self.shape = shape

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> np.ndarray:
        if not isinstance(index, slice) or index.step not in (None, 1):
            return np.load(self.path, allow_pickle=False)[index]  # rare: fancy indexing reads it all
        start, stop, _ = index.indices(len(self))
        row = NUM_LANDMARKS * 2 * 4
        if stop <= start:
            return np.zeros((0, NUM_LANDMARKS, 2), np.float32)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            data = os.pread(fd, (stop - start) * row, self.offset + start * row)
        finally:
            os.close(fd)
        return np.frombuffer(data, dtype=np.float32).reshape(stop - start, NUM_LANDMARKS, 2).copy()


@dataclass
class FaceTrack:
    """One face followed through consecutive frames (``start`` .. ``start + len - 1``)."""

    track_id: int
    start: int
    landmarks: np.ndarray | LandmarkStore  # (T, 478, 2) float32, source-frame pixels (upright); slice it
    align: np.ndarray  # (T, 3, 2) float64, smoothed right-eye / left-eye / nose points
    jaw_open: np.ndarray  # (T,) MediaPipe jawOpen blendshape
    interpolated: np.ndarray  # (T,) bool: frames bridged over a short gap
    pose: np.ndarray | None = None  # (T, 3) float32 yaw, pitch, roll in degrees (MediaPipe's transformation matrix)

    @property
    def end(self) -> int:  # exclusive
        return self.start + len(self.landmarks)

    def coverage(self, first: int, last: int) -> float:
        """Fraction of frames first..last-1 the track spans (bridged gaps included)."""
        return max(0, min(last, self.end) - max(first, self.start)) / max(last - first, 1)

    def window(self, first: int, last: int) -> slice:
        return slice(first - self.start, last - self.start)


@dataclass
class FaceScan:
    num_frames: int
    fps: float
    width: int
    height: int
    tracks: list[FaceTrack] = field(default_factory=list)
    faces_per_frame: np.ndarray | None = None  # (N,) detections per frame (in frame or not)

    def save(self, path: Path) -> None:
        arrays = {
            "num_frames": np.int64(self.num_frames),
            "fps": np.float64(self.fps),
            "size": np.array([self.width, self.height]),
            "faces_per_frame": self.faces_per_frame,
        }
        for t in self.tracks:
            p = f"track{t.track_id}_"
            arrays.update(
                {
                    p + "start": np.int64(t.start),
                    p + "align": t.align,
                    p + "jaw_open": t.jaw_open,
                    p + "interpolated": t.interpolated,
                }
            )
            if isinstance(t.landmarks, LandmarkStore):  # already on disk beside faces.npz: referenced
                arrays[p + "landmarks_file"] = np.array(t.landmarks.path.name)
            else:
                arrays[p + "landmarks"] = t.landmarks
            if t.pose is not None:
                arrays[p + "pose"] = t.pose
        with open(path, "wb") as fh:
            np.savez_compressed(fh, **arrays)

    @classmethod
    def load(cls, path: Path) -> "FaceScan":
        with np.load(path) as z:
            ids = sorted({int(k[5:].split("_")[0]) for k in z.files if k.startswith("track")})

            def landmarks(i: int):
                if f"track{i}_landmarks" in z.files:
                    return z[f"track{i}_landmarks"]
                return LandmarkStore(Path(path).parent / str(z[f"track{i}_landmarks_file"]))

            tracks = [
                FaceTrack(
                    i,
                    int(z[f"track{i}_start"]),
                    landmarks(i),
                    z[f"track{i}_align"],
                    z[f"track{i}_jaw_open"],
                    z[f"track{i}_interpolated"],
                    z[f"track{i}_pose"] if f"track{i}_pose" in z.files else None,
                )
                for i in ids
            ]
            w, h = (int(v) for v in z["size"])
            return cls(int(z["num_frames"]), float(z["fps"]), w, h, tracks, z["faces_per_frame"])


def _box(points: np.ndarray) -> np.ndarray:
    return np.array([points[:, 0].min(), points[:, 1].min(), points[:, 0].max(), points[:, 1].max()])


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class _OpenTrack:
    """A track being built. With a ``folder``, detected landmarks go straight to a file there
    (only the small per-frame values stay in memory); without one they are kept in a list."""

    def __init__(self, track_id: int, folder: Path | None = None):
        self.track_id = track_id
        self.folder = folder
        self.raw = open(folder / f".track{track_id}.raw", "w+b") if folder is not None else None
        # per-frame values in compact typed arrays (a Python list of small arrays costs ~10× more)
        self.align_points = array("d")  # 6 values a frame
        self.frames = array("q")
        self.landmarks: list[np.ndarray] = []
        self.jaw = array("f")
        self.pose = array("f")  # 3 values a frame
        self.box: np.ndarray | None = None

    def add(self, frame: int, landmarks: np.ndarray, jaw: float, box: np.ndarray, pose: np.ndarray) -> None:
        self.frames.append(frame)
        self.align_points.extend(geometry.alignment_points(landmarks).ravel().tolist())
        if self.raw is not None:
            self.raw.write(np.ascontiguousarray(landmarks, dtype=np.float32).tobytes())
        else:
            self.landmarks.append(landmarks)
        self.jaw.append(jaw)
        self.pose.extend(np.asarray(pose, dtype=np.float32).tolist())
        self.box = box

    def finish(self, sigma: float) -> FaceTrack:
        frames = np.frombuffer(self.frames, dtype=np.int64)
        start, end = int(frames[0]), int(frames[-1]) + 1
        jaw = np.array(self.jaw, dtype=np.float32)
        pose = np.frombuffer(self.pose, dtype=np.float32).reshape(-1, 3).copy()
        align = np.frombuffer(self.align_points, dtype=np.float64).reshape(-1, 3, 2).copy()
        full = np.arange(start, end)
        interpolated = ~np.isin(full, frames)
        if interpolated.any():  # bridge short gaps linearly (landmarks, and what derives from them)
            jaw = np.interp(full, frames, jaw).astype(np.float32)
            pose = np.stack([np.interp(full, frames, pose[:, j]) for j in range(3)], axis=1).astype(np.float32)
            align = np.stack(
                [np.interp(full, frames, align[:, k, j]) for k in range(3) for j in range(2)], axis=1
            ).reshape(len(full), 3, 2)
        if self.raw is None:
            lm = _bridge(np.stack(self.landmarks).astype(np.float32), frames, full)
        else:
            lm = self._write_landmarks(frames, full)
        if sigma > 0 and len(full) > 1:
            align = gaussian_filter1d(align, sigma, axis=0, mode="nearest")
        return FaceTrack(self.track_id, start, lm, align, jaw, interpolated, pose)

    def _write_landmarks(self, frames: np.ndarray, full: np.ndarray) -> LandmarkStore:
        """The detected rows (in .raw) → faces-track<N>.landmarks.npy with every gap frame filled by
        linear interpolation, row by row: memory stays at a few rows whatever the track's length."""
        row = NUM_LANDMARKS * 2 * 4
        self.raw.flush()
        path = self.folder / f"faces-track{self.track_id}.landmarks.npy"
        position = {int(f): i for i, f in enumerate(frames)}

        def read(i: int) -> np.ndarray:
            self.raw.seek(i * row)
            return np.frombuffer(self.raw.read(row), dtype=np.float32).reshape(NUM_LANDMARKS, 2)

        with open(path, "wb") as out:
            np.lib.format.write_array_header_1_0(
                out, {"descr": "<f4", "fortran_order": False, "shape": (len(full), NUM_LANDMARKS, 2)}
            )
            for f in full:
                i = position.get(int(f))
                if i is not None:
                    out.write(read(i).tobytes())
                    continue
                after = int(np.searchsorted(frames, f))  # the detections either side of the gap
                lo, hi = read(after - 1).astype(np.float64), read(after).astype(np.float64)
                w = (f - frames[after - 1]) / (frames[after] - frames[after - 1])
                out.write(((1 - w) * lo + w * hi).astype(np.float32).tobytes())
        self.raw.close()
        Path(self.raw.name).unlink()
        return LandmarkStore(path)


def _bridge(lm: np.ndarray, frames: np.ndarray, full: np.ndarray) -> np.ndarray:
    """In-memory landmarks with gaps filled linearly (tracks scanned without a folder)."""
    if len(full) == len(frames):
        return lm
    flat = lm.reshape(len(frames), -1).astype(np.float64)
    out = np.stack([np.interp(full, frames, flat[:, j]) for j in range(flat.shape[1])], axis=1)
    return out.reshape(len(full), NUM_LANDMARKS, 2).astype(np.float32)


def head_pose(matrix) -> np.ndarray:
    """Yaw, pitch, roll in degrees from MediaPipe's 4×4 facial transformation matrix (canonical
    face → camera). Roll is the turn in the image plane: a face lying sideways has |roll| ≈ 90."""
    r = np.asarray(matrix, dtype=np.float64)[:3, :3]
    yaw = np.degrees(np.arcsin(np.clip(-r[2, 0], -1.0, 1.0)))
    pitch = np.degrees(np.arctan2(r[2, 1], r[2, 2]))
    roll = np.degrees(np.arctan2(r[1, 0], r[0, 0]))
    return np.array([yaw, pitch, roll], dtype=np.float32)


def create_landmarker(cfg: FaceConfig) -> Any:
    """A MediaPipe FaceLandmarker in VIDEO mode (one per video: timestamps must increase)."""
    from mediapipe.tasks.python import BaseOptions
    from mediapipe.tasks.python.vision import FaceLandmarker, FaceLandmarkerOptions, RunningMode

    model = Path(cfg.model).expanduser() if cfg.model.endswith(".task") else resolve_model(cfg.model)
    if not model.is_file():
        raise ModelFileError(f"{model}: no such model file")
    options = FaceLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(model)),
        running_mode=RunningMode.VIDEO,
        num_faces=cfg.max_faces,
        min_face_detection_confidence=cfg.detection_confidence,
        min_face_presence_confidence=cfg.presence_confidence,
        min_tracking_confidence=cfg.tracking_confidence,
        output_face_blendshapes=True,
        output_facial_transformation_matrixes=True,
    )
    return FaceLandmarker.create_from_options(options)


def detection_size(info: MediaInfo, max_side: int) -> tuple[int, int] | None:
    """Frame size for detection: the source size, scaled down (even sides) when it is larger."""
    side = max(info.width, info.height)
    if side <= max_side:
        return None
    scale = max_side / side
    return (max(2, int(round(info.width * scale / 2)) * 2), max(2, int(round(info.height * scale / 2)) * 2))


def scan_faces(
    video: Path,
    info: MediaInfo,
    cfg: FaceConfig,
    fps: float,
    folder: Path | None = None,
    times: StepTimes | None = None,
    progress_desc: str | None = None,
) -> FaceScan:
    """Detect and track faces in every frame of ``video`` resampled to ``fps``. With ``folder``
    (the video's work folder), each track's landmarks are written there as they come, so memory
    does not grow with the video's length.

    A detection counts only while its eye and nose points are inside the frame (with a margin):
    a face leaving the frame ends or interrupts its track."""
    import mediapipe as mp

    width, height = info.width, info.height
    margin_x, margin_y = cfg.edge_margin * width, cfg.edge_margin * height
    if folder is not None:  # files of an earlier scan of this video
        for old in [*folder.glob("faces-track*.landmarks.npy"), *folder.glob(".track*.raw")]:
            old.unlink()
    open_tracks: list[_OpenTrack] = []
    done: list[FaceTrack] = []
    counts = array("h")  # detections per frame
    next_id = 0
    size = detection_size(info, cfg.detect_max_side)
    frames = iter_frames(video, fps=fps, size=size, info=info)
    if times is not None:
        frames = times.iterate(frames, "decode")
    if progress_desc:  # a user waiting on one video (the dub) sees the scan move
        from shqip_av.log import progress

        frames = progress(frames, desc=progress_desc, total=info.num_frames or None, unit="frame")
    with native_stderr_filtered():  # MediaPipe's start-up lines (glog, TF Lite) come here
        landmarker = create_landmarker(cfg)
    with landmarker:
        for index, frame in enumerate(frames):
            image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(frame))
            if index == 0:  # the first inference logs its own start-up lines
                with native_stderr_filtered():
                    result = landmarker.detect_for_video(image, 0)
            else:
                result = landmarker.detect_for_video(image, int(round(index * 1000.0 / fps)))
            detections = []
            for i, face in enumerate(result.face_landmarks):
                pts = np.array([(p.x * width, p.y * height) for p in face], dtype=np.float32)
                key = geometry.alignment_points(pts)
                inside = (
                    (key[:, 0] >= margin_x)
                    & (key[:, 0] <= width - margin_x)
                    & (key[:, 1] >= margin_y)
                    & (key[:, 1] <= height - margin_y)
                ).all()
                if not inside:
                    continue
                jaw = 0.0
                if result.face_blendshapes:
                    jaw = next((c.score for c in result.face_blendshapes[i] if c.category_name == JAW_OPEN), 0.0)
                pose = (
                    head_pose(result.facial_transformation_matrixes[i])
                    if result.facial_transformation_matrixes
                    else np.zeros(3, dtype=np.float32)
                )
                detections.append((pts, jaw, _box(pts), pose))
            counts.append(len(result.face_landmarks))
            # greedy linking by box overlap, best pairs first
            pairs = sorted(
                ((_iou(t.box, d[2]), ti, di) for ti, t in enumerate(open_tracks) for di, d in enumerate(detections)),
                reverse=True,
            )
            used_t, used_d = set(), set()
            for iou, ti, di in pairs:
                if iou < cfg.link_iou or ti in used_t or di in used_d:
                    continue
                used_t.add(ti)
                used_d.add(di)
                open_tracks[ti].add(index, *detections[di])
            for di, d in enumerate(detections):
                if di not in used_d:
                    track = _OpenTrack(next_id, folder)
                    next_id += 1
                    track.add(index, *d)
                    open_tracks.append(track)
            still = []
            for t in open_tracks:
                if index - t.frames[-1] > cfg.max_gap:
                    done.append(t.finish(cfg.smooth_sigma))
                else:
                    still.append(t)
            open_tracks = still
    done.extend(t.finish(cfg.smooth_sigma) for t in open_tracks)
    for t in done:
        if len(t.landmarks) < cfg.min_track_frames and isinstance(t.landmarks, LandmarkStore):
            t.landmarks.path.unlink()  # a dropped track leaves no file behind
    tracks = sorted((t for t in done if len(t.landmarks) >= cfg.min_track_frames), key=lambda t: (t.start, t.track_id))
    for new_id, t in enumerate(tracks):  # dense, ordered ids: stable sample keys
        t.track_id = new_id
    return FaceScan(len(counts), fps, width, height, tracks, np.frombuffer(counts, dtype=np.int16).copy())


def crop_landmarks(crops: np.ndarray, cfg: FaceConfig | None = None, side: int = 256) -> np.ndarray:
    """MediaPipe landmarks of the one face in each canonical crop: (N, 478, 2) in the crops' own
    pixel coordinates, NaN where no face is found. Crops smaller than ``side`` are upscaled
    first (the landmarker needs a face of some size). Used to measure generated mouths."""
    import cv2
    import mediapipe as mp

    cfg = cfg or FaceConfig()
    crops = np.asarray(crops)
    out = np.full((len(crops), 478, 2), np.nan, np.float32)
    scale = side / crops.shape[1]
    with native_stderr_filtered():  # start-up and first-inference lines of MediaPipe
        landmarker = create_landmarker(FaceConfig(**{**cfg.__dict__, "max_faces": 1}))
    with native_stderr_filtered(), landmarker:
        for i, crop in enumerate(crops):
            image = crop if scale == 1 else cv2.resize(crop, (side, side), interpolation=cv2.INTER_CUBIC)
            result = landmarker.detect_for_video(
                mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image)), i * 40
            )
            if result.face_landmarks:
                points = result.face_landmarks[0]
                out[i] = np.array([[p.x, p.y] for p in points[:478]], np.float32) * (side / scale)
    return out


class FaceTracker:
    """MediaPipe face tracking with a typed config: ``FaceTracker.from_pretrained()`` checks that the
    landmarker model file is there (one line when it is not), ``scan`` tracks a video."""

    def __init__(self, config: FaceConfig | None = None):
        self.config = config or FaceConfig()

    @classmethod
    def from_pretrained(cls, model: str = "face_landmarker", **settings: Any) -> "FaceTracker":
        path = model if model.endswith(".task") else str(resolve_model(model))
        if not Path(path).expanduser().is_file():
            raise ModelFileError(f"{path}: no such model file")
        return cls(FaceConfig(model=model, **settings))

    def scan(
        self,
        video: Path,
        info: MediaInfo,
        fps: float,
        *,
        folder: Path | None = None,
        times: StepTimes | None = None,
        progress_desc: str | None = None,
    ) -> FaceScan:
        return scan_faces(video, info, self.config, fps, folder=folder, times=times, progress_desc=progress_desc)
