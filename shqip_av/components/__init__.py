"""The networks and model folders of the project, and what a folder *is*.

One rule for every place that takes a model from the user (a bundle's components, filter's
``sync.method`` and ``transcripts.model``, training's ``loss.expert``, evaluation's flags):

- ``is_hub_id``: the one test of "is this a Hub id" (``user/name``, nothing on disk).
- ``folder_kind``: what a local folder holds, read from its files (config.json says it: our own
  networks record ``shqip_av_kind`` when saved; older folders are recognised by their config keys).
- ``expect_kind``: a folder of another kind stops the caller with one line naming what it is and
  what was expected, before anything loads.
- ``load_strict``: our networks load with every tensor matched (huggingface_hub's mixin loads
  safetensors non-strictly by default, which left a wrong network 90 % random and silent).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path
from typing import Any

from shqip_av import ShqipError

# the kinds a folder can be, as said to users
SYNC_EXPERT = "sync expert"
LANDMARK_JUDGE = "landmark sync judge"
GENERATOR = "lip-sync generator"
WHISPER = "Whisper model"
ASR_RUN = "train.asr run"
BUNDLE = "dubbing bundle"
SEQ2SEQ = "translation model"
VITS = "VITS speech model"
MOUTH_SHAPE = "mouth shape model"

KIND_KEY = "shqip_av_kind"  # written into config.json by our networks' save_pretrained

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")


class KindError(ShqipError):
    """A folder that is not the kind of model the option asks for."""


def is_hub_id(source: str) -> bool:
    """``user/name`` as the Hub spells repo ids (no ``..``, no leading dot or slash), and nothing
    of that name on disk (a local folder always wins)."""
    return (
        bool(_HUB_ID.match(source))
        and ".." not in source
        and not source.endswith((".git", "."))
        and not Path(source).expanduser().exists()
    )


def _config(folder: Path) -> dict | None:
    try:
        data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def run_model_folder(folder: Path) -> Path:
    """A lip-sync run's model folder (runs/lipsync/<name>/expert, /generator, /judge or /mouth-shape), else ``folder``."""
    if not (folder / "config.json").is_file():
        for sub in ("expert", "generator", "judge", "mouth-shape"):
            if (folder / sub / "config.json").is_file():
                return folder / sub
    return folder


def folder_kind(path: str | Path) -> str:
    """What a local folder holds: one of the kinds above, or a short description of what else."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        return "missing folder" if not folder.exists() else "file"
    if (folder / "model_index.json").is_file():
        return BUNDLE
    if (folder / "config.yaml").is_file() and (folder / "processor").is_dir():
        return ASR_RUN
    folder = run_model_folder(folder)
    config = _config(folder)
    if config is None:
        return "folder without a model (no readable config.json)"
    if config.get(KIND_KEY):
        return str(config[KIND_KEY])
    model_type = str(config.get("model_type", ""))
    if model_type == "whisper":
        return WHISPER
    if model_type == "vits":
        return VITS
    if model_type in ("marian", "m2m_100", "t5", "mt5") or config.get("is_encoder_decoder"):
        return f"{SEQ2SEQ} ({model_type})"
    if {"embedding", "crop_size", "channels"} <= config.keys():
        return SYNC_EXPERT
    if {"references", "audio_dim", "size"} <= config.keys():
        return GENERATOR
    return f"model of another kind ({model_type or 'unknown type'})"


def expect_kind(source: str, expected: str | tuple[str, ...], option: str) -> Path | None:
    """The local folder of ``source`` if it is of the ``expected`` kind; None for a Hub id (checked
    when it is downloaded); else one line: what it is, what ``option`` expects."""
    expected = (expected,) if isinstance(expected, str) else expected
    folder = Path(source).expanduser()
    if not folder.exists():
        if is_hub_id(source):
            return None
        raise KindError(f"{option} {source}: no such folder (and not a Hub id user/name)")
    kind = folder_kind(folder)
    if not any(kind == e or kind.startswith(e) for e in expected):
        raise KindError(f"{option} {source} is a {kind}, not a {' or '.join(expected)}")
    return folder


def load_strict(cls: type, source: str, kind: str, option: str, **kwargs: Any) -> Any:
    """``cls.from_pretrained`` on a folder of the right kind (or a Hub id), every tensor matched."""
    folder = expect_kind(source, kind, option)
    target = str(run_model_folder(folder)) if folder is not None else source
    if folder is not None and not (Path(target) / "model.safetensors").is_file():
        raise KindError(f"{option} {source}: the {kind} has no model.safetensors (has its training finished?)")
    try:
        from huggingface_hub import ModelHubMixin

        with contextlib.redirect_stdout(io.StringIO()):  # the mixin prints "Loading weights..." on stdout
            # the mixin's own loader (our classes' from_pretrained come here, with the kind check)
            model = ModelHubMixin.from_pretrained.__func__(cls, target, strict=True, **kwargs)
    except ShqipError:
        raise
    except Exception as e:  # noqa: BLE001 - corrupt weights, a shape mismatch, offline: one line
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise KindError(f"{option} {source}: cannot load the {kind}: {first[:300]}") from None
    if folder is None:  # a Hub download: the kind is checked on what came
        got = folder_kind(Path(_hub_folder(cls, source, kwargs)))
        if got != kind:
            raise KindError(f"{option} {source} is a {got}, not a {kind}")
    return model


def _hub_folder(cls, source: str, kwargs: dict) -> str:
    from huggingface_hub import snapshot_download

    return snapshot_download(source, revision=kwargs.get("revision"), allow_patterns=["config.json"])


def model_folder(source: str) -> Path | None:
    """The local folder a model option names (a run folder resolves to its model folder), or None
    when ``source`` is not a local folder (it may be a Hub id). The one place this is decided."""
    path = Path(source).expanduser()
    return run_model_folder(path) if path.is_dir() else None


def calibration(source: str) -> dict:
    """The limits calibrated when a sync expert was trained (thresholds.json beside its weights)."""
    folder = model_folder(source)
    path = folder / "thresholds.json" if folder else None
    return json.loads(path.read_text(encoding="utf-8")) if path and path.is_file() else {}


def weights_digest(source: str) -> str:
    """sha256 of a local model's model.safetensors ('' for a Hub id or a name): config
    fingerprints include it, so retrained weights at the same path are noticed."""
    from shqip_av.files import weights_digest as digest

    folder = model_folder(source)
    weights = folder / "model.safetensors" if folder else None
    return digest([weights]) if weights and weights.is_file() else ""


def mark_kind(folder: str | Path, kind: str) -> None:
    """Record ``kind`` in a saved network's config.json (after ``save_pretrained``)."""
    from shqip_av.files import atomic_write_text

    path = Path(folder) / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config[KIND_KEY] = kind
    atomic_write_text(path, json.dumps(config, indent=2, sort_keys=True) + "\n")
