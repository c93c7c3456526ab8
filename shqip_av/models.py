"""Model files (MediaPipe, YuNet, Silero): where they are looked for, and how they get there.

Resolution order for a known model file:

1. ``$SHQIP_AV_MODELS/<file>`` (a folder the user or CI points at),
2. the user cache, ``$XDG_CACHE_HOME/shqip-av/models/<file>`` (default ``~/.cache/...``),
3. a download from the file's official URL into the cache, checked against its sha256,
   unless offline (``SHQIP_AV_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``).

When none works, ``ModelFileError`` says which file to place where. A file that is present but
does not match its checksum is an error too: a truncated model fails later in obscure ways.
Weights on the Hugging Face Hub (Whisper, pyannote) are not handled here: they go through
their libraries' own loaders.
"""

from __future__ import annotations

import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from shqip_av import ShqipError
from shqip_av.files import atomic_output, sha256_file


class ModelFileError(ShqipError):
    pass


@dataclass(frozen=True)
class ModelFile:
    name: str
    filename: str
    url: str
    sha256: str
    what: str


MODEL_FILES: dict[str, ModelFile] = {
    m.name: m
    for m in [
        ModelFile(
            "face_landmarker",
            "face_landmarker.task",
            "https://storage.googleapis.com/mediapipe-models/face_landmarker/face_landmarker/float16/1/face_landmarker.task",
            "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff",
            "MediaPipe FaceLandmarker bundle (478 landmarks, blendshapes, transformation matrix)",
        ),
        ModelFile(
            "face_detector",
            "blaze_face_short_range.tflite",
            "https://storage.googleapis.com/mediapipe-models/face_detector/blaze_face_short_range/float16/1/blaze_face_short_range.tflite",
            "c3474835029d8a19d7c447194fc801b5405e070453346a7c6f684b8921d18710",
            "MediaPipe FaceDetector (BlazeFace short range)",
        ),
        ModelFile(
            "yunet",
            "face_detection_yunet_2023mar.onnx",
            "https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/face_detection_yunet_2023mar.onnx",
            "5a3c86635ebf418b77d580f7889c4e4064c6dec2a5470bdfa797a8ab307bf948",
            "YuNet face detector for cv2.FaceDetectorYN",
        ),
        ModelFile(
            "silero_vad",
            "silero_vad.onnx",
            "https://github.com/snakers4/silero-vad/raw/806dcba/src/silero_vad/data/silero_vad.onnx",
            "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3",
            "Silero voice activity detector (ONNX)",
        ),
    ]
}


def model_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("SHQIP_AV_MODELS"):
        dirs.append(Path(os.environ["SHQIP_AV_MODELS"]).expanduser())
    dirs.append(cache_dir())
    return dirs


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "shqip-av" / "models"


def offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("SHQIP_AV_OFFLINE", "HF_HUB_OFFLINE"))


def _verify(path: Path, model: ModelFile) -> Path:
    actual = sha256_file(path)
    if actual != model.sha256:
        raise ModelFileError(
            f"{path} does not match the published checksum of {model.filename} "
            f"(sha256 {actual[:12]}…, expected {model.sha256[:12]}…); replace it with {model.url}"
        )
    return path


def resolve_model(name: str, *, download: bool = True) -> Path:
    """The local path of a known model file, downloading it into the cache when allowed."""
    try:
        model = MODEL_FILES[name]
    except KeyError:
        raise ModelFileError(f"unknown model file {name!r}; known: {', '.join(MODEL_FILES)}") from None
    for folder in model_dirs():
        candidate = folder / model.filename
        if candidate.is_file():
            return _verify(candidate, model)
    places = " or ".join(str(d) for d in model_dirs())
    if not download or offline():
        raise ModelFileError(
            f"model file {model.filename} not found; place it in {places} "
            f"(set SHQIP_AV_MODELS to its folder); official source: {model.url}"
        )
    target = cache_dir() / model.filename
    try:
        with atomic_output(target) as tmp:
            with urllib.request.urlopen(model.url, timeout=60) as resp, open(tmp, "wb") as out:
                while block := resp.read(1 << 20):
                    out.write(block)
            _verify(tmp, model)
    except OSError as e:
        raise ModelFileError(
            f"could not download {model.filename} from {model.url} ({e}); place the file in {places} instead"
        ) from None
    return target


def torch_device(name: str, setting: str = "--device") -> str:
    """auto (a CUDA GPU when PyTorch sees one, else the CPU), cpu, cuda or cuda:N, checked; the
    one device rule of filter's recognizer and the dub."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ShqipError(f"{setting} {name}: no CUDA GPU is visible to PyTorch")
    if name != "cpu" and not name.startswith("cuda"):
        raise ShqipError(f"{setting} {name!r}: use auto, cpu, cuda or cuda:N")
    return name
