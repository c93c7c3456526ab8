"""``python -m shqip_av.doctor``: check that this machine can run every stage.

Prints one line per check (``ok`` or ``PROBLEM … → fix``) and exits 1 if any check failed.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import subprocess
import sys
import warnings

from shqip_av.models import MODEL_FILES, ModelFileError, resolve_model

PACKAGES = [
    ("torch", "make install (pins torch==2.13.0 CPU from constraints.txt)"),
    ("torchaudio", "make install (it disables torchaudio's CUDA-linked extension on a CPU-only torch)"),
    ("numpy", "make install"),
    ("yaml", "make install"),
    ("yt_dlp", "make install"),
    ("cv2", "make install (opencv comes with mediapipe; do not add opencv-python-headless beside it)"),
    ("mediapipe", "make install"),
    ("skimage", "make install"),
    ("onnxruntime", "make install"),
    ("transformers", "make install; if it fails on torchaudio, rerun make install to disable its CUDA extension"),
    ("peft", "make install"),
    ("accelerate", "make install"),
    ("evaluate", "make install"),
    ("datasets", "make install"),
    ("webdataset", "make install"),
    ("pyannote.audio", "make install"),
    ("huggingface_hub", "make install"),
    ("jiwer", "make install"),
]


def check_packages() -> list[tuple[bool, str]]:
    results = []
    for module, fix in PACKAGES:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mod = importlib.import_module(module)
            version = getattr(mod, "__version__", "")
            results.append((True, f"python package {module} {version}".rstrip()))
        except Exception as e:  # any import failure is a finding, not a crash
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            results.append((False, f"python package {module} does not import ({first[:160]}) → {fix}"))
    return results


def check_programs() -> list[tuple[bool, str]]:
    results = []
    for program, fix in [
        ("ffmpeg", "apt-get install ffmpeg"),
        ("ffprobe", "apt-get install ffmpeg"),
        ("espeak-ng", "apt-get install espeak-ng"),
    ]:
        path = shutil.which(program)
        results.append(
            (
                path is not None,
                f"program {program} at {path}"
                if path
                else f"program {program} not found on PATH → {fix} (or: sudo make system-deps)",
            )
        )
    if shutil.which("espeak-ng"):
        out = subprocess.run(["espeak-ng", "--voices=sq"], capture_output=True, text=True).stdout
        has_sq = any(line.split()[1:2] == ["sq"] for line in out.splitlines()[1:])
        results.append(
            (
                has_sq,
                "espeak-ng has the Albanian voice (sq)"
                if has_sq
                else "espeak-ng has no Albanian voice → install the full espeak-ng-data package",
            )
        )
    return results


def check_torch() -> list[tuple[bool, str]]:
    try:
        import torch
    except Exception:
        return []  # already reported by check_packages
    if torch.cuda.is_available():
        device = f"cuda ({torch.cuda.get_device_name(0)}, {torch.cuda.device_count()} device(s))"
    else:
        device = f"cpu ({os.cpu_count()} cores; training runs, slowly)"
    return [(True, f"torch {torch.__version__} device: {device}")]


def check_models() -> list[tuple[bool, str]]:
    results = []
    for name, model in MODEL_FILES.items():
        try:
            path = resolve_model(name, download=False)
            results.append((True, f"model file {model.filename} at {path}"))
        except ModelFileError as e:
            results.append((False, f"{e} → or run online once to download it"))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shqip_av.doctor", description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    checks = check_programs() + check_torch() + check_models() + check_packages()
    for ok, line in checks:
        print(f"{'ok     ' if ok else 'PROBLEM'} {line}")
    problems = sum(not ok for ok, _ in checks)
    print(f"{len(checks) - problems} ok, {problems} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
