"""A train.lipsync run folder, shared by the expert's and the generator's training: resume checks,
checkpoints with a completion marker, and the model folder written without losing the old one."""

from __future__ import annotations

import shutil
from pathlib import Path

from shqip_av.config import ConfigError, flatten, from_dict, load_yaml, to_dict
from shqip_av.files import atomic_write_text

COMPLETE = "COMPLETE"
RESUMABLE = {"output", "training.num_workers"}  # settings that do not change what is trained


def complete_checkpoints(folder: Path) -> list[Path]:
    """The checkpoints that finished saving, oldest first."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.glob("step-*") if (p / COMPLETE).is_file() and p.name[5:].isdigit()]
    return sorted(found, key=lambda p: int(p.name[5:]))


def check_resume(cfg, run: Path, resumable=RESUMABLE) -> bool:
    """True when the run is finished; refuses a run folder that holds another config."""
    saved = run / "config.yaml"
    if saved.is_file():
        old, new = flatten(to_dict(from_dict(type(cfg), load_yaml(saved)))), flatten(to_dict(cfg))
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k) and k not in resumable)
        if changed:
            raise ConfigError(f"{run} holds a run with a different config ({', '.join(changed)}); choose another name")
        return (run / "metrics.json").is_file()
    return False


def resume(accelerator, checkpoints: Path, done: list[Path], log) -> None:
    """Load the newest complete checkpoint (after accelerator.prepare) and remove half-saved ones."""
    if done:
        accelerator.load_state(str(done[-1]))
        log.info("resuming from %s", done[-1].name)
    if accelerator.is_main_process and checkpoints.is_dir():
        for partial in checkpoints.glob("step-*"):
            if partial not in done:
                shutil.rmtree(partial, ignore_errors=True)


def save_checkpoint(accelerator, checkpoints: Path, step: int, keep: int = 2) -> None:
    """accelerator.save_state, then the completion marker; only the newest ``keep`` are kept."""
    target = checkpoints / f"step-{step}"
    accelerator.save_state(str(target))
    if accelerator.is_main_process:
        atomic_write_text(target / COMPLETE, f"step {step}\n")
        for old in complete_checkpoints(checkpoints)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)


def write_model(model, run: Path, name: str, extra: dict[str, str] | None = None) -> Path:
    """``model.save_pretrained`` into <run>/<name>/ (plus ``extra`` text files). The new folder is
    written beside the old one and swapped in, so a failure never leaves the run without a model."""
    target, tmp, old = run / name, run / f"{name}.tmp", run / f"{name}.old"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    for filename, text in (extra or {}).items():
        atomic_write_text(tmp / filename, text)
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return target
