"""One trainer for the lip-sync networks (the sync expert and the generator).

What both need is here, once: the resume check against the saved config, the accelerator, the
validation split (a held-out share of train when the split has none), the step loop with
validation every ``eval_steps`` and checkpoints (with a completion marker) every ``save_steps``,
resuming from the newest complete checkpoint, and writing the model folder, trained_on.json and
metrics.json. Each network supplies a ``Task``: its data, its model and optimizers, one training
step (its loss) and its validation metrics.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Protocol

import numpy as np

from shqip_av.config import save_config
from shqip_av.files import atomic_write_text
from shqip_av.log import get_logger
from train.lipsync.runs import RESUMABLE, check_resume, complete_checkpoints, resume, save_checkpoint, write_model

log = get_logger(__name__)


@dataclass
class Schedule:
    """The loop's counts (each task's config has them under ``training``)."""

    max_steps: int
    eval_steps: int
    save_steps: int
    seed: int


def require_shards(root: str, split: str) -> None:
    """One line when the split has no shards to train on (before anything is built)."""
    from shqip_av import ShqipError
    from shqip_av.files import DatasetRoot

    if not list(DatasetRoot(root).path("shards", split).glob("*.tar")):
        raise ShqipError(f"no shards under {root}/shards/{split}: run python -m filter.shard first")


def holdout(train: list, evaluation: list, share: float, seed: int) -> tuple[list, list, int]:
    """(train, validation, held out) samples: the validation split's own, or, when it has none, a
    seeded ``share`` of train held out (at least one sample), the same on every rerun."""
    if evaluation or share <= 0 or len(train) <= 1:
        return train, evaluation, 0
    order = np.random.default_rng(seed).permutation(len(train))
    cut = max(1, int(round(len(order) * share)))
    return [train[i] for i in order[cut:]], [train[i] for i in order[:cut]], cut


class Task(Protocol):
    """What a network brings to the trainer."""

    name: str  # its folder in the run (expert/, generator/)

    def accelerator(self):
        """The ``accelerate.Accelerator`` the run uses (mixed precision, accumulation...)."""

    def load_data(self, accelerator) -> None:
        """Decode (or index) the training and validation samples."""

    def build(self, accelerator, start: int) -> Iterable:
        """Seed, build the model and optimizers, prepare them with ``accelerator`` and return the
        training batches from step ``start`` on (a resumed run draws the batches it would have)."""

    def train_step(self, batch) -> dict[str, float] | None:
        """One batch: loss, backward, optimizer step. The loss parts, or None while gradients
        are still being accumulated (no optimizer step was taken)."""

    def evaluate(self, step: int) -> dict:
        """Validation metrics at ``step`` ({} without validation samples)."""

    def log_entry(self, step: int, running: list[dict[str, float]]) -> dict:
        """The history entry of training figures since the last validation."""

    def first_entries(self, start: int) -> list[dict]:
        """History before the first step (the generator's baseline when fine-tuning)."""

    def metrics(self, step: int, start: int, history: list[dict], accelerator) -> dict:
        """metrics.json's content."""

    def model(self, accelerator):
        """The trained network, unwrapped, in eval mode."""

    def extra_files(self, accelerator, metrics: dict) -> dict[str, str] | None:
        """Text files to write beside the model (the expert's thresholds.json)."""

    def trained_on(self) -> tuple[set[str], list[str]]:
        """The video ids learned from, and the splits they came from (trained_on.json)."""


def fit(task: Task, cfg, run: Path, schedule: Schedule, resumable=RESUMABLE) -> dict:
    """Train ``task`` into ``run`` (or resume it; a finished run is returned as it is)."""
    from shqip_av.takedown import record_trained_on, restrictions_of

    if check_resume(cfg, run, resumable):
        log.info("run %s is already complete; nothing to do", run)
        return json.loads((run / "metrics.json").read_text())
    accelerator = task.accelerator()
    if accelerator.is_main_process:
        run.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run / "config.yaml")
    task.load_data(accelerator)
    checkpoints = run / "checkpoints"
    done = complete_checkpoints(checkpoints)
    start = int(done[-1].name[5:]) if done else 0
    batches = task.build(accelerator, start)
    resume(accelerator, checkpoints, done, log)
    history: list[dict[str, Any]] = task.first_entries(start)
    running: list[dict[str, float]] = []
    step = start
    for batch in batches:
        parts = task.train_step(batch)
        if parts is None:
            continue
        step += 1
        running.append(parts)
        if step % schedule.eval_steps == 0 or step == schedule.max_steps:
            history.append({**task.log_entry(step, running), **task.evaluate(step)})
            running = []
        if step % schedule.save_steps == 0 and step < schedule.max_steps:
            save_checkpoint(accelerator, checkpoints, step)
        if step >= schedule.max_steps:
            break
    accelerator.wait_for_everyone()
    metrics = task.metrics(step, start, history, accelerator)
    if accelerator.is_main_process:
        target = write_model(task.model(accelerator), run, task.name, task.extra_files(accelerator, metrics))
        videos, splits = task.trained_on()
        record_trained_on(run, videos, splits, restrictions_of(cfg.data.root, videos))
        atomic_write_text(run / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        log.info("%s written to %s", task.name, target)
    return metrics
