"""accelerate launch -m train.lipsync --config train/configs/generator-tiny.yaml [key=value ...]

Trains the lip-sync generator (shqip_av.components.lipsync_generator) on the dataset's shards: each step, B
windows of T frames with the mouth masked, K references of the same face and the audio of each
frame. Losses: L1 and (MS-)SSIM inside the mask, and after ``loss.sync_warmup`` steps the sync
loss of the frozen expert (the distance of the generated mouth's embedding to its audio's).
Validation (masked L1, PSNR and SSIM inside the mask, the expert's distance) every ``training.eval_steps``
with a sample grid (real | masked input | generated) as PNG; checkpoints with a completion marker
every ``training.save_steps``; a rerun resumes from the newest complete one to the same weights.
A NaN loss stops the run naming the step; the last complete checkpoint stays.

Outputs in <root>/runs/lipsync/<name>/: generator/ (config.json + model.safetensors,
``LipSyncGenerator.from_pretrained``), metrics.json, config.yaml, samples/, checkpoints/.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shqip_av import ShqipError
from shqip_av.config import ConfigError, option, parse_config, run_cli, validate
from shqip_av.files import DatasetRoot
from shqip_av.geometry import CHIN, MOUTH_POINTS
from shqip_av.log import get_logger, progress, setup_logging
from train.lipsync.runs import RESUMABLE, complete_checkpoints

log = get_logger(__name__)


@dataclass
class GenModelSection:
    size: int = option(64, "crop side the generator works at (canonical crops are resized)", min=16, max=512)
    frames: int = option(5, "frames generated together (T)", min=1, max=25)
    references: int = option(3, "reference crops (K), chosen by k-means over mouth landmarks", min=1, max=16)
    channels: list[int] = option(help="U-Net widths, one per down-sampling", factory=lambda: [32, 64, 128])
    audio_dim: int = option(128, "audio embedding size", min=8, max=4096)
    init: str = option("", "start from this generator's weights (a run folder or Hub id); its sizes win")


@dataclass
class GenDataSection:
    root: str = option("data", "dataset root holding shards/<split>/*.tar")
    train_split: str = option("train", "split to train on")
    eval_split: str = option("validation", "split validated on (held-out train samples when empty)")
    holdout: float = option(0.2, "share of train samples held out when eval_split has none", min=0, max=0.9)
    exclude: int = option(5, "references are never within this many frames of the generated window", min=0, max=100)
    videos: list[str] = option(
        help="train on the samples of these video ids only (speaker fine-tuning sets it)", factory=list
    )
    max_samples: int = option(0, "decode at most this many samples per split (0: all)", min=0)
    streaming: bool = option(
        False,
        "stream the training windows from the shards, decoding in the loader's "
        "workers (training.num_workers), instead of decoding every sample up front",
    )
    buffer: int = option(8, "streaming: decoded samples each loader worker draws windows from", min=1, max=1024)


@dataclass
class LossSection:
    l1: float = option(1.0, "weight of the L1 loss inside the mask", min=0)
    ssim: float = option(0.2, "weight of 1 - (MS-)SSIM inside the mask", min=0)
    landmarks: float = option(
        0.1, "weight of the mouth-landmark regression (the shards' landmarks, centred on the mouth)", min=0
    )
    sync: float = option(0.05, "weight of the expert's sync loss (0: off)", min=0)
    sync_warmup: int = option(200, "steps before the sync loss is switched on", min=0)
    expert: str = option("", "the frozen sync expert: a folder (runs/lipsync/<name>) or a Hub id; needed when sync > 0")
    adversarial: float = option(
        0.0,
        "weight of the adversarial loss from a patch discriminator on the mouth "
        "region, trained with its own optimizer (0: off)",
        min=0,
    )
    adversarial_warmup: int = option(200, "steps before the adversarial loss is switched on", min=0)
    mouth_shape: float = option(
        0.0,
        "weight of the mouth-shape loss: a mouth reader (a small CNN that first learns real training "
        "frames only, then stays frozen) reads the lips and chin from the generated mouth region, and "
        "they must match the frame's real landmarks (0: off)",
        min=0,
    )
    mouth_shape_warmup: int = option(0, "generator steps before the mouth-shape loss is switched on", min=0)
    mouth_reader_steps: int = option(
        1500, "steps (64 real training frames each) the mouth reader learns before the generator's first step", min=0
    )


@dataclass
class GenTrainingSection:
    max_steps: int = option(2000, "optimizer steps", min=1)
    batch_size: int = option(8, "windows per step", min=1)
    gradient_accumulation: int = option(1, "steps of gradients per optimizer step", min=1)
    learning_rate: float = option(5e-4, "Adam learning rate", above=0, max=1)
    eval_steps: int = option(200, "validate (and write a sample grid) every this many steps", min=1)
    eval_windows: int = option(32, "validation windows (fixed)", min=1)
    save_steps: int = option(200, "checkpoint every this many steps", min=1)
    num_workers: int = option(0, "data-loading worker processes", min=0, max=64)
    seed: int = option(42, "seed for weights and windows")
    mixed_precision: str = option("no", "no, fp16 or bf16", choices=("no", "fp16", "bf16"))
    audio_gain: float = option(
        0.0,
        "augmentation: each window's log-mel is offset by up to ± this (a louder or "
        "quieter recording; keeps the model from memorising voices)",
        min=0,
    )
    audio_noise: float = option(0.0, "augmentation: Gaussian noise added to the log-mel (std)", min=0)


@dataclass
class GeneratorTrainConfig:
    name: str = option("generator", "run name: outputs go to <root>/runs/lipsync/<name>/")
    output: str = option("", "output folder instead of <root>/runs/lipsync/<name>")
    model: GenModelSection = option(factory=GenModelSection)
    data: GenDataSection = option(factory=GenDataSection)
    loss: LossSection = option(factory=LossSection)
    training: GenTrainingSection = option(factory=GenTrainingSection)

    def run_dir(self) -> Path:
        return Path(self.output) if self.output else DatasetRoot(self.data.root).path("runs", "lipsync", self.name)


def patch_discriminator():
    """A small PatchGAN-style critic of mouth regions: logits per patch."""
    from torch import nn

    layers, cin = [], 3
    for cout in (32, 64, 128):
        layers += [nn.Conv2d(cin, cout, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        cin = cout
    return nn.Sequential(*layers, nn.Conv2d(cin, 1, 3, 1, 1))


# what the mouth reader reads: the lips and the chin (the jaw drop a viewer sees)
READER_POINTS = (*MOUTH_POINTS, CHIN)


def mouth_reader(points: int = len(READER_POINTS)):
    """A small CNN: a mouth region (N, 3, h, w) → (N, points, 2) positions in crop sides. Trained on
    real frames only; the generator's mouths are then read by it, so a mouth the generator draws
    must look, to something that learned real mouths, as open as the real one was."""
    from torch import nn

    layers, cin = [], 3
    for cout in (16, 32, 64, 96):
        layers += [nn.Conv2d(cin, cout, 3, 2, 1), nn.GroupNorm(8, cout), nn.SiLU()]
        layers += [nn.Conv2d(cout, cout, 3, 1, 1), nn.GroupNorm(8, cout), nn.SiLU()]
        cin = cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d((3, 4)), nn.Flatten(), nn.Linear(cin * 12, 2 * points),
                         nn.Unflatten(1, (points, 2)))  # fmt: skip


def reader_targets(landmarks, size: int):
    """(B, T, 478, 2) landmarks in crop pixels → (B·T, P, 2) the reader's points in crop sides."""
    return (landmarks[:, :, list(READER_POINTS)] / size).flatten(0, 1)


def pretrain_mouth_reader(reader, samples, size: int, box, steps: int, seed: int, batch: int = 64) -> dict:
    """The reader's first lessons: ``steps`` batches of real training frames (their mouth regions
    and MediaPipe points), so that its judgement means something from the generator's first step.
    Returns its error (the loss's units) at the end against that of always guessing the mean shape."""
    import torch

    if not steps or not samples:
        return {}
    rng = np.random.default_rng(seed)
    sizes = np.array([len(x.crops) for x in samples], np.float64)
    y0, y1, x0, x1 = box
    points = list(READER_POINTS)

    def draw():
        which = rng.choice(len(samples), batch, p=sizes / sizes.sum())
        picked = [(samples[i], int(rng.integers(len(samples[i].crops)))) for i in which]
        crops = np.stack([x.crops[f, y0:y1, x0:x1] for x, f in picked])
        marks = np.stack([x.landmarks[f, points] for x, f in picked]) / size
        return torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255, torch.from_numpy(marks).float()

    device = next(reader.parameters()).device
    optimizer = torch.optim.Adam(reader.parameters(), lr=1e-3)
    for _ in progress(range(steps), desc="mouth reader", unit="step"):
        crops, marks = (x.to(device) for x in draw())
        loss = 10 * (reader(crops) - marks).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        crops, marks = (x.to(device) for x in draw())
        error = float(10 * (reader(crops) - marks).abs().mean())
        guess = float(10 * (marks - marks.mean(0, keepdim=True)).abs().mean())
    return {"steps": steps, "train_error": round(error, 4), "mean_shape_error": round(guess, 4)}


def mouth_shape_loss(reader, generated, landmarks, size: int, box):
    """How far the reader finds the generated mouths from the real landmarks (×10: positions in crop
    sides are small numbers). Gradients reach the generated frames only: the reader's weights enter
    as detached copies, so this loss can never teach the reader to see what the generator drew."""
    import torch

    frozen = {k: v.detach() for k, v in reader.named_parameters()}
    read = torch.func.functional_call(reader, frozen, (mouth_region(generated, box),))
    return 10 * (read - reader_targets(landmarks, size)).abs().mean()


def masked_l1(generated, real, mask):
    return ((generated - real).abs() * mask).sum() / (mask.sum() * generated.shape[0] * generated.shape[1] * 3)


def mouth_region(x, box):
    """(B, T, 3, S, S) → (B·T, 3, h, w): the mask's rectangle."""
    y0, y1, x0, x1 = box
    return x.flatten(0, 1)[:, :, y0:y1, x0:x1]


def ssim_loss(generated, real, box):
    from pytorch_msssim import ms_ssim, ssim

    a, b = mouth_region(generated, box), mouth_region(real, box)
    if min(a.shape[-2:]) > 6 * 16:  # MS-SSIM's five scales need room for a 7-pixel window
        return 1 - ms_ssim(a, b, data_range=1.0, win_size=7)
    return 1 - ssim(a, b, data_range=1.0, win_size=min(7, (min(a.shape[-2:]) // 2) * 2 - 1))


def psnr_in_mask(generated, real, mask) -> float:
    mse = float((((generated - real) ** 2) * mask).sum() / (mask.sum() * generated.shape[0] * generated.shape[1] * 3))
    return 10 * math.log10(1.0 / max(mse, 1e-10))


class ExpertJudge:
    """The frozen sync expert applied to generated windows: distance of each window's mouth
    embedding to its audio embedding (differentiable in the frames)."""

    def __init__(self, source: str, frames: int, device):
        import torch

        from shqip_av.components.sync_expert import load_expert
        from shqip_av.components import KindError

        try:
            self.model = load_expert(source, "loss.expert").to(device).eval()
        except KindError as exc:
            raise ConfigError(str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - one line at start-up, whatever the loader raised
            raise ConfigError(
                f"loss.expert: cannot load the sync expert {source!r}: {str(exc).splitlines()[0]}"
            ) from None
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.size, self.t = self.model.sync_config.crop_size, self.model.sync_config.frames
        if self.t > frames:
            raise ConfigError(f"the expert judges {self.t} frames at once; model.frames is {frames}")
        self.torch = torch

    def distance(self, frames, mel):
        """frames (B, T, 3, S, S); mel (B, 80, mel_length(T_expert)) of the first T_expert frames."""
        from torch.nn import functional as F

        x = frames[:, : self.t]
        grey = 0.299 * x[:, :, 0] + 0.587 * x[:, :, 1] + 0.114 * x[:, :, 2]
        grey = F.interpolate(grey, size=(self.size, self.size), mode="area")
        v = self.model.embed_video(grey[:, :, self.size // 2 :])
        a = self.model.embed_audio(mel)
        return (v - a).norm(dim=-1)


class StreamedSplit:
    """The training split when streaming: its indexed samples (decoded later, in the loader's workers)."""

    def __init__(self, samples, skipped):
        self.samples, self.skipped = samples, skipped

    def summary(self) -> dict:
        return {
            "samples": len(self.samples),
            "skipped": dict(self.skipped),
            "speakers": len({s.speaker for s in self.samples}),
            "frames": int(sum(s.num_frames for s in self.samples)),
            "streaming": True,
        }


def _streamed_splits(cfg: GeneratorTrainConfig):
    """(StreamedSplit of train, FaceData of validation) for a streaming run: validation is decoded
    (at most training.eval_windows samples), held out of train by the same rule as in memory."""
    from train.lipsync.generator_data import FaceData, load_faces
    from train.lipsync.stream import decode_indexed, index_split

    m, d, t = cfg.model, cfg.data, cfg.training
    videos = set(d.videos) or None
    index, skipped = index_split(d.root, d.train_split, frames=m.frames, exclude=d.exclude, videos=videos)
    sizes = dict(size=m.size, frames=m.frames, references=m.references, exclude=d.exclude)
    evaluation = (
        load_faces(d.root, d.eval_split, **sizes, limit=t.eval_windows, videos=videos) if d.eval_split else FaceData()
    )
    if not evaluation.samples and d.holdout > 0 and len(index) > 1:
        order = np.random.default_rng(t.seed).permutation(len(index))
        cut = max(1, int(round(len(order) * d.holdout)))
        held = [index[i] for i in order[:cut]]
        index = [index[i] for i in order[cut:]]
        for item in held[: t.eval_windows]:
            sample = decode_indexed(item, **sizes)
            if isinstance(sample, str):
                evaluation.skipped[sample] += 1
            else:
                evaluation.samples.append(sample)
    if d.max_samples:
        index = index[: d.max_samples]
    return StreamedSplit(index, skipped), evaluation


def save_grid(path: Path, real, generated, mask, rows: int = 4) -> None:
    """PNG: per row, one frame of a window: real | masked input | generated."""
    import cv2

    from shqip_av.files import atomic_write_bytes

    tiles = []
    for i in range(min(rows, real.shape[0])):
        r, g = real[i, 0], generated[i, 0]
        m = r * (1 - mask)
        tiles.append(np.concatenate([np.moveaxis(x.detach().float().cpu().numpy(), 0, -1) for x in (r, m, g)], axis=1))
    image = (np.clip(np.concatenate(tiles, axis=0), 0, 1) * 255).astype(np.uint8)
    ok, png = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if ok:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, png.tobytes())


class GeneratorTask:
    """The lip-sync generator for the lip-sync trainer (train.lipsync.trainer): windows of masked
    frames, references and audio; L1, SSIM, mouth-landmark, sync (the frozen expert) and optional
    adversarial losses; PSNR/SSIM in the mask and the expert's distance on held-out windows, with
    a sample grid per validation."""

    name = "generator"

    def __init__(self, cfg: GeneratorTrainConfig, run: Path):
        self.cfg, self.run = cfg, run
        self.m, self.d, self.lo, self.t = cfg.model, cfg.data, cfg.loss, cfg.training
        self.reader_report: dict = {}  # the mouth reader's pretraining figures (a fresh run with mouth_shape)

    def accelerator(self):
        import torch
        from accelerate import Accelerator, DistributedDataParallelKwargs

        # the mouth head is unused when its loss is off; DDP must then allow unused parameters
        accelerator = Accelerator(
            mixed_precision=self.t.mixed_precision,
            gradient_accumulation_steps=self.t.gradient_accumulation,
            cpu=not torch.cuda.is_available(),
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=self.lo.landmarks == 0)],
        )
        self.judge = ExpertJudge(self.lo.expert, self.m.frames, accelerator.device) if self.lo.sync > 0 else None
        return accelerator

    def load_data(self, accelerator) -> None:
        from train.lipsync.generator_data import FaceData, load_faces
        from train.lipsync.trainer import holdout

        m, d, t = self.m, self.d, self.t
        load = dict(size=m.size, frames=m.frames, references=m.references, exclude=d.exclude, limit=d.max_samples,
                    videos=set(d.videos) or None)  # fmt: skip
        if d.streaming:
            train, evaluation = _streamed_splits(self.cfg)
        else:
            train = load_faces(d.root, d.train_split, **load)
            evaluation = load_faces(d.root, d.eval_split, **load) if d.eval_split else FaceData()
            kept, held, cut = holdout(train.samples, evaluation.samples, d.holdout, t.seed)
            if cut:
                train, evaluation = FaceData(kept, train.skipped), FaceData(held)
        if not train.samples:
            raise ShqipError(
                f"no usable training samples in {d.root}/shards/{d.train_split}"
                f"{' for the chosen videos' if d.videos else ''} (skipped: {dict(train.skipped) or 'none'})"
            )
        self.train, self.evaluation = train, evaluation
        log.info("train: %s; validation: %s", train.summary(), evaluation.summary())

    def _generator(self):
        from shqip_av.components.lipsync_generator import build_generator, load_generator

        m = self.m
        if not m.init:
            return build_generator({"size": m.size, "frames": m.frames, "references": m.references,
                                    "channels": list(m.channels), "audio_dim": m.audio_dim})  # fmt: skip
        try:
            generator = load_generator(m.init, "model.init")
        except (OSError, ValueError) as e:
            raise ConfigError(f"model.init: cannot load the generator {m.init!r}: {str(e).splitlines()[0]}") from None
        g = generator.generator_config
        if (g.size, g.frames, g.references) != (m.size, m.frames, m.references):
            raise ConfigError(
                f"model.init {m.init!r} is size {g.size}, {g.frames} frames, {g.references} references; "
                f"the config says {m.size}, {m.frames}, {m.references}"
            )
        return generator

    def build(self, accelerator, start: int):
        import torch
        from torch.utils.data import DataLoader

        from shqip_av.components import audio_frontend as frontend
        from train.lipsync.generator_data import WindowDataset, collate

        m, d, lo, t = self.m, self.d, self.lo, self.t
        torch.manual_seed(t.seed)
        generator = self._generator()
        optimizer = torch.optim.Adam(generator.parameters(), lr=t.learning_rate, betas=(0.5, 0.999))
        critic = critic_opt = None
        if lo.adversarial > 0:
            critic = patch_discriminator()
            critic_opt = torch.optim.Adam(critic.parameters(), lr=t.learning_rate, betas=(0.5, 0.999))
        # every process takes its share of each step's windows from the prepared loader
        per_step = t.batch_size * t.gradient_accumulation * accelerator.num_processes
        if d.streaming:  # each process streams its own share; the loader is not handed to accelerate
            from train.lipsync.stream import WindowStream

            stream = WindowStream(
                self.train.samples, size=m.size, frames=m.frames, references=m.references, exclude=d.exclude,
                seed=t.seed, batch_size=t.batch_size, rank=accelerator.process_index, world=accelerator.num_processes,
                buffer=d.buffer, start_batch=start * t.gradient_accumulation,
            )  # fmt: skip
            loader = DataLoader(stream, batch_size=t.batch_size, num_workers=t.num_workers, collate_fn=collate)
            generator, optimizer = accelerator.prepare(generator, optimizer)
        else:
            windows = WindowDataset(
                self.train.samples, m.frames, seed=t.seed, length=t.max_steps * per_step, start=start * per_step
            )
            loader = DataLoader(
                windows, batch_size=t.batch_size, shuffle=False, num_workers=t.num_workers, collate_fn=collate
            )
            generator, optimizer, loader = accelerator.prepare(generator, optimizer, loader)
        if critic is not None:
            critic, critic_opt = accelerator.prepare(critic, critic_opt)
        reader = None
        if lo.mouth_shape > 0:  # learns real mouths first, then only judges (frozen, in the checkpoint)
            reader = mouth_reader().to(accelerator.device)
            if start == 0:  # a resumed run restores the reader it had from its checkpoint
                self.reader_report = pretrain_mouth_reader(
                    reader, self.train.samples, m.size, self._box(), lo.mouth_reader_steps, t.seed
                )
                log.info("mouth reader: %s", self.reader_report)
            reader.requires_grad_(False).eval()
            accelerator.register_for_checkpointing(reader)  # its weights travel with the checkpoints
        self.generator, self.optimizer, self.critic, self.critic_opt = generator, optimizer, critic, critic_opt
        self.reader = reader
        self.accelerator_ = accelerator
        self.box = self._box()
        self.mask = accelerator.unwrap_model(generator).mask.to(accelerator.device)
        self.mel_cols = frontend.mel_length(self.judge.t if self.judge else m.frames)  # the expert's window
        self.val = None
        if self.evaluation.samples:
            vset = WindowDataset(self.evaluation.samples, m.frames, seed=t.seed + 1, length=t.eval_windows)
            self.val = collate([vset[i] for i in range(len(vset))])
        self.step = start
        self.micro = start * t.gradient_accumulation  # batches seen: augmentation is seeded per batch
        return loader

    def _box(self) -> tuple[int, int, int, int]:
        """The mask's rectangle in the generator's crops: (y0, y1, x0, x1)."""
        from shqip_av.components.lipsync_generator import MOUTH_BOX

        s = self.m.size
        return tuple(int(round(v * s)) for v in (MOUTH_BOX[1], MOUTH_BOX[3], MOUTH_BOX[0], MOUTH_BOX[2]))

    def first_entries(self, start: int) -> list[dict]:
        history = []
        if self.m.init and start == 0:  # where the starting weights stand on this data (fine-tuning's baseline)
            history.append({"step": 0, **self.evaluate(0)})
        self.generator.train()
        return history

    def train_step(self, batch) -> dict[str, float] | None:
        import torch
        from torch.nn import functional as F

        from shqip_av.components.lipsync_generator import mouth_targets

        accelerator, generator, lo, t = self.accelerator_, self.generator, self.lo, self.t
        frames, refs, mel, marks, sync_mel = (x.to(accelerator.device) for x in batch)
        augment = torch.Generator().manual_seed(t.seed * 1_000_003 + self.micro)
        self.micro += 1
        if t.audio_gain or t.audio_noise:  # the generator hears the augmented audio; the expert the clean one
            gain = (torch.rand(mel.shape[0], 1, 1, 1, generator=augment) * 2 - 1) * t.audio_gain
            mel = mel + gain.to(mel.device) + t.audio_noise * torch.randn(mel.shape, generator=augment).to(mel.device)
        box, mask = self.box, self.mask
        with accelerator.accumulate(generator):
            out, mouth = generator(frames, refs, mel, return_mouth=True)
            parts = {"l1": masked_l1(out, frames, mask)}
            if lo.landmarks > 0:  # ×10: centred mouth points in crop sides are small numbers
                parts["landmarks"] = 10 * (mouth - mouth_targets(marks, self.m.size)).abs().mean()
            if lo.ssim > 0:
                parts["ssim"] = ssim_loss(out, frames, box)
            loss = lo.l1 * parts["l1"] + lo.ssim * parts.get("ssim", 0.0) + lo.landmarks * parts.get("landmarks", 0.0)
            if self.judge is not None and self.step >= lo.sync_warmup:
                parts["sync"] = self.judge.distance(out, sync_mel[..., : self.mel_cols]).mean()
                loss = loss + lo.sync * parts["sync"]
            if not torch.isfinite(loss):
                last = (complete_checkpoints(self.run / "checkpoints")[-1:] or [Path("none")])[0].name
                figures = ", ".join(f"{k} {float(v.detach()):.4g}" for k, v in parts.items())
                raise ShqipError(
                    f"step {self.step + 1}: the loss is {float(loss.detach())} ({figures}); "
                    f"stopped; the last complete checkpoint ({last}) is kept"
                )
            adversarial_on = self.critic is not None and self.step >= lo.adversarial_warmup
            if adversarial_on:  # the generator wants its mouths judged real
                fake_logits = self.critic(mouth_region(out, box))
                parts["adversarial"] = F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
                loss = loss + lo.adversarial * parts["adversarial"]
            if self.reader is not None and self.step >= lo.mouth_shape_warmup:
                parts["mouth_shape"] = mouth_shape_loss(self.reader, out, marks, self.m.size, box)
                loss = loss + lo.mouth_shape * parts["mouth_shape"]
            accelerator.backward(loss)
            self.optimizer.step()
            self.optimizer.zero_grad()
            if adversarial_on:  # then the critic learns real from generated, on its own optimizer
                self.critic_opt.zero_grad()  # drop what the generator's loss left in the critic's gradients
                real_logits = self.critic(mouth_region(frames, box))
                fake_logits = self.critic(mouth_region(out.detach(), box))
                critic_loss = (
                    F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
                    + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
                ) / 2
                accelerator.backward(critic_loss)
                self.critic_opt.step()
                self.critic_opt.zero_grad()
                parts["critic"] = critic_loss
        if not accelerator.sync_gradients:
            return None
        self.step += 1
        return {k: float(v.detach()) for k, v in parts.items()}

    def evaluate(self, step: int) -> dict:
        import torch

        if self.val is None:
            return {}
        generator, judge, mask, cols = self.generator, self.judge, self.mask, self.mel_cols
        generator.eval()
        with torch.no_grad():
            frames, refs, mel, _, sync_mel = (x.to(self.accelerator_.device) for x in self.val)
            out = generator(frames, refs, mel)
            result = {
                "step": step,
                "eval_l1": round(float(masked_l1(out, frames, mask)), 5),
                "eval_psnr_mask": round(psnr_in_mask(out, frames, mask), 3),
                "eval_ssim_mask": round(1 - float(ssim_loss(out, frames, self.box)), 4),
            }
            if self.reader is not None:  # mouth shape as the reader reads it (its own error on real frames)
                marks = self.val[3].to(out.device)
                for name, x in (("eval_mouth_shape", out), ("eval_mouth_shape_real", frames)):
                    result[name] = round(float(mouth_shape_loss(self.reader, x, marks, self.m.size, self.box)), 4)
            if judge is not None:
                result["eval_sync_distance"] = round(float(judge.distance(out, sync_mel[..., :cols]).mean()), 4)
                result["eval_sync_distance_real"] = round(float(judge.distance(frames, sync_mel[..., :cols]).mean()), 4)
        generator.train()
        if self.accelerator_.is_main_process:
            save_grid(self.run / "samples" / f"step-{step:06d}.png", frames, out, mask)
        log.info("step %d: %s", step, result)
        return result

    def log_entry(self, step: int, running: list[dict[str, float]]) -> dict:
        return {
            "step": step,
            **{f"train_{k}": round(float(np.mean([r[k] for r in running if k in r])), 5) for k in running[-1]},
        }

    def metrics(self, step: int, start: int, history: list[dict], accelerator) -> dict:
        t, d = self.t, self.d
        return {
            "run": self.cfg.name,
            "steps": step,
            "resumed_from": start or None,
            "processes": accelerator.num_processes,
            "mixed_precision": t.mixed_precision,
            "train": self.train.summary(),
            "validation_keys": [x.key for x in self.evaluation.samples],
            "validation": self.evaluation.summary(),
            "history": history,
            "final": history[-1] if history else {},
            "reference_fallbacks": None if d.streaming else int(sum(x.picker.fallbacks for x in self.train.samples)),
            **({"mouth_reader": self.reader_report} if self.reader_report else {}),
        }

    def model(self, accelerator):
        return accelerator.unwrap_model(self.generator).eval()

    def extra_files(self, accelerator, metrics: dict) -> dict[str, str] | None:
        return None

    def trained_on(self) -> tuple[set[str], list[str]]:
        """The videos learned from: the samples' own when they were loaded, every video of the
        splits when they were streamed."""
        from shqip_av.schema import video_id_of_key

        d = self.d
        splits = [s for s in (d.train_split, d.eval_split) if s]
        if not d.streaming:
            keys = [x.key for x in [*self.train.samples, *self.evaluation.samples]]
        else:
            from filter.shard import current_keys

            shards = current_keys(DatasetRoot(d.root))
            keys = [k for split in splits for k in shards.get(split, ())]
        return {video_id_of_key(k) for k in keys}, splits


def run_training(cfg: GeneratorTrainConfig) -> dict:
    """Train (or resume) the generator into its run folder; returns metrics.json's content."""
    from train.lipsync.trainer import Schedule, fit, require_shards

    validate(cfg)
    d, lo, t = cfg.data, cfg.loss, cfg.training
    if lo.mouth_shape > 0 and d.streaming:
        raise ConfigError("loss.mouth_shape needs the decoded training frames: set data.streaming=false")
    if lo.sync > 0 and not lo.expert:
        raise ConfigError(
            "loss.sync > 0 needs loss.expert (a trained sync expert: runs/lipsync/<name>); or set loss.sync=0"
        )
    require_shards(d.root, d.train_split)
    run = cfg.run_dir()
    schedule = Schedule(t.max_steps, t.eval_steps, t.save_steps, t.seed)
    return fit(GeneratorTask(cfg, run), cfg, run, schedule, RESUMABLE)


def main(argv=None) -> int:
    cfg, args = parse_config(
        GeneratorTrainConfig,
        argv,
        prog="accelerate launch -m train.lipsync",
        description="Train the lip-sync generator on the dataset's shards; outputs in <root>/runs/lipsync/<name>/.",
    )
    setup_logging(args.verbose, root=cfg.data.root)
    metrics = run_training(cfg)
    final = metrics.get("final") or {}
    if os.environ.get("RANK", "0") != "0":  # one report per run, not one per process
        return 0
    print(
        f"generator: {metrics['steps']} steps; validation L1 in the mask {final.get('eval_l1')}, "
        f"PSNR in the mask {final.get('eval_psnr_mask')} dB"
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
