"""The sync expert's network (shqip_av.components.sync_expert) saves and loads like a Hub model, and the LSE code
follows syncnet_python's definition (with filter's offset sign: positive = audio late)."""

from __future__ import annotations

import numpy as np
import pytest

from shqip_av.components.sync_expert import build_expert, distance_matrix, lse_from_distances


def test_lse_of_a_hand_computed_distance_matrix():
    # two video windows, offsets -2..2; the mean curve is [5, 4, 1, 3, 6] → min 1 at offset 0,
    # median 4, so LSE-D 1, LSE-C 3
    d = np.array([[6.0, 5.0, 1.5, 2.0, 7.0], [4.0, 3.0, 0.5, 4.0, 5.0]])
    lse = lse_from_distances(d)
    assert (lse.distance, lse.confidence, lse.offset) == (1.0, 3.0, 0)
    assert lse.curve == [5.0, 4.0, 1.0, 3.0, 6.0]
    # the minimum one step to the right: the audio matches the video one frame later (audio late)
    shifted = lse_from_distances(np.roll(d, 1, axis=1))
    assert shifted.offset == 1 and shifted.distance == 1.0
    # NaN where the audio runs out is left out of the mean
    with_gap = d.copy()
    with_gap[0, 4] = np.nan
    assert lse_from_distances(with_gap).curve[4] == 5.0


def test_audio_delayed_by_d_frames_gives_offset_plus_d():
    rng = np.random.default_rng(0)
    k, n, delay = 15, 40, 4
    said = rng.standard_normal((n + 2 * k + delay, 8))  # said[x]: what is said at frame x - k - delay
    video = said[k + delay : k + delay + n]  # the mouth of frame i shows what is said at i
    # audio row r is the audio of frame r - k, which carries what was said `delay` frames earlier
    audio = said[: n + 2 * k]
    lse = lse_from_distances(distance_matrix(video, audio, k))
    assert lse.offset == delay and lse.distance == pytest.approx(0.0)


def test_the_expert_saves_and_loads_like_a_hub_model(tmp_path):
    import torch

    expert = build_expert({"frames": 5, "crop_size": 48, "channels": [8, 16], "embedding": 16}).eval()
    video, mel = torch.rand(3, 5, 24, 48), torch.randn(3, 80, 16) - 4
    v, a = expert(video, mel)
    assert v.shape == a.shape == (3, 16) and torch.allclose(v.norm(dim=1), torch.ones(3))
    expert.save_pretrained(tmp_path / "expert")
    assert {"config.json", "model.safetensors"} <= {p.name for p in (tmp_path / "expert").iterdir()}
    loaded = type(expert).from_pretrained(tmp_path / "expert").eval()
    assert loaded.sync_config.crop_size == 48
    v2, a2 = loaded(video, mel)
    assert torch.allclose(v, v2) and torch.allclose(a, a2)
