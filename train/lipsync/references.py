"""Reference frames for the generator (DESIGN.md §7.3): K crops of the same face that span open
and closed mouths, chosen by k-means over mouth landmarks, never within ``exclude`` frames of the
frames being generated (a reference that shows the target mouth would let the model copy it).

Used alike by training (a sample's own frames) and dubbing (frames of the same video).
"""

from __future__ import annotations

import numpy as np

from shqip_av.geometry import MOUTH_POINTS


def mouth_features(landmarks: np.ndarray) -> np.ndarray:
    """(N, 478, 2) landmarks in crop coordinates → (N, 80) mouth shape, centred on the mouth (the
    crop is canonical, so scale is already fixed)."""
    points = np.asarray(landmarks, dtype=np.float64)[:, MOUTH_POINTS]
    return (points - points.mean(axis=1, keepdims=True)).reshape(len(points), -1)


class ReferencePicker:
    """k-means (k = K) over one face's mouth shapes, once; then for a target window, per cluster
    the member nearest its centre outside the exclusion zone. A cluster with no eligible member
    is filled with the eligible frame farthest in mouth shape from those already chosen, and
    counted in ``fallbacks``."""

    def __init__(self, landmarks: np.ndarray, k: int, exclude: int = 5, seed: int = 0):
        from sklearn.cluster import KMeans

        self.k, self.exclude = k, exclude
        self.features = mouth_features(landmarks)
        n = len(self.features)
        clusters = min(k, n)
        km = KMeans(n_clusters=clusters, n_init=4, random_state=seed).fit(self.features)
        distance = np.linalg.norm(self.features - km.cluster_centers_[km.labels_], axis=1)
        # per cluster, its members nearest the centre first
        self.members = [np.flatnonzero(km.labels_ == c)[np.argsort(distance[km.labels_ == c])] for c in range(clusters)]
        self.fallbacks = 0

    def pick(self, first: int, frames: int) -> list[int] | None:
        """K frame indices for the target frames first..first+frames-1; None when no frame lies
        outside the exclusion zone at all."""
        n = len(self.features)
        lo, hi = first - self.exclude, first + frames - 1 + self.exclude
        eligible = np.array([i for i in range(n) if i < lo or i > hi])
        if not len(eligible):
            return None
        chosen = []
        for members in self.members:
            ok = members[(members < lo) | (members > hi)]
            if len(ok):
                chosen.append(int(ok[0]))
        while len(chosen) < self.k:
            self.fallbacks += 1
            if chosen:
                gap = np.min(
                    np.linalg.norm(self.features[eligible][:, None] - self.features[chosen][None], axis=2), axis=1
                )
                chosen.append(int(eligible[int(np.argmax(gap))]))
            else:
                chosen.append(int(eligible[0]))
        return sorted(chosen)
