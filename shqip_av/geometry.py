"""Procrustes geometry: the one home for similarity fits and 2×3 affine transforms.

The filter stage uses it to canonicalize face crops; the lip-sync and export stages use the
stored frame→crop transforms (and their inverses) to place generated crops back exactly.
"""

from __future__ import annotations

import numpy as np

# MediaPipe FaceLandmarker indices of the points the crop is aligned on. Only eyes and nose:
# lips and chin move with speech, and aligning on them would leak mouth shape into the crop.
RIGHT_EYE_CORNERS = (33, 133)  # the subject's right eye (image left), outer and inner corner
LEFT_EYE_CORNERS = (362, 263)  # the subject's left eye (image right), inner and outer corner
NOSE_TIP = 1
CHIN = 152
LEFT_IRIS, RIGHT_IRIS = 473, 468  # iris centres (used for eye distance)

CROP_SIZE = 256
# Where the eye centres and the nose tip land in a 256×256 crop: eyes 66 px apart at 39% of the
# height, which leaves the mouth and chin inside the crop with margin for head motion.
TEMPLATE_256 = np.array([[95.0, 100.0], [161.0, 100.0], [128.0, 140.0]], dtype=np.float64)


def alignment_points(landmarks: np.ndarray) -> np.ndarray:
    """(…, 478, 2) landmarks → (…, 3, 2): right-eye centre, left-eye centre, nose tip."""
    lm = np.asarray(landmarks, dtype=np.float64)
    right = lm[..., list(RIGHT_EYE_CORNERS), :].mean(axis=-2)
    left = lm[..., list(LEFT_EYE_CORNERS), :].mean(axis=-2)
    return np.stack([right, left, lm[..., NOSE_TIP, :]], axis=-2)


def eye_distance(landmarks: np.ndarray) -> np.ndarray:
    """Distance between the two eye centres, in the landmarks' units (…, 478, 2) → (…)."""
    pts = alignment_points(landmarks)
    return np.linalg.norm(pts[..., 1, :] - pts[..., 0, :], axis=-1)


def jaw_drop(landmarks: np.ndarray) -> np.ndarray:
    """How far the mouth is open: the chin's distance from the nose tip, in eye distances
    (…, 478, 2) → (…). Read more reliably than the inner-lip gap on small or generated faces."""
    lm = np.asarray(landmarks, dtype=np.float64)
    return np.linalg.norm(lm[..., CHIN, :] - lm[..., NOSE_TIP, :], axis=-1) / eye_distance(lm)


def template(size: int = CROP_SIZE) -> np.ndarray:
    return TEMPLATE_256 * (size / CROP_SIZE)


def fit_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection, no skew)
    taking points ``src`` (N, 2) onto ``dst`` (N, 2). Returns the 2×3 matrix A with
    dst ≈ A @ [x, y, 1]. This is the Umeyama solution of the orthogonal Procrustes problem."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    s, d = src - mu_s, dst - mu_d
    var_s = (s**2).sum() / len(src)
    if var_s <= 1e-12:
        raise ValueError("degenerate point set: all source points coincide")
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    fix = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:  # a reflection would fit better; forbid it
        fix[1, 1] = -1.0
    rot = u @ fix @ vt
    scale = np.trace(np.diag(sig) @ fix) / var_s
    out = np.empty((2, 3))
    out[:, :2] = scale * rot
    out[:, 2] = mu_d - scale * rot @ mu_s
    return out


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map points (…, 2) with a 2×3 matrix (or one matrix per leading index: (T, 2, 3) with
    points (T, N, 2))."""
    m = np.asarray(matrix, dtype=np.float64)
    p = np.asarray(points, dtype=np.float64)
    if m.ndim == 3:
        return np.einsum("tij,tnj->tni", m[:, :, :2], p) + m[:, None, :, 2]
    return p @ m[:, :2].T + m[:, 2]


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a 2×3 affine (or a stack (T, 2, 3)): the crop→frame transform."""
    m = np.asarray(matrix, dtype=np.float64)
    lin = np.linalg.inv(m[..., :2])
    out = np.empty_like(m)
    out[..., :2] = lin
    out[..., 2] = -np.einsum("...ij,...j->...i", lin, m[..., 2])
    return out


def canonical_crop(frame: np.ndarray, align: np.ndarray, size: int = CROP_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """The face's canonical crop of ``frame``: (size × size crop, its frame→crop affine), from the
    track's (3, 2) alignment points (``alignment_points``). Bicubic, edges replicated; filter,
    evaluation and dubbing all crop through here so that their crops agree to the pixel."""
    affine = fit_similarity(align, template(size))
    return warp_crop(frame, affine, size), affine


def warp_crop(
    frame: np.ndarray, affine: np.ndarray, size: int = CROP_SIZE, offset: tuple[int, int] = (0, 0)
) -> np.ndarray:
    """The size × size crop that the frame→crop ``affine`` takes from ``frame``, where ``frame``
    may be only a region of the full frame whose top-left corner is at ``offset`` (x, y) in it."""
    import cv2

    m = np.asarray(affine, dtype=np.float64).copy()
    if offset != (0, 0):
        m[:, 2] += m[:, :2] @ np.asarray(offset, dtype=np.float64)
    return cv2.warpAffine(frame, m, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)


def crop_region(affines: np.ndarray, size: int, width: int, height: int, margin: int = 8) -> tuple[int, int, int, int]:
    """(x, y, w, h): the part of a width × height frame that the crops of ``affines`` (T, 2, 3)
    read, with ``margin`` pixels for the bicubic kernel, on even pixels (4:2:0 chroma stays
    aligned). Decoding only this region gives the same crops for far less work on large frames."""
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], dtype=np.float64)
    inverse = invert_affine(np.asarray(affines, dtype=np.float64).reshape(-1, 2, 3))
    points = apply_affine(inverse, np.broadcast_to(corners, (len(inverse), 4, 2))).reshape(-1, 2)
    x0 = int(np.clip(np.floor(points[:, 0].min()) - margin, 0, width)) // 2 * 2
    y0 = int(np.clip(np.floor(points[:, 1].min()) - margin, 0, height)) // 2 * 2
    x1 = int(np.clip(np.ceil(points[:, 0].max()) + margin, 0, width))
    y1 = int(np.clip(np.ceil(points[:, 1].max()) + margin, 0, height))
    w, h = max(2, (x1 - x0 + 1) // 2 * 2), max(2, (y1 - y0 + 1) // 2 * 2)
    return x0, y0, min(w, (width - x0) // 2 * 2), min(h, (height - y0) // 2 * 2)


# MediaPipe face-mesh points around the lips (outer and inner contour)
MOUTH_POINTS = (
    61,
    146,
    91,
    181,
    84,
    17,
    314,
    405,
    321,
    375,
    291,
    185,
    40,
    39,
    37,
    0,
    267,
    269,
    270,
    409,
    78,
    95,
    88,
    178,
    87,
    14,
    317,
    402,
    318,
    324,
    308,
    191,
    80,
    81,
    82,
    13,
    312,
    311,
    310,
    415,
)
