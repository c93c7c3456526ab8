"""accelerate launch -m train.lipsync.judge --config train/configs/judge-realpool.yaml [key=value ...]

Trains the landmark sync judge (shqip_av.components.sync_judge) on the dataset's train split and
calibrates filter's limit for it on train speakers it did not learn from:

- The train split's speakers are divided, seeded: ``data.calibration_share`` of them are held out
  for calibration and validation during training; the judge learns from the rest. The validation
  split is never read (its speakers are the ones results are reported on).
- A training step takes ``training.batch_size`` stretches of ``data.segment`` frames: the aligned
  offset must win a softmax over ±``data.max_offset`` offsets, and each stretch's own audio must win
  over the batch's other audio at offset 0. With ``model.members`` > 1, each member of the ensemble
  draws its own stretches. Stretches are drawn per step index, so a resumed run sees the same ones.
- Calibration: every held-out utterance against its own audio and against each other held-out
  speaker's audio; ``min_confidence`` is the confidence limit that best separates the two
  (balanced accuracy).

Outputs in <root>/runs/lipsync/<name>/: judge/ (config.json, model.safetensors, thresholds.json;
``LandmarkSyncJudge.from_pretrained``), metrics.json (with the speakers learnt from and calibrated
on), trained_on.json, config.yaml, checkpoints/.
"""

from __future__ import annotations

import glob
import io
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shqip_av import ShqipError
from shqip_av.config import option, parse_config, run_cli, validate
from shqip_av.files import DatasetRoot
from shqip_av.log import get_logger, progress, setup_logging

log = get_logger(__name__)


@dataclass
class ModelSection:
    hidden: int = option(32, "channels of both convolution stacks", min=4, max=1024)
    embedding: int = option(32, "embedding size per frame", min=4, max=1024)
    dropout: float = option(0.3, "dropout before each convolution", min=0, max=0.9)
    members: int = option(1, "independently initialised judges whose similarities are averaged", min=1, max=16)


@dataclass
class DataSection:
    root: str = option("data", "dataset root holding shards/<split>/*.tar")
    train_split: str = option("train", "split to train and calibrate on (the validation split is never read)")
    calibration_share: float = option(
        0.25, "share of the train split's speakers held out to calibrate and validate on", above=0, max=0.9
    )
    segment: int = option(50, "frames per training stretch", min=25, max=500)
    max_offset: int = option(15, "offsets (frames either way) the softmax is over", min=2, max=50)
    max_samples: int = option(0, "read at most this many samples (0: all)", min=0)
    sync_truth: list[str] = option(
        help="the samples' sync truths it learns and calibrates from (filter's quality.sync_truth: verified "
        "= a table found the clip in sync or its offset was corrected; measured = filter's whole-video check); "
        "samples recorded as unclear or drifting teach a wrong offset. Samples without a recorded truth are used",
        factory=lambda: ["verified", "measured"],
    )


@dataclass
class TrainingSection:
    max_steps: int = option(300, "optimizer steps", min=1)
    batch_size: int = option(32, "stretches per step", min=2)
    learning_rate: float = option(2e-3, "AdamW learning rate", above=0, max=1)
    weight_decay: float = option(0.05, "AdamW weight decay", min=0, max=1)
    eval_steps: int = option(100, "validate on the held-out speakers every this many steps", min=1)
    save_steps: int = option(100, "checkpoint every this many steps", min=1)
    seed: int = option(42, "seed for weights, the speaker division and the stretches")


@dataclass
class Calibration:
    """How filter's confidence limit is chosen from held-out train speakers."""

    keep_share: float = option(
        0.9,
        "share of the held-out own-audio utterances the limit keeps (the foreign audio it then lets through is reported)",
        above=0,
        max=1,
    )
    floor: float = option(0.02, "the limit is never below this (a limit of 0 keeps any audio)", min=0, max=1)
    ceiling: float = option(0.3, "the limit is never above this (a few utterances cannot push it up)", min=0, max=2)
    min_samples: int = option(
        20, "fewer held-out own-audio utterances than this: warn that the calibration is unreliable", min=1
    )


@dataclass
class JudgeConfig:
    name: str = option("judge", "run name: outputs go to <root>/runs/lipsync/<name>/")
    output: str = option("", "output folder instead of <root>/runs/lipsync/<name>")
    model: ModelSection = option(factory=ModelSection)
    data: DataSection = option(factory=DataSection)
    training: TrainingSection = option(factory=TrainingSection)
    calibration: Calibration = option(factory=Calibration)

    def run_dir(self) -> Path:
        return Path(self.output) if self.output else DatasetRoot(self.data.root).path("runs", "lipsync", self.name)


@dataclass
class Utterance:
    key: str
    speaker: str
    features: np.ndarray  # (T, F) mouth features
    mel: np.ndarray  # (80, M) log-mel of its audio


@dataclass
class JudgeData:
    train: list[Utterance] = field(default_factory=list)
    held_out: list[Utterance] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)


def read_utterance(key: str, members: dict, truths: list[str] | None = None) -> Utterance | str:
    """An Utterance from a shard sample's landmarks, audio and metadata, or why it cannot be used."""
    from shqip_av.components import audio_frontend as frontend
    from shqip_av.components.sync_judge import MIN_FRAMES, mouth_features
    from shqip_av.media import decode_wav

    if not {"landmarks.npy", "wav", "json"} <= {k for k, v in members.items() if v is not None}:
        return "missing-members"
    meta = json.loads(members["json"])
    if abs(float(meta.get("fps", frontend.VIDEO_FPS)) - frontend.VIDEO_FPS) > 1e-6:
        return "not-25-fps"
    truth = (meta.get("quality") or {}).get("sync_truth")
    if truths is not None and truth is not None and truth not in truths:
        return f"sync-truth-{truth}"
    try:
        landmarks = np.load(io.BytesIO(members["landmarks.npy"]))
        wave, rate = decode_wav(members["wav"])
    except (ShqipError, ValueError, OSError):
        return "unreadable"
    if rate != frontend.SAMPLE_RATE:
        return "bad-audio"
    if len(landmarks) < MIN_FRAMES:
        return "shorter-than-a-judgement"
    return Utterance(key, str(meta.get("speaker")), mouth_features(landmarks), frontend.log_mel(wave).numpy())


def load_data(d: DataSection, seed: int) -> JudgeData:
    """The train split's utterances, divided by speaker into learnt-from and held out."""
    from shqip_av.schema import read_tar_samples

    tars = sorted(glob.glob(str(DatasetRoot(d.root).path("shards", d.train_split) / "*.tar")))
    data, read = JudgeData(), []
    wanted = {"landmarks.npy", "wav", "json"}
    for tar in tars:
        for key, members in progress(list(read_tar_samples(tar, wanted)), desc="reading train", unit="sample"):
            if d.max_samples and len(read) >= d.max_samples:
                break
            got = read_utterance(key, members, d.sync_truth)
            if isinstance(got, str):
                data.skipped[got] += 1
            else:
                read.append(got)
    speakers = sorted({u.speaker for u in read})
    if len(speakers) < 3:
        raise ShqipError(
            f"{d.root}/shards/{d.train_split}: {len(speakers)} speaker(s) with usable samples; the judge needs "
            f"at least 3 (two to learn from or calibrate on, and another speaker's audio as the negative)"
        )
    order = np.random.default_rng(seed).permutation(len(speakers))
    count = min(len(speakers) - 2, max(2, int(round(len(speakers) * d.calibration_share))))
    held = {speakers[i] for i in order[:count]}
    data.train = [u for u in read if u.speaker not in held]
    data.held_out = [u for u in read if u.speaker in held]
    return data


def summary(utterances: list[Utterance]) -> dict:
    return {
        "samples": len(utterances),
        "speakers": sorted({u.speaker for u in utterances}),
        "frames": int(sum(len(u.features) for u in utterances)),
    }


class Stretches:
    """(step, member) → a batch of (features (B, L, F), audio frames (B, L + 2K, 80, 4)), the
    same for the same (seed, step, member): aligned stretches with K frames of audio either side."""

    def __init__(self, utterances: list[Utterance], segment: int, max_offset: int, batch: int, seed: int):
        self.items = [u for u in utterances if len(u.features) >= segment]
        if not self.items:
            raise ShqipError(f"no utterance has {segment} frames (data.segment): nothing to train the judge on")
        self.segment, self.k, self.batch, self.seed = segment, max_offset, batch, seed

    def __call__(self, step: int, member: int = 0):
        import torch

        from shqip_av.components.sync_judge import audio_frames

        items = self.items
        rng = np.random.default_rng((self.seed, step, member) if member else (self.seed, step))
        video, audio = [], []
        for _ in range(self.batch):
            u = items[int(rng.integers(len(items)))]
            t = int(rng.integers(0, len(u.features) - self.segment + 1))
            video.append(u.features[t : t + self.segment] * np.float32(rng.uniform(0.7, 1.3)))
            audio.append(audio_frames(u.mel, t - self.k, self.segment + 2 * self.k))
        return torch.from_numpy(np.stack(video)), torch.from_numpy(np.stack(audio)).float()


def _judge_pairs(model, utterances: list[Utterance], max_offset: int):
    """(own, foreign) Judgements: each utterance with its own audio and with every other
    speaker's (one utterance per speaker, cut or padded with silence to its length)."""
    from shqip_av.components import audio_frontend as frontend
    from shqip_av.components.sync_judge import judge_curve

    own, foreign = [], []
    first = {}
    for u in utterances:
        first.setdefault(u.speaker, u)
    for u in utterances:
        n = len(u.features)
        count = int(np.ceil(u.mel.shape[1] / frontend.mel_per_video_frame()))
        j = judge_curve(model, u.features, u.mel, 0, count, max_offset)
        if j is not None:
            own.append(j)
        for speaker, other in first.items():
            if speaker == u.speaker:
                continue
            mel = frontend.mel_window(other.mel, 0, n)  # the other voice, as long as this face's stretch
            j = judge_curve(model, u.features, mel, 0, n, max_offset)
            if j is not None:
                foreign.append(j)
    return own, foreign


SHIFTS = (-10, -5, 5, 10)  # frames the held-out audio is moved by to see whether the judge follows


def shifted_mel(mel: np.ndarray, shift: int) -> np.ndarray:
    """The utterance's log-mel as if its audio were ``shift`` frames late (silence in front) or
    early (its start cut off)."""
    from shqip_av.components import audio_frontend as frontend

    columns = int(round(abs(shift) * frontend.mel_per_video_frame()))
    if shift > 0:
        return np.concatenate([np.full((mel.shape[0], columns), frontend.SILENCE, mel.dtype), mel], axis=1)
    return mel[:, columns:]


def shift_accuracy(model, utterances: list[Utterance], max_offset: int) -> dict:
    """On each utterance with its audio moved by SHIFTS: the share of offsets found within ±1 frame
    of the shift, and of the shift plus the offset found on the unmoved utterance (real
    recordings are not all in sync to the frame)."""
    from shqip_av.components.sync_judge import judge_curve

    absolute, relative = [], []
    for u in utterances:
        n = len(u.features)
        base = judge_curve(model, u.features, u.mel, 0, n, max_offset)
        if base is None:
            continue
        for shift in SHIFTS:
            j = judge_curve(model, u.features, shifted_mel(u.mel, shift), 0, n, max_offset)
            if j is not None:
                absolute.append(abs(j.offset - shift) <= 1)
                relative.append(abs(j.offset - shift - base.offset) <= 1)
    if not absolute:
        return {}
    return {
        "shift_within_1": round(float(np.mean(absolute)), 4),
        "shift_within_1_of_own_offset": round(float(np.mean(relative)), 4),
    }


def choose_limit(own: list[float], foreign: list[float], cal: Calibration | None = None) -> dict:
    """The confidence limit that keeps ``keep_share`` of the held-out own-audio confidences, within
    [floor, ceiling]: a limit picked for the best separation can land above every own-audio
    confidence when the held-out set is small (it rejected an unseen speaker's in-sync clip whole),
    while one tied to the share of own audio kept cannot. Returns the limit with what it keeps of
    own audio and lets through of foreign audio, and ``warning`` when the calibration is unreliable."""
    cal = cal or Calibration()
    if cal.floor > cal.ceiling:
        raise ValueError(f"calibration floor {cal.floor} is above its ceiling {cal.ceiling}")
    own_sorted = np.sort(np.asarray(own, dtype=np.float64))
    # the k-th lowest own confidence, k = the share allowed to fall below; halfway to the next lower
    # value, since a limit exactly on a sample's value is fragile
    k = int(np.floor((1.0 - cal.keep_share) * len(own_sorted) + 1e-9))
    k = min(k, len(own_sorted) - 1)
    if k == 0:  # everything kept, the lowest included
        limit = float(own_sorted[0]) - 1e-4
    else:
        limit = float((own_sorted[k] + own_sorted[k - 1]) / 2)
    clamped = "floor" if limit < cal.floor else "ceiling" if limit > cal.ceiling else None
    limit = round(min(max(limit, cal.floor), cal.ceiling), 4)
    own_kept = float(np.mean(own_sorted >= limit))
    result = {
        "min_confidence": limit,
        "keep_share": cal.keep_share,
        "own_kept": round(own_kept, 4),
        "foreign_let_through": round(float(np.mean([x >= limit for x in foreign])) if foreign else 0.0, 4),
        "foreign_rejected": round(float(np.mean([x < limit for x in foreign])) if foreign else 1.0, 4),
        "clamped": clamped,
    }
    warnings = []
    if len(own_sorted) < cal.min_samples:
        warnings.append(
            f"only {len(own_sorted)} held-out own-audio utterances (fewer than {cal.min_samples}): "
            "the limit is a rough guess; hold out more speakers or set sync.expert_min_confidence"
        )
    if own_kept < cal.keep_share - 1e-9:
        warnings.append(
            f"the limit held at its {clamped} ({limit}) keeps {own_kept:.0%} of the held-out own audio, under the "
            f"{cal.keep_share:.0%} asked for"
        )
    if warnings:
        result["warning"] = "; ".join(warnings)
    return result


def calibrate(model, utterances: list[Utterance], max_offset: int, cal: Calibration | None = None) -> dict:
    own, foreign = _judge_pairs(model, utterances, max_offset)
    if not own or not foreign:
        return {}
    c_own, c_foreign = [j.confidence for j in own], [j.confidence for j in foreign]
    chosen = choose_limit(c_own, c_foreign, cal)
    if "warning" in chosen:
        log.warning("sync judge calibration: %s", chosen["warning"])
    return {
        **chosen,
        "samples": len(own),
        "foreign_pairs": len(foreign),
        "own_offset_within_1": round(float(np.mean([abs(j.offset) <= 1 for j in own])), 4),
        **shift_accuracy(model, utterances, max_offset),
        "own_confidence_median": round(float(np.median(c_own)), 4),
        "foreign_confidence_median": round(float(np.median(c_foreign)), 4),
        "speakers": sorted({u.speaker for u in utterances}),
    }


class JudgeTask:
    """The landmark sync judge for the lip-sync trainer (train.lipsync.trainer)."""

    name = "judge"

    def __init__(self, cfg: JudgeConfig):
        self.cfg = cfg
        self.m, self.d, self.t = cfg.model, cfg.data, cfg.training

    def accelerator(self):
        import torch
        from accelerate import Accelerator

        return Accelerator(cpu=not torch.cuda.is_available())

    def load_data(self, accelerator) -> None:
        self.data = load_data(self.d, self.t.seed)
        log.info(
            "learning from %d utterances of %d speakers; %d utterances of %d speakers held out for calibration; "
            "skipped %s",
            len(self.data.train),
            len(summary(self.data.train)["speakers"]),
            len(self.data.held_out),
            len(summary(self.data.held_out)["speakers"]),
            dict(self.data.skipped),
        )

    def build(self, accelerator, start: int):
        import torch

        from shqip_av.components.sync_judge import LandmarkSyncJudge

        torch.manual_seed(self.t.seed)
        judge = LandmarkSyncJudge.build(self.m.hidden, self.m.embedding, self.m.dropout, self.m.members)
        optimizer = torch.optim.AdamW(judge.parameters(), lr=self.t.learning_rate, weight_decay=self.t.weight_decay)
        self.judge, self.optimizer = accelerator.prepare(judge, optimizer)
        self._backward, self.device = accelerator.backward, accelerator.device
        stretches = Stretches(self.data.train, self.d.segment, self.d.max_offset, self.t.batch_size, self.t.seed)
        members = self.m.members
        return ([stretches(step, m) for m in range(members)] for step in range(start, self.t.max_steps))

    def train_step(self, batch) -> dict[str, float]:
        import torch

        judge = self.judge
        judge.train()
        judge = getattr(judge, "module", judge)  # under distributed training, the wrapped judge
        k, length = self.d.max_offset, batch[0][0].shape[1]
        target = torch.full((len(batch[0][0]),), k, device=self.device)
        own = torch.arange(len(batch[0][0]), device=self.device)
        offset_loss = voice_loss = 0
        for m, (features, audio) in enumerate(batch):  # each member learns alone, on its own stretches
            features, audio = features.to(self.device), audio.to(self.device)
            video = judge.embed_video(features, m)  # (B, E, L)
            heard = judge.embed_audio(audio, m)  # (B, E, L + 2K)
            logits = torch.stack(
                [(video * heard[:, :, k + o : k + o + length]).sum(1).mean(1) for o in range(-k, k + 1)], 1
            )
            offset_loss = offset_loss + torch.nn.functional.cross_entropy(logits * judge.scale[m], target)
            cross = torch.einsum("iet,jet->ij", video, heard[:, :, k : k + length]) / length
            voice_loss = voice_loss + torch.nn.functional.cross_entropy(cross * judge.scale[m], own)
        offset_loss, voice_loss = offset_loss / judge.members, voice_loss / judge.members
        loss = offset_loss + voice_loss
        self.optimizer.zero_grad()
        self._backward(loss)
        self.optimizer.step()
        return {"loss": loss.item(), "offset_loss": offset_loss.item(), "voice_loss": voice_loss.item()}

    def evaluate(self, step: int) -> dict:
        own, foreign = _judge_pairs(self.judge, self.data.held_out, self.d.max_offset)
        if not own:
            return {}
        result = {
            "step": step,
            "held_out_offset_within_1": round(float(np.mean([abs(j.offset) <= 1 for j in own])), 4),
            "held_out_confidence": round(float(np.median([j.confidence for j in own])), 4),
            "foreign_confidence": round(float(np.median([j.confidence for j in foreign])), 4) if foreign else None,
            **{
                f"held_out_{k}": v for k, v in shift_accuracy(self.judge, self.data.held_out, self.d.max_offset).items()
            },
        }
        log.info("step %d: %s", step, result)
        return result

    def log_entry(self, step: int, running: list[dict[str, float]]) -> dict:
        return {
            "step": step,
            **{k: round(float(np.mean([r[k] for r in running])), 4) for k in ("loss", "offset_loss", "voice_loss")},
        }

    def first_entries(self, start: int) -> list[dict]:
        return []

    def metrics(self, step: int, start: int, history: list[dict], accelerator) -> dict:
        return {
            "run": self.cfg.name,
            "steps": step,
            "resumed_from": start or None,
            "train": summary(self.data.train),
            "held_out": summary(self.data.held_out),
            "skipped": dict(self.data.skipped),
            "final": history[-1] if history else self.evaluate(step),
            "history": history,
        }

    def model(self, accelerator):
        return accelerator.unwrap_model(self.judge).eval()

    def extra_files(self, accelerator, metrics: dict) -> dict[str, str] | None:
        thresholds = calibrate(self.model(accelerator), self.data.held_out, self.d.max_offset, self.cfg.calibration)
        metrics["calibration"] = thresholds
        log.info("calibration on held-out train speakers: %s", {k: v for k, v in thresholds.items() if k != "speakers"})
        return {"thresholds.json": json.dumps(thresholds, indent=2) + "\n"} if thresholds else None

    def trained_on(self) -> tuple[set[str], list[str]]:
        from shqip_av.schema import video_id_of_key

        return {video_id_of_key(u.key) for u in [*self.data.train, *self.data.held_out]}, [self.d.train_split]


def run_training(cfg: JudgeConfig) -> dict:
    """Train (or resume) the judge into its run folder; returns metrics.json's content."""
    from train.lipsync.trainer import Schedule, fit, require_shards

    validate(cfg)
    require_shards(cfg.data.root, cfg.data.train_split)
    t = cfg.training
    return fit(JudgeTask(cfg), cfg, cfg.run_dir(), Schedule(t.max_steps, t.eval_steps, t.save_steps, t.seed))


def main(argv=None) -> int:
    cfg, args = parse_config(
        JudgeConfig,
        argv,
        prog="accelerate launch -m train.lipsync.judge",
        description="Train the landmark sync judge on the train split; outputs in <root>/runs/lipsync/<name>/.",
    )
    setup_logging(args.verbose, root=cfg.data.root)
    metrics = run_training(cfg)
    c = metrics.get("calibration") or {}
    print(
        f"sync judge: {metrics['steps']} steps; on held-out train speakers: in-sync offset within ±1 frame "
        f"{c.get('own_offset_within_1')}, own audio kept {c.get('own_kept')}, foreign audio rejected "
        f"{c.get('foreign_rejected')} (min_confidence {c.get('min_confidence')})"
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
