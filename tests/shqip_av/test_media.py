import json
import subprocess

import numpy as np
import pytest

from shqip_av.media import MediaError, extract_audio, iter_frames, probe, read_audio, transcode_upright
from tests.conftest import ffmpeg, shared_video


def ffprobe_json(path):
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_streams", "-show_format", str(path)],
        capture_output=True,
        check=True,
    ).stdout
    return json.loads(out)


def test_probe_matches_ffprobe_on_real_clip():
    path = shared_video("retalking_face_2.mp4")
    info = probe(path)
    ref = ffprobe_json(path)
    v = next(s for s in ref["streams"] if s["codec_type"] == "video")
    assert (info.width, info.height, info.vcodec) == (v["width"], v["height"], v["codec_name"])
    assert info.duration == pytest.approx(float(ref["format"]["duration"]), abs=0.05)
    assert info.fps == pytest.approx(25.0, abs=0.1) and not info.variable_frame_rate
    assert info.has_audio and info.rotation == 0


def test_variable_frame_rate_clip_is_recognised():
    info = probe(shared_video("retalking_face_1.mp4"))
    assert info.variable_frame_rate
    assert info.nominal_fps == pytest.approx(30.0, abs=0.01)
    assert info.fps == pytest.approx(22.1, abs=0.3)  # frames / duration, not the nominal rate
    frames = sum(1 for _ in iter_frames(shared_video("retalking_face_1.mp4"), fps=25, size=(64, 64)))
    assert frames == pytest.approx(info.duration * 25, abs=2)  # constant-rate resampling


def test_rotation_metadata_and_upright_transcode(tmp_path):
    src = shared_video("retalking_face_2.mp4")
    sideways = tmp_path / "stored_sideways.mp4"
    ffmpeg(
        "-i",
        str(src),
        "-t",
        "1",
        "-vf",
        "crop=844:600:0:100,transpose=1",
        "-c:v",
        "libx264",
        "-crf",
        "12",
        "-c:a",
        "copy",
        str(sideways),
    )
    tagged = tmp_path / "phone.mp4"
    ffmpeg("-i", str(sideways), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(tagged))
    info = probe(tagged)
    assert info.rotation in (90, 270) and (info.width, info.height) == (844, 600)
    upright = transcode_upright(tagged, tmp_path / "upright.mp4")
    out = probe(upright)
    assert out.rotation == 0 and (out.width, out.height) == (844, 600)
    reference = next(iter_frames(src))[100:700]
    frame = next(iter_frames(upright))
    assert np.abs(frame.astype(int) - reference).mean() < 4  # the same picture, the right way up


def test_audio_extraction_16k_mono_s16(tmp_path):
    wav = extract_audio(shared_video("sadtalker_WDA_KatieHill_000.mp4"), tmp_path / "a.wav")
    ref = ffprobe_json(wav)["streams"][0]
    assert (ref["sample_rate"], ref["channels"], ref["codec_name"]) == ("16000", 1, "pcm_s16le")
    samples = read_audio(wav)
    assert len(samples) / 16000 == pytest.approx(8.1, abs=0.2) and np.abs(samples).max() > 0.05


def test_errors_carry_ffmpeg_message(tmp_path):
    bogus = tmp_path / "not_video.mp4"
    bogus.write_text("hello, I am text")
    with pytest.raises(MediaError, match="not_video.mp4: .*(Invalid data|invalid)"):
        probe(bogus)
    with pytest.raises(MediaError, match="no such file"):
        probe(tmp_path / "missing.mp4")


def test_write_video_refuses_changing_frame_size(tmp_path):
    from shqip_av.media import write_video

    frames = [np.zeros((64, 64, 3), np.uint8), np.zeros((32, 64, 3), np.uint8)]
    with pytest.raises(MediaError, match="frame size changed"):
        write_video(tmp_path / "v.mp4", frames, fps=25)
    assert list(tmp_path.iterdir()) == []  # no half-written file left behind


@pytest.mark.parametrize("clip", ["latentsync_demo2.mp4", "retalking_face_2.mp4"])
def test_crops_from_the_decoded_region_equal_crops_from_the_whole_frame(clip):
    """filter decodes only the part of the frame its crops read (shqip_av.geometry.crop_region):
    the crops must be the ones the whole frame gives, including a face near the frame's edge."""
    from shqip_av import geometry

    path = shared_video(clip)
    info = probe(path)
    w, h = info.width, info.height
    size = 256
    # faces of two sizes, one in the middle and one cut by the left and top edges
    aligns = [
        geometry.template(size) * (w / 700) + [w * 0.3, h * 0.35],
        geometry.template(size) * (w / 1400) - [w * 0.02, h * 0.01],
    ]
    affines = np.array([geometry.fit_similarity(a, geometry.template(size)) for a in aligns])
    region = geometry.crop_region(affines, size, w, h)
    x, y, rw, rh = region
    assert x % 2 == 0 and y % 2 == 0 and rw % 2 == 0 and rh % 2 == 0 and rw * rh < w * h
    whole = iter_frames(path, fps=25, info=info)
    part = iter_frames(path, fps=25, info=info, region=region)
    for _, full, cut in zip(range(12), whole, part):
        assert cut.shape == (rh, rw, 3)
        for affine in affines:
            expected = geometry.warp_crop(full, affine, size)
            got = geometry.warp_crop(cut, affine, size, (x, y))
            assert np.array_equal(got, expected)  # to the pixel
    whole.close()
    part.close()


def test_background_writer_gives_write_video_s_bytes_and_abort_leaves_nothing(tmp_path):
    """filter encodes crops while it decodes the next frames (BackgroundVideoWriter): the file
    must be the one write_video makes from the same frames."""
    from shqip_av.media import BackgroundVideoWriter, write_video

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(20)]
    write_video(tmp_path / "direct.mp4", frames, fps=25, extra_video_args=["-threads", "1"])
    writer = BackgroundVideoWriter(tmp_path / "bg.mp4", fps=25, extra_video_args=["-threads", "1"], queue_frames=2)
    for frame in frames:
        writer.write(frame)
    assert writer.finish().read_bytes() == (tmp_path / "direct.mp4").read_bytes()
    aborted = BackgroundVideoWriter(tmp_path / "gone.mp4", fps=25)
    for frame in frames[:5]:
        aborted.write(frame)
    aborted.abort()
    failing = BackgroundVideoWriter(tmp_path / "bad.mp4", fps=25, queue_frames=2)
    for frame in [frames[0], frames[1][:32]] + frames[2:10]:  # a frame of another size: the encoder fails,
        failing.write(frame)  # and the caller is never blocked by it
    with pytest.raises(MediaError, match="frame size changed"):
        failing.finish()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bg.mp4", "direct.mp4"]
