"""python -m cards {dataset,model,publish} ...: cards from the project's records, and Hub publishing.

    python -m cards dataset --root data                      # <root>/cards/dataset/README.md + assets/
    python -m cards model --run runs/asr/<name> --root data  # <run>/README.md
    python -m cards publish --root data --repo user/name [--private] [--dry-run] [--run runs/asr/<name> | --bundle exports/<name> | --space space/]

`python -m cards <command> --help` lists each command's options.
"""

from __future__ import annotations

import sys

from shqip_av.config import parse_config, run_cli
from shqip_av.log import setup_logging

COMMANDS = ("dataset", "model", "publish")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print(__doc__.strip(), file=sys.stderr)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    command, rest = argv[0], argv[1:]
    prog = f"python -m cards {command}"
    if command == "dataset":
        from cards.dataset_card import DatasetCardConfig, build_dataset_card

        cfg, args = parse_config(DatasetCardConfig, rest, prog, "Write the dataset card from the dataset's records.")
        setup_logging(args.verbose, root=cfg.root)
        print(build_dataset_card(cfg))
    elif command == "model":
        from cards.model_card import ModelCardConfig, build_model_card

        cfg, args = parse_config(ModelCardConfig, rest, prog, "Write the model card of a train.asr run.")
        setup_logging(args.verbose, root=cfg.root)
        print(build_model_card(cfg))
    else:
        from cards.publish import PublishConfig, publish

        cfg, args = parse_config(PublishConfig, rest, prog, "Publish the dataset (or a run) to the Hugging Face Hub.")
        setup_logging(args.verbose, root=cfg.root)
        summary = publish(cfg)
        for path, size in summary["files"]:
            print(f"{size:>14,}  {path}")
        print(f"{len(summary['files'])} files, {summary['bytes']:,} bytes, assembled in {summary['folder']}")
        if summary["published"]:
            print(f"published to {summary['url']} in {summary['commits']} commit(s)")
        else:
            print(
                "dry run: nothing was sent (files already in the repo are skipped, and stale shards "
                "deleted, when publishing for real)"
            )
    return 0


if __name__ == "__main__":
    run_cli(main)
