"""python -m export bundle|dub|app|space|onnx: the dubbing bundle, a dub, the dubbing app, its Space, ONNX.

    python -m export bundle --out exports/<name> --asr runs/asr/<name> [--mt <id>] --tts espeak:sq
                            --generator runs/lipsync/<name> --expert runs/lipsync/<name> [--to en]
    python -m export dub IN.mp4 --bundle exports/<name> --to en [--translation my.srt] [--out dubs/<name>]
    python -m export app --bundle exports/<name> [--host 127.0.0.1 --port 7860]   # the dubbing app (Gradio)
    python -m export space --bundle exports/<name> --out space/   # the app as a Hugging Face Space folder
    python -m export onnx --model runs/lipsync/<name> [--out DIR]   # the generator as ONNX, checked

Each command's --help lists its options.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from shqip_av.config import parse_config, run_cli
from shqip_av.log import setup_logging

COMMANDS = ("bundle", "dub", "app", "space", "onnx")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        if argv[:1] in (["-h"], ["--help"]):
            print(__doc__.strip())
            return 0
        import difflib

        close = difflib.get_close_matches(argv[0], COMMANDS, n=1) if argv else []
        print(__doc__.strip(), file=sys.stderr)
        what = (
            f"unknown command {argv[0]!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
            if argv
            else "give a command"
        )
        print(f"error: {what}; one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    if argv[0] == "bundle":
        from export.bundle import BundleConfig, build_bundle, load_bundle

        cfg, args = parse_config(
            BundleConfig,
            argv[1:],
            "python -m export bundle",
            "Write a dubbing bundle: model_index.json naming each component, the trained ones copied in, and its card.",
        )
        setup_logging(args.verbose)
        bundle = load_bundle(str(build_bundle(cfg)))
        parts = ", ".join(
            f"{n} {'included' if c['included'] else c['source']} ({c['license']})"
            for n, c in bundle.index.items()
            if isinstance(c, dict)
        )
        print(f"{bundle.path}: {parts}; most restrictive licence {bundle.index['most_restrictive_license']}")
        return 0
    if argv[0] == "dub":
        from export.dub import DubConfig, dub

        rest = argv[1:]
        if rest and not rest[0].startswith("-") and "=" not in rest[0]:  # the video, given first
            rest = ["--input", rest[0], *rest[1:]]
        cfg, args = parse_config(
            DubConfig,
            rest,
            "python -m export dub",
            "Dub a talking-head video into another language, lips included (disclosed as synthetic).",
        )
        setup_logging(args.verbose)
        report = dub(cfg)
        synced = sum(1 for s in report["segments"] if s["lip_synced"])
        overflow = sum(s["overflow"] for s in report["segments"])
        lse = [s["sync"]["lse_c"] for s in report["segments"] if s.get("sync")]
        print(
            f"{report['video']}: {len(report['segments'])} segments dubbed into {report['target_language']}, "
            f"{synced} lip-synced ({report['lip_synced_frames']} frames); overflow {overflow:.2f} s; "
            f"LSE-C {np.mean(lse):.2f}"
            if lse
            else f"{report['video']}: {len(report['segments'])} segments dubbed "
            f"into {report['target_language']}, {synced} lip-synced; overflow {overflow:.2f} s"
        )
        for note in report["notes"]:
            print(f"note: {note}")
        print(f"report: {Path(report['video']).parent / 'report.json'}")
        return 0
    if argv[0] == "app":
        from export.app import AppCliConfig, launch

        cfg, args = parse_config(
            AppCliConfig,
            argv[1:],
            "python -m export app",
            "Serve the dubbing app (Gradio) on a bundle: upload, dub, watch and download in a web page.",
        )
        setup_logging(args.verbose)
        if not cfg.bundle:
            print("error: give --bundle exports/<name> (or a Hub id)", file=sys.stderr)
            return 2
        launch(cfg.bundle, revision=cfg.revision, host=cfg.host, port=cfg.port, work=cfg.work,
               max_seconds=cfg.max_seconds, max_upload=cfg.max_upload, device=cfg.device)  # fmt: skip
        return 0
    if argv[0] == "space":
        from export.space import SpaceConfig, write_space

        cfg, args = parse_config(
            SpaceConfig,
            argv[1:],
            "python -m export space",
            "Write the dubbing app as a Hugging Face Space folder (app.py, requirements, README, the bundle).",
        )
        setup_logging(args.verbose)
        out = write_space(cfg)
        print(f"{out}: a Gradio Space; try it with `cd {out} && python app.py`, publish it with "
              f"`python -m cards publish --space {out} --repo user/name`")  # fmt: skip
        return 0
    from export.onnx import OnnxConfig, export_onnx

    cfg, args = parse_config(
        OnnxConfig,
        argv[1:],
        "python -m export onnx",
        "Write the lip-sync generator as ONNX (dynamic batch) and check it against PyTorch.",
    )
    setup_logging(args.verbose)
    info = export_onnx(cfg)
    print(
        f"{info['file']}: ONNX opset {info['opset']}, dynamic batch; onnxruntime vs PyTorch on batches 1 and 3: "
        f"max abs difference {info['max_abs_difference']:.3g}"
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
