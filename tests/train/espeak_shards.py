"""Shards of espeak-ng Albanian speech, for the ASR tests and bench/asr_throughput.py.

The shards are packed by the real filter.shard code from a clips manifest. Only their audio and
transcripts are real; the face members (grey placeholder videos and constant landmark/affine arrays, one set per
sample) are placeholders, because train.asr never reads them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
TEXT = REPO.parent / "shared" / "testdata" / "text" / "copa_4_kushtrim.txt"


def missing_inputs() -> str | None:
    """Why shards cannot be built here, or None."""
    if not TEXT.is_file():
        return "needs ../shared/testdata/text/copa_4_kushtrim.txt (the shared test data is not present)"
    if shutil.which("espeak-ng") is None:
        return "needs espeak-ng (apt-get install espeak-ng)"
    return None


def albanian_sentences(count: int, skip: int = 0) -> list[str]:
    """Short real Albanian sentences with ë or ç, from ../shared/testdata/text."""
    lines = [line.strip() for line in TEXT.read_text(encoding="utf-8").splitlines()]
    short = [line for line in lines if 3 <= len(line.split()) <= 8 and ("ë" in line or "ç" in line)]
    return short[skip : skip + count]


def speak(text: str, path: Path, voice: str = "sq") -> np.ndarray:
    """espeak-ng Albanian speech as 16 kHz float32 samples."""
    from shqip_av.media import read_audio

    raw = path.with_suffix(".espeak.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(raw), "--", text], check=True, capture_output=True)
    samples = read_audio(raw)
    raw.unlink()
    return samples


def speaker_in(split: str, cfg) -> str:
    from filter.shard import split_of

    return next(f"espeak speaker {i}" for i in range(1000) if split_of(f"espeak speaker {i}", cfg) == split)


PSEUDO_SOURCE = "asr:whisper-tiny-sq@0123abcd"


def build_asr_root(
    root: Path,
    train_texts: list[str],
    test_texts: list[str],
    *,
    edge_cases: bool = True,
    pseudo_train: list[str] = (),
    pseudo_test: list[str] = (),
) -> Path:
    """A dataset root whose shards hold espeak-ng utterances (train and test speakers); the
    ``pseudo_*`` texts are marked as pseudo-labels (transcript_source PSEUDO_SOURCE)."""
    from filter.shard import ShardConfig, pack_shards
    from shqip_av.media import run_ffmpeg, write_wav
    from shqip_av.schema import SCHEMA_VERSION, sample_key

    cfg = ShardConfig(root=str(root), train=0.5, validation=0.0, test=0.5)
    clips = root / "clips"
    clips.mkdir(parents=True)

    def placeholder_face(folder, key: str, frames: int) -> None:
        """A grey 64×64 crop video as long as the audio, with landmark and affine arrays that pass
        the schema checks (shard packs only valid samples)."""
        run_ffmpeg(
            [
                "-f",
                "lavfi",
                "-i",
                "color=c=gray:s=64x64:r=25",
                "-frames:v",
                str(frames),
                "-pix_fmt",
                "yuv420p",
                str(folder / f"{key}.mp4"),
            ],
            "placeholder face video",
        )
        np.save(folder / f"{key}.landmarks.npy", np.full((frames, 478, 2), 32.0, np.float32))
        np.save(folder / f"{key}.affine.npy", np.tile(np.eye(2, 3, dtype=np.float32), (frames, 1, 1)))

    items = [(speaker_in("train", cfg), t, None) for t in train_texts]
    items += [(speaker_in("test", cfg), t, None) for t in test_texts]
    items += [(speaker_in("train", cfg), t, "pseudo-label") for t in pseudo_train]
    items += [(speaker_in("test", cfg), t, "pseudo-label") for t in pseudo_test]
    if edge_cases:
        train_speaker = speaker_in("train", cfg)
        items += [
            (train_speaker, None, "no transcript"),  # no .txt member
            (train_speaker, "   ", "empty transcript"),
            (train_speaker, " ".join(["Mirëdita, si jeni sot?"] * 120), "over-long transcript"),
            (train_speaker, "Një fjali shumë e gjatë.", "31 s of audio"),
        ]
    records = []
    for i, (speaker, text, case) in enumerate(items):
        video_id = f"espeak-{i:03d}"
        key = sample_key(video_id, 0, 0.0)
        folder = clips / video_id
        folder.mkdir()
        samples = speak(text if text and text.strip() and case != "over-long transcript" else "Mirëdita", folder / "a")
        if case == "31 s of audio":
            samples = np.concatenate([samples, np.zeros(31 * 16000, np.float32)])
        frames = max(1, round(len(samples) / 16000 * 25))
        samples = np.pad(samples, (0, max(0, frames * 640 - len(samples))))[: frames * 640]
        write_wav(folder / f"{key}.wav", samples)
        placeholder_face(folder, key, frames)
        duration = len(samples) / 16000
        meta = {
            "schema_version": SCHEMA_VERSION,
            "video_id": video_id,
            "source_url": f"file:///{video_id}.mp4",
            "license": "CC-BY-4.0",
            "consent": None,
            "speaker": speaker,
            "diarization_label": "single-speaker-assumed",
            "start": 0.0,
            "end": duration,
            "fps": 25.0,
            "num_frames": frames,
            "transcript_source": (PSEUDO_SOURCE if case == "pseudo-label" else "manual") if text is not None else None,
            "quality": {
                "eye_distance_px": 100.0,
                "sharpness": 100.0,
                "sync_confidence": 0.5,
                "sync_offset_frames": 0,
                "sync_method": "test",
            },
        }
        (folder / f"{key}.json").write_text(json.dumps(meta))
        files = {m: f"clips/{video_id}/{key}.{m}" for m in ("mp4", "wav", "json", "landmarks.npy", "affine.npy")}
        if text is not None:
            (folder / f"{key}.txt").write_text(text, encoding="utf-8")
            files["txt"] = f"clips/{video_id}/{key}.txt"
        records.append(
            {
                "key": key,
                "video_id": video_id,
                "speaker": speaker,
                "url": meta["source_url"],
                "files": files,
                "duration": duration,
                "meta": meta,
            }
        )
    (clips / "manifest.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    (clips / "rejected.jsonl").write_text("")
    pack_shards(cfg)
    return root
