"""accelerate launch -m train.asr --config train/configs/<name>.yaml [overrides]

Also runs as plain ``python -m train.asr`` (one process). See train/asr/train.py.
"""

from __future__ import annotations

from shqip_av.config import parse_config, run_cli
from shqip_av.log import setup_logging

from train.asr.config import AsrConfig


def main(argv: list[str] | None = None) -> int:
    cfg, args = parse_config(
        AsrConfig,
        argv,
        prog="accelerate launch -m train.asr",
        description="Fine-tune Whisper for Albanian on the dataset's shards (LoRA by default); "
        "outputs in <root>/runs/asr/<name>/.",
    )
    setup_logging(args.verbose, root=cfg.data.root)
    from train.asr.train import run_training

    run_training(cfg)
    return 0


if __name__ == "__main__":
    run_cli(main)
