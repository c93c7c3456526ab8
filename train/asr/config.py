"""The configuration of an ASR fine-tuning run (one dataclass; ``--help`` lists every key)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from shqip_av.config import validate, ConfigError, option
from shqip_av.files import DatasetRoot

WHISPER_MAX_LABEL_TOKENS = 448  # the decoder's position limit in every released Whisper


@dataclass
class LoraSection:
    r: int = option(32, "LoRA rank", min=1, max=4096)
    alpha: int = option(64, "LoRA alpha (the update is scaled by alpha / r)", min=1)
    dropout: float = option(0.05, "dropout on the LoRA input", min=0, max=0.99)
    target_modules: list[str] = option(help="module names that get LoRA adapters", factory=lambda: ["q_proj", "v_proj"])


@dataclass
class SpecAugmentSection:
    enabled: bool = option(True, "mask spans of the log-mel input while training (Whisper's built-in SpecAugment)")
    mask_time_prob: float = option(0.05, "share of time frames that start a masked span", min=0, max=1)
    mask_time_length: int = option(10, "length of a masked time span, in frames", min=1)
    mask_feature_prob: float = option(0.0, "share of mel bins that start a masked span", min=0, max=1)
    mask_feature_length: int = option(10, "length of a masked frequency span, in bins", min=1)


@dataclass
class ModelSection:
    name_or_path: str = option("openai/whisper-small", "Whisper model: a Hub id or a local folder")
    revision: str = option("main", "Hub revision (branch, tag or commit) of name_or_path")
    language: str = option("sq", "Whisper language code written into the generation config")
    task: str = option("transcribe", "Whisper task: transcribe or translate")
    finetune: str = option("lora", "lora (adapters through peft) or full (every weight)")
    lora: LoraSection = option(help="LoRA settings (finetune: lora)", factory=LoraSection)
    spec_augment: SpecAugmentSection = option(help="SpecAugment while training", factory=SpecAugmentSection)
    merge: bool = option(False, "also save the LoRA adapter merged into the base weights (merged/)")


@dataclass
class DataSection:
    root: str = option("data", "dataset root holding shards/<split>/*.tar")
    train_split: str = option("train", "split to train on")
    eval_split: str = option("validation", "split scored during training (skipped when it has no shards)")
    report_splits: list[str] = option(
        help="splits scored at the end, fine-tuned and base side by side", factory=lambda: ["validation", "test"]
    )
    streaming: bool = option(
        False,
        "stream the shards instead of converting them to an Arrow cache "
        "(for data larger than the disk cache; needs training.max_steps)",
    )
    shuffle_buffer: int = option(1000, "shuffle buffer when streaming", min=1)
    min_seconds: float = option(0.3, "skip utterances shorter than this", min=0)
    max_seconds: float = option(
        30.0, "skip utterances longer than this (never more than the model's input window)", above=0
    )
    max_label_tokens: int = option(
        WHISPER_MAX_LABEL_TOKENS, "skip transcripts longer than this in tokens (special tokens included)", min=1
    )
    pseudo_labels: list[str] = option(
        help="splits that use pseudo-labels (transcripts a recognizer wrote in filter, "
        "transcript_source asr:<model>); elsewhere they are skipped, so "
        "validation and test WER is measured against human captions only",
        factory=lambda: ["train"],
    )
    max_eval_samples: int = option(0, "score at most this many samples per split (0: all)", min=0)


@dataclass
class TrainingSection:
    max_steps: int = option(4000, "optimizer steps (0: run `epochs` epochs instead)", min=0)
    epochs: float = option(3.0, "epochs when max_steps is 0", above=0)
    batch_size: int = option(16, "samples per device per step", min=1)
    eval_batch_size: int = option(16, "samples per device when scoring", min=1)
    gradient_accumulation: int = option(1, "micro-batches per optimizer step", min=1)
    learning_rate: float = option(
        1e-3, "peak learning rate (1e-3 suits LoRA; use about 1e-5 for full fine-tuning)", above=0, max=1
    )
    warmup_steps: int = option(50, "linear warm-up steps", min=0)
    scheduler: str = option("linear", "learning-rate schedule after warm-up (transformers name)")
    weight_decay: float = option(0.0, "AdamW weight decay", min=0, max=1)
    mixed_precision: str = option(
        "auto", "no, fp16, bf16, or auto (bf16 on GPUs that have it, fp16 on other GPUs, none on CPU)"
    )
    eval_steps: int = option(500, "score eval_split every this many steps", min=1)
    save_steps: int = option(500, "write a checkpoint every this many steps", min=1)
    keep_checkpoints: int = option(2, "checkpoints kept on disk (older ones are deleted)", min=1)
    logging_steps: int = option(25, "log loss and learning rate every this many steps", min=1)
    seed: int = option(42, "seed for weights, data order and augmentation")
    num_workers: int = option(2, "data-loading worker processes per device", min=0, max=256)
    max_new_tokens: int = option(225, "generation length limit when scoring", min=1, max=448)
    num_beams: int = option(1, "beam size when scoring", min=1, max=64)
    resume: str = option(
        "auto",
        "auto (continue from the last complete checkpoint of this run), never "
        "(start over, deleting this run's checkpoints)",
    )
    evaluate_base: bool = option(True, "also score the untouched base model on report_splits")


@dataclass
class HubSection:
    push: bool = option(False, "push the adapter (or model) and processor to the Hub at the end")
    repo_id: str = option("", "Hub repository, e.g. user/whisper-small-sq")
    private: bool = option(True, "create the Hub repository private")


@dataclass
class AsrConfig:
    name: str = option("whisper-small-sq", "run name: outputs go to <root>/runs/asr/<name>/")
    output: str = option("", "output folder instead of <root>/runs/asr/<name>/")
    model: ModelSection = option(help="base model and how it is fine-tuned", factory=ModelSection)
    data: DataSection = option(help="where the samples come from and which are used", factory=DataSection)
    training: TrainingSection = option(help="optimization, checkpoints and scoring", factory=TrainingSection)
    hub: HubSection = option(help="optional upload of the result", factory=HubSection)

    def run_dir(self) -> Path:
        if self.output:
            return Path(self.output)
        return DatasetRoot(self.data.root).path("runs", "asr", self.name)


def check_config(cfg: AsrConfig) -> None:
    """Settings that cannot work, caught before any model is loaded."""
    validate(cfg)
    if cfg.model.finetune not in ("lora", "full"):
        raise ConfigError(f"model.finetune must be lora or full, got {cfg.model.finetune!r}")
    if cfg.model.task not in ("transcribe", "translate"):
        raise ConfigError(f"model.task must be transcribe or translate, got {cfg.model.task!r}")
    if cfg.training.mixed_precision not in ("auto", "no", "fp16", "bf16"):
        raise ConfigError(
            f"training.mixed_precision must be auto, no, fp16 or bf16, got {cfg.training.mixed_precision!r}"
        )
    if cfg.training.resume not in ("auto", "never"):
        raise ConfigError(f"training.resume must be auto or never, got {cfg.training.resume!r}")
    if cfg.data.streaming and cfg.training.max_steps <= 0:
        raise ConfigError("data.streaming needs training.max_steps > 0 (a stream has no known length)")
    if cfg.data.max_label_tokens > WHISPER_MAX_LABEL_TOKENS:
        raise ConfigError(f"data.max_label_tokens cannot exceed Whisper's {WHISPER_MAX_LABEL_TOKENS}")
    if cfg.hub.push and not cfg.hub.repo_id:
        raise ConfigError("hub.push needs hub.repo_id (e.g. user/whisper-small-sq)")
    for name in (
        "batch_size",
        "eval_batch_size",
        "gradient_accumulation",
        "eval_steps",
        "save_steps",
        "logging_steps",
        "keep_checkpoints",
    ):
        if getattr(cfg.training, name) < 1:
            raise ConfigError(f"training.{name} must be at least 1")
