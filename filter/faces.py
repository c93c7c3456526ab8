"""Face tracking: MediaPipe FaceLandmarker (Tasks API, VIDEO running mode) on upright frames at
the analysis rate, detections linked into face tracks, alignment points smoothed over time."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter1d

from filter.config import FaceConfig
from shqip_av import geometry
from shqip_av.log import native_stderr_filtered
from shqip_av.media import MediaInfo, iter_frames
from shqip_av.models import ModelFileError, resolve_model

NUM_LANDMARKS = 478
JAW_OPEN = "jawOpen"


@dataclass
class FaceTrack:
    """One face followed through consecutive frames (``start`` .. ``start + len - 1``)."""

    track_id: int
    start: int
    landmarks: np.ndarray  # (T, 478, 2) float32, source-frame pixels (upright)
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
        arrays = {"num_frames": np.int64(self.num_frames), "fps": np.float64(self.fps),
                  "size": np.array([self.width, self.height]), "faces_per_frame": self.faces_per_frame}
        for t in self.tracks:
            p = f"track{t.track_id}_"
            arrays.update({p + "start": np.int64(t.start), p + "landmarks": t.landmarks, p + "align": t.align,
                           p + "jaw_open": t.jaw_open, p + "interpolated": t.interpolated})
            if t.pose is not None:
                arrays[p + "pose"] = t.pose
        with open(path, "wb") as fh:
            np.savez_compressed(fh, **arrays)

    @classmethod
    def load(cls, path: Path) -> "FaceScan":
        with np.load(path) as z:
            ids = sorted({int(k[5:].split("_")[0]) for k in z.files if k.startswith("track")})
            tracks = [FaceTrack(i, int(z[f"track{i}_start"]), z[f"track{i}_landmarks"], z[f"track{i}_align"],
                                z[f"track{i}_jaw_open"], z[f"track{i}_interpolated"],
                                z[f"track{i}_pose"] if f"track{i}_pose" in z.files else None) for i in ids]
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
    def __init__(self, track_id: int):
        self.track_id = track_id
        self.frames: list[int] = []
        self.landmarks: list[np.ndarray] = []
        self.jaw: list[float] = []
        self.pose: list[np.ndarray] = []
        self.box: np.ndarray | None = None

    def add(self, frame: int, landmarks: np.ndarray, jaw: float, box: np.ndarray, pose: np.ndarray) -> None:
        self.frames.append(frame)
        self.landmarks.append(landmarks)
        self.jaw.append(jaw)
        self.pose.append(pose)
        self.box = box

    def finish(self, sigma: float) -> FaceTrack:
        frames = np.array(self.frames)
        start, end = int(frames[0]), int(frames[-1]) + 1
        lm = np.stack(self.landmarks).astype(np.float32)
        jaw = np.array(self.jaw, dtype=np.float32)
        pose = np.stack(self.pose).astype(np.float32)
        full = np.arange(start, end)
        interpolated = ~np.isin(full, frames)
        if interpolated.any():  # bridge short gaps linearly
            flat = lm.reshape(len(frames), -1)
            lm = np.stack([np.interp(full, frames, flat[:, j]) for j in range(flat.shape[1])], axis=1)
            lm = lm.reshape(len(full), NUM_LANDMARKS, 2).astype(np.float32)
            jaw = np.interp(full, frames, jaw).astype(np.float32)
            pose = np.stack([np.interp(full, frames, pose[:, j]) for j in range(3)], axis=1).astype(np.float32)
        align = geometry.alignment_points(lm)
        if sigma > 0 and len(full) > 1:
            align = gaussian_filter1d(align, sigma, axis=0, mode="nearest")
        return FaceTrack(self.track_id, start, lm, align, jaw, interpolated, pose)


def head_pose(matrix) -> np.ndarray:
    """Yaw, pitch, roll in degrees from MediaPipe's 4×4 facial transformation matrix (canonical
    face → camera). Roll is the turn in the image plane: a face lying sideways has |roll| ≈ 90."""
    r = np.asarray(matrix, dtype=np.float64)[:3, :3]
    yaw = np.degrees(np.arcsin(np.clip(-r[2, 0], -1.0, 1.0)))
    pitch = np.degrees(np.arctan2(r[2, 1], r[2, 2]))
    roll = np.degrees(np.arctan2(r[1, 0], r[0, 0]))
    return np.array([yaw, pitch, roll], dtype=np.float32)


def create_landmarker(cfg: FaceConfig):
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


def scan_faces(video: Path, info: MediaInfo, cfg: FaceConfig, fps: float) -> FaceScan:
    """Detect and track faces in every frame of ``video`` resampled to ``fps``.

    A detection counts only while its eye and nose points are inside the frame (with a margin):
    a face leaving the frame ends or interrupts its track."""
    import mediapipe as mp

    width, height = info.width, info.height
    margin_x, margin_y = cfg.edge_margin * width, cfg.edge_margin * height
    open_tracks: list[_OpenTrack] = []
    done: list[FaceTrack] = []
    counts: list[int] = []
    next_id = 0
    size = detection_size(info, cfg.detect_max_side)
    frames = iter_frames(video, fps=fps, size=size, info=info)
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
                inside = ((key[:, 0] >= margin_x) & (key[:, 0] <= width - margin_x)
                          & (key[:, 1] >= margin_y) & (key[:, 1] <= height - margin_y)).all()
                if not inside:
                    continue
                jaw = 0.0
                if result.face_blendshapes:
                    jaw = next((c.score for c in result.face_blendshapes[i] if c.category_name == JAW_OPEN), 0.0)
                pose = head_pose(result.facial_transformation_matrixes[i]) \
                    if result.facial_transformation_matrixes else np.zeros(3, dtype=np.float32)
                detections.append((pts, jaw, _box(pts), pose))
            counts.append(len(result.face_landmarks))
            # greedy linking by box overlap, best pairs first
            pairs = sorted(((_iou(t.box, d[2]), ti, di) for ti, t in enumerate(open_tracks)
                            for di, d in enumerate(detections)), reverse=True)
            used_t, used_d = set(), set()
            for iou, ti, di in pairs:
                if iou < cfg.link_iou or ti in used_t or di in used_d:
                    continue
                used_t.add(ti)
                used_d.add(di)
                open_tracks[ti].add(index, *detections[di])
            for di, d in enumerate(detections):
                if di not in used_d:
                    track = _OpenTrack(next_id)
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
    tracks = sorted((t for t in done if len(t.landmarks) >= cfg.min_track_frames), key=lambda t: (t.start, t.track_id))
    for new_id, t in enumerate(tracks):  # dense, ordered ids: stable sample keys
        t.track_id = new_id
    return FaceScan(len(counts), fps, width, height, tracks, np.array(counts, dtype=np.int16))
