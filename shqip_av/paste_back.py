"""Paste-back: a generated canonical crop into its frame, so that nobody sees where it went.

Three parts, each measured on real train speakers (bench/paste_back.py reports them on
validation speakers):

- **Where**: a soft mask shaped by the frame's own landmarks (``lower_face_mask``): below the
  nose (a line through the subnasale, parallel to the eyes), inside the jaw line, dilated a little
  and feathered inward, so its edge fades to zero before the jaw. Hair, neck, background,
  earrings and everything above the nose keep the source's exact pixels. The mask never reaches
  past the generator's own box (``generator_box``): outside it the generator made nothing.
- **Colour and light**: the difference between source and generated pixels in a band just inside
  the mask's edge (skin, in both) is spread smoothly over the mask (normalised Gaussian
  convolution) and added to the generated pixels: a low-frequency correction field, which fixes a
  colour cast and a light gradient without touching the mouth's own contrast.
- **Sharpness**: a generator works at a lower resolution than the frame; where the generated face
  agrees with the source at low frequencies (cheeks, chin) the source's own fine detail is put
  back, and the rest is unsharp-masked until its Laplacian variance matches the source's.

Everything runs in a region of interest around the face, in frame coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shqip_av.geometry import CROP_SIZE, alignment_points, invert_affine

# MediaPipe FaceLandmarker indices: the jaw line from the right cheek (image left), round the chin,
# to the left cheek; and the subnasale, the point where the nose meets the upper lip
JAW_LINE = (93, 132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288, 361, 323)
FACE_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148,
    176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)  # fmt: skip
SUBNASALE = 2


@dataclass
class PasteConfig:
    dilate: float = 0.04  # mask growth beyond the jaw line, in eye distances (bench/paste_back.py)
    feather: float = 0.25  # width of the mask's soft edge (inward), in eye distances
    color: bool = True  # correct colour and light to the source (the low-frequency field)
    color_band: float = 0.25  # band inside the edge the correction is measured in, in eye distances
    color_sigma: float = 0.5  # spread of the correction field, in eye distances
    sharpen: bool = True  # give generated detail the source's sharpness
    min_sharpness: float = 0.9  # target Laplacian variance, as a share of the source's


def _clip_below(polygon: np.ndarray, point: np.ndarray, down: np.ndarray) -> np.ndarray:
    """The part of ``polygon`` on the ``down`` side of the line through ``point`` (Sutherland-Hodgman
    against one half-plane)."""
    depth = (polygon - point) @ down
    out = []
    for i in range(len(polygon)):
        a, b, da, db = polygon[i - 1], polygon[i], depth[i - 1], depth[i]
        if (da >= 0) != (db >= 0):
            out.append(a + (b - a) * (da / (da - db)))
        if db >= 0:
            out.append(b)
    return np.asarray(out, np.float64).reshape(-1, 2)


def face_axes(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(subnasale, unit vector pointing down the face, eye distance) of (478, 2) landmarks."""
    eyes = alignment_points(landmarks)[:2]
    across = eyes[1] - eyes[0]
    eye_dist = float(np.linalg.norm(across))
    down = np.array([-across[1], across[0]]) / max(eye_dist, 1e-6)  # eye line turned a quarter
    if (landmarks[152] - eyes.mean(0)) @ down < 0:  # make it point from the eyes to the chin
        down = -down
    return np.asarray(landmarks[SUBNASALE], np.float64), down, eye_dist


def lower_face_polygon(landmarks: np.ndarray) -> np.ndarray:
    """The lower face as a polygon: the jaw line closed under the nose, in the landmarks' units."""
    landmarks = np.asarray(landmarks, np.float64)
    nose, down, _ = face_axes(landmarks)
    return _clip_below(landmarks[list(JAW_LINE)], nose, down)


def lower_face_mask(landmarks: np.ndarray, shape: tuple[int, int], cfg: PasteConfig, offset=(0, 0)) -> np.ndarray:
    """(h, w) float32 alpha: 1 well inside the lower face, fading to 0 at its (dilated) edge, 0
    above the subnasale line. ``offset`` (x, y) is subtracted from the landmarks (a region of
    interest's corner)."""
    import cv2

    landmarks = np.asarray(landmarks, np.float64) - np.asarray(offset, np.float64)
    nose, down, eye = face_axes(landmarks)
    h, w = shape
    hard = np.zeros((h, w), np.uint8)
    polygon = lower_face_polygon(landmarks)
    if len(polygon) >= 3:
        cv2.fillPoly(hard, [np.round(polygon * 4).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=2)
    grow = max(1, int(round(cfg.dilate * eye)))
    hard = cv2.dilate(hard, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
    ys, xs = np.mgrid[0:h, 0:w]
    below = ((xs - nose[0]) * down[0] + (ys - nose[1]) * down[1]) >= 0
    hard = (hard > 0) & below
    return feather_inward(hard, cfg.feather * eye)


def feather_inward(hard: np.ndarray, width: float) -> np.ndarray:
    """A 0/1 mask made soft inside its edge: 0 on and outside the edge, 1 deeper than ``width``."""
    import cv2

    if width < 1:
        return hard.astype(np.float32)
    inside = cv2.distanceTransform(np.pad(hard.astype(np.uint8), 1), cv2.DIST_L2, 5)[1:-1, 1:-1]
    t = np.clip(inside / width, 0, 1)
    return (t * t * (3 - 2 * t)).astype(np.float32)  # smoothstep: no visible ramp ends


def generator_box(size: int, box: tuple[float, float, float, float], margin: float = 0.02) -> np.ndarray:
    """(size, size) 0/1 mask of where a generator regenerates (its mouth box, relative), shrunk
    by ``margin`` of the side so that resampling never reaches the box's outside."""
    x0, y0, x1, y1 = box
    m = margin
    mask = np.zeros((size, size), np.float32)
    a, b = int(np.ceil((y0 + m) * size)), int(np.floor((y1 - m) * size))
    c, d = int(np.ceil((x0 + m) * size)), int(np.floor((x1 - m) * size))
    mask[a:b, c:d] = 1.0
    return mask


def laplacian_variance(image: np.ndarray, where: np.ndarray | None = None) -> float:
    """Variance of the Laplacian of the grey image (inside ``where``): the usual sharpness figure."""
    import cv2

    grey = image if image.ndim == 2 else cv2.cvtColor(image.astype(np.uint8), cv2.COLOR_RGB2GRAY)
    lap = cv2.Laplacian(grey.astype(np.float32), cv2.CV_32F, ksize=3)
    values = lap[where > 0.5] if where is not None else lap
    return float(values.var()) if values.size else 0.0


class Paster:
    """Generated canonical crops back into their frames (``paste``); the generator's box (relative
    to its crop) bounds where anything may change."""

    def __init__(self, box: tuple[float, float, float, float], cfg: PasteConfig | None = None):
        self.cfg = cfg or PasteConfig()
        self.box = generator_box(CROP_SIZE, box)

    def paste(
        self, frame: np.ndarray, generated: np.ndarray, affine: np.ndarray, landmarks: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """``frame`` (H, W, 3) uint8 RGB with ``generated`` (S, S, 3, the canonical crop the
        generator made from it; ``affine`` maps frame → 256 crop) pasted through the lower-face
        mask of ``landmarks`` (478, 2, frame coordinates). Returns (frame, alpha (H, W)); where
        alpha is 0 the frame is unchanged, bit for bit."""
        import cv2

        cfg = self.cfg
        h, w = frame.shape[:2]
        landmarks = np.asarray(landmarks, np.float64)
        _, _, eye = face_axes(landmarks)
        polygon = lower_face_polygon(landmarks)
        alpha_full = np.zeros((h, w), np.float32)
        if len(polygon) < 3 or eye < 2:
            return frame.copy(), alpha_full
        pad = int(np.ceil((cfg.dilate + 3 * cfg.color_sigma) * eye)) + 2
        x0, y0 = (np.floor(polygon.min(0)).astype(int) - pad).clip(0)
        x1, y1 = np.minimum(np.ceil(polygon.max(0)).astype(int) + pad, [w, h])
        if x1 - x0 < 2 or y1 - y0 < 2:
            return frame.copy(), alpha_full
        roi = frame[y0:y1, x0:x1].astype(np.float32)
        shape = roi.shape[:2]
        # the crop → ROI transform: the inverse of frame → crop, then the ROI's corner
        back = invert_affine(affine).copy()
        back[:, 2] -= (x0, y0)
        big = cv2.resize(generated, (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_CUBIC)
        image = cv2.warpAffine(big, back, shape[::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        image = image.astype(np.float32)
        valid = cv2.warpAffine(self.box, back, shape[::-1], flags=cv2.INTER_NEAREST, borderValue=0) > 0.5
        face = lower_face_mask(landmarks, shape, cfg, offset=(x0, y0))
        alpha = face * feather_inward(valid, 0.5 * cfg.feather * eye)
        if not alpha.any():
            return frame.copy(), alpha_full
        if cfg.color:
            image = self._match_light(image, roi, alpha, eye)
        if cfg.sharpen:
            image = self._match_detail(image, roi, alpha, eye)
        out = frame.copy()
        a = alpha[..., None]
        out[y0:y1, x0:x1] = np.clip(roi * (1 - a) + image * a + 0.5, 0, 255).astype(np.uint8)
        changed = alpha > 0
        out[y0:y1, x0:x1][~changed] = frame[y0:y1, x0:x1][~changed]  # exact outside the mask
        alpha_full[y0:y1, x0:x1] = alpha
        return out, alpha_full

    def _match_light(self, image: np.ndarray, source: np.ndarray, alpha: np.ndarray, eye: float) -> np.ndarray:
        """``image`` plus the source-minus-generated difference measured in the band just inside the
        mask's edge, spread smoothly over the mask (colour cast and light gradient, not detail)."""
        import cv2

        band = ((alpha > 0) & (alpha < 0.999)).astype(np.float32)
        inner = cv2.distanceTransform(np.pad((alpha > 0).astype(np.uint8), 1), cv2.DIST_L2, 5)[1:-1, 1:-1]
        band *= (inner <= self.cfg.color_band * eye + 1).astype(np.float32)
        if band.sum() < 8:
            return image
        sigma = max(1.0, self.cfg.color_sigma * eye)
        diff = cv2.GaussianBlur(source - image, (0, 0), min(sigma / 4, 4.0))  # detail of neither side
        # the field is smooth: computed at a scale where sigma is ~4 pixels, then brought back
        shrink = max(1.0, sigma / 4)
        h, w = band.shape
        small = (max(1, int(round(w / shrink))), max(1, int(round(h / shrink))))
        band_s = cv2.resize(band, small, interpolation=cv2.INTER_AREA)
        diff_s = cv2.resize(diff * band[..., None], small, interpolation=cv2.INTER_AREA)
        weight_s = cv2.GaussianBlur(band_s, (0, 0), sigma / shrink)
        field_s = cv2.GaussianBlur(diff_s, (0, 0), sigma / shrink) / np.maximum(weight_s, 1e-4)[..., None]
        weight = cv2.resize(weight_s, (w, h), interpolation=cv2.INTER_LINEAR)
        field = cv2.resize(field_s, (w, h), interpolation=cv2.INTER_LINEAR)
        # far from any band pixel the field's estimate is thin: fall back to the band's mean
        mean = (diff * band[..., None]).sum((0, 1)) / band.sum()
        trust = np.clip(weight / (weight.max() * 0.2 + 1e-6), 0, 1)[..., None]
        return image + trust * field + (1 - trust) * mean

    def _match_detail(self, image: np.ndarray, source: np.ndarray, alpha: np.ndarray, eye: float) -> np.ndarray:
        """Detail at the source's sharpness: the source's own fine detail where both agree at low
        frequency, then an unsharp mask until the Laplacian variance reaches the source's."""
        import cv2

        s = max(0.8, eye / 40)  # the scale of detail a 64-128 px generator cannot carry
        low_src = cv2.GaussianBlur(source, (0, 0), s)
        low_gen = cv2.GaussianBlur(image, (0, 0), s)
        gap = np.abs(low_src - low_gen).mean(-1)
        agree = np.exp(-((gap / 12.0) ** 2))[..., None]  # 12 grey levels: a different mouth shape
        image = low_gen + (image - low_gen) * (1 - agree) + (source - low_src) * agree
        where = alpha > 0.5
        target = self.cfg.min_sharpness * laplacian_variance(np.clip(source, 0, 255), where)
        have = laplacian_variance(np.clip(image, 0, 255), where)
        if have <= 0 or have >= target:
            return image
        amount = float(np.clip(np.sqrt(target / have) - 1, 0, 3))
        return image + amount * (image - cv2.GaussianBlur(image, (0, 0), s))
