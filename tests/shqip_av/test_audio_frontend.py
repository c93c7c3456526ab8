"""The audio front end of DESIGN.md §7.1 (shqip_av.components.audio_frontend): 80 mel frames a second, and the
video frame ↔ mel window mapping that training and inference share."""

from __future__ import annotations

import numpy as np
import pytest

from shqip_av.components import audio_frontend as audio


def test_shapes_rates_and_window_lengths():
    mel = audio.log_mel(np.zeros(16000 * 2, np.float32))
    assert tuple(mel.shape) == (80, 2 * 80 + 1)
    assert audio.mel_per_video_frame() == pytest.approx(3.2)
    assert audio.mel_length(5) == 16 and audio.mel_length(1) == 4
    assert [audio.mel_start(t) for t in range(6)] == [0, 3, 6, 10, 13, 16]
    # beyond the ends: silence, never another part of the signal
    window = audio.mel_window(mel, -3, 5)
    assert window.shape == (80, 16) and float(window[:, :10].max()) == pytest.approx(audio.SILENCE)


@pytest.mark.parametrize("frame", [0, 7, 24, 50, 73])
def test_a_click_at_a_video_frame_lands_in_that_frames_mel_window(frame):
    wave = np.zeros(16000 * 4, np.float32)
    at = int((frame / 25 + 0.02) * 16000)  # the middle of video frame `frame`
    wave[at : at + 16] = 1.0
    mel = audio.log_mel(wave).numpy()
    energy = mel.max(axis=0)
    peak = int(energy.argmax())
    own = audio.mel_window(np.arange(mel.shape[1])[None, :].astype(float), frame, 1)[0]
    assert peak in own.astype(int)
    for other in (frame - 2, frame + 2):
        window = audio.mel_window(mel, other, 1)
        assert window.max() < mel[:, peak].max() - 5  # far quieter than the click


def test_torch_and_numpy_windows_agree_and_batches_match_single_calls():
    import torch

    rng = np.random.default_rng(0)
    waves = rng.standard_normal((2, 16000)).astype(np.float32)
    batch = audio.log_mel(torch.from_numpy(waves))
    assert torch.allclose(batch[1], audio.log_mel(waves[1]), atol=1e-4)
    assert np.allclose(audio.mel_window(batch.numpy(), 4, 5), audio.mel_window(batch, 4, 5).numpy())


def test_lagged_correlation_finds_a_mouth_two_frames_early_and_has_none_for_silence():
    import numpy as np

    from shqip_av.components.audio_frontend import lagged_correlation

    t = np.arange(100)
    loudness = np.sin(t / 4.0) + 0.1 * np.cos(t * 1.7)
    opening = np.roll(loudness, -2)  # opens two frames before the sound
    assert lagged_correlation(opening, loudness, max_lag=2) > 0.99
    assert lagged_correlation(opening, loudness, max_lag=0) < 0.95
    assert np.isnan(lagged_correlation(opening, np.zeros(100)))  # silence: undefined, not -1
