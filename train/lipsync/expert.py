"""accelerate launch -m train.lipsync.expert --config train/configs/expert-tiny.yaml [key=value ...]

Trains the sync expert (shqip_av.components.sync_expert.SyncExpert) on the dataset's shards: aligned windows
against audio shifted by at least ``data.min_shift`` frames or spoken by another speaker. The
loss is binary cross-entropy on the cosine similarity (a learnt scale and bias turn it into a
logit). Validation accuracy (aligned vs. shifted, threshold at logit 0) and loss are measured
every ``training.eval_steps`` on the validation split (a held-out share of train when the
validation split has no samples). Checkpoints (``accelerator.save_state`` + a completion marker)
every ``training.save_steps``; a rerun of the same command resumes from the newest complete one,
and pairs are drawn per step index, so a resumed run trains on the same pairs.

Outputs in <root>/runs/lipsync/<name>/: expert/ (config.json + model.safetensors + README.md,
``SyncExpert.from_pretrained``), metrics.json, config.yaml, checkpoints/.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shqip_av.config import ConfigError, option, parse_config, run_cli, validate
from shqip_av.files import DatasetRoot
from shqip_av.log import get_logger, setup_logging

log = get_logger(__name__)


@dataclass
class ModelSection:
    frames: int = option(5, "video frames per window (T)", min=1, max=25)
    crop_size: int = option(
        96, "canonical crops are resized to this side; the lower half is the input", min=16, max=256
    )
    channels: list[int] = option(help="conv widths of both encoders", factory=lambda: [32, 64, 128, 256])
    embedding: int = option(256, "embedding size", min=4, max=4096)


@dataclass
class DataSection:
    root: str = option("data", "dataset root holding shards/<split>/*.tar")
    train_split: str = option("train", "split to train on")
    eval_split: str = option("validation", "split measured during training (held-out train samples when empty)")
    holdout: float = option(0.2, "share of train samples held out when eval_split has none", min=0, max=0.9)
    min_shift: int = option(3, "smallest shift (frames) of a negative", min=1, max=50)
    max_shift: int = option(15, "largest shift (frames) of a negative", min=1, max=100)
    other_speaker_share: float = option(0.25, "share of negatives whose audio is another speaker's", min=0, max=1)
    max_samples: int = option(0, "decode at most this many samples per split (0: all)", min=0)


@dataclass
class TrainingSection:
    max_steps: int = option(2000, "optimizer steps", min=1)
    batch_size: int = option(64, "pairs per step", min=1)
    learning_rate: float = option(1e-3, "Adam learning rate", above=0, max=1)
    eval_steps: int = option(200, "validate every this many steps", min=1)
    eval_pairs: int = option(512, "validation pairs (fixed)", min=8)
    save_steps: int = option(200, "checkpoint every this many steps", min=1)
    num_workers: int = option(0, "data-loading worker processes", min=0, max=64)
    seed: int = option(42, "seed for weights and pairs")
    mixed_precision: str = option("no", "no, fp16 or bf16", choices=("no", "fp16", "bf16"))


@dataclass
class ExpertConfig:
    name: str = option("expert", "run name: outputs go to <root>/runs/lipsync/<name>/")
    output: str = option("", "output folder instead of <root>/runs/lipsync/<name>")
    model: ModelSection = option(factory=ModelSection)
    data: DataSection = option(factory=DataSection)
    training: TrainingSection = option(factory=TrainingSection)

    def run_dir(self) -> Path:
        return Path(self.output) if self.output else DatasetRoot(self.data.root).path("runs", "lipsync", self.name)


class ExpertTask:
    """The sync expert for the lip-sync trainer (train.lipsync.trainer): pairs of video and audio
    windows, binary cross-entropy on their cosine similarity, accuracy on held-out pairs, and the
    calibration of filter's limits written beside the model."""

    name = "expert"

    def __init__(self, cfg: ExpertConfig):
        self.cfg = cfg
        self.m, self.d, self.t = cfg.model, cfg.data, cfg.training

    def accelerator(self):
        import torch
        from accelerate import Accelerator

        return Accelerator(mixed_precision=self.t.mixed_precision, cpu=not torch.cuda.is_available())

    def load_data(self, accelerator) -> None:
        from train.lipsync.expert_data import SplitData, load_split, summary
        from train.lipsync.trainer import holdout

        m, d, t = self.m, self.d, self.t
        train = load_split(d.root, d.train_split, m.frames, m.crop_size, d.max_samples)
        evaluation = (
            load_split(d.root, d.eval_split, m.frames, m.crop_size, d.max_samples) if d.eval_split else SplitData()
        )
        kept, held, cut = holdout(train.samples, evaluation.samples, d.holdout, t.seed)
        if cut:
            log.info("%s has no samples: %d train samples held out for validation", d.eval_split, cut)
            train, evaluation = SplitData(kept, train.skipped), SplitData(held)
        self.train, self.evaluation = train, evaluation
        log.info("train: %s; validation: %s", summary(train), summary(evaluation))

    def build(self, accelerator, start: int):
        import torch
        from torch.utils.data import DataLoader

        from shqip_av.components.sync_expert import build_expert
        from train.lipsync.expert_data import PairDataset, collate

        m, d, t = self.m, self.d, self.t
        torch.manual_seed(t.seed)
        expert = build_expert(
            {"frames": m.frames, "crop_size": m.crop_size, "channels": list(m.channels), "embedding": m.embedding}
        )
        head = torch.nn.Linear(1, 1)  # cosine similarity → logit (a learnt scale and bias; not saved with the expert)
        with torch.no_grad():
            head.weight.fill_(5.0)
            head.bias.zero_()
        optimizer = torch.optim.Adam([*expert.parameters(), *head.parameters()], lr=t.learning_rate)
        per_step = t.batch_size * accelerator.num_processes  # each process takes its share of a step's pairs
        shifts = dict(min_shift=d.min_shift, max_shift=d.max_shift, other_speaker_share=d.other_speaker_share)
        pairs = PairDataset(
            self.train.samples, m.frames, seed=t.seed, length=t.max_steps * per_step, start=start * per_step, **shifts
        )
        loader = DataLoader(
            pairs, batch_size=t.batch_size, shuffle=False, num_workers=t.num_workers, collate_fn=collate
        )
        self.expert, self.head, self.optimizer, loader = accelerator.prepare(expert, head, optimizer, loader)
        self.val_pairs = None
        if self.evaluation.samples:
            val_set = PairDataset(self.evaluation.samples, m.frames, seed=t.seed + 1, length=t.eval_pairs, **shifts)
            self.val_pairs = collate([val_set[i] for i in range(len(val_set))])
        self.bce = torch.nn.BCEWithLogitsLoss()
        self.device = accelerator.device
        self._backward = accelerator.backward
        self.expert.train()
        return loader

    def _logits(self, video, mel):
        v, a = self.expert(video, mel)
        return self.head((v * a).sum(-1, keepdim=True)).squeeze(-1)

    def train_step(self, batch) -> dict[str, float]:
        video, mel, label, _ = batch
        loss = self.bce(self._logits(video, mel), label)
        self.optimizer.zero_grad()
        self._backward(loss)
        self.optimizer.step()
        return {"loss": loss.item()}

    def evaluate(self, step: int) -> dict:
        import torch

        if self.val_pairs is None:
            return {}
        self.expert.eval()
        with torch.no_grad():
            video, mel, label, _ = (x.to(self.device) for x in self.val_pairs)
            logits = self._logits(video, mel)
            predicted, shifted = (logits > 0).float(), label == 0
            result = {
                "step": step,
                "eval_loss": round(float(self.bce(logits, label)), 4),
                "eval_accuracy": round(float((predicted == label).float().mean()), 4),
                "eval_accuracy_aligned": round(float((predicted[~shifted] == 1).float().mean()), 4),
                "eval_accuracy_shifted": round(float((predicted[shifted] == 0).float().mean()), 4),
            }
        self.expert.train()
        log.info("step %d: %s", step, result)
        return result

    def log_entry(self, step: int, running: list[dict[str, float]]) -> dict:
        return {"step": step, "loss": round(float(np.mean([r["loss"] for r in running])), 4)}

    def first_entries(self, start: int) -> list[dict]:
        return []

    def metrics(self, step: int, start: int, history: list[dict], accelerator) -> dict:
        from train.lipsync.expert_data import summary

        return {
            "run": self.cfg.name,
            "steps": step,
            "resumed_from": start or None,
            "train": summary(self.train),
            "validation": summary(self.evaluation),
            "final": history[-1] if history else self.evaluate(step),
            "history": history,
            "scale": float(accelerator.unwrap_model(self.head).weight.item()),
        }

    def model(self, accelerator):
        return accelerator.unwrap_model(self.expert).eval()

    def extra_files(self, accelerator, metrics: dict) -> dict[str, str] | None:
        """filter's default limits for this expert: LSE on held-out samples, own vs. foreign audio."""
        from shqip_av.components.sync_expert import calibrate

        samples = [(s.video.astype(np.float32), s.mel) for s in self.evaluation.samples]
        thresholds = calibrate(self.model(accelerator), samples, device=str(accelerator.device))
        metrics["calibration"] = thresholds
        log.info("validation accuracy %s", (metrics.get("final") or {}).get("eval_accuracy"))
        return {"thresholds.json": json.dumps(thresholds, indent=2) + "\n"} if thresholds else None

    def trained_on(self) -> tuple[set[str], list[str]]:
        from shqip_av.schema import video_id_of_key

        videos = {video_id_of_key(s.key) for s in [*self.train.samples, *self.evaluation.samples]}
        return videos, [s for s in (self.d.train_split, self.d.eval_split) if s]


def run_training(cfg: ExpertConfig) -> dict:
    """Train (or resume) the sync expert into its run folder; returns metrics.json's content."""
    from train.lipsync.trainer import Schedule, fit, require_shards

    validate(cfg)
    if cfg.data.min_shift > cfg.data.max_shift:
        raise ConfigError("data.min_shift must not exceed data.max_shift")
    require_shards(cfg.data.root, cfg.data.train_split)
    t = cfg.training
    return fit(ExpertTask(cfg), cfg, cfg.run_dir(), Schedule(t.max_steps, t.eval_steps, t.save_steps, t.seed))


def main(argv=None) -> int:
    cfg, args = parse_config(
        ExpertConfig,
        argv,
        prog="accelerate launch -m train.lipsync.expert",
        description="Train the sync expert on the dataset's shards; outputs in <root>/runs/lipsync/<name>/.",
    )
    setup_logging(args.verbose, root=cfg.data.root)
    metrics = run_training(cfg)
    final = metrics.get("final") or {}
    print(
        f"sync expert: {metrics['steps']} steps; validation accuracy {final.get('eval_accuracy')} "
        f"(aligned {final.get('eval_accuracy_aligned')}, shifted {final.get('eval_accuracy_shifted')})"
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
