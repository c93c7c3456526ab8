"""Fine-tune Whisper on the shards: transformers' Seq2SeqTrainer, peft LoRA, accelerate underneath.

The Trainer runs on accelerate: ``accelerate launch -m train.asr`` gives data-parallel training on
several GPUs (or CPU processes), mixed precision and gradient accumulation without code of ours.
What this module adds around it:

- start-up checks (model, tokenizer language token, config, shards) before anything heavy runs;
- sample eligibility with counted skips (train/asr/data.py);
- checkpoints that are known to be complete: a marker is written after the Trainer has saved
  weights, optimizer, scheduler, RNG states and trainer state; a run killed mid-way resumes from
  the newest complete checkpoint, and an incomplete one is deleted;
- the outputs of a finished run in runs/asr/<name>/ (see ``finish``), written once; a rerun of a
  finished run with the same config changes nothing.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from shqip_av.components import whisper
from shqip_av.config import ConfigError, flatten, from_dict, load_yaml, save_config, to_dict
from shqip_av.files import DatasetRoot, atomic_write_text, remove_tree
from shqip_av.log import get_logger

from train.asr import data as asr_data
from train.asr import model as asr_model
from train.asr.config import AsrConfig, check_config
from train.asr.scoring import eligible_split, format_table, max_audio_seconds, score_rows, transcribe, write_predictions

log = get_logger(__name__)

COMPLETE = "shqip-av-complete"
# Keys that may change between a killed run and its resumption without changing what it trains
# (where the run folder lives, how the end is scored, the upload).
RESUMABLE_CHANGES = (
    "name",
    "output",
    "training.resume",
    "training.evaluate_base",
    "training.eval_batch_size",
    "training.num_workers",
    "data.report_splits",
    "data.max_eval_samples",
    "hub.",
)


def no_accelerator() -> bool:
    """True on a CPU-only machine. accelerate and the Trainer must both be told: otherwise processes
    started by ``accelerate launch --multi_gpu`` (the torchrun launcher, which is also how several
    CPU processes are started) each believe they are alone and train the same data twice."""
    import torch

    return not (torch.cuda.is_available() or torch.backends.mps.is_available())


def mixed_precision(setting: str) -> str:
    import torch

    if setting != "auto":
        return setting
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


def config_changes(saved: dict, current: dict) -> list[str]:
    """Keys whose values differ in a way that would make resuming train something else."""
    a, b = flatten(saved), flatten(current)
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k) and not k.startswith(RESUMABLE_CHANGES))


def complete_checkpoints(folder: Path) -> list[Path]:
    """Checkpoint folders with the completion marker, oldest first."""
    found = [p for p in folder.glob("checkpoint-*") if (p / COMPLETE).is_file() and p.name.split("-")[-1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


def prepare_run_dir(cfg: AsrConfig, is_main: bool) -> tuple[Path | None, bool]:
    """(checkpoint to resume from or None, run already finished)."""
    run = cfg.run_dir()
    checkpoints = run / "checkpoints"
    saved_path = run / "config.yaml"
    current = to_dict(cfg)
    if saved_path.is_file():
        saved = to_dict(from_dict(AsrConfig, load_yaml(saved_path)))
        changes = config_changes(saved, current)
        if changes and cfg.training.resume != "never":
            raise ConfigError(
                f"{run} holds a run with a different config ({', '.join(changes[:6])}); "
                "choose another name, or set training.resume=never to start it over"
            )
        if not changes and (run / "metrics.json").is_file() and cfg.training.resume != "never":
            return None, True
    if cfg.training.resume == "never":
        if is_main:
            for name in ("checkpoints", "adapter", "model", "merged", "processor", "predictions", "metrics.json"):
                target = run / name
                if target.is_dir():
                    remove_tree(target)
                elif target.exists():
                    target.unlink()
        return None, False
    done = complete_checkpoints(checkpoints) if checkpoints.is_dir() else []
    if is_main and checkpoints.is_dir():
        newest = int(done[-1].name.split("-")[-1]) if done else -1
        for partial in checkpoints.glob("checkpoint-*"):
            step = partial.name.split("-")[-1]
            if partial not in done and (not step.isdigit() or int(step) > newest):
                log.warning("removing incomplete checkpoint %s (the run was stopped while saving it)", partial.name)
                shutil.rmtree(partial, ignore_errors=True)
    return (done[-1] if done else None), False


def _checkpoint_marker():
    from transformers import TrainerCallback

    class MarkComplete(TrainerCallback):
        """Writes the completion marker once the Trainer has saved a whole checkpoint."""

        def on_save(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                if folder.is_dir():
                    atomic_write_text(folder / COMPLETE, f"step {state.global_step}\n")

    return MarkComplete()


def _compute_metrics(tokenizer):
    import numpy as np

    from train.asr.metric import score

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def compute(prediction) -> dict:
        # -100 marks padding in labels and in predictions gathered across batches
        predictions = np.where(prediction.predictions < 0, pad, prediction.predictions)
        labels = np.where(prediction.label_ids < 0, pad, prediction.label_ids)
        hyps = tokenizer.batch_decode(predictions, skip_special_tokens=True)
        refs = tokenizer.batch_decode(labels, skip_special_tokens=True)
        result = score([h.strip() for h in hyps], [r.strip() for r in refs])
        return {
            k: v for k, v in result.items() if k in ("wer", "wer_normalized", "cer", "cer_normalized") and v is not None
        }

    return compute


def _training_arguments(cfg: AsrConfig, run: Path, has_eval: bool):
    from transformers import Seq2SeqTrainingArguments

    t = cfg.training
    precision = mixed_precision(t.mixed_precision)
    return Seq2SeqTrainingArguments(
        output_dir=str(run / "checkpoints"),
        max_steps=t.max_steps if t.max_steps > 0 else -1,
        num_train_epochs=t.epochs,
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.eval_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation,
        learning_rate=t.learning_rate,
        warmup_steps=t.warmup_steps,
        lr_scheduler_type=t.scheduler,
        weight_decay=t.weight_decay,
        fp16=precision == "fp16",
        bf16=precision == "bf16",
        eval_strategy="steps" if has_eval else "no",
        eval_steps=t.eval_steps,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.keep_checkpoints,
        logging_steps=t.logging_steps,
        seed=t.seed,
        data_seed=t.seed,
        dataloader_num_workers=t.num_workers,
        predict_with_generate=True,
        generation_num_beams=t.num_beams,
        remove_unused_columns=False,  # our collator picks the columns
        label_names=["labels"],
        ddp_find_unused_parameters=False,
        report_to="none",
        use_cpu=no_accelerator(),
    )


def record_training_videos(root: str, run: Path, splits: list[str]) -> Path:
    """<run>/trained_on.json: sha256 of every video id in the shards this run trains (and selects)
    on. collect.takedown marks the run when one of them is withdrawn; the model card says so."""
    from filter.shard import current_keys
    from shqip_av.schema import video_id_of_key
    from shqip_av.takedown import record_trained_on, restrictions_of

    keys = current_keys(DatasetRoot(root))
    videos = {video_id_of_key(k) for split in splits for k in keys.get(split, ())}
    return record_trained_on(run, videos, splits, restrictions_of(root, videos))


def run_training(cfg: AsrConfig) -> dict:
    """Train (or resume) and write the run's outputs; returns metrics.json's content."""
    from accelerate import PartialState
    from transformers import Seq2SeqTrainer, set_seed

    check_config(cfg)
    asr_data.check_shards(cfg.data.root)
    state = PartialState(cpu=no_accelerator())
    run = cfg.run_dir()
    resume_from, finished = prepare_run_dir(cfg, state.is_main_process)
    if finished:
        metrics = json.loads((run / "metrics.json").read_text())
        log.info("run %s is already complete; nothing to do (metrics.json below)", run)
        print(format_table(_table_rows(metrics)))
        return metrics
    state.wait_for_everyone()

    processor = whisper.load_processor(cfg.model.name_or_path, cfg.model.revision)
    tokenizer = processor.tokenizer
    set_seed(cfg.training.seed)
    model = whisper.load_whisper(cfg.model.name_or_path, cfg.model.revision)
    whisper.configure_generation(model, tokenizer, cfg.model.language, cfg.model.task, cfg.training.max_new_tokens)
    asr_model.apply_spec_augment(model, cfg.model.spec_augment)
    if cfg.model.finetune == "lora":
        model = asr_model.add_lora(model, cfg.model.lora)
    log.info("%s: %s", cfg.model.finetune, asr_model.trainable_summary(model))

    max_seconds = max_audio_seconds(cfg.data.max_seconds, processor.feature_extractor)
    preparer = asr_data.FeaturePreparer(processor.feature_extractor, tokenizer)
    data_counts: dict[str, asr_data.Eligibility] = {}

    def split(name: str, limit: int = 0):
        kept, data_counts[name] = eligible_split(
            cfg.data.root,
            name,
            tokenizer,
            max_seconds=max_seconds,
            min_seconds=cfg.data.min_seconds,
            max_label_tokens=cfg.data.max_label_tokens,
            streaming=cfg.data.streaming,
            pseudo_labels=name in cfg.data.pseudo_labels,
        )
        if kept is None:
            return None
        if limit:
            kept = kept.take(limit) if cfg.data.streaming else kept.select(range(min(limit, len(kept))))
        return kept

    if cfg.data.max_seconds > max_seconds:
        log.info("data.max_seconds lowered to the model's %g s input window", max_seconds)
    with state.main_process_first():  # one process builds the Arrow cache, the others then read it
        train_set = split(cfg.data.train_split)
        eval_set = split(cfg.data.eval_split, cfg.data.max_eval_samples) if cfg.data.eval_split else None
    if train_set is None:
        raise asr_data.DataError(f"split {cfg.data.train_split!r} has no shards under {cfg.data.root}/shards")
    if state.is_main_process:  # which videos this model learns from, for takedowns (as digests)
        record_training_videos(
            cfg.data.root, run, [cfg.data.train_split] + ([cfg.data.eval_split] if cfg.data.eval_split else [])
        )
    if not cfg.data.streaming:
        summary = data_counts[cfg.data.train_split].summary()
        log.info("%s: %d samples kept, skipped %s", cfg.data.train_split, summary["kept"], summary["skipped"] or "none")
        if len(train_set) == 0:
            raise asr_data.DataError(f"no trainable samples in {cfg.data.train_split!r}: skipped {summary['skipped']}")
    else:
        train_set = train_set.shuffle(seed=cfg.training.seed, buffer_size=cfg.data.shuffle_buffer)
    if eval_set is not None and not cfg.data.streaming and len(eval_set) == 0:
        eval_set = None
    if eval_set is None:
        log.warning("no %r samples: no evaluation during training", cfg.data.eval_split)

    if state.is_main_process:
        run.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run / "config.yaml")
    collator = asr_data.SpeechCollator(model.config.decoder_start_token_id)
    trainer = Seq2SeqTrainer(
        model=model,
        args=_training_arguments(cfg, run, eval_set is not None),
        data_collator=collator,
        train_dataset=asr_data.prepare(train_set, preparer),
        eval_dataset=asr_data.prepare(eval_set, preparer) if eval_set is not None else None,
        processing_class=processor,
        compute_metrics=_compute_metrics(tokenizer),
        callbacks=[_checkpoint_marker()],
    )
    if resume_from:
        log.info("resuming from %s", resume_from)
    started = time.time()
    result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    training = {
        "steps": trainer.state.global_step,
        "train_loss": result.training_loss,
        "processes": state.num_processes,
        "mixed_precision": mixed_precision(cfg.training.mixed_precision),
        "runtime_s": round(time.time() - started, 1),
        "resumed_from": resume_from.name if resume_from else None,
        "history": trainer.state.log_history,
    }
    state.wait_for_everyone()
    metrics: dict = {}
    if state.is_main_process:
        metrics = finish(cfg, trainer.model, processor, training, data_counts)
    state.wait_for_everyone()
    return metrics


def _table_rows(metrics: dict) -> list[dict]:
    rows = []
    for split_name, by_model in metrics.get("splits", {}).items():
        for which in ("base", "fine_tuned"):
            if which in by_model:
                label = metrics["base_model"] if which == "base" else f"{metrics['run']} (fine-tuned)"
                rows.append({"split": split_name, "model": label, **by_model[which]})
    return rows


def finish(cfg: AsrConfig, model, processor, training: dict, data_counts: dict) -> dict:
    """Write adapter/model, processor, predictions and metrics.json; score base vs. fine-tuned."""
    run = cfg.run_dir()
    model.eval()
    _save_folder(run / ("adapter" if cfg.model.finetune == "lora" else "model"), model.save_pretrained)
    _save_folder(run / "processor", processor.save_pretrained)

    splits: dict[str, dict] = {}
    base_model = None
    if cfg.training.evaluate_base and cfg.model.finetune == "full":
        base_model = whisper.load_whisper(cfg.model.name_or_path, cfg.model.revision).to(
            next(model.parameters()).device
        )
        whisper.configure_generation(
            base_model, processor.tokenizer, cfg.model.language, cfg.model.task, cfg.training.max_new_tokens
        )
    gen = {
        "batch_size": cfg.training.eval_batch_size,
        "max_samples": cfg.data.max_eval_samples,
        "num_beams": cfg.training.num_beams,
    }
    for name in cfg.data.report_splits:
        dataset, eligibility = eligible_split(
            cfg.data.root,
            name,
            processor.tokenizer,
            max_seconds=max_audio_seconds(cfg.data.max_seconds, processor.feature_extractor),
            min_seconds=cfg.data.min_seconds,
            max_label_tokens=cfg.data.max_label_tokens,
            streaming=cfg.data.streaming,
            pseudo_labels=name in cfg.data.pseudo_labels,
        )
        rows = transcribe(model, processor, dataset, desc=f"{name}: fine-tuned", **gen) if dataset is not None else []
        data_counts[name] = eligibility  # one complete pass: the counts to report
        if not rows:
            log.warning("report split %r has no eligible samples; not scored", name)
            continue
        write_predictions(run / "predictions" / f"{name}.jsonl", rows)
        splits[name] = {"fine_tuned": score_rows(rows)}
        if cfg.training.evaluate_base:
            if cfg.model.finetune == "lora":
                with model.disable_adapter():
                    base_rows = transcribe(model, processor, dataset, desc=f"{name}: base", **gen)
            else:
                base_rows = transcribe(base_model, processor, dataset, desc=f"{name}: base", **gen)
            write_predictions(run / "predictions" / f"{name}.base.jsonl", base_rows)
            splits[name]["base"] = score_rows(base_rows)

    metrics = {
        "run": cfg.name,
        "base_model": cfg.model.name_or_path,
        "finetune": cfg.model.finetune,
        "language": cfg.model.language,
        "task": cfg.model.task,
        "training": training,
        # with streaming, the train/eval counts cover every pass the stream made, not one epoch
        "data": {name: e.summary() for name, e in data_counts.items()},
        "streaming": cfg.data.streaming,
        "splits": splits,
    }
    if cfg.model.merge and cfg.model.finetune == "lora":
        merged = model.merge_and_unload()
        _save_folder(run / "merged", merged.save_pretrained)
        _save_folder(run / "merged", processor.save_pretrained, replace=False)
    # the run's results are written first: a failed push must leave a complete run behind
    atomic_write_text(run / "metrics.json", json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")
    if splits:
        print(format_table(_table_rows(metrics)))
        learnt_from = [name for name in cfg.data.report_splits if name == cfg.data.train_split]
        if learnt_from:  # the demo's case: say what the figure shows
            print(
                f"note: WER on {', '.join(learnt_from)} is measured on the utterances the model was trained on: "
                "it shows that it learns, not how well it does on speech it has not heard"
            )
    if cfg.hub.push:
        push_to_hub(cfg, run)
    log.info("run written to %s", run)
    return metrics


def _save_folder(target: Path, save, replace: bool = True) -> None:
    """save_pretrained into a temporary sibling, then rename: no half-written model folder."""
    if not replace and target.is_dir():
        save(str(target))
        return
    tmp = target.with_name(target.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    save(str(tmp))
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)


def push_to_hub(cfg: AsrConfig, run: Path) -> str:
    """Upload the adapter (or full model) with its processor to cfg.hub.repo_id.

    The token comes from $HF_TOKEN or the huggingface_hub login; it is never logged or written.
    """
    from huggingface_hub import HfApi

    from shqip_av import ShqipError
    from shqip_av.hub import describe, upload_errors

    weights = run / ("adapter" if cfg.model.finetune == "lora" else "model")
    api = HfApi()
    try:
        api.create_repo(cfg.hub.repo_id, private=cfg.hub.private, exist_ok=True)
        api.upload_folder(repo_id=cfg.hub.repo_id, folder_path=str(weights), commit_message=f"train.asr run {cfg.name}")
        commit = api.upload_folder(
            repo_id=cfg.hub.repo_id,
            folder_path=str(run / "processor"),
            commit_message=f"processor of train.asr run {cfg.name}",
        )
    except upload_errors() as e:
        raise ShqipError(
            f"push to the Hub repo {cfg.hub.repo_id} failed: {describe(e)}; the run is complete in "
            f"{run}; push it again with `python -m cards publish --root {cfg.data.root} "
            f"--repo {cfg.hub.repo_id} --run {run}`"
        ) from None
    log.info("pushed %s to %s", run.name, cfg.hub.repo_id)
    return str(getattr(commit, "commit_url", commit))
