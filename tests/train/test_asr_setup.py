"""train.asr before any training: model loading and its checks, generation prefix, data eligibility."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO
from train.asr.data import Eligibility, FeaturePreparer, SpeechCollator, load_split, select_eligible
from shqip_av.components.whisper import ModelError, configure_generation, language_token_id, load_for_inference


def test_generation_starts_with_the_albanian_prefix(tiny_whisper):
    """The decoder really is fed <|startoftranscript|><|sq|><|transcribe|><|notimestamps|>."""
    loaded = load_for_inference(str(tiny_whisper))
    model, tokenizer = loaded.model, loaded.processor.tokenizer
    assert model.generation_config.language == "sq" and model.generation_config.task == "transcribe"
    assert model.generation_config.forced_decoder_ids is None
    seen = []
    hook = model.model.decoder.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["input_ids"].clone()), with_kwargs=True
    )
    features = torch.zeros(1, model.config.num_mel_bins, 2 * model.config.max_source_positions)
    with torch.inference_mode():
        model.generate(input_features=features, max_new_tokens=2)
    hook.remove()
    assert tokenizer.convert_ids_to_tokens(seen[0][0].tolist()) == [
        "<|startoftranscript|>",
        "<|sq|>",
        "<|transcribe|>",
        "<|notimestamps|>",
    ]
    assert tokenizer.convert_tokens_to_ids("<|sq|>") == language_token_id(tokenizer, "sq")


def test_labels_and_decoding_keep_albanian_letters(tiny_whisper):
    loaded = load_for_inference(str(tiny_whisper))
    tokenizer = loaded.processor.tokenizer
    text = "Çështja e mbetur: çfarë thotë Gjykata?"
    ids = tokenizer(text).input_ids
    assert tokenizer.convert_ids_to_tokens(ids[:4]) == [
        "<|startoftranscript|>",
        "<|sq|>",
        "<|transcribe|>",
        "<|notimestamps|>",
    ]
    assert ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True) == text


def test_tokenizer_without_albanian_token_is_refused(tiny_whisper, tmp_path):
    from transformers import WhisperTokenizer

    from train.asr.tiny import build_tokenizer

    tokenizer = build_tokenizer(["një dy tre katër pesë"] * 10, 300)
    assert language_token_id(tokenizer, "sq") > 0
    plain = WhisperTokenizer(vocab={"a": 0, "b": 1, "<|endoftext|>": 2}, merges=[])
    plain.add_special_tokens({"additional_special_tokens": ["<|startoftranscript|>", "<|en|>"]})
    with pytest.raises(ModelError, match=r"no <\|sq\|> language token"):
        language_token_id(plain, "sq")
    with pytest.raises(ModelError, match="not a Whisper language code"):
        language_token_id(tokenizer, "albanian-ish")
    loaded = load_for_inference(str(tiny_whisper))
    loaded.model.generation_config.lang_to_id.pop("<|sq|>")
    with pytest.raises(ModelError, match="generation config does not map"):
        configure_generation(loaded.model, tokenizer, "sq", "transcribe")


def _cli(*args, cwd=REPO):
    return subprocess.run(
        [sys.executable, "-m", "train.asr", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_startup_errors_are_one_line(asr_root, tmp_path):
    missing = _cli(
        f"data.root={asr_root}", f"model.name_or_path={tmp_path / 'no-such-model'}", f"output={tmp_path / 'run'}"
    )
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines()[-1].startswith("error: cannot load the Whisper processor")
    assert len(missing.stderr.strip().splitlines()) == 1

    typo = _cli(f"data.root={asr_root}", "training.learnig_rate=0.1")
    assert typo.returncode == 2
    assert typo.stderr.strip() == (
        "error: unknown config key 'training.learnig_rate' (did you mean 'training.learning_rate'?)"
    )

    no_shards = _cli(f"data.root={tmp_path / 'empty'}")
    assert no_shards.returncode == 2 and "no shards under" in no_shards.stderr
    assert not (tmp_path / "run").exists()


def test_ineligible_samples_are_skipped_and_counted(asr_root, tiny_whisper):
    from transformers import WhisperProcessor

    processor = WhisperProcessor.from_pretrained(tiny_whisper)
    for streaming in (False, True):
        raw = load_split(asr_root, "train", streaming=streaming)
        eligibility = Eligibility(processor.tokenizer, 448, 0.3, 30.0)
        kept = list(select_eligible(raw, eligibility, desc="checking"))
        assert len(kept) == 12
        assert eligibility.summary() == {
            "kept": 12,
            "skipped": {"audio-too-long": 1, "empty-transcript": 1, "no-transcript": 1, "transcript-too-long": 1},
            "transcript_sources": {"manual": 12},
        }
    # the tiny model's 10 s window lowers the audio limit
    short = Eligibility(processor.tokenizer, 448, 0.3, float(processor.feature_extractor.chunk_length))
    assert short.reason({"txt": "po", "wav": {"bytes": _wav(seconds=12)}}) == "audio-too-long"
    assert short.reason({"txt": "po", "wav": {"bytes": b"RIFF garbage"}}) == "bad-audio"
    assert short.reason({"txt": "po", "wav": {"bytes": _wav(seconds=2, rate=8000)}}) == "bad-audio"


def _wav(seconds: float, rate: int = 16000) -> bytes:
    import io
    import wave

    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\0\0" * int(seconds * rate))
    return buf.getvalue()


def test_features_and_collator(asr_root, tiny_whisper):
    from transformers import WhisperProcessor

    processor = WhisperProcessor.from_pretrained(tiny_whisper)
    processor.tokenizer.set_prefix_tokens(language="sq", task="transcribe")
    raw = load_split(asr_root, "test")
    preparer = FeaturePreparer(processor.feature_extractor, processor.tokenizer)
    rows = [preparer.one(raw[i]) for i in range(3)]
    assert rows[0]["input_features"].shape == (80, 1000)  # 10 s window of the tiny model
    assert json.loads(json.dumps(rows[0]["text"])) == raw[0]["txt"].strip()
    sot = processor.tokenizer.convert_tokens_to_ids("<|startoftranscript|>")
    batch = SpeechCollator(sot)(rows)
    assert batch["input_features"].shape == (3, 80, 1000)
    lengths = [len(r["labels"]) - 1 for r in rows]  # <|startoftranscript|> removed
    for i, n in enumerate(lengths):
        assert batch["labels"][i, :n].tolist() == rows[i]["labels"][1:]
        assert (batch["labels"][i, n:] == -100).all()
    assert processor.tokenizer.convert_ids_to_tokens(batch["labels"][0, :3].tolist()) == [
        "<|sq|>",
        "<|transcribe|>",
        "<|notimestamps|>",
    ]
