"""A tiny random-weight Whisper with an Albanian byte-level BPE tokenizer.

    python -m train.asr.tiny --out data/models/whisper-tiny-sq --root data [--text more.txt ...]

No Whisper weights can be downloaded on an offline machine, yet the training and evaluation
code should run for real. This helper builds a model folder laid out exactly like a Hub
checkpoint (``config.json``, ``generation_config.json``, weights, tokenizer, feature extractor),
so ``WhisperForConditionalGeneration.from_pretrained(folder)`` and the whole of ``train.asr``
treat it like ``openai/whisper-small``:

- the tokenizer is a byte-level BPE (the same model type as Whisper's) trained on Albanian text:
  the transcripts found in the dataset root's clips manifest plus any ``--text`` files;
- the special tokens sit in Whisper's order (``<|endoftext|>``, ``<|startoftranscript|>``, then
  one token per Whisper language in Whisper's order, ``<|translate|>``, ``<|transcribe|>`` …),
  because the Whisper tokenizer finds a language token by its offset from
  ``<|startoftranscript|>``;
- the generation config carries ``lang_to_id`` / ``task_to_id`` like the released checkpoints.

The weights are random: before fine-tuning the model's WER is about 100 %.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from shqip_av import ShqipError
from shqip_av.config import option, parse_config, run_cli
from shqip_av.files import DatasetRoot
from shqip_av.log import get_logger, setup_logging
from shqip_av.manifest import read_jsonl

log = get_logger(__name__)

SPECIAL_AFTER_LANGUAGES = [
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nospeech|>",
    "<|notimestamps|>",
]


@dataclass
class TinyWhisperConfig:
    out: str = option("", "folder to write the model to (created; an existing model there is replaced)")
    root: str = option("", "dataset root whose clip transcripts train the tokenizer (optional)")
    text: list[str] = option(help="extra UTF-8 text files to train the tokenizer on", factory=list)
    vocab_size: int = option(600, "BPE vocabulary size before the special tokens")
    d_model: int = option(96, "hidden size of encoder and decoder")
    layers: int = option(2, "layers in the encoder and in the decoder")
    heads: int = option(4, "attention heads")
    ffn_dim: int = option(192, "feed-forward size")
    num_mel_bins: int = option(80, "log-mel bins (80 like whisper-small; 128 like large-v3)")
    window_seconds: int = option(
        10,
        "audio input window in seconds (released Whisper models: 30); a "
        "shorter window makes CPU training several times faster",
    )
    seed: int = option(0, "seed of the random weights")


def _corpus(cfg: TinyWhisperConfig) -> list[str]:
    lines: list[str] = []
    if cfg.root:
        root = DatasetRoot(cfg.root)
        manifest = root.path("clips", "manifest.jsonl")
        if manifest.exists():
            for record in read_jsonl(manifest):
                txt = record.get("files", {}).get("txt")
                if txt:
                    lines.append(root.path(txt).read_text(encoding="utf-8").strip())
    for name in cfg.text:
        path = Path(name)
        if not path.is_file():
            raise ShqipError(f"text file not found: {path}")
        lines += [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        raise ShqipError("no text to train the tokenizer on: give --root with transcribed clips or --text files")
    return lines


def special_tokens() -> list[str]:
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    return ["<|endoftext|>", "<|startoftranscript|>"] + [f"<|{code}|>" for code in LANGUAGES] + SPECIAL_AFTER_LANGUAGES


def build_tokenizer(lines: list[str], vocab_size: int):
    """Train a byte-level BPE on ``lines`` and wrap it as a WhisperTokenizer."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import WhisperTokenizer

    bpe = ByteLevelBPETokenizer(add_prefix_space=False)
    bpe.train_from_iterator(lines, vocab_size=vocab_size, min_frequency=2, show_progress=False)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    # like openai/whisper-*: <|endoftext|> is also the padding token
    tokenizer = WhisperTokenizer(vocab=model["vocab"], merges=merges, pad_token="<|endoftext|>")
    # Added tokens get consecutive ids after the BPE vocabulary, in this order.
    tokenizer.add_special_tokens({"additional_special_tokens": special_tokens()})
    return tokenizer


def build_tiny_whisper(cfg: TinyWhisperConfig) -> Path:
    import torch
    from transformers import GenerationConfig, WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    if not cfg.out:
        raise ShqipError("give --out: the folder to write the tiny model to")
    out = Path(cfg.out)
    tokenizer = build_tokenizer(_corpus(cfg), cfg.vocab_size)
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in special_tokens()}
    eot, sot = ids["<|endoftext|>"], ids["<|startoftranscript|>"]
    languages = [t for t in special_tokens() if t not in SPECIAL_AFTER_LANGUAGES][2:]
    config = WhisperConfig(
        vocab_size=len(tokenizer),
        num_mel_bins=cfg.num_mel_bins,
        encoder_layers=cfg.layers,
        decoder_layers=cfg.layers,
        encoder_attention_heads=cfg.heads,
        decoder_attention_heads=cfg.heads,
        encoder_ffn_dim=cfg.ffn_dim,
        decoder_ffn_dim=cfg.ffn_dim,
        d_model=cfg.d_model,
        # the encoder sees 50 positions per second (100 mel frames, halved by its stride-2 conv)
        # weights ~ 1/sqrt(d_model): unit-scale activations and token embeddings, like a trained
        # model's. With Whisper's default 0.02 the frozen, tied output embeddings are so small that
        # logits stay near zero and a LoRA-only fine-tune cannot become confident.
        init_std=cfg.d_model**-0.5,
        max_source_positions=50 * cfg.window_seconds,
        max_target_positions=448,
        pad_token_id=eot,
        bos_token_id=eot,
        eos_token_id=eot,
        decoder_start_token_id=sot,
    )
    torch.manual_seed(cfg.seed)
    model = WhisperForConditionalGeneration(config)
    with torch.no_grad():
        # <|endoftext|> doubles as the padding id, so nn.Embedding initialised its row to zeros; the
        # output projection is tied to these embeddings, and a zero row would pin the end-of-text
        # logit at 0 for any frozen-embedding (LoRA) fine-tune. Trained checkpoints have a real row.
        embed = model.get_decoder().embed_tokens.weight
        embed[eot].normal_(0.0, config.init_std)
    generation = GenerationConfig(
        decoder_start_token_id=sot,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        max_length=448,
        begin_suppress_tokens=[eot],
        suppress_tokens=[],
        is_multilingual=True,
        lang_to_id={tok: ids[tok] for tok in languages},
        task_to_id={"translate": ids["<|translate|>"], "transcribe": ids["<|transcribe|>"]},
        no_timestamps_token_id=ids["<|notimestamps|>"],
        prev_sot_token_id=ids["<|startofprev|>"],
    )
    model.generation_config = generation
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    WhisperFeatureExtractor(feature_size=cfg.num_mel_bins, chunk_length=cfg.window_seconds).save_pretrained(out)
    log.info(
        "tiny Whisper written to %s (%d parameters, vocabulary %d)",
        out,
        sum(p.numel() for p in model.parameters()),
        len(tokenizer),
    )
    return out


def main(argv: list[str] | None = None) -> int:
    cfg, args = parse_config(
        TinyWhisperConfig, argv, prog="python -m train.asr.tiny", description=__doc__.split("\n\n")[0]
    )
    setup_logging(args.verbose)
    build_tiny_whisper(cfg)
    return 0


if __name__ == "__main__":
    run_cli(main)
