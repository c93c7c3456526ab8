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

from shqip_av import ShqipError
from shqip_av.config import ConfigError, option, parse_config, run_cli, save_config, validate
from shqip_av.files import DatasetRoot, atomic_write_text
from shqip_av.log import get_logger, setup_logging
from train.lipsync.runs import check_resume, complete_checkpoints, resume, save_checkpoint, write_model

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


def run_training(cfg: ExpertConfig) -> dict:
    import torch
    from accelerate import Accelerator
    from torch.utils.data import DataLoader

    from shqip_av.components.sync_expert import build_expert, calibrate
    from train.lipsync.expert_data import PairDataset, SplitData, collate, load_split, summary

    validate(cfg)
    if cfg.data.min_shift > cfg.data.max_shift:
        raise ConfigError("data.min_shift must not exceed data.max_shift")
    if not list(DatasetRoot(cfg.data.root).path("shards", cfg.data.train_split).glob("*.tar")):
        raise ShqipError(
            f"no shards under {cfg.data.root}/shards/{cfg.data.train_split}: run python -m filter.shard first"
        )
    run = cfg.run_dir()
    if check_resume(cfg, run):
        metrics = json.loads((run / "metrics.json").read_text())
        log.info("run %s is already complete; nothing to do", run)
        return metrics
    accelerator = Accelerator(mixed_precision=cfg.training.mixed_precision, cpu=not torch.cuda.is_available())
    if accelerator.is_main_process:
        run.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run / "config.yaml")
    m, d, t = cfg.model, cfg.data, cfg.training
    train = load_split(d.root, d.train_split, m.frames, m.crop_size, d.max_samples)
    evaluation = load_split(d.root, d.eval_split, m.frames, m.crop_size, d.max_samples) if d.eval_split else SplitData()
    if not evaluation.samples and d.holdout > 0 and len(train.samples) > 1:
        rng = np.random.default_rng(t.seed)
        order = rng.permutation(len(train.samples))
        cut = max(1, int(round(len(order) * d.holdout)))
        evaluation = SplitData([train.samples[i] for i in order[:cut]])
        train = SplitData([train.samples[i] for i in order[cut:]], train.skipped)
        log.info("%s has no samples: %d train samples held out for validation", d.eval_split, cut)
    log.info("train: %s; validation: %s", summary(train), summary(evaluation))

    torch.manual_seed(t.seed)
    expert = build_expert(
        {"frames": m.frames, "crop_size": m.crop_size, "channels": list(m.channels), "embedding": m.embedding}
    )
    head = torch.nn.Linear(1, 1)  # cosine similarity → logit (a learnt scale and bias; not saved with the expert)
    with torch.no_grad():
        head.weight.fill_(5.0)
        head.bias.zero_()
    optimizer = torch.optim.Adam([*expert.parameters(), *head.parameters()], lr=t.learning_rate)
    checkpoints = run / "checkpoints"
    done = complete_checkpoints(checkpoints)
    start = int(done[-1].name[5:]) if done else 0
    per_step = t.batch_size * accelerator.num_processes  # each process takes its share of a step's pairs
    pairs = PairDataset(
        train.samples,
        m.frames,
        seed=t.seed,
        min_shift=d.min_shift,
        max_shift=d.max_shift,
        other_speaker_share=d.other_speaker_share,
        length=t.max_steps * per_step,
        start=start * per_step,
    )
    loader = DataLoader(pairs, batch_size=t.batch_size, shuffle=False, num_workers=t.num_workers, collate_fn=collate)
    expert, head, optimizer, loader = accelerator.prepare(expert, head, optimizer, loader)
    resume(accelerator, checkpoints, done, log)
    val_pairs = None
    if evaluation.samples:
        val_set = PairDataset(
            evaluation.samples,
            m.frames,
            seed=t.seed + 1,
            min_shift=d.min_shift,
            max_shift=d.max_shift,
            other_speaker_share=d.other_speaker_share,
            length=t.eval_pairs,
        )
        val_pairs = collate([val_set[i] for i in range(len(val_set))])
    bce = torch.nn.BCEWithLogitsLoss()
    history = []

    def evaluate(step: int) -> dict:
        if val_pairs is None:
            return {}
        expert.eval()
        with torch.no_grad():
            video, mel, label, shift = (x.to(accelerator.device) for x in val_pairs)
            v, a = expert(video, mel)
            logits = head((v * a).sum(-1, keepdim=True)).squeeze(-1)
            loss = float(bce(logits, label))
            predicted = (logits > 0).float()
            shifted = label == 0
            result = {
                "step": step,
                "eval_loss": round(loss, 4),
                "eval_accuracy": round(float((predicted == label).float().mean()), 4),
                "eval_accuracy_aligned": round(float((predicted[~shifted] == 1).float().mean()), 4),
                "eval_accuracy_shifted": round(float((predicted[shifted] == 0).float().mean()), 4),
            }
        expert.train()
        log.info("step %d: %s", step, result)
        return result

    expert.train()
    step = start
    running = []
    for video, mel, label, _ in loader:
        v, a = expert(video, mel)
        logits = head((v * a).sum(-1, keepdim=True)).squeeze(-1)
        loss = bce(logits, label)
        optimizer.zero_grad()
        accelerator.backward(loss)
        optimizer.step()
        step += 1
        running.append(loss.item())
        if step % t.eval_steps == 0 or step == t.max_steps:
            entry = {"step": step, "loss": round(float(np.mean(running)), 4), **evaluate(step)}
            history.append(entry)
            running = []
        if step % t.save_steps == 0 and step < t.max_steps:
            save_checkpoint(accelerator, checkpoints, step)
        if step >= t.max_steps:
            break
    accelerator.wait_for_everyone()
    final = history[-1] if history else evaluate(step)
    metrics = {
        "run": cfg.name,
        "steps": step,
        "resumed_from": start or None,
        "train": summary(train),
        "validation": summary(evaluation),
        "final": final,
        "history": history,
        "scale": float(accelerator.unwrap_model(head).weight.item()),
    }
    if accelerator.is_main_process:
        model = accelerator.unwrap_model(expert).eval()
        # filter's default limits for this expert: LSE on held-out samples, own vs. foreign audio
        thresholds = calibrate(
            model, [(s.video.astype(np.float32), s.mel) for s in evaluation.samples], device=str(accelerator.device)
        )
        metrics["calibration"] = thresholds
        from shqip_av.schema import video_id_of_key
        from shqip_av.takedown import record_trained_on

        record_trained_on(
            run,
            {video_id_of_key(s.key) for s in [*train.samples, *evaluation.samples]},
            [s for s in (d.train_split, d.eval_split) if s],
        )
        target = write_model(
            model, run, "expert", {"thresholds.json": json.dumps(thresholds, indent=2) + "\n"} if thresholds else None
        )
        atomic_write_text(run / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        log.info("sync expert written to %s (validation accuracy %s)", target, final.get("eval_accuracy"))
    return metrics


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
