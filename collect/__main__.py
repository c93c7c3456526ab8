"""python -m collect --root data [--sources data/sources.yaml] [options]"""

from collect.pipeline import CollectConfig, prepare_raw
from shqip_av.config import parse_config, run_cli
from shqip_av.log import setup_logging


def main(argv=None) -> int:
    cfg, args = parse_config(
        CollectConfig,
        argv,
        prog="python -m collect",
        description="Collect consented videos listed in sources.yaml into <root>/raw.",
    )
    setup_logging(args.verbose, root=cfg.root)
    stats = prepare_raw(cfg)
    print(stats.summary())
    return 0


if __name__ == "__main__":
    run_cli(main)
