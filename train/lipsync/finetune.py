"""python -m train.lipsync.finetune --base runs/lipsync/<base> --speaker "<consent subject>" [--root data]

Speaker fine-tuning (DESIGN.md §7.3): continues a trained generator on one person's samples only.
An identity-specific model needs that person's release: every video of the speaker (matched by
the consent subject or the source's speaker) must carry a consent record of kind ``release``;
footage that is merely licensed, or a speaker without any consent record, is refused with one
line before anything is trained. The run is a normal train.lipsync run
(runs/lipsync/<base>-<speaker>/, resumable) started from the base's weights, with its
validation drawn from the speaker's own held-out samples.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shqip_av import ShqipError
from shqip_av.config import from_dict, load_yaml, option, parse_config, run_cli, to_dict
from shqip_av.files import DatasetRoot
from shqip_av.log import setup_logging
from shqip_av.manifest import read_jsonl


@dataclass
class FinetuneConfig:
    base: str = option("", "the base generator's run folder (runs/lipsync/<name>, relative to --root or absolute)")
    speaker: str = option("", "the consenting person: their consent record's subject (or the sources' speaker)")
    root: str = option("data", "dataset root")
    name: str = option("", "run name (default: <base>-<speaker>)")
    max_steps: int = option(500, "fine-tuning steps", min=1)
    learning_rate: float = option(2e-4, "learning rate", above=0, max=1)


class ConsentError(ShqipError):
    pass


def speaker_videos(root: str, speaker: str) -> list[str]:
    """The speaker's video ids, after checking that each has a release; raises ConsentError."""

    def names(r: dict) -> tuple:
        return (((r.get("rights") or {}).get("consent") or {}).get("subject"), (r.get("source") or {}).get("speaker"))

    records = [r for r in read_jsonl(DatasetRoot(root).path("raw", "manifest.jsonl")) if speaker in names(r)]
    if not records:
        raise ConsentError(
            f"no video of {speaker!r} in {root}/raw/manifest.jsonl: a speaker model needs that "
            f"person's consent record (kind: release)"
        )
    for r in records:
        rights = r.get("rights") or {}
        kind = (rights.get("consent") or {}).get("kind")
        if rights.get("basis") != "consent" or kind != "release":
            what = f"consent of kind {kind!r}" if kind else f"no consent record (basis: {rights.get('basis')})"
            raise ConsentError(
                f"{speaker!r}: video {r['video_id']} has {what}; identity-specific models need a "
                f"release from the person (kind: release); nothing was trained"
            )
    return sorted(r["video_id"].replace(".", "-") for r in records)


def run_finetune(cfg: FinetuneConfig) -> dict:
    from pathlib import Path

    from train.lipsync.train import GeneratorTrainConfig, run_training

    if not cfg.base or not cfg.speaker:
        raise ShqipError('give --base runs/lipsync/<name> and --speaker "<consent subject>"')
    base = Path(cfg.base) if Path(cfg.base).is_dir() else DatasetRoot(cfg.root).path(cfg.base)
    if not (base / "config.yaml").is_file() or not (base / "generator" / "config.json").is_file():
        raise ShqipError(f"{cfg.base}: not a finished train.lipsync run (no config.yaml or generator/)")
    videos = speaker_videos(cfg.root, cfg.speaker)
    train = from_dict(GeneratorTrainConfig, load_yaml(base / "config.yaml"))
    settings = to_dict(train)
    slug = re.sub(r"[^a-z0-9]+", "-", cfg.speaker.lower()).strip("-") or "speaker"
    settings.update(name=cfg.name or f"{train.name}-{slug}", output="")
    settings["model"]["init"] = str(base / "generator")
    settings["data"].update(root=cfg.root, videos=videos, eval_split="", holdout=0.25)
    settings["training"].update(
        max_steps=cfg.max_steps,
        learning_rate=cfg.learning_rate,
        eval_steps=min(settings["training"]["eval_steps"], cfg.max_steps),
    )
    settings["loss"]["sync_warmup"] = 0  # the base is past its warm-up
    return run_training(from_dict(GeneratorTrainConfig, settings))


def main(argv=None) -> int:
    cfg, args = parse_config(
        FinetuneConfig,
        argv,
        prog="python -m train.lipsync.finetune",
        description="Fine-tune a trained generator to one consenting speaker.",
    )
    setup_logging(args.verbose, root=cfg.root)
    metrics = run_finetune(cfg)
    first, last = (metrics["history"] or [{}])[0], metrics.get("final") or {}
    print(
        f"fine-tuned on {metrics['train']['samples']} samples: validation L1 in the mask "
        f"{first.get('eval_l1')} → {last.get('eval_l1')}"
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
