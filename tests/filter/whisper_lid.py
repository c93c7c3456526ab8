"""A tiny Whisper that transcribes the sample's Albanian sentences and tells Albanian from English,
for the tests of filter's transcripts step.

No real Whisper can be downloaded here, so one is trained in the test session (about a minute on
2 cores), fully fine-tuned from ``train.asr.tiny``'s random model:

- Albanian: the sample dataset's utterances with their sentences, and espeak-ng ``-v sq`` speech
  of other Albanian sentences (../shared/testdata/text);
- English: espeak-ng ``-v en`` speech of English sentences (../shared/testdata/text/opus100_en_sq)
  with their text, and 4 s pieces of the real English talking-head clips in ../shared (no
  transcripts: only their language token is learned).

../shared/testdata/audio/silero_test_speech_en.wav, a speaker none of these are, is left out: the
tests use it as unseen English. What the model learns to separate is partly human vs espeak
voice, not only the language; the tests show the step's mechanics, not a language-ID benchmark.
"""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
ENGLISH_CLIPS = [
    "sadtalker_WDA_AlexandriaOcasioCortez_000.mp4",
    "sadtalker_WDA_KatieHill_000.mp4",
    "retalking_face_1.mp4",
    "retalking_face_2.mp4",
    "retalking_face_3.mp4",
    "retalking_face_5.mp4",
]


def _espeak(text: str, voice: str, folder: Path) -> np.ndarray:
    from shqip_av.media import read_audio

    path = folder / "espeak.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), "--", text], check=True, capture_output=True)
    return read_audio(path)


def _sentences(path: Path, count: int, *, words=(3, 8)) -> list[str]:
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if words[0] <= len(line.split()) <= words[1]][:count]


def training_examples(demo_root: Path, folder: Path) -> list[tuple[np.ndarray, str, str | None]]:
    """(16 kHz audio, language, text or None)."""
    from shqip_av.manifest import read_jsonl
    from shqip_av.media import read_audio

    examples = []
    for record in read_jsonl(demo_root / "clips" / "manifest.jsonl"):
        if "txt" in record["files"]:
            text = (demo_root / record["files"]["txt"]).read_text(encoding="utf-8")
            examples.append((read_audio(demo_root / record["files"]["wav"]), "sq", text))
    for text in _sentences(SHARED / "testdata" / "text" / "copa_8_bleron.txt", 8):
        examples.append((_espeak(text, "sq", folder), "sq", text))
    for text in _sentences(SHARED / "testdata" / "text" / "opus100_en_sq" / "opus.en-sq-dev.en", 10):
        examples.append((_espeak(text, "en", folder), "en", text))
    for name in ENGLISH_CLIPS:
        audio = read_audio(SHARED / "testdata" / "videos" / name)
        for start in range(0, max(0, len(audio) - 64000), 64000)[:4]:
            examples.append((audio[start : start + 64000], "en", None))
    return examples


def build_lid_whisper(out: Path, demo_root: Path, *, steps: int = 400, seed: int = 0) -> Path:
    """Train and save the model (a Whisper folder ``from_pretrained`` loads); returns ``out``."""
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    from train.asr.tiny import TinyWhisperConfig, build_tiny_whisper

    base = build_tiny_whisper(
        TinyWhisperConfig(out=str(out.with_name(out.name + "-random")), root=str(demo_root), seed=seed)
    )
    processor = WhisperProcessor.from_pretrained(base)
    model = WhisperForConditionalGeneration.from_pretrained(base)
    tokenizer = processor.tokenizer
    folder = out.parent / "espeak"
    folder.mkdir(parents=True, exist_ok=True)
    examples = training_examples(demo_root, folder)
    labels = []
    for audio, language, text in examples:
        tokenizer.set_prefix_tokens(language=language, task="transcribe", predict_timestamps=False)
        ids = tokenizer(text).input_ids[1:] if text else [tokenizer.convert_tokens_to_ids(f"<|{language}|>")]
        labels.append(ids)  # the model prepends <|startoftranscript|> itself
    torch.manual_seed(seed)
    rng = random.Random(seed)

    def features(rows):
        """Each utterance with its edges moved at random (up to 0.25 s cut, 0.3 s of silence added):
        filter's voice-activity segments do not start where the captions did."""
        batch = []
        for r in rows:
            audio = examples[r][0]
            cut0, cut1 = (rng.randint(0, 4000) for _ in range(2))
            audio = np.concatenate([np.zeros(rng.randint(0, 4800), np.float32), audio[cut0 : len(audio) - cut1]])
            batch.append(processor.feature_extractor(audio, sampling_rate=16000, return_tensors="np").input_features[0])
        return torch.from_numpy(np.stack(batch))

    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    model.train()
    for step in range(steps):
        rows = rng.sample(range(len(examples)), 8)
        width = max(len(labels[r]) for r in rows)
        target = torch.full((len(rows), width), -100, dtype=torch.long)
        for i, r in enumerate(rows):
            target[i, : len(labels[r])] = torch.tensor(labels[r])
        for group in optimizer.param_groups:
            group["lr"] = 2e-3 * min(1.0, (step + 1) / 20) * (1 - step / steps)
        loss = model(input_features=features(rows), labels=target).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    model.save_pretrained(out)
    processor.save_pretrained(out)
    (out / "training.json").write_text(json.dumps({"examples": len(examples), "steps": steps, "loss": loss.item()}))
    return out
