"""How a dub looks, measured the way a viewer sees it (DESIGN.md §8): per frame, a dubbed frame
against its source frame and the paste-back's alpha (``shqip_av.paste_back``).

- seam: mean CIEDE2000 between dub and source in a band just inside the mask's visible edge
  (where the generated pixels weigh at least half, a quarter eye distance deep), and the
  gradient jump: mean gradient magnitude of the dub in the mask's soft edge over the source's own
  there (1.0: the seam adds no edge the source did not have);
- outside: PSNR of every pixel outside the mask (should be untouched);
- lower face: the distance of the mean Lab colours inside the mask, and the sharpness ratio
  (variance of the Laplacian, dub over source);
- mouth region (a self-dub, where the source frame is the truth): PSNR and SSIM over the box of
  the mask's core, and the mouth-landmark distance (MediaPipe on both, in eye distances).
"""

from __future__ import annotations

import numpy as np

from shqip_av.geometry import MOUTH_POINTS, eye_distance
from shqip_av.paste_back import laplacian_variance

PSNR_CAP = 99.0  # identical pixels: reported as this, not infinity


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)) if np.size(a) else 0.0
    return PSNR_CAP if mse <= 1e-10 else min(PSNR_CAP, 10 * np.log10(255.0**2 / mse))


def _inner_distance(alpha: np.ndarray) -> np.ndarray:
    """Distance of each pixel inside the mask from its edge (0 outside)."""
    import cv2

    return cv2.distanceTransform(np.pad((alpha > 0).astype(np.uint8), 1), cv2.DIST_L2, 5)[1:-1, 1:-1]


def seam_band(alpha: np.ndarray, width: float) -> np.ndarray:
    """The band just inside the visible edge: pixels where the generated side weighs at least half
    (alpha ≥ 0.5), no deeper than ``width`` from where it starts to. (Measured further out, in the
    feather, the source dominates and any seam would read as small.)"""
    core = alpha >= 0.5
    return core & (_inner_distance(core.astype(np.float32)) <= width)


def _lab(image: np.ndarray) -> np.ndarray:
    from skimage.color import rgb2lab

    return rgb2lab(np.asarray(image, np.uint8))


def _gradient(image: np.ndarray) -> np.ndarray:
    import cv2

    grey = cv2.cvtColor(np.asarray(image, np.uint8), cv2.COLOR_RGB2GRAY).astype(np.float32)
    return np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))


def frame_quality(dub: np.ndarray, source: np.ndarray, alpha: np.ndarray, eye: float) -> dict[str, float] | None:
    """The seam, outside, colour and sharpness figures of one frame (None where nothing was pasted)."""
    from skimage.color import deltaE_ciede2000

    if not (alpha > 0.5).any():
        return None
    ys, xs = np.nonzero(alpha > 0)
    pad = int(eye) + 2
    y0, y1 = max(0, ys.min() - pad), min(alpha.shape[0], ys.max() + pad + 1)
    x0, x1 = max(0, xs.min() - pad), min(alpha.shape[1], xs.max() + pad + 1)
    a, d, s = alpha[y0:y1, x0:x1], dub[y0:y1, x0:x1], source[y0:y1, x0:x1]
    band = seam_band(a, max(2.0, 0.25 * eye))
    edge = (a > 0.02) & (a < 0.98)
    core = a > 0.5
    lab_d_band, lab_s_band = _lab(d[band][None])[0], _lab(s[band][None])[0]  # only the pixels measured
    lab_d_core, lab_s_core = _lab(d[core][None])[0], _lab(s[core][None])[0]
    grad_d, grad_s = _gradient(d), _gradient(s)
    outside = alpha <= 0
    return {
        "seam_ciede2000": float(deltaE_ciede2000(lab_d_band, lab_s_band).mean()),
        "seam_gradient_ratio": float(grad_d[edge].mean() / max(grad_s[edge].mean(), 1e-6)) if edge.any() else 1.0,
        "outside_psnr": psnr(dub[outside], source[outside]),
        "lower_face_lab_distance": float(np.linalg.norm(lab_d_core.mean(0) - lab_s_core.mean(0))),
        "sharpness_ratio": laplacian_variance(d, core) / max(laplacian_variance(s, core), 1e-6),
    }


def mouth_region(dub: np.ndarray, source: np.ndarray, alpha: np.ndarray) -> dict[str, float] | None:
    """PSNR and SSIM over the bounding box of the mask's core (a self-dub: the source is the truth)."""
    from skimage.metrics import structural_similarity

    ys, xs = np.nonzero(alpha > 0.5)
    if len(ys) < 16:
        return None
    box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    d, s = dub[box], source[box]
    side = min(d.shape[:2])
    ssim = structural_similarity(d, s, channel_axis=2, data_range=255, win_size=min(7, side - (1 - side % 2)))
    return {"mouth_psnr": psnr(d, s), "mouth_ssim": float(ssim)}


def mouth_landmark_distance(dub_marks: np.ndarray, source_marks: np.ndarray) -> np.ndarray:
    """(N,) mean distance of the mouth points of two landmark sets (N, 478, 2) in eye distances of
    the source's (NaN where either face was not found)."""
    d = np.linalg.norm(dub_marks[:, list(MOUTH_POINTS)] - source_marks[:, list(MOUTH_POINTS)], axis=-1).mean(-1)
    return d / np.maximum(eye_distance(source_marks), 1e-6)


def jaw_moved_by_audio(driven: np.ndarray, silent: np.ndarray, real: np.ndarray) -> float:
    """How far speech moved a dubbed jaw from where the same generator, driven by silence, left it
    (per frame jaw drops), in the real jaw's own spread: 0 when the audio moves nothing (what moves
    the jaw is then the face around the mask), about 1 when it moves it as much as the person did.
    NaN where nothing was measured (frames without a face are left out)."""
    moved = np.abs(np.asarray(driven, np.float64) - np.asarray(silent, np.float64))
    spread = float(np.nanstd(real)) if np.isfinite(real).any() else 0.0
    if not np.isfinite(moved).any() or spread <= 1e-9:
        return float("nan")
    return float(np.nanmean(moved)) / spread


def summarize(rows: list[dict]) -> dict[str, float]:
    """Mean of every figure over frames (NaN and missing values left out)."""
    keys = sorted({k for r in rows for k in r})
    out = {}
    for k in keys:
        values = np.array([r[k] for r in rows if k in r and r[k] is not None], np.float64)
        values = values[np.isfinite(values)]
        if values.size:
            out[k] = round(float(values.mean()), 4)
    return out
