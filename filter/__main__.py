"""python -m filter --root data [--workers N] [--config filter.yaml] [key=value ...]"""

from filter.config import FilterConfig
from filter.pipeline import prepare_clips
from shqip_av.config import parse_config, run_cli
from shqip_av.log import setup_logging


def main(argv=None) -> int:
    cfg, args = parse_config(
        FilterConfig,
        argv,
        prog="python -m filter",
        description="Turn collected videos (<root>/raw) into accepted utterances (<root>/clips).",
    )
    setup_logging(args.verbose, root=cfg.root)
    stats = prepare_clips(cfg)
    print(stats.summary())
    return 1 if stats.failed else 0  # failed videos are a problem the caller must see


if __name__ == "__main__":
    run_cli(main)
