import logging

import pytest

from shqip_av.log import RedactingFilter, redact
from shqip_av.models import ModelFileError, resolve_model
from shqip_av.takedown import TakedownList
from tests.conftest import shared_model


def test_model_resolved_from_models_dir(monkeypatch):
    path = shared_model("face_landmarker.task")
    monkeypatch.setenv("SHQIP_AV_MODELS", str(path.parent))
    assert resolve_model("face_landmarker") == path


def test_missing_model_offline_says_where_to_put_it(monkeypatch, tmp_path):
    monkeypatch.setenv("SHQIP_AV_MODELS", str(tmp_path / "empty"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("SHQIP_AV_OFFLINE", "1")
    with pytest.raises(
        ModelFileError, match=r"face_landmarker.task not found; place it in .*empty.*official source: https://"
    ):
        resolve_model("face_landmarker")


def test_corrupt_model_file_is_refused(monkeypatch, tmp_path):
    (tmp_path / "silero_vad.onnx").write_bytes(b"truncated")
    monkeypatch.setenv("SHQIP_AV_MODELS", str(tmp_path))
    with pytest.raises(ModelFileError, match="does not match the published checksum"):
        resolve_model("silero_vad")


def test_tokens_are_redacted_from_logs(caplog):
    token = "hf_" + "a1B2c3D4e5F6g7H8i9J0kLmN"
    assert token not in redact(f"uploading with {token}")
    assert redact("Authorization: Bearer secret123") == "Authorization: Bearer ***"
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "token=%s", (token,), None)
    RedactingFilter().filter(record)
    assert token not in record.getMessage()


def test_takedown_matches_by_kind(tmp_path):
    path = tmp_path / "takedown.txt"
    path.write_text("# withdrawn\nvideo:yt-AAA\nchannel:UC123\nsubject:Arta K.\nhttps://x.org/v.mp4#frag\nBBB\n")
    tl = TakedownList.load(path)
    assert tl.match(video_id="yt-AAA") == "video:yt-AAA"
    assert tl.match(channel_id="UC123") and tl.match(subject="arta k.")
    assert tl.match(url="https://x.org/v.mp4#frag")
    assert tl.match(platform_id="BBB") == "BBB"
    assert tl.match(video_id="yt-CCC", channel="Other") is None


def test_step_times_split_waits_from_the_work_around_them():
    """filter's time split: frames waited for count as decode, the rest of the pass as landmarks."""
    import time

    from shqip_av.log import StepTimes

    closed = []

    def slow_frames():
        try:
            for i in range(5):
                time.sleep(0.05)
                yield i
        finally:
            closed.append(True)

    times = StepTimes()
    with times.excluding("landmarks", "decode"):
        frames = times.iterate(slow_frames(), "decode")
        for i in frames:
            time.sleep(0.02)
            if i == 2:
                break
        frames.close()
    assert closed == [True]  # closing the wrapper stops the decoder
    assert 0.14 <= times.seconds["decode"] < 1.0 and 0.05 <= times.seconds["landmarks"] < 0.5  # loose: a loaded CI
