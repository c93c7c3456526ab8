"""Tiny random-weight translation and speech models for offline tests: a Marian laid out like a
Helsinki-NLP/opus-mt checkpoint, and a VITS laid out like facebook/mms-tts-*.

    python -m export.tiny --out data/models/opus-mt-tiny-sq-en --source sq --target en \\
        --source-text pairs.sq --target-text pairs.en
    python -m export.tiny vits --out data/models/mms-tts-tiny

Nothing can be downloaded here, yet the dubbing code calls translation models through the real
transformers path (``AutoTokenizer`` + ``AutoModelForSeq2SeqLM`` + ``generate()``). This builds
the same files an opus-mt repo has: ``source.spm`` and ``target.spm`` (SentencePiece models
trained on the given text), ``vocab.json`` (their joint vocabulary), ``config.json`` for
``MarianMTModel`` and its weights. The weights are random: what it outputs is not a translation.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from shqip_av import ShqipError
from shqip_av.config import option, parse_config, run_cli
from shqip_av.log import setup_logging


@dataclass
class TinyMarianConfig:
    out: str = option("", "folder to write the model to")
    source: str = option("sq", "source language code")
    target: str = option("en", "target language code")
    source_text: str = option("", "UTF-8 text in the source language (one sentence a line) for its tokenizer")
    target_text: str = option("", "UTF-8 text in the target language for its tokenizer")
    vocab_size: int = option(400, "SentencePiece vocabulary size per language", min=50)
    d_model: int = option(32, "hidden size", min=8)
    layers: int = option(1, "encoder and decoder layers", min=1)
    seed: int = option(0, "seed of the random weights")


def _spm(text_file: str, prefix: Path, vocab_size: int) -> Path:
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(
        input=text_file,
        model_prefix=str(prefix),
        vocab_size=vocab_size,
        character_coverage=1.0,
        model_type="unigram",
        bos_id=-1,
        eos_id=1,
        unk_id=2,
        pad_id=0,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    return prefix.with_suffix(".model")


def build_tiny_marian(cfg: TinyMarianConfig) -> Path:
    import torch
    from transformers import MarianConfig, MarianMTModel, MarianTokenizer

    if not (cfg.out and cfg.source_text and cfg.target_text):
        raise ShqipError("give --out, --source-text and --target-text")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        src = _spm(cfg.source_text, Path(tmp) / "source", cfg.vocab_size)
        tgt = _spm(cfg.target_text, Path(tmp) / "target", cfg.vocab_size)
        (out / "source.spm").write_bytes(src.read_bytes())
        (out / "target.spm").write_bytes(tgt.read_bytes())
    import sentencepiece as spm

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for model in ("source.spm", "target.spm"):
        proc = spm.SentencePieceProcessor(model_file=str(out / model))
        for i in range(proc.get_piece_size()):
            vocab.setdefault(proc.id_to_piece(i), len(vocab))
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, indent=0))
    tokenizer = MarianTokenizer(
        str(out / "source.spm"),
        str(out / "target.spm"),
        str(out / "vocab.json"),
        source_lang=cfg.source,
        target_lang=cfg.target,
    )
    tokenizer.save_pretrained(out)
    torch.manual_seed(cfg.seed)
    config = MarianConfig(
        vocab_size=len(vocab),
        d_model=cfg.d_model,
        encoder_layers=cfg.layers,
        decoder_layers=cfg.layers,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=2 * cfg.d_model,
        decoder_ffn_dim=2 * cfg.d_model,
        max_position_embeddings=256,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
        forced_eos_token_id=1,
    )
    model = MarianMTModel(config)
    model.generation_config.max_length = 64
    model.save_pretrained(out)
    (out / "README.md").write_text(
        f"---\nlicense: cc0-1.0\ntags: [shqip-av, tiny, random-weights]\n---\n\n"
        f"# A tiny random Marian {cfg.source}→{cfg.target} (for tests; it does not translate)\n"
    )
    return out


# the characters of the tiny VITS (lower-case Latin with Albanian ç and ë); MMS-TTS keeps the pad at 0
VITS_CHARACTERS = " abcdefghijklmnopqrstuvwxyzçë.,?!'-"


def build_tiny_vits(out: str | Path, seed: int = 0, sampling_rate: int = 16000) -> Path:
    """A tiny random-weight VitsModel with a character tokenizer, laid out like facebook/mms-tts-*.
    It speaks noise, but through the real ``VitsModel`` path (``speaking_rate`` included)."""
    import torch
    from transformers import VitsConfig, VitsModel, VitsTokenizer

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    vocab = {c: i for i, c in enumerate(["<pad>", *VITS_CHARACTERS])}
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    VitsTokenizer(
        str(out / "vocab.json"),
        language=None,
        add_blank=True,
        normalize=True,
        phonemize=False,
        pad_token="<pad>",
        unk_token="<pad>",
    ).save_pretrained(out)
    torch.manual_seed(seed)
    config = VitsConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        ffn_dim=64,
        flow_size=32,
        spectrogram_bins=65,
        upsample_initial_channel=32,
        upsample_rates=[8, 8, 4],
        upsample_kernel_sizes=[16, 16, 8],
        resblock_kernel_sizes=[3],
        resblock_dilation_sizes=[[1, 3]],
        prior_encoder_num_flows=2,
        posterior_encoder_num_wavenet_layers=2,
        duration_predictor_num_flows=2,
        duration_predictor_filter_channels=32,
        depth_separable_num_layers=2,
        sampling_rate=sampling_rate,
    )
    VitsModel(config).save_pretrained(out)
    (out / "README.md").write_text(
        "---\nlicense: cc0-1.0\ntags: [shqip-av, tiny, random-weights]\n---\n\n"
        "# A tiny random VITS (for tests; it speaks noise)\n"
    )
    return out


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["vits"]:
        parser = argparse.ArgumentParser(
            prog="python -m export.tiny vits", description="Build a tiny random VITS folder."
        )
        parser.add_argument("--out", required=True)
        print(build_tiny_vits(parser.parse_args(argv[1:]).out))
        return 0
    cfg, args = parse_config(
        TinyMarianConfig,
        argv,
        prog="python -m export.tiny",
        description="Build a tiny random-weight Marian model folder (offline tests); "
        "`python -m export.tiny vits --out DIR` builds a tiny VITS.",
    )
    setup_logging(args.verbose)
    print(build_tiny_marian(cfg))
    return 0


if __name__ == "__main__":
    run_cli(main)
