"""Speech synthesis backends: espeak-ng (real program) and transformers VITS (a tiny random model
built offline; no MMS-TTS weights can be downloaded here). The speaking rate changes the length,
and espeak's voice follows the original speaker's pitch and gender."""

from __future__ import annotations

import numpy as np
import pytest

from export.speak import EspeakSpeaker, SpeechError, Voice, VitsSpeaker, make_speaker, match_pitch, voice_of

TEXT = "Mirëdita, si jeni sot? Unë jam mirë, faleminderit."


def test_espeak_rate_and_a_voice_that_matches_the_original():
    speaker = EspeakSpeaker("sq")
    normal, fast = speaker.speak(TEXT, 1.0), speaker.speak(TEXT, 1.5)
    assert len(fast) / len(normal) == pytest.approx(1 / 1.5, abs=0.08)
    for target in (100.0, 130.0, 180.0, 240.0):  # male and female originals
        voice = Voice(target, 30.0)
        got = voice_of(speaker.speak(TEXT, 1.0, voice))
        assert got.gender == voice.gender and got.median_hz == pytest.approx(target, rel=0.12), (target, got)
    with pytest.raises(SpeechError, match="no voice for language 'xx-nope'"):
        EspeakSpeaker("xx-nope")


def test_voice_of_reads_a_real_speaker():
    from shqip_av.media import read_audio
    from tests.conftest import shared_video

    audio = read_audio(shared_video("sadtalker_WDA_AlexandriaOcasioCortez_000.mp4"))
    voice = voice_of(audio)
    assert voice.gender == "female" and 170 < voice.median_hz < 260
    assert voice_of(np.zeros(16000, np.float32)) == Voice()


def test_vits_speaks_through_transformers_with_a_per_call_rate(tiny_vits):
    speaker = make_speaker({"backend": "vits"}, str(tiny_vits))
    assert isinstance(speaker, VitsSpeaker)
    slow, fast = speaker.speak("good morning, how are you?", 1.0), speaker.speak("good morning, how are you?", 2.0)
    assert slow.dtype == np.float32 and len(fast) < 0.75 * len(slow)
    assert np.array_equal(speaker.speak("good morning", 1.0), speaker.speak("good morning", 1.0))  # seeded
    with pytest.raises(SpeechError, match="cannot load the VITS model"):
        VitsSpeaker(str(tiny_vits.parent / "nope"))


def test_a_single_voice_is_moved_to_the_original_speakers_pitch():
    """What VITS gets (MMS-TTS has one voice per language): a male espeak voice brought up to a
    female original and a female one down to a male original, length kept."""
    speaker = EspeakSpeaker("sq")
    for own, original in ((130.0, 180.0), (200.0, 145.0)):
        speech = speaker.speak(TEXT, 1.0, Voice(own, 20.0))
        shifted, factor = match_pitch(speech, Voice(original, 20.0))
        got = voice_of(shifted)
        assert got.median_hz == pytest.approx(original, rel=0.12) and got.gender == Voice(original).gender, (own, got)
        assert len(shifted) == pytest.approx(len(speech), rel=0.03)
    silent = np.zeros(16000, np.float32)
    assert match_pitch(silent, Voice(200.0, 20.0))[1] == 1.0  # nothing to measure: left alone
