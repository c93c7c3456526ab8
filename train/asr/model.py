"""Loading Whisper for training and for scoring: base models, LoRA adapters, finished runs.

What can be given as a model (``load_for_inference``):
- a Hub id or a folder with a full Whisper checkpoint (``openai/whisper-small``, ``merged/``);
- a folder with a peft LoRA adapter (``adapter_config.json``): its base model is loaded first;
- a train.asr run folder (``runs/asr/<name>``): its adapter or model, with its processor.

Problems that would otherwise surface an hour into a run stop here with one line: a model that
cannot be found, a tokenizer without the language token (Whisper finds ``<|sq|>`` by its offset
from ``<|startoftranscript|>``, so a shifted vocabulary silently trains the wrong language), or a
generation config that does not know the language.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shqip_av import ShqipError
from shqip_av.log import get_logger

log = get_logger(__name__)


class ModelError(ShqipError):
    pass


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def load_processor(name_or_path: str, revision: str = "main"):
    from transformers import WhisperProcessor

    try:
        return WhisperProcessor.from_pretrained(name_or_path, revision=revision)
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot load the Whisper processor of {name_or_path!r}: {_first_line(e)}") from None


def load_whisper(name_or_path: str, revision: str = "main"):
    from transformers import WhisperForConditionalGeneration

    try:
        return WhisperForConditionalGeneration.from_pretrained(name_or_path, revision=revision)
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot load Whisper model {name_or_path!r}: {_first_line(e)}") from None


def language_token_id(tokenizer, language: str) -> int:
    """The id of ``<|language|>``, checked the way the Whisper tokenizer will look it up."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    token = f"<|{language}|>"
    if language not in LANGUAGES:
        raise ModelError(f"{language!r} is not a Whisper language code (Albanian is 'sq')")
    token_id = tokenizer.convert_tokens_to_ids(token)
    if token_id is None or token_id == tokenizer.unk_token_id or tokenizer.convert_ids_to_tokens(token_id) != token:
        raise ModelError(f"the tokenizer has no {token} language token; it cannot be fine-tuned for {language!r}")
    start = tokenizer.convert_tokens_to_ids("<|startoftranscript|>")
    expected = start + 1 + list(LANGUAGES).index(language)
    if token_id != expected:
        raise ModelError(f"the tokenizer's {token} has id {token_id}, but Whisper expects {expected} "
                         "(language tokens must follow <|startoftranscript|> in Whisper's order)")
    return token_id


def configure_generation(model, tokenizer, language: str, task: str, max_new_tokens: int | None = None) -> None:
    """Language and task in the generation config (not forced_decoder_ids), checked against the tokenizer."""
    token_id = language_token_id(tokenizer, language)
    generation = model.generation_config
    lang_to_id = getattr(generation, "lang_to_id", None) or {}
    if lang_to_id.get(f"<|{language}|>") != token_id:
        raise ModelError(f"the model's generation config does not map <|{language}|> to the tokenizer's id {token_id}")
    generation.language = language
    generation.task = task
    generation.forced_decoder_ids = None
    model.config.forced_decoder_ids = None
    if max_new_tokens:
        # one length limit only (transformers warns when max_length and max_new_tokens are both set);
        # the prefix is <|startoftranscript|><|sq|><|transcribe|><|notimestamps|>
        generation.max_new_tokens = None
        generation.max_length = min(model.config.max_target_positions, max_new_tokens + 4)
    tokenizer.set_prefix_tokens(language=language, task=task, predict_timestamps=False)


def apply_spec_augment(model, section) -> None:
    """Whisper's encoder masks time/frequency spans itself in training mode when configured."""
    config = model.config
    config.apply_spec_augment = bool(section.enabled)
    config.mask_time_prob = section.mask_time_prob
    config.mask_time_length = section.mask_time_length
    config.mask_feature_prob = section.mask_feature_prob
    config.mask_feature_length = section.mask_feature_length


def add_lora(model, section):
    from peft import LoraConfig, get_peft_model

    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [m for m in section.target_modules if m not in names]
    if missing:
        raise ModelError(f"LoRA target module(s) {missing} not found in the model "
                         "(Whisper has q_proj, k_proj, v_proj, out_proj, fc1, fc2)")
    config = LoraConfig(r=section.r, lora_alpha=section.alpha, lora_dropout=section.dropout,
                        target_modules=list(section.target_modules), bias="none")
    return get_peft_model(model, config)


def trainable_summary(model) -> str:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return f"{trainable:,} of {total:,} parameters trainable ({100 * trainable / max(total, 1):.2f} %)"


@dataclass
class LoadedModel:
    model: Any
    processor: Any
    description: str
    base_name: str  # the base Whisper it was fine-tuned from (itself for a base model)


def load_for_inference(name_or_path: str, *, language: str = "sq", task: str = "transcribe",
                       revision: str = "main", max_new_tokens: int | None = None) -> LoadedModel:
    """Any Whisper the project deals with, ready to transcribe (see the module docstring)."""
    generation = (language, task, max_new_tokens)
    path = Path(name_or_path)
    if path.is_dir() and (path / "config.yaml").is_file() and (path / "processor").is_dir():
        return _load_run(path, generation)
    if path.is_dir() and (path / "adapter_config.json").is_file():
        processor_dir = path if (path / "preprocessor_config.json").is_file() else _adapter_base(path)
        return _with_adapter(path, load_processor(str(processor_dir)), generation)
    if not path.exists() and (name_or_path.startswith((".", "/")) or name_or_path.count("/") > 1):
        raise ModelError(f"model folder not found: {name_or_path}")
    processor = load_processor(name_or_path, revision)
    model = load_whisper(name_or_path, revision)
    configure_generation(model, processor.tokenizer, *generation)
    return LoadedModel(model.eval(), processor, name_or_path, name_or_path)


def _adapter_base(adapter: Path) -> str:
    return json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]


def _load_run(run: Path, generation: tuple) -> LoadedModel:
    processor = load_processor(str(run / "processor"))
    if (run / "adapter").is_dir():
        return _with_adapter(run / "adapter", processor, generation, description=str(run))
    if (run / "model").is_dir():
        model = load_whisper(str(run / "model"))
        configure_generation(model, processor.tokenizer, *generation)
        return LoadedModel(model.eval(), processor, str(run), getattr(model.config, "_name_or_path", str(run)))
    raise ModelError(f"{run} has no adapter/ or model/: the run has not finished (rerun train.asr to resume it)")


def _with_adapter(adapter: Path, processor, generation: tuple, description: str | None = None) -> LoadedModel:
    from peft import PeftModel

    base = _adapter_base(adapter)
    model = load_whisper(base)
    configure_generation(model, processor.tokenizer, *generation)
    model = PeftModel.from_pretrained(model, str(adapter))
    return LoadedModel(model.eval(), processor, description or str(adapter), base)


def detect_language(loaded: LoadedModel, audio, sample_rate: int = 16000) -> tuple[str, float]:
    """Whisper's language identification on (the first 30 s of) ``audio``: the most likely language
    code and its probability among the languages the model's generation config knows."""
    import torch

    generation = loaded.model.generation_config
    lang_to_id = getattr(generation, "lang_to_id", None) or {}
    if not lang_to_id:
        raise ModelError(f"{loaded.description}: its generation config has no lang_to_id; give the source language")
    features = loaded.processor.feature_extractor(audio[: 30 * sample_rate], sampling_rate=sample_rate,
                                                  return_tensors="pt").input_features
    parameter = next(loaded.model.parameters())
    start = torch.tensor([[generation.decoder_start_token_id]], device=parameter.device)
    with torch.no_grad():
        logits = loaded.model(input_features=features.to(parameter.device, parameter.dtype),
                              decoder_input_ids=start).logits[0, -1]
    tokens = list(lang_to_id)
    probs = logits[[lang_to_id[t] for t in tokens]].float().softmax(-1)
    best = int(probs.argmax())
    return tokens[best].strip("<|>"), float(probs[best])
