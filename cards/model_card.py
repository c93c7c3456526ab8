"""python -m cards model --run runs/asr/<name> | runs/lipsync/<name>: the model card of a run.

Writes <run>/README.md (ModelCard with ``model-index`` metadata, which the Hub shows as results)
from the run's own metrics.json and config.yaml. A train.asr run: base model, data, training
settings, and WER/CER per split, raw and normalized, next to the base model scored by the same
evaluator. A sync-expert run (runs/lipsync/<name> with expert/): architecture, the data it saw,
validation accuracy of aligned vs. shifted windows, and the LSE limits calibrated for filter.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from shqip_av.config import load_yaml, option
from shqip_av.files import DatasetRoot, atomic_write_text
from shqip_av.log import get_logger
from shqip_av.takedown import WITHDRAWN_MARKER

from cards.facts import CardError

log = get_logger(__name__)

RATES = (("wer", "WER"), ("wer_normalized", "WER (normalized)"), ("cer", "CER"), ("cer_normalized", "CER (normalized)"))


@dataclass
class ModelCardConfig:
    run: str = option("", "run folder (runs/asr/<name> or runs/lipsync/<name>, relative to --root or absolute)")
    root: str = option("data", "dataset root")
    dataset: str = option("", "Hub id of the dataset it was trained on (user/name), for the metadata")
    repo: str = option("", "Hub model repo the card is for (user/name); used in the usage example")
    license: str = option("apache-2.0", "licence of the released weights (Whisper's own is apache-2.0)")


def is_expert_run(path: Path) -> bool:
    return (path / "expert" / "config.json").is_file()


def is_generator_run(path: Path) -> bool:
    return (path / "generator" / "config.json").is_file()


def is_judge_run(path: Path) -> bool:
    return (path / "judge" / "config.json").is_file()


def resolve_run(run: str, root: str) -> Path:
    if not run:
        raise CardError("give --run: a run folder such as runs/asr/whisper-small-sq or runs/lipsync/expert-base")
    path = Path(run)
    if not path.is_dir():
        path = DatasetRoot(root).path(run)
    if not path.is_dir():
        raise CardError(f"run folder not found: {run}")
    for kind, check in (("expert", is_expert_run), ("generator", is_generator_run), ("judge", is_judge_run)):
        if check(path):
            for needed in ("metrics.json", "config.yaml", f"{kind}/model.safetensors"):
                if not (path / needed).is_file():
                    raise CardError(f"{path} has no {needed}: the {kind}'s training has not finished (rerun it)")
            return path
    for needed, why in (
        ("metrics.json", "the run has not finished (rerun train.asr to complete it)"),
        ("config.yaml", "the resolved training config is missing"),
        ("processor", "the processor is missing"),
    ):
        if not (path / needed).exists():
            raise CardError(f"{path} has no {needed}: {why}")
    if not ((path / "adapter").is_dir() or (path / "model").is_dir()):
        raise CardError(f"{path} has no adapter/ or model/: the run has not finished")
    return path


def _write_card(run: Path, data, body: str) -> Path:
    """<run>/README.md: the card's metadata, the withdrawal notice if any, then the body."""
    from huggingface_hub import ModelCard

    card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n{_withdrawn(run)}{body}")
    atomic_write_text(run / "README.md", str(card))
    log.info("model card written to %s", run / "README.md")
    return run / "README.md"


def _pct(value) -> str:
    return "—" if value is None else f"{100 * value:.1f}"


def build_model_card(cfg: ModelCardConfig) -> Path:
    from huggingface_hub import EvalResult, ModelCardData

    run = resolve_run(cfg.run, cfg.root)
    if is_expert_run(run):
        return build_expert_card(cfg, run)
    if is_generator_run(run):
        return build_generator_card(cfg, run)
    if is_judge_run(run):
        return build_judge_card(cfg, run)
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    config = load_yaml(run / "config.yaml")
    if not metrics.get("splits"):
        raise CardError(f"{run}/metrics.json has no scored split: set data.report_splits and rerun train.asr")
    dataset = cfg.dataset or "shqip-av"
    results = []
    for split, by_model in metrics["splits"].items():
        tuned = by_model.get("fine_tuned", {})
        for key, name in RATES:
            if tuned.get(key) is not None:
                results.append(
                    EvalResult(
                        task_type="automatic-speech-recognition",
                        task_name="Speech recognition",
                        dataset_type=dataset,
                        dataset_name=f"shqip-av ({split})",
                        dataset_split=split,
                        metric_type=key.split("_")[0],
                        metric_name=name,
                        metric_value=round(100 * tuned[key], 2),
                    )
                )
    lora = metrics.get("finetune") == "lora"
    data = ModelCardData(
        language="sq",
        license=cfg.license,
        library_name="peft" if lora else "transformers",
        # the Hub's base_model must be a Hub id; a local base folder is named in the text only
        base_model=None if Path(metrics["base_model"]).exists() else metrics["base_model"],
        datasets=[cfg.dataset] if cfg.dataset else None,
        metrics=["wer", "cer"],
        pipeline_tag="automatic-speech-recognition",
        model_name=metrics["run"],
        tags=["whisper", "albanian", "shqip-av"] + (["lora"] if lora else []),
        eval_results=results,
    )
    return _write_card(run, data, _body(cfg, metrics, config, lora))


def _withdrawn(run: Path) -> str:
    """A warning at the top of the card when a takedown hit the data this run was trained on."""
    marker = run / WITHDRAWN_MARKER
    if not marker.is_file():
        return ""
    info = json.loads(marker.read_text(encoding="utf-8"))
    what = (
        f"{info['videos']} video(s) it was trained on"
        if info.get("known") and info.get("videos")
        else "data it may have been trained on (the run did not record its training videos)"
    )
    return (
        f"> **Trained on withdrawn data.** {what.capitalize()} were withdrawn from the dataset by a takedown "
        f"(last on {info.get('last_takedown', 'an unknown date')}). A trained model cannot forget them: this "
        f"version should no longer be distributed; retrain it on the current dataset.\n\n"
    )


def _body(cfg: ModelCardConfig, metrics: dict, config: dict, lora: bool) -> str:
    base = metrics["base_model"]
    t = config.get("training", {})
    m = config.get("model", {})
    lines = [
        f"# {metrics['run']}",
        "",
        f"Whisper fine-tuned for Albanian (`{metrics['language']}`, task `{metrics['task']}`) from `{base}` "
        + (
            f"with a LoRA adapter (rank {m.get('lora', {}).get('r')}, alpha {m.get('lora', {}).get('alpha')}, "
            f"on {', '.join(m.get('lora', {}).get('target_modules', []))})"
            if lora
            else "by full fine-tuning"
        )
        + f", on the shqip-av dataset{f' (`{cfg.dataset}`)' if cfg.dataset else ''}.",
        "",
        "## Results",
        "",
        "Word and character error rates in %, on the texts as written and after Albanian normalization "
        "(NFC, lower case, punctuation removed; ë and ç kept), for this model and the base model scored "
        "by the same evaluator on the same samples.",
        "",
        "| split | model | samples | WER | WER (norm.) | CER | CER (norm.) |",
        "|---|---|---|---|---|---|---|",
    ]
    for split, by_model in metrics["splits"].items():
        for which, label in (("base", f"`{base}` (base)"), ("fine_tuned", "this model")):
            r = by_model.get(which)
            if r:
                lines.append(
                    f"| {split} | {label} | {r.get('samples', 0)} | "
                    + " | ".join(_pct(r.get(k)) for k, _ in RATES)
                    + " |"
                )
    tr = metrics.get("training", {})
    lines += [
        "",
        "## Training",
        "",
        f"- steps: {tr.get('steps')}, final training loss {tr.get('train_loss', 0):.4f}, "
        f"{tr.get('processes', 1)} process(es), mixed precision `{tr.get('mixed_precision', 'no')}`",
        f"- batch {t.get('batch_size')} per device × {t.get('gradient_accumulation')} accumulation, "
        f"learning rate {t.get('learning_rate')} ({t.get('scheduler')}, {t.get('warmup_steps')} warm-up steps), "
        f"seed {t.get('seed')}",
        f"- SpecAugment: {'on' if m.get('spec_augment', {}).get('enabled') else 'off'}",
        "",
        "Samples used per split (the others were skipped, with the reason):",
        "",
        "| split | used | skipped |",
        "|---|---|---|",
    ]
    for split, counts in metrics.get("data", {}).items():
        skipped = ", ".join(f"{k}: {v}" for k, v in counts.get("skipped", {}).items()) or "none"
        lines.append(f"| {split} | {counts.get('kept', 0)} | {skipped} |")
    repo = cfg.repo or "path/to/this/model"
    if lora:
        load = [
            f'model = PeftModel.from_pretrained(WhisperForConditionalGeneration.from_pretrained("{base}"), "{repo}")'
        ]
        imports = (
            "from peft import PeftModel\nfrom transformers import WhisperForConditionalGeneration, WhisperProcessor"
        )
    else:
        load = [f'model = WhisperForConditionalGeneration.from_pretrained("{repo}")']
        imports = "from transformers import WhisperForConditionalGeneration, WhisperProcessor"
    lines += [
        "",
        "## Use",
        "",
        "```python",
        imports,
        *load,
        f'processor = WhisperProcessor.from_pretrained("{repo}")',
        'features = processor(audio_16khz, sampling_rate=16000, return_tensors="pt").input_features',
        'ids = model.generate(input_features=features, language="sq", task="transcribe")',
        "print(processor.batch_decode(ids, skip_special_tokens=True)[0])",
        "```",
        "",
        "The full training config is `train_config.yaml` in this repository; the per-sample predictions "
        "are in the run's `predictions/` folder.",
        "",
        "## Limitations",
        "",
        "- Trained on talking-head speech; expect higher error rates on noisy, far-field or telephone audio.",
        "- Dialect coverage (Gheg/Tosk) follows the dataset, where it is not recorded; check both.",
        "- Do not use its transcripts to identify or profile people; disclose any synthetic speech built on it.",
    ]
    return "\n".join(lines) + "\n"


def build_expert_card(cfg: ModelCardConfig, run: Path) -> Path:
    """The card of a sync-expert run (train.lipsync.expert): <run>/README.md."""
    from huggingface_hub import EvalResult, ModelCardData

    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    config = load_yaml(run / "config.yaml")
    final, cal = metrics.get("final") or {}, metrics.get("calibration") or {}
    name = metrics.get("run", run.name)
    results = [
        EvalResult(
            task_type="audio-visual-sync",
            task_name="Audio-visual sync (aligned vs. shifted windows)",
            dataset_type=cfg.dataset or "shqip-av",
            dataset_name="shqip-av (held-out samples)",
            dataset_split="validation",
            metric_type="accuracy",
            metric_name=label,
            metric_value=round(100 * final[key], 2),
        )
        for key, label in (
            ("eval_accuracy", "sync accuracy"),
            ("eval_accuracy_aligned", "accuracy, aligned"),
            ("eval_accuracy_shifted", "accuracy, shifted"),
        )
        if final.get(key) is not None
    ]
    data = ModelCardData(
        license=cfg.license,
        library_name="shqip-av",
        model_name=name,
        datasets=[cfg.dataset] if cfg.dataset else None,
        metrics=["accuracy"],
        tags=["shqip-av", "sync-expert", "audio-visual", "lip-sync", "albanian"],
        eval_results=results or None,
    )
    m, d, t = config.get("model", {}), config.get("data", {}), config.get("training", {})
    model = json.loads((run / "expert" / "config.json").read_text(encoding="utf-8"))
    repo = cfg.repo or "path/to/this/expert"
    tr, va = metrics.get("train", {}), metrics.get("validation", {})
    lines = [
        f"# {name}",
        "",
        "A SyncNet-style audio-visual sync expert trained by shqip-av: two encoders map the lower half of "
        f"{model.get('frames')} consecutive canonical face crops ({model.get('crop_size')} px, grey) and the "
        "80-bin log-mel of the same frames to unit-length embeddings; their distance is small when the "
        "mouth and the speech belong together. shqip-av uses it to filter its dataset (`sync.method`), as "
        "the sync loss of its lip-sync generator, and to score lip-sync (LSE-D / LSE-C as syncnet_python "
        "defines them).",
        "",
        "## Results",
        "",
        "Accuracy of aligned vs. shifted (by at least "
        f"{d.get('min_shift', 3)} frames) or foreign-speaker windows, on samples held out from training:",
        "",
        "| | accuracy |",
        "|---|---|",
        *(
            f"| {label} | {_pct(final.get(key))} % |"
            for key, label in (
                ("eval_accuracy", "all pairs"),
                ("eval_accuracy_aligned", "aligned"),
                ("eval_accuracy_shifted", "shifted or foreign"),
            )
        ),
        "",
    ]
    if cal:
        lines += [
            "Limits calibrated on the held-out samples (`thresholds.json`; filter's default for "
            "`sync.expert_min_confidence`):",
            "",
            f"- LSE-C: own audio, 10th percentile {cal.get('own_confidence_p10')}; another speaker's audio, "
            f"90th percentile {cal.get('foreign_confidence_p90')}; limit {cal.get('min_confidence')}",
            f"- LSE-D: own audio, 90th percentile {cal.get('own_distance_p90')}; another speaker's, "
            f"10th percentile {cal.get('foreign_distance_p10')}",
            f"- held-out samples whose own audio is found within ±1 frame: {_pct(cal.get('own_offset_zero'))} % "
            f"(of {cal.get('samples')})",
            "",
        ]
    lines += [
        "## Training",
        "",
        f"- data: {tr.get('samples')} training samples from {tr.get('speakers')} speakers ({tr.get('frames')} frames); "
        f"{va.get('samples')} held-out samples from {va.get('speakers')} speakers",
        f"- {metrics.get('steps')} steps, batch {t.get('batch_size')}, learning rate {t.get('learning_rate')}, "
        f"mixed precision `{t.get('mixed_precision', 'no')}`, seed {t.get('seed')}",
        f"- negatives: shifts of {d.get('min_shift')}–{d.get('max_shift')} frames, and another speaker's audio "
        f"({d.get('other_speaker_share')} of the negatives)",
        f"- encoders: widths {m.get('channels')}, embedding {m.get('embedding')}",
        "",
        "## Use",
        "",
        "```python",
        "from shqip_av.components.sync_expert import load_expert, expert_lse",
        f'expert = load_expert("{repo}")  # SyncExpert.from_pretrained',
        "```",
        "",
        f"Filter a dataset with it: `python -m filter --root data sync.method={repo}`; score a video: "
        f"`python -m train.lipsync.evaluate --expert {repo} --video IN.mp4`.",
        "",
        "## Limitations",
        "",
        "- It has seen only the speakers, faces and recording conditions of its training data; check its "
        "accuracy on footage like yours (`python -m train.lipsync.evaluate`) before trusting its judgement.",
        "- It judges sync, not identity or consent; do not use it to identify people.",
    ]
    return _write_card(run, data, "\n".join(lines) + "\n")


def build_judge_card(cfg: ModelCardConfig, run: Path) -> Path:
    """The card of a landmark sync judge run (train.lipsync.judge): <run>/README.md, its figures
    measured on the train speakers it was held out from (never on the speakers it learnt from)."""
    from huggingface_hub import EvalResult, ModelCardData

    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    config = load_yaml(run / "config.yaml")
    cal = metrics.get("calibration") or {}
    name = metrics.get("run", run.name)
    measured = (
        ("shift_within_1_of_own_offset", "shifted audio: offset within ±1 frame (of the shift plus its own)"),
        ("own_kept", "own audio kept"),
        ("foreign_rejected", "another speaker's audio rejected"),
    )
    results = [
        EvalResult(
            task_type="audio-visual-sync",
            task_name="Audio-visual sync (held-out speakers)",
            dataset_type=cfg.dataset or "shqip-av",
            dataset_name="shqip-av (held-out train speakers)",
            dataset_split="train",
            metric_type="accuracy",
            metric_name=label,
            metric_value=round(100 * cal[key], 2),
        )
        for key, label in measured
        if cal.get(key) is not None
    ]
    data = ModelCardData(
        license=cfg.license,
        library_name="shqip-av",
        model_name=name,
        datasets=[cfg.dataset] if cfg.dataset else None,
        metrics=["accuracy"],
        tags=["shqip-av", "sync-judge", "audio-visual", "lip-sync", "albanian"],
        eval_results=results or None,
    )
    t = config.get("training", {})
    repo = cfg.repo or "path/to/this/judge"
    tr, held = metrics.get("train", {}), metrics.get("held_out", {})
    lines = [
        f"# {name}",
        "",
        "A landmark sync judge trained by shqip-av: it reads the mouth's shape from MediaPipe face "
        "landmarks (lip and jaw distances and points, pose and scale removed, each clip normalised) "
        "against the 80-bin log-mel of the same frames, and says how far the audio is off the mouth "
        "(offset in frames, positive: audio late) and how sure it is (best minus median mean cosine "
        "over offsets). shqip-av filters its dataset with it (`sync.method`).",
        "",
        "## Results",
        "",
        f"On {cal.get('samples')} utterances of train speakers held out from its training "
        f"({', '.join(cal.get('speakers', []))}):",
        "",
        "| | % |",
        "|---|---|",
        *(f"| {label} | {_pct(cal.get(key))} |" for key, label in measured),
        "",
        f"Filter's limit calibrated on them (`thresholds.json`): confidence ≥ {cal.get('min_confidence')} "
        "(`sync.expert_min_confidence`: -1 takes it).",
        "",
        "## Training",
        "",
        f"- data: {tr.get('samples')} utterances of {len(tr.get('speakers', []))} speakers ({tr.get('frames')} "
        f"frames); {held.get('samples')} utterances of {len(held.get('speakers', []))} speakers held out",
        f"- {metrics.get('steps')} steps, batch {t.get('batch_size')}, learning rate {t.get('learning_rate')}, "
        f"seed {t.get('seed')}",
        "",
        "## Use",
        "",
        "```python",
        "from shqip_av.components.sync_judge import LandmarkSyncJudge, judge_clip",
        f'judge = LandmarkSyncJudge.from_pretrained("{repo}")',
        "```",
        "",
        f"Filter a dataset with it: `python -m filter --root data sync.method={repo}`; score a video: "
        f"`python -m train.lipsync.evaluate --expert {repo} --video IN.mp4`.",
        "",
        "## Limitations",
        "",
        "- It has seen only the speakers and recordings of its training data; measure it on footage like "
        "yours before trusting it (bench/sync_validation.py does this for the realpool's validation speakers).",
        "- It judges sync, not identity or consent; do not use it to identify people.",
    ]
    return _write_card(run, data, "\n".join(lines) + "\n")


GENERATOR_RESULTS = (
    ("psnr_mask", "PSNR in the mask (dB)", "psnr"),
    ("ssim_mask", "SSIM in the mask", "ssim"),
    ("lse_d_generated", "LSE-D", "lse-d"),
    ("lse_c_generated", "LSE-C", "lse-c"),
    ("lip_distance", "lip distance (eye distances, MediaPipe)", "lip-distance"),
)


def build_generator_card(cfg: ModelCardConfig, run: Path) -> Path:
    """The card of a lip-sync generator run: <run>/README.md, with the scores of
    ``python -m train.lipsync.evaluate --generator <run> --out <run>/eval`` as model-index results
    when that was run."""
    from huggingface_hub import EvalResult, ModelCardData

    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    scores_path = run / "eval" / "metrics.json"
    scores = json.loads(scores_path.read_text(encoding="utf-8")) if scores_path.is_file() else {}
    split = scores.get("split", "validation")
    results = [
        EvalResult(
            task_type="lip-sync",
            task_name="Lip-sync (mouth regenerated from the audio)",
            dataset_type=cfg.dataset or "shqip-av",
            dataset_name=f"shqip-av ({split})",
            dataset_split=split,
            metric_type=kind,
            metric_name=label,
            metric_value=scores[key],
        )
        for key, label, kind in GENERATOR_RESULTS
        if scores.get(key) is not None
    ]
    model = json.loads((run / "generator" / "config.json").read_text(encoding="utf-8"))
    name = metrics.get("run", run.name)
    data = ModelCardData(
        license=cfg.license,
        library_name="shqip-av",
        model_name=name,
        datasets=[cfg.dataset] if cfg.dataset else None,
        tags=["shqip-av", "lip-sync", "talking-head", "audio-visual", "synthetic-media"],
        eval_results=results or None,
    )
    final, tr = metrics.get("final") or {}, metrics.get("train", {})
    repo = cfg.repo or "path/to/this/generator"
    lines = [
        f"# {name}",
        "",
        f"A lip-sync generator trained by shqip-av: given {model.get('frames')} canonical face crops "
        f"({model.get('size')} px) with the mouth masked, {model.get('references')} reference crops of the same "
        "face and the speech of each frame, it regenerates the mouth so that it speaks that audio. "
        "Everything outside the mask is returned unchanged.",
        "",
        "## Results",
        "",
    ]
    if scores:
        lines += [
            f"On {scores.get('samples')} `{split}` samples regenerated from their own audio:",
            "",
            "| metric | value |",
            "|---|---|",
            *(f"| {label} | {scores[key]} |" for key, label, _ in GENERATOR_RESULTS if scores.get(key) is not None),
            f"| LSE-D / LSE-C of the real crops | {scores.get('lse_d_real')} / {scores.get('lse_c_real')} |",
            f"| FID | {scores.get('fid_note') or scores.get('fid')} |",
            "",
        ]
    else:
        lines += [
            f"Validation during training: L1 in the mask {final.get('eval_l1')}, PSNR in the mask "
            f"{final.get('eval_psnr_mask')} dB. Score it with `python -m train.lipsync.evaluate --generator "
            f"{run} --expert <expert> --split test --out {run}/eval` for the full table.",
            "",
        ]
    lines += [
        "## Training",
        "",
        f"- {tr.get('samples')} samples from {tr.get('speakers')} speakers ({tr.get('frames')} frames); "
        f"{metrics.get('steps')} steps on {metrics.get('processes', 1)} process(es), mixed precision "
        f"`{metrics.get('mixed_precision', 'no')}`",
        "",
        "## Use",
        "",
        "```python",
        "from shqip_av.components.lipsync_generator import load_generator",
        "from train.lipsync.inference import generate_track",
        f'generator = load_generator("{repo}")  # LipSyncGenerator.from_pretrained',
        "crops = generate_track(generator, face_crops, landmarks, log_mel_of_new_speech)",
        "```",
        "",
        "## Limitations and responsible use",
        "",
        "- Its output is synthetic media: disclose it as such wherever it is shown (shqip-av's dubbing "
        "marks every file it writes).",
        "- Re-voice only people who consented to it; speaker fine-tuning requires a release.",
        "- It has seen only the faces and recording conditions of its training data.",
    ]
    return _write_card(run, data, "\n".join(lines) + "\n")
