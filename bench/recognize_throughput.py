"""Recognition throughput of filter's transcripts step (shqip_av.components.whisper.recognize: language ID,
transcription, confidence measures) by batch size and model size, on a GPU when there is one.

No Whisper can be downloaded here, so the model is either given (--model) or built: a random
Whisper with whisper-small's shape (12+12 layers, width 768, 30 s window) on the tiny Albanian
tokenizer. A random model decodes to its length limit (--max-new-tokens) every time, so its
figures are the worst case; a trained model stops at the end of the sentence.

    python bench/recognize_throughput.py [--model FOLDER] [--audio PIECES.npz] [--batches 1,8,32]

make bench runs it on the sample's utterances with the tiny demo model when `make demo` made one,
then with the whisper-small-shaped random model.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def whisper_small_shaped(folder: Path, tokenizer_from: str = "") -> Path:
    """A random-weight model of whisper-small's size with a tiny model's tokenizer and generation
    config (``tokenizer_from``, or one train.asr.tiny builds on ../shared's Albanian text)."""
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperProcessor

    tiny = tokenizer_from
    if not tiny:
        from train.asr.tiny import TinyWhisperConfig, build_tiny_whisper

        tiny = build_tiny_whisper(
            TinyWhisperConfig(
                out=str(folder / "tiny"),
                text=[str(REPO.parent / "shared" / "testdata" / "text" / "copa_4_kushtrim.txt")],
            )
        )
    processor = WhisperProcessor.from_pretrained(tiny)
    model = WhisperForConditionalGeneration.from_pretrained(tiny)
    config = model.config
    config.update(
        {
            "d_model": 768,
            "encoder_layers": 12,
            "decoder_layers": 12,
            "encoder_attention_heads": 12,
            "decoder_attention_heads": 12,
            "encoder_ffn_dim": 3072,
            "decoder_ffn_dim": 3072,
            "max_source_positions": 1500,
        }
    )
    big = WhisperForConditionalGeneration(config)
    big.generation_config = model.generation_config
    processor.feature_extractor = WhisperFeatureExtractor(feature_size=80, chunk_length=30)
    out = folder / "small-shaped"
    big.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default="", help="a Whisper folder or Hub id (default: random, whisper-small's shape)"
    )
    parser.add_argument(
        "--tokenizer-from",
        default="",
        help="without --model: a tiny Whisper folder whose tokenizer the random whisper-small-shaped model uses",
    )
    parser.add_argument("--audio", default="", help=".npz of 16 kHz float32 utterances (default: 4 s of noise each)")
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--utterances", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()
    import torch

    from shqip_av.components.whisper import load_for_inference, recognize

    if args.audio:
        loaded_audio = np.load(args.audio)
        pieces = [loaded_audio[k] for k in sorted(loaded_audio.files)]
    else:
        pieces = [0.05 * np.random.default_rng(i).standard_normal(64000).astype(np.float32) for i in range(8)]
    pieces = (pieces * (args.utterances // len(pieces) + 1))[: args.utterances]
    seconds = sum(len(p) for p in pieces) / 16000
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or str(whisper_small_shaped(Path(tmp), args.tokenizer_from))
        loaded = load_for_inference(model, max_new_tokens=args.max_new_tokens)
        parameters = sum(p.numel() for p in loaded.model.parameters())
        print(
            f"model: {args.model or 'random, whisper-small shape'} ({parameters / 1e6:.0f} M parameters), "
            f"{len(pieces)} utterances, {seconds:.0f} s of audio, device {device}"
            + (f" ({torch.cuda.get_device_name()})" if device == "cuda" else "")
        )
        print(f"{'dtype':<9} {'batch':>5} {'wall s':>7} {'x real time':>12} {'tokens/utt':>10}")
        for dtype in [torch.float32, torch.bfloat16] if device == "cuda" else [torch.float32]:
            loaded.model.to(device, dtype)
            recognize(loaded, pieces[:2], languages=["sq"])  # warm-up
            for batch in (int(b) for b in args.batches.split(",")):
                if device == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                texts = []
                for i in range(0, len(pieces), batch):
                    texts += recognize(loaded, pieces[i : i + batch], languages=["sq"])
                if device == "cuda":
                    torch.cuda.synchronize()
                wall = time.perf_counter() - start
                tokens = np.mean([len(loaded.processor.tokenizer(t.text).input_ids) for t in texts])
                print(f"{str(dtype).split('.')[1]:<9} {batch:>5} {wall:>7.2f} {seconds / wall:>12.1f} {tokens:>10.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
