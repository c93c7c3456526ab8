"""Loading Whisper wherever the project runs it: filter's transcript checks, train.asr, scoring and
dubbing. Base models, LoRA adapters, finished train.asr runs.

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


def load_processor(name_or_path: str, revision: str = "main") -> Any:
    from transformers import WhisperProcessor

    try:
        return WhisperProcessor.from_pretrained(name_or_path, revision=revision)
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot load the Whisper processor of {name_or_path!r}: {_first_line(e)}") from None


def load_whisper(name_or_path: str, revision: str = "main") -> Any:
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
        raise ModelError(
            f"the tokenizer's {token} has id {token_id}, but Whisper expects {expected} "
            "(language tokens must follow <|startoftranscript|> in Whisper's order)"
        )
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


@dataclass
class LoadedModel:
    """A Whisper ready to recognize: the model (with a LoRA adapter merged in, for a train.asr run),
    its processor, and where it came from."""

    model: Any
    processor: Any
    description: str
    base_name: str  # the base Whisper it was fine-tuned from (itself for a base model)

    @classmethod
    def from_pretrained(cls, source: str, *, language: str = "sq", revision: str = "main") -> "LoadedModel":
        """A Hub id, a Whisper folder or a train.asr run (``load_for_inference``)."""
        return load_for_inference(source, language=language, revision=revision)

    def save_pretrained(self, folder: str | Path) -> Path:
        """Model and processor in one folder, loadable by ``from_pretrained``."""
        self.model.save_pretrained(folder)
        self.processor.save_pretrained(folder)
        return Path(folder)


def load_for_inference(
    name_or_path: str,
    *,
    language: str = "sq",
    task: str = "transcribe",
    revision: str = "main",
    max_new_tokens: int | None = None,
) -> LoadedModel:
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


def _first_position(loaded: LoadedModel, features) -> tuple[list[str], Any, Any]:
    """One decoder step after ``<|startoftranscript|>``: (language codes, their probabilities
    (B, L) among the languages the generation config knows, the no-speech probability (B,))."""
    import torch

    generation = loaded.model.generation_config
    lang_to_id = getattr(generation, "lang_to_id", None) or {}
    if not lang_to_id:
        raise ModelError(
            f"{loaded.description}: its generation config has no lang_to_id, so it cannot identify languages"
        )
    parameter = next(loaded.model.parameters())
    start = torch.full((len(features), 1), generation.decoder_start_token_id, device=parameter.device)
    with torch.inference_mode():
        logits = (
            loaded.model(input_features=features.to(parameter.device, parameter.dtype), decoder_input_ids=start)
            .logits[:, -1]
            .float()
        )
    tokens = list(lang_to_id)
    languages = logits[:, [lang_to_id[t] for t in tokens]].softmax(-1)
    # Whisper's no-speech estimate: the probability of its no-speech token at this position, over
    # the whole vocabulary (the token is <|nospeech|> in v3 vocabularies, <|nocaptions|> before)
    tokenizer = loaded.processor.tokenizer
    ids = [tokenizer.convert_tokens_to_ids(t) for t in ("<|nospeech|>", "<|nocaptions|>")]
    ids = [i for i in ids if i is not None and i != tokenizer.unk_token_id]
    no_speech = logits.softmax(-1)[:, ids[0]] if ids else torch.zeros(len(features))
    return [t.strip("<|>") for t in tokens], languages.cpu(), no_speech.cpu()


def detect_language(loaded: LoadedModel, audio, sample_rate: int = 16000) -> tuple[str, float]:
    """Whisper's language identification on (the first 30 s of) ``audio``: the most likely language
    code and its probability among the languages the model's generation config knows."""
    features = loaded.processor.feature_extractor(
        audio[: 30 * sample_rate], sampling_rate=sample_rate, return_tensors="pt"
    ).input_features
    codes, probs, _ = _first_position(loaded, features)
    best = int(probs[0].argmax())
    return codes[best], float(probs[0, best])


@dataclass
class Recognition:
    """What Whisper heard in one stretch of audio, with the measurements that say how far to trust it."""

    text: str
    language: str  # the most likely spoken language
    language_probability: float
    decoded_as: str  # the language the text was decoded in
    avg_logprob: float  # mean log-probability of the generated tokens, end of text included
    compression_ratio: float  # of the text's UTF-8 bytes under zlib; loops of repeated words compress well
    no_speech_probability: float
    # where the words start and end in the audio (s), from the cross-attention of the generation
    # config's alignment_heads; None unless asked for
    speech_start: float | None = None
    speech_end: float | None = None

    def to_dict(self) -> dict:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in vars(self).items()}


def compression_ratio(text: str) -> float:
    import zlib

    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def has_alignment_heads(loaded: LoadedModel) -> bool:
    return bool(getattr(loaded.model.generation_config, "alignment_heads", None))


def recognize(
    loaded: LoadedModel, audios: list, *, languages: list[str], sample_rate: int = 16000, timestamps: bool = False
) -> list[Recognition]:
    """Identify the language of each piece of audio and transcribe it, in one batch: in the
    detected language when it is one of ``languages``, otherwise in ``languages[0]``. The length
    limit is the one given to ``load_for_inference``. With ``timestamps`` (the model needs
    alignment_heads), also where the words start and end."""
    import torch

    features = loaded.processor.feature_extractor(
        list(audios), sampling_rate=sample_rate, return_tensors="pt"
    ).input_features
    codes, probs, no_speech = _first_position(loaded, features)
    best = probs.argmax(-1).tolist()
    decode_in = [codes[b] if codes[b] in languages else languages[0] for b in best]
    tokenizer = loaded.processor.tokenizer
    parameter = next(loaded.model.parameters())
    texts: dict[int, tuple[str, float, float | None, float | None]] = {}
    for language in dict.fromkeys(decode_in):
        rows = [i for i, lang in enumerate(decode_in) if lang == language]
        batch = features[rows].to(parameter.device, parameter.dtype)
        with torch.inference_mode():
            out = loaded.model.generate(
                input_features=batch,
                language=language,
                task="transcribe",
                return_dict_in_generate=True,
                output_scores=True,
                **({"return_token_timestamps": True} if timestamps else {}),
            )
            # a ModelOutput, or a plain dict when token timestamps are asked for
            scores = loaded.model.compute_transition_scores(out["sequences"], out["scores"], normalize_logits=True)
        width = scores.shape[1]
        generated = out["sequences"][:, -width:].cpu()
        stamps = out["token_timestamps"][:, -width:].float().cpu() if timestamps else None
        eos = loaded.model.generation_config.eos_token_id
        for n, (row, ids, logprobs) in enumerate(zip(rows, generated, scores.float().cpu())):
            ended = (ids == eos).nonzero()
            length = int(ended[0]) + 1 if len(ended) else len(ids)  # through the first end of text
            text = tokenizer.decode(ids[:length], skip_special_tokens=True).strip()
            start = end = None
            words = (ids[:length] < eos).nonzero().flatten()  # Whisper's text tokens precede its specials
            if stamps is not None and len(words):
                start = float(stamps[n, words[0]])
                end = float(stamps[n, min(int(words[-1]) + 1, width - 1)])  # when the next token begins
            texts[row] = (text, float(logprobs[:length].mean()) if length else float("-inf"), start, end)
    return [
        Recognition(
            text=texts[i][0],
            language=codes[best[i]],
            language_probability=float(probs[i, best[i]]),
            decoded_as=decode_in[i],
            avg_logprob=texts[i][1],
            compression_ratio=compression_ratio(texts[i][0]),
            no_speech_probability=float(no_speech[i]),
            speech_start=texts[i][2],
            speech_end=texts[i][3],
        )
        for i in range(len(decode_in))
    ]


_WEIGHTS = ("*.safetensors", "*.bin")


def weight_files(source: str) -> list[Path]:
    """The weight files that decide a local model's output (a train.asr run: its adapter or model,
    not its checkpoints); empty for a Hub id."""
    folder = Path(source).expanduser()
    if not folder.is_dir():
        return []
    if (folder / "config.yaml").is_file() and (folder / "processor").is_dir():  # a train.asr run
        folder = folder / "adapter" if (folder / "adapter").is_dir() else folder / "model"
    return sorted(p for pattern in _WEIGHTS for p in folder.glob(pattern))


def model_digest(source: str) -> str:
    """sha256 over a local model's weights ('' for a Hub id): the filter's config fingerprint
    holds it, so a retrained model at the same path redoes the step."""
    from shqip_av.files import weights_digest

    return weights_digest(weight_files(source))
