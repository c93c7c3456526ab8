"""The filter stage's configuration: every threshold of DESIGN.md §3, documented.

``python -m filter --help`` lists them; the resolved config is saved as clips/filter.yaml, and the
part that changes results (everything but root/workers) is fingerprinted into each video's done
marker so a changed threshold redoes exactly the videos it affects.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from shqip_av import ShqipError, __version__
from shqip_av.config import option, to_dict


class ConfigurationError(ShqipError):
    """A setting that cannot work (a missing pipeline, an unknown method): stops the whole run."""


@dataclass
class ProbeConfig:
    min_fps: float = option(23.0, "videos whose average frame rate is below this are rejected")
    min_side: int = option(64, "smallest accepted frame width/height in pixels")
    max_side: int = option(8192, "largest accepted frame width/height in pixels")
    max_aspect: float = option(4.0, "largest accepted ratio of the long to the short frame side")
    fps: float = option(25.0, "frame rate of the analysis and of the output crops (VFR is resampled to it)")


@dataclass
class FaceConfig:
    model: str = option("face_landmarker", "MediaPipe FaceLandmarker: a model name (resolved by shqip_av.models) or a .task path")
    max_faces: int = option(4, "faces tracked per frame")
    detection_confidence: float = option(0.5, "MediaPipe min_face_detection_confidence")
    presence_confidence: float = option(0.5, "MediaPipe min_face_presence_confidence")
    tracking_confidence: float = option(0.5, "MediaPipe min_tracking_confidence")
    detect_max_side: int = option(1280, "frames are scaled down to at most this side for detection (landmarks are mapped back to source pixels)")
    link_iou: float = option(0.3, "a detection continues a track when its box overlaps the track's last box by at least this IoU")
    max_gap: int = option(2, "missing frames a track may bridge (interpolated)")
    min_track_frames: int = option(12, "shorter tracks are dropped")
    edge_margin: float = option(0.02, "a face whose eye/nose points come closer than this fraction of the frame to an edge counts as leaving the frame")
    smooth_sigma: float = option(1.5, "Gaussian smoothing (in frames) of the eye and nose points used for alignment")


@dataclass
class SpeechConfig:
    use_captions: bool = option(True, "use uploader captions as speech segments and transcripts when present")
    vad_model: str = option("silero_vad", "Silero VAD ONNX: a model name or a path")
    vad_threshold: float = option(0.5, "speech probability that starts speech")
    vad_neg_threshold: float = option(0.35, "speech probability below which speech ends")
    min_speech: float = option(0.25, "shorter speech regions are ignored (s)")
    pad: float = option(0.05, "padding added around each speech region (s)")
    split_pause: float = option(0.3, "pauses at least this long split utterances (s)")
    min_utterance: float = option(1.0, "shortest utterance kept (s)")
    max_utterance: float = option(12.0, "longest utterance kept (s); longer speech is split at its longest pause")


@dataclass
class DiarizationConfig:
    pipeline: str = option("", "pyannote.audio pipeline: a local config.yaml / folder, or a Hub id such as "
                               "pyannote/speaker-diarization-community-1 (needs a token and network). "
                               "Empty: no diarization, every video is assumed to hold one speaker")
    token_env: str = option("HF_TOKEN", "environment variable holding a Hub token for gated pipelines (never logged)")
    max_overlap: float = option(0.2, "utterances with more overlapping speech than this (s) are dropped")
    device: str = option("cpu", "torch device for diarization")


@dataclass
class QualityConfig:
    min_eye_distance: float = option(80.0, "smallest median eye-to-eye distance in source pixels")
    min_sharpness: float = option(15.0, "smallest median variance of the Laplacian of the 256×256 crop")
    min_coverage: float = option(1.0, "fraction of the utterance's frames the face track must cover")


@dataclass
class SyncConfig:
    method: str = option("landmark-energy", "landmark-energy (training-free) or the path of a trained sync expert")
    max_offset: int = option(15, "offsets searched, in frames either way")
    min_window: float = option(3.0, "shorter utterances are scored on this many seconds of their face track around them")
    min_confidence: float = option(0.3, "smallest accepted sync confidence (peak correlation minus the median over offsets)")
    max_abs_offset: int = option(3, "largest accepted |offset| in frames")


@dataclass
class CropConfig:
    size: int = option(256, "side of the canonical face crop")
    crf: int = option(18, "H.264 quality of the crop videos (lower is better)")


@dataclass
class FilterConfig:
    root: str = option("data", "dataset root; filter reads raw/ and writes work/ and clips/ inside it")
    workers: int = option(1, "videos processed in parallel (processes)")
    probe: ProbeConfig = option(factory=ProbeConfig)
    faces: FaceConfig = option(factory=FaceConfig)
    speech: SpeechConfig = option(factory=SpeechConfig)
    diarization: DiarizationConfig = option(factory=DiarizationConfig)
    quality: QualityConfig = option(factory=QualityConfig)
    sync: SyncConfig = option(factory=SyncConfig)
    crop: CropConfig = option(factory=CropConfig)

    def fingerprint(self) -> str:
        """Hash of everything that changes results (not where or how fast they are computed)."""
        data = to_dict(self)
        for key in ("root", "workers"):
            data.pop(key)
        data["diarization"].pop("device")
        data["version"] = __version__
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
