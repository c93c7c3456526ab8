"""The paste-back on real faces: a landmark-shaped mask that stays below the eyes and inside the
face outline on every real clip of ../shared, pixels outside it untouched, a colour cast removed
at the seam, and detail as sharp as the source's."""

from __future__ import annotations

import csv
import functools

import numpy as np
import pytest

from tests.conftest import SHARED

SPEAKERS = SHARED / "testdata" / "speakers.tsv"


@functools.lru_cache(maxsize=1)
def real_faces() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(clip, frame, landmarks) of the frame at 0.4 s of every real clip with a face in it."""
    import mediapipe as mp

    from shqip_av.components.face_tracker import FaceConfig, create_landmarker
    from shqip_av.log import native_stderr_filtered
    from shqip_av.media import iter_frames

    if not SPEAKERS.is_file():
        pytest.skip("needs ../shared/testdata/speakers.tsv")
    clips = [row["file"] for row in csv.DictReader(SPEAKERS.open(), delimiter="\t")]
    out = []
    for clip in clips:
        frames = iter_frames(SHARED / "testdata" / clip, fps=25.0)
        frame = None
        for i, frame in enumerate(frames):
            if i == 10:
                break
        frames.close()
        with native_stderr_filtered():
            landmarker = create_landmarker(FaceConfig(max_faces=1))
        with native_stderr_filtered(), landmarker:
            found = landmarker.detect_for_video(mp.Image(image_format=mp.ImageFormat.SRGB, data=frame), 0)
        if found.face_landmarks:
            h, w = frame.shape[:2]
            marks = np.array([[p.x * w, p.y * h] for p in found.face_landmarks[0][:478]], np.float64)
            out.append((clip, frame, marks))
    return out


def _generated(frame, marks, size=64, cast=(0, 0, 0)):
    """What a generator would hand back: the canonical crop at its size (optionally tinted)."""
    import cv2

    from shqip_av import geometry

    crop, affine = geometry.canonical_crop(frame, geometry.alignment_points(marks), geometry.CROP_SIZE)
    small = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
    return np.clip(small + np.asarray(cast, np.float32), 0, 255).astype(np.uint8), affine


def _paster(**settings):
    from shqip_av.components.lipsync_generator import MOUTH_BOX
    from shqip_av.paste_back import Paster, PasteConfig

    return Paster(MOUTH_BOX, PasteConfig(**settings))


def test_the_mask_stays_below_the_eyes_and_inside_the_face_on_every_real_clip():
    import cv2

    from shqip_av.paste_back import FACE_OVAL, face_axes
    from train.lipsync.quality import psnr

    faces = real_faces()
    assert len(faces) >= 50, f"faces found in only {len(faces)} real clips"
    paster = _paster()
    for clip, frame, marks in faces:
        generated, affine = _generated(frame, marks, cast=(30, -20, 10))
        out, alpha = paster.paste(frame, generated, affine, marks)
        assert alpha.max() > 0.99, clip
        nose, down, eye = face_axes(marks)
        ys, xs = np.nonzero(alpha > 0)
        depth = (xs - nose[0]) * down[0] + (ys - nose[1]) * down[1]
        eyes_depth = (marks[[33, 133, 362, 263]] - nose) @ down
        assert depth.min() >= -1.0 and depth.min() > eyes_depth.max() + 0.3 * eye, clip  # below nose and eyes
        outline = np.zeros(alpha.shape, np.uint8)
        cv2.fillPoly(outline, [np.round(marks[list(FACE_OVAL)]).astype(np.int32)], 1)
        outside = cv2.distanceTransform(1 - outline, cv2.DIST_L2, 5)  # pixels from the outline
        assert outside[alpha > 0].max() <= 0.1 * eye + 1.5, f"{clip}: the mask leaves the face outline"
        assert psnr(out[alpha == 0], frame[alpha == 0]) >= 45, clip
        assert np.array_equal(out[alpha == 0], frame[alpha == 0]), clip  # untouched, bit for bit


def test_a_colour_cast_is_corrected_at_the_seam_and_detail_is_as_sharp_as_the_source():
    from shqip_av.paste_back import face_axes
    from train.lipsync.quality import frame_quality

    corrected, plain = [], []
    for clip, frame, marks in real_faces()[::6]:
        generated, affine = _generated(frame, marks, cast=(25, -10, -15))
        eye = face_axes(marks)[2]
        out, alpha = _paster().paste(frame, generated, affine, marks)
        corrected.append(frame_quality(out, frame, alpha, eye))
        out, alpha = _paster(color=False, sharpen=False).paste(frame, generated, affine, marks)
        plain.append(frame_quality(out, frame, alpha, eye))
    seam = np.mean([q["seam_ciede2000"] for q in corrected])
    assert seam <= 3.0, seam
    assert np.mean([q["seam_ciede2000"] for q in plain]) > 6.0  # the cast was visible without the blend
    assert np.mean([q["lower_face_lab_distance"] for q in corrected]) <= 3.0
    assert np.mean([q["sharpness_ratio"] for q in corrected]) >= 0.6
    assert np.mean([q["sharpness_ratio"] for q in corrected]) > np.mean([q["sharpness_ratio"] for q in plain])


def test_a_face_too_small_to_hold_a_mask_leaves_the_frame_untouched():
    clip, frame, marks = real_faces()[0]
    generated, affine = _generated(frame, marks)
    tiny = marks.mean(0) + (marks - marks.mean(0)) * 0.002  # eyes a fraction of a pixel apart
    out, alpha = _paster().paste(frame, generated, affine, tiny)
    assert not alpha.any() and np.array_equal(out, frame)
