"""python -m train.asr.evaluate --model <path or id>[,<another>] --root data --split test

Scores any Whisper on the shards with the project's metric (WER and CER, raw and after Albanian
normalization): a Hub id, a model folder, a LoRA adapter folder or a train.asr run folder. Give
several models, comma-separated, to see them side by side on the same samples, e.g. the base
model and its fine-tune:

    python -m train.asr.evaluate --model openai/whisper-small,data/runs/asr/whisper-small-sq

With ``--out`` the predictions (<out>/<model>/<split>.jsonl) and the scores (<out>/metrics.json)
are written too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from shqip_av.config import ConfigError, option, parse_config, run_cli
from shqip_av.files import atomic_write_text, safe_id
from shqip_av.log import get_logger, setup_logging

from train.asr.config import WHISPER_MAX_LABEL_TOKENS

log = get_logger(__name__)


@dataclass
class EvaluateConfig:
    model: list[str] = option(
        help="models to score, comma-separated: Hub ids, model/adapter/run folders",
        factory=lambda: ["openai/whisper-small"],
    )
    root: str = option("data", "dataset root holding shards/<split>/*.tar")
    split: list[str] = option(help="splits to score, comma-separated", factory=lambda: ["test"])
    language: str = option("sq", "Whisper language code")
    task: str = option("transcribe", "Whisper task")
    batch_size: int = option(16, "samples per generate() call")
    max_new_tokens: int = option(225, "generation length limit")
    num_beams: int = option(1, "beam size")
    max_samples: int = option(0, "score at most this many samples per split (0: all)")
    pseudo_labels: bool = option(
        False,
        "also score against pseudo-labels (transcripts a recognizer wrote in "
        "filter); by default only human transcripts are references",
    )
    out: str = option("", "folder for predictions and metrics.json (optional)")


def evaluate_models(cfg: EvaluateConfig) -> list[dict]:
    import torch

    from train.asr.data import check_shards
    from shqip_av.components.whisper import load_for_inference
    from train.asr.scoring import eligible_split, max_audio_seconds, score_rows, transcribe, write_predictions

    if not cfg.model:
        raise ConfigError("give at least one --model")
    check_shards(cfg.root)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    results = []
    for name in cfg.model:
        loaded = load_for_inference(name, language=cfg.language, task=cfg.task, max_new_tokens=cfg.max_new_tokens)
        model = loaded.model.to(device)
        for split in cfg.split:
            dataset, eligibility = eligible_split(
                cfg.root,
                split,
                loaded.processor.tokenizer,
                max_seconds=max_audio_seconds(30.0, loaded.processor.feature_extractor),
                max_label_tokens=WHISPER_MAX_LABEL_TOKENS,
                pseudo_labels=cfg.pseudo_labels,
            )
            if dataset is None:
                log.warning("split %r has no shards under %s/shards; skipped", split, cfg.root)
                continue
            rows = transcribe(
                model,
                loaded.processor,
                dataset,
                batch_size=cfg.batch_size,
                max_samples=cfg.max_samples,
                num_beams=cfg.num_beams,
                desc=f"{split}: {name}",
            )
            result = {
                "split": split,
                "model": name,
                "base_model": loaded.base_name,
                **score_rows(rows),
                "data": eligibility.summary(),
            }
            results.append(result)
            if cfg.out:
                write_predictions(Path(cfg.out) / safe_id(name) / f"{split}.jsonl", rows)
        del model, loaded
    if cfg.out:
        atomic_write_text(Path(cfg.out) / "metrics.json", json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    return results


def main(argv: list[str] | None = None) -> int:
    from train.asr.scoring import format_table

    cfg, args = parse_config(
        EvaluateConfig, argv, prog="python -m train.asr.evaluate", description=__doc__.split("\n\n")[0]
    )
    setup_logging(args.verbose, root=cfg.root)
    results = evaluate_models(cfg)
    if not results:
        log.warning("nothing was scored")
        return 1
    print(format_table(results))
    return 0


if __name__ == "__main__":
    run_cli(main)
