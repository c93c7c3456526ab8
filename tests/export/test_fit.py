"""Duration fitting: synthesized speech longer or shorter than its slot ends within a frame of the
slot (to the sample, in fact), stretched by ffmpeg's atempo within its bounds; what cannot fit
borrows the silence after the slot, and the rest is cut and reported with its length."""

from __future__ import annotations

import numpy as np
import pytest

from export.fit import FitConfig, atempo, fit_to_slot, speaking_rate
from shqip_av.captions import Cue, read_srt, write_srt
from shqip_av import ShqipError

RATE = 16000
FRAME = 1 / 25


def _speech(seconds: float) -> np.ndarray:
    """Syllable-like bursts: a 150 Hz tone gated at 4 Hz."""
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.5 * np.sin(2 * np.pi * 150 * t) * (np.sin(2 * np.pi * 4 * t) > 0)).astype(np.float32)


def _last_sound(audio):  # seconds to the end of the last audible 10 ms
    frames = np.abs(audio[: len(audio) // 160 * 160]).reshape(-1, 160).max(1)
    return (np.nonzero(frames > 0.05)[0][-1] + 1) * 160 / RATE


@pytest.mark.parametrize("synth,slot", [(2.4, 2.0), (1.7, 2.0), (2.0, 2.0), (1.0, 2.0)])
def test_speech_longer_or_shorter_than_its_slot_ends_with_the_slot(synth, slot):
    fitted = fit_to_slot(_speech(synth), RATE, slot)
    assert abs(fitted.fitted - slot) < FRAME and len(fitted.audio) == round(slot * RATE)
    assert fitted.overflow == 0 and fitted.borrowed == 0
    cfg = FitConfig()
    expected = min(max(synth / slot, cfg.min_tempo), cfg.max_tempo)
    assert fitted.tempo == pytest.approx(expected)
    # the stretch really changed how long the speech lasts (not just padding or cutting)
    assert _last_sound(fitted.audio) == pytest.approx(_last_sound(_speech(synth)) / expected, abs=0.06)


def test_what_does_not_fit_borrows_the_silence_after_then_is_cut_and_reported():
    # 3.2 s into 2 s: 1.35× gives 2.37 s; 0.2 s of silence after the slot is borrowed; 0.17 s is cut
    fitted = fit_to_slot(_speech(3.2), RATE, 2.0, gap_after=0.2)
    assert fitted.tempo == pytest.approx(1.35)
    assert fitted.borrowed == pytest.approx(0.2, abs=1e-3)
    stretched = len(atempo(_speech(3.2), RATE, 1.35)) / RATE  # about 3.2 / 1.35: atempo is not sample-exact
    assert stretched == pytest.approx(3.2 / 1.35, abs=0.06)
    assert fitted.overflow == pytest.approx(stretched - 2.2, abs=1e-3)
    assert abs(fitted.fitted - 2.2) < 1 / RATE * 2
    assert fitted.audio[-1] == 0 and abs(fitted.audio[-5:]).max() < 0.01  # cut with a fade, not a click
    report = fitted.report()
    assert "audio" not in report and report["overflow"] > 0.1
    no_borrow = fit_to_slot(_speech(3.2), RATE, 2.0, gap_after=0.2, cfg=FitConfig(borrow=False))
    assert no_borrow.borrowed == 0 and no_borrow.overflow == pytest.approx(stretched - 2.0, abs=1e-3)


def test_speaking_rate_and_chained_atempo():
    cfg = FitConfig()
    assert speaking_rate(3.0, 2.0, cfg) == 1.5 and speaking_rate(2.2, 2.0, cfg) == pytest.approx(1.1)
    assert speaking_rate(1.0, 2.0, cfg) == cfg.min_rate and speaking_rate(0, 2.0, cfg) == 1.0
    out = atempo(_speech(3.0), RATE, 2.5)  # beyond one atempo's 2.0: chained
    assert len(out) / RATE == pytest.approx(1.2, abs=0.05)


def test_srt_round_trip_and_bad_times(tmp_path):
    cues = [Cue(0.5, 2.25, "Mirëdita, si jeni?"), Cue(3.0, 4.5, "Good morning.")]
    path = write_srt(tmp_path / "a.srt", cues)
    assert path.read_text().startswith("1\n00:00:00,500 --> 00:00:02,250\n")
    assert read_srt(path) == cues
    (tmp_path / "bad.srt").write_text("1\n00:00:03,000 --> 00:00:01,000\nbackwards\n")
    with pytest.raises(ShqipError, match="ends before it starts"):
        read_srt(tmp_path / "bad.srt")
    (tmp_path / "junk.srt").write_text("just some text\n")
    with pytest.raises(ShqipError, match="without a 'start --> end' line"):
        read_srt(tmp_path / "junk.srt")
