"""The retrieval mouth path's selection (shqip_av.mouth_retrieval): unit selection by dynamic programming
over a library whose best frames are known."""

from __future__ import annotations

import numpy as np

from shqip_av.mouth_retrieval import Library, SelectionCosts, choose, faded_crops, select_frames


def _library(n: int = 200, k: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 1, (n, k))


def test_the_selection_prefers_a_run_of_consecutive_frames_over_scattered_near_matches():
    """Targets equal to library frames 50..69, plus noise; scattered library frames match each
    noisy target a little better than the run does. With a jump cost the run wins whole; with none,
    the scattered best matches are taken frame by frame."""
    lib = _library()
    rng = np.random.default_rng(1)
    targets = lib[50:70] + rng.normal(0, 0.05, (20, 3))
    decoys = targets + rng.normal(0, 0.01, (20, 3))  # closer to each target than the run's frame
    library = np.concatenate([lib, decoys])
    consecutive = np.ones(len(library), bool)
    consecutive[[0, len(lib)]] = False
    consecutive[len(lib) :] = False  # the decoys are scattered moments, none follows another
    run = select_frames(targets, library, consecutive=consecutive, costs=SelectionCosts(jump=1.0))
    assert list(run) == list(range(50, 70))
    greedy = select_frames(targets, library, consecutive=consecutive, costs=SelectionCosts(jump=0.0))
    assert list(greedy) == list(range(len(lib), len(lib) + 20))


def test_the_selection_jumps_where_the_wanted_shape_changes():
    lib = _library()
    targets = np.concatenate([lib[10:20], lib[120:130]])
    picked = select_frames(targets, lib, costs=SelectionCosts(jump=0.5))
    assert list(picked) == [*range(10, 20), *range(120, 130)]


def test_a_self_dub_never_selects_a_frame_inside_its_excluded_neighbourhood():
    """The library is the clip itself: without the exclusion the selection copies the truth; with
    ±1 s excluded no choice is within 25 frames of its own frame."""
    n, k = 300, 3
    coefficients = _library(n, k)
    library = Library(
        frames=np.arange(n), crops=np.zeros((n, 4, 4, 3), np.uint8), coefficients=coefficients,
        pose=np.zeros((n, 2)), rest=np.zeros(2 * k), spread=1.0, rest_coefficients=np.zeros(k),
    )  # fmt: skip
    frames = np.arange(100, 160)
    wanted = coefficients[frames]
    copied = choose(library, wanted, np.zeros((len(frames), 2)), frames)
    assert list(copied) == list(frames)  # the truth itself, when allowed
    picked = choose(library, wanted, np.zeros((len(frames), 2)), frames, exclude_seconds=1.0, fps=25.0)
    assert np.all(np.abs(library.frames[picked] - frames) > 25)


def test_a_turned_head_never_gets_a_mouth_from_a_frontal_frame():
    lib = _library(100)
    pose = np.zeros((100, 2))
    pose[60:] = [0.6, 0.0]  # the last 40 library frames: head turned
    targets = lib[10:20]  # shapes of frontal frames
    turned = np.tile([0.6, 0.0], (10, 1))
    picked = select_frames(targets, lib, target_pose=turned, library_pose=pose, costs=SelectionCosts())
    assert np.all(picked >= 60)


def test_crops_cross_fade_after_a_jump():
    n = 40
    crops = np.zeros((n, 2, 2, 3), np.uint8)
    crops[:, :, :] = (np.arange(n) * 5)[:, None, None, None]
    library = Library(np.arange(n), crops, np.zeros((n, 1)), np.zeros((n, 2)), np.zeros(2), 1.0)
    out = faded_crops(library, np.array([1, 2, 3, 30, 31, 32, 33]))
    assert out[2, 0, 0, 0] == 15 and out[6, 0, 0, 0] == 165  # runs untouched after the fade
    assert 20 < out[3, 0, 0, 0] < 150  # the jump is blended from frame 4's crop toward 30's
