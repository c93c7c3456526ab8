"""Per-video adaptation and the self-dub evaluation on real footage: adaptation lowers the mouth
error on a speaker the generator never saw, the paste-back leaves everything outside the mask
alone, and adaptation that cannot help (too little footage, a loss that turns NaN) hands back the
base generator and says why."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import SHARED

UNSEEN = SHARED / "testdata" / "videos" / "retalking_face_5.mp4"  # a validation speaker (speakers.tsv)
OTHER_SPEECH = SHARED / "testdata" / "audio" / "silero_test_speech_en.wav"


def _tiny():
    from shqip_av.components.lipsync_generator import build_generator

    torch.manual_seed(0)
    return build_generator({"size": 32, "frames": 5, "references": 2, "channels": [16, 32], "audio_dim": 16})


def _inputs(n: int, size: int = 32):
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8)
    marks = rng.uniform(0, size, (n, 478, 2)).astype(np.float32)
    audio = rng.normal(-4, 1, (n, 80, 16)).astype(np.float32)
    return crops, marks, audio


def test_adaptation_lowers_the_self_dub_mouth_error_on_a_speaker_the_generator_never_saw(demo_generator, tmp_path):
    """The demo's generator learned three synthetic faces; the clip's speaker is a real validation
    speaker. Adapted on the clip's first half, it is measured on the second half only."""
    from shqip_av.components.lipsync_generator import LipSyncGenerator
    from train.lipsync.evaluate import quality_table
    from train.lipsync.self_dub import self_dub

    if not UNSEEN.is_file():
        pytest.skip("needs ../shared/testdata")
    generator = LipSyncGenerator.from_pretrained(demo_generator[0])
    result = self_dub(UNSEEN, generator, adapt_steps=60, drive=OTHER_SPEECH, out=tmp_path, landmarks=False)
    table = result["table"]
    print(quality_table({UNSEEN.stem: result}))
    assert result["adaptation"]["steps"] == 60 and not result["adaptation"]["note"]
    assert table["adapted"]["mouth_psnr"] > table["base"]["mouth_psnr"] + 1.0
    assert table["adapted"]["mouth_ssim"] > table["base"]["mouth_ssim"]
    for variant in ("adapted", "base", "frozen", "new_speech"):
        assert table[variant]["outside_psnr"] >= 45, variant
    assert (tmp_path / f"{UNSEEN.stem}.strip.png").stat().st_size > 10_000
    assert (tmp_path / f"{UNSEEN.stem}.side-by-side.mp4").stat().st_size > 10_000


def test_too_little_footage_or_a_loss_that_turns_nan_hands_back_the_base():
    from train.lipsync.adapt import adapt_generator

    base = _tiny()
    crops, marks, audio = _inputs(12)
    short = adapt_generator(base, [crops], [marks], [audio], steps=10, show_progress=False)
    assert short.model is base and not short.adapted and "12 frames" in short.note
    crops, marks, audio = _inputs(40)
    audio[:] = np.nan  # a corrupt mel: the loss is NaN at once
    broken = adapt_generator(base, [crops], [marks], [audio], steps=10, show_progress=False)
    assert broken.model is base and not broken.adapted and "diverged" in broken.note
    crops, marks, audio = _inputs(40)
    fine = adapt_generator(base, [crops], [marks], [audio], steps=5, show_progress=False)
    assert fine.adapted and fine.model is not base
    assert all(torch.equal(p, q) for p, q in zip(base.parameters(), _tiny().parameters()))  # base untouched


def test_negative_adaptation_steps_are_refused_with_one_line():
    from export.dub import DubConfig
    from shqip_av import ShqipError
    from shqip_av.config import validate

    with pytest.raises(ShqipError, match="adapt_steps"):
        validate(DubConfig(adapt_steps=-1))


def test_the_jaw_moved_by_audio_is_zero_when_speech_and_silence_leave_the_same_jaw():
    """The control the self-dub adds: a generator whose jaw is moved by the face around the mask,
    not by the audio, scores 0 however much that jaw moves; one that moves it as far as the
    person did scores about 1; frames without a face are left out."""
    import numpy as np

    from train.lipsync.quality import jaw_moved_by_audio

    rng = np.random.default_rng(0)
    real = 0.8 + 0.05 * rng.standard_normal(100)
    context = 0.8 + 0.05 * rng.standard_normal(100)  # the jaw the unmasked face implies
    assert jaw_moved_by_audio(context, context, real) == 0.0
    driven = context + np.where(rng.random(100) < 0.5, 1, -1) * np.std(real)
    driven[::10] = np.nan
    assert abs(jaw_moved_by_audio(driven, context, real) - 1.0) < 1e-9
    assert np.isnan(jaw_moved_by_audio(np.full(5, np.nan), context[:5], real[:5]))
    assert np.isnan(jaw_moved_by_audio(context, context, np.full(100, 0.8)))  # a still real jaw: no scale
