"""The retrieval mouth path on real footage (DESIGN.md §8.1): a mouth-shape model trained on a
slice of the real footage's train speakers, mouths retrieved from a validation speaker's own
clip it never saw. Learning checks: the jaw follows the new audio, not the clip; a delay in the
audio is a delay in the mouth; the bundle's switch picks the method."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import shared_video
from tests.real_judge import table_rows

pytestmark = pytest.mark.slow
DRIVE = "deep_avsr__00001"  # a train speaker's speech drives the validation speaker's face
FACE = "deep_avsr__00019"  # a validation speaker (9.5 s): never trained on


@pytest.fixture(scope="module")
def retrieval_clip():
    """The validation clip's face track and its real jaw (normalised), tracked once."""
    from filter.config import FilterConfig
    from shqip_av.components.face_tracker import scan_faces
    from shqip_av.components.mouth_shape import jaw, shape_vectors, speaker_units
    from shqip_av.media import probe

    clip = Path(table_rows([FACE])[1][0])
    info = probe(clip)
    scan = scan_faces(clip, info, FilterConfig().faces, 25.0)
    track = max(scan.tracks, key=lambda t: len(t.landmarks))
    normalised, _, _ = speaker_units(shape_vectors(np.asarray(track.landmarks[0 : len(track.landmarks)])))
    return clip, info, track, jaw(normalised)


def _picked_jaw(model, clip, info, track, real_jaw, audio: np.ndarray) -> np.ndarray:
    """The (normalised) jaw of the library frame chosen for each of the track's frames."""
    from shqip_av.mouth_retrieval import RetrievalLipSync
    from shqip_av.components import audio_frontend as frontend

    n = len(real_jaw)
    lipsync = RetrievalLipSync(model)
    lipsync.prepare(clip, info, 25.0, [(track, track.start, track.start + n)], audio, frontend.log_mel(audio).numpy())
    return real_jaw[lipsync.picked[0] - track.start]


def _drive(seconds: float) -> np.ndarray:
    from shqip_av.media import read_audio

    speech = read_audio(Path(table_rows([DRIVE])[1][0]))
    return np.resize(speech, int(seconds * 16000))


def test_the_retrieved_jaw_follows_the_new_speech_and_rests_in_silence(realpool_mouth_shape, retrieval_clip):
    from shqip_av.components.mouth_shape import MouthShapeModel

    clip, info, track, real_jaw = retrieval_clip
    model = MouthShapeModel.from_pretrained(str(realpool_mouth_shape[0]))
    seconds = (track.start + len(real_jaw)) / 25 + 1
    speech = _picked_jaw(model, clip, info, track, real_jaw, _drive(seconds))
    silence = _picked_jaw(model, clip, info, track, real_jaw, np.zeros(int(seconds * 16000), np.float32))
    moved = float(np.mean(np.abs(speech - silence)) / real_jaw.std())  # in the real jaw's spread
    assert moved >= 0.3, moved
    assert silence.std() < speech.std()  # silence: the mouth stays near its rest, speech moves it


def test_a_planted_audio_delay_moves_the_retrieved_mouth_as_late(realpool_mouth_shape, retrieval_clip):
    from shqip_av.components.audio_frontend import correlations_by_lag
    from shqip_av.components.mouth_shape import MouthShapeModel

    clip, info, track, real_jaw = retrieval_clip
    model = MouthShapeModel.from_pretrained(str(realpool_mouth_shape[0]))
    drive = _drive((track.start + len(real_jaw)) / 25 + 1)
    on_time = _picked_jaw(model, clip, info, track, real_jaw, drive)
    late = _picked_jaw(model, clip, info, track, real_jaw, np.concatenate([np.zeros(4 * 640, np.float32), drive]))
    lags = correlations_by_lag(on_time, late, 8)
    assert abs(max(lags, key=lags.get) - 4) <= 1, lags


def test_the_bundle_names_the_method_and_a_dub_uses_it(
    realpool_mouth_shape, tiny_dub_bundle, demo_run, demo_expert, tmp_path
):
    """One switch: a bundle built with --mouth-shape says lipsync: retrieval and needs no generator;
    its dub's report.json, card and pipeline say retrieval; the generator bundle still dubs with
    its generator."""
    from export.bundle import BundleConfig, build_bundle, load_bundle
    from export.pipeline import DubbingPipeline

    bundle = build_bundle(
        BundleConfig(
            out=str(tmp_path / "retrieval-en"),
            asr=str(demo_run),
            expert=str(demo_expert[0]),
            mouth_shape=str(realpool_mouth_shape[0]),
            tts="espeak:en",
        )
    )
    loaded = load_bundle(str(bundle))
    assert loaded.lipsync == "retrieval" and "generator" not in loaded.index
    assert "Mouths: retrieval" in (bundle / "README.md").read_text()
    pipe = DubbingPipeline.from_pretrained(str(bundle), device="cpu")
    assert pipe.lipsync == "retrieval" and pipe.generator is None
    srt = tmp_path / "en.srt"
    srt.write_text("1\n00:00:00,300 --> 00:00:03,500\nGood morning, this is a test of dubbing.\n")
    result = pipe(shared_video("sadtalker_WDA_AlexandriaOcasioCortez_000.mp4"), to="en", translation=srt,
                  out=tmp_path / "dub")  # fmt: skip
    report = result.report
    assert report["lipsync"] == "retrieval" and report["lip_synced_frames"] > 0
    assert report["retrieval"] and report["retrieval"][0]["library_frames"] >= 50
    assert json.loads(result.report_path.read_text())["lipsync"] == "retrieval"
    assert DubbingPipeline.from_pretrained(str(tiny_dub_bundle), device="cpu").lipsync == "generator"
