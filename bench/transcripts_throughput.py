"""The cost of filter's transcripts step, on the embedded sample clips.

1. Recognition throughput (seconds of speech per wall second, × real time) of
   shqip_av.components.whisper.recognize (language ID + transcription + confidence measures) at batch sizes
   1 and 8, on the CPU and, when there is one, on a GPU.
2. The filter's time split by step over the same clips with the step off and on (one worker).

The model is a tiny Whisper (the demo's train.asr run data/demo/runs/asr/tiny-demo when `make
demo` has made it, otherwise a tiny random one from train.asr.tiny, which decodes up to its length
limit and so shows the worst case). Figures only; nothing is asserted.

    python bench/transcripts_throughput.py [--model FOLDER_OR_HUB_ID]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="", help="Whisper to use (default: the demo's run, else a tiny random one)")
    args = parser.parse_args()
    models = REPO.parent / "shared" / "models"
    if models.is_dir():
        os.environ.setdefault("SHQIP_AV_MODELS", str(models))
    import torch

    from collect.pipeline import CollectConfig, prepare_raw
    from collect.sample import write_sample
    from filter.config import FilterConfig, TranscriptsConfig
    from filter.pipeline import prepare_clips
    from filter.transcripts import load_recognizer
    from shqip_av.captions import read_vtt
    from shqip_av.log import setup_logging
    from shqip_av.media import read_audio
    from shqip_av.components.whisper import recognize

    setup_logging(False)
    torch.set_num_threads(os.cpu_count() or 1)
    base = Path(tempfile.mkdtemp(prefix="shqip-av-bench-transcripts-"))
    try:
        sample = base / "sample"
        write_sample(sample)
        model = args.model
        demo_run = REPO / "data" / "demo" / "runs" / "asr" / "tiny-demo"
        if not model and demo_run.is_dir():
            model = str(demo_run)
        if not model:
            from train.asr.tiny import TinyWhisperConfig, build_tiny_whisper

            model = str(build_tiny_whisper(TinyWhisperConfig(out=str(base / "whisper-tiny-random"))))
        print(f"model: {model}")

        # 1. recognition alone, on the sample's captioned utterances
        pieces = []
        for vtt in sorted((sample / "incoming" / "sample").glob("speaker_*.sq.vtt")):
            audio = read_audio(vtt.with_name(vtt.name.replace(".sq.vtt", ".mp4")))
            pieces += [audio[int(c.start * 16000) : int(c.end * 16000)] for c in read_vtt(vtt)]
        seconds = sum(len(p) for p in pieces) / 16000
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        print(f"\nrecognition: {len(pieces)} utterances, {seconds:.1f} s of speech")
        print(f"{'device':<7} {'batch':>5} {'wall s':>7} {'x real time':>12}")
        for device in devices:
            loaded = load_recognizer(model, "main", 128, device)
            recognize(loaded, pieces[:2], languages=["sq"])  # warm-up
            for batch in (1, 8):
                start = time.perf_counter()
                for i in range(0, len(pieces), batch):
                    recognize(loaded, pieces[i : i + batch], languages=["sq"])
                wall = time.perf_counter() - start
                print(f"{device:<7} {batch:>5} {wall:>7.2f} {seconds / wall:>12.1f}")
            load_recognizer.cache_clear()

        # 2. the filter with the step off and on
        print("\nfilter, 1 worker, the sample's 10 clips:")
        for label, transcripts in (("step off", TranscriptsConfig()), ("step on", TranscriptsConfig(model=model))):
            root = base / label.replace(" ", "-")
            root.mkdir()
            shutil.copytree(sample / "incoming", root / "incoming")
            shutil.copy(sample / "sources.yaml", root / "sources.yaml")
            prepare_raw(CollectConfig(root=str(root)))
            start = time.perf_counter()
            stats = prepare_clips(FilterConfig(root=str(root), workers=1, transcripts=transcripts))
            wall = time.perf_counter() - start
            print(f"  {label}: {wall:.1f} s wall, {stats.utterances} utterances kept; {stats.time_split()}")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
