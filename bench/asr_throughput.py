"""ASR training throughput: the real train.asr run from shards next to the same model stepping on
in-memory tensors, in one process, so a data-loading bottleneck shows as a ratio.

Measured on a tiny random Whisper (train.asr.tiny) with LoRA and shards of espeak-ng Albanian
utterances (tests/train/espeak_shards.py), or on your own model and shards:

    python bench/asr_throughput.py [--model PATH_OR_ID --root DATA] [--steps N] [--batch B]

Prints: data loading alone (shards → decoded features → collated batches) in samples/s; the
training step on tensors already in memory (samples/s, s/step); train.asr through the Trainer
from the shards (samples/s, s/step); and the ratio Trainer / in-memory. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def _lora_model(model_path: str, target: list[str]):
    from train.asr.config import LoraSection
    from shqip_av.components.whisper import load_whisper
    from train.asr.model import add_lora

    return add_lora(load_whisper(model_path), LoraSection(r=32, alpha=64, dropout=0.0, target_modules=target))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="", help="Whisper to train (default: a tiny random one built here)")
    parser.add_argument("--root", default="", help="dataset root with shards (default: espeak-ng shards built here)")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="data-loading workers of the Trainer run")
    args = parser.parse_args()

    import torch
    from torch.utils.data import DataLoader

    from shqip_av.log import setup_logging
    from train.asr import data as asr_data
    from train.asr.config import AsrConfig
    from shqip_av.components.whisper import load_processor
    from train.asr.train import run_training

    setup_logging(False)
    work = Path(tempfile.mkdtemp(prefix="asr-bench-"))
    root = args.root
    if not root:
        from tests.train.espeak_shards import albanian_sentences, build_asr_root, missing_inputs

        if missing_inputs():
            print(missing_inputs(), file=sys.stderr)
            return 2
        root = str(
            build_asr_root(work / "data", albanian_sentences(24), albanian_sentences(4, skip=24), edge_cases=False)
        )
    model_path = args.model
    if not model_path:
        from tests.train.espeak_shards import TEXT
        from train.asr.tiny import TinyWhisperConfig, build_tiny_whisper

        model_path = str(build_tiny_whisper(TinyWhisperConfig(out=str(work / "tiny"), root=root, text=[str(TEXT)])))
    target = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]

    processor = load_processor(model_path)
    tokenizer = processor.tokenizer
    tokenizer.set_prefix_tokens(language="sq", task="transcribe")
    raw = asr_data.load_split(root, "train")
    eligible = asr_data.select_eligible(raw, asr_data.Eligibility(tokenizer, 448, 0.3, 30.0), desc="checking")
    prepared = asr_data.prepare(eligible, asr_data.FeaturePreparer(processor.feature_extractor, tokenizer))
    sot = tokenizer.convert_tokens_to_ids("<|startoftranscript|>")
    collator = asr_data.SpeechCollator(sot)

    # 1. data loading alone: shards → features → batches (one pass per worker setting)
    print(f"\n{len(eligible)} training utterances, batch {args.batch}, torch threads {torch.get_num_threads()}")
    for workers in (0, args.workers):
        loader = DataLoader(prepared, batch_size=args.batch, shuffle=True, collate_fn=collator, num_workers=workers)
        start, seen = time.perf_counter(), 0
        for _ in range(2):
            for batch in loader:
                seen += batch["input_features"].shape[0]
        print(f"data loading, {workers} workers: {seen / (time.perf_counter() - start):8.1f} samples/s")

    # 2. the same model and optimizer on batches already in memory
    batches = [collator([prepared[(i * args.batch + j) % len(prepared)] for j in range(args.batch)]) for i in range(4)]
    model = _lora_model(model_path, target)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    for i in range(3):  # warm-up
        model(**batches[i % 4]).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    start = time.perf_counter()
    for i in range(args.steps):
        model(**batches[i % 4]).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    memory_s = (time.perf_counter() - start) / args.steps
    print(f"in-memory training step:        {args.batch / memory_s:8.1f} samples/s   {memory_s:.3f} s/step")

    # 3. train.asr itself, from the shards through the Trainer, with and without loader workers
    memory_sps = args.batch / memory_s
    for workers in sorted({0, args.workers}):
        cfg = AsrConfig()
        cfg.output = str(work / f"run-{workers}")
        cfg.model.name_or_path = model_path
        cfg.model.lora.target_modules = target
        cfg.model.lora.dropout = 0.0
        cfg.model.spec_augment.enabled = False
        cfg.data.root = root
        cfg.data.report_splits = []
        t = cfg.training
        t.max_steps, t.batch_size, t.warmup_steps = args.steps, args.batch, 0
        t.save_steps = t.eval_steps = t.logging_steps = args.steps
        t.num_workers, t.evaluate_base = workers, False
        history = run_training(cfg)["training"]["history"]
        sps = [e for e in history if "train_samples_per_second" in e][-1]["train_samples_per_second"]
        print(
            f"train.asr from shards, {workers} workers: {sps:8.1f} samples/s   {args.batch / sps:.3f} s/step "
            f"(one checkpoint included)   ratio to in-memory {sps / memory_sps:.2f}"
        )
    print("(ratio near 1: the loader keeps up; well below 1: data loading or checkpointing is the bottleneck)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
