"""Face tracks keep their landmarks on disk (shqip_av.components.face_tracker.LandmarkStore): building a long track
must not grow memory, and a track built on disk must equal one built in memory, gaps included."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from shqip_av.components.face_tracker import LandmarkStore, _OpenTrack
from tests.conftest import REPO


def _detections(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    base = rng.uniform(100, 400, size=(478, 2)).astype(np.float32)
    for f in range(n):
        if f % 97 in (5, 6):  # two-frame gaps, bridged by interpolation
            continue
        yield f, base + np.float32(f % 13), 0.1, np.zeros(4), np.array([1.0, 2.0, 3.0], np.float32)


def test_a_track_on_disk_equals_one_in_memory_gaps_included(tmp_path):
    memory, disk = _OpenTrack(0), _OpenTrack(0, tmp_path)
    for d in _detections(500):
        memory.add(*d)
        disk.add(*d)
    a, b = memory.finish(1.5), disk.finish(1.5)
    assert isinstance(b.landmarks, LandmarkStore) and len(b.landmarks) == len(a.landmarks) == 500
    assert np.allclose(b.landmarks[0:500], a.landmarks, atol=1e-4)
    assert np.allclose(b.landmarks[103:104], a.landmarks[103:104], atol=1e-4)  # an interpolated frame
    assert np.allclose(b.align, a.align) and np.array_equal(b.interpolated, a.interpolated)
    assert np.array_equal(np.load(b.landmarks.path), b.landmarks[:])  # a plain .npy for anyone
    assert not list(tmp_path.glob(".track*.raw"))


_BUILD = """
import sys
import numpy as np
from pathlib import Path
from tests.filter.test_track_memory import _detections
from shqip_av.components.face_tracker import _OpenTrack
track = _OpenTrack(0, Path(sys.argv[2]))
for d in _detections(int(sys.argv[1])):
    track.add(*d)
t = track.finish(1.5)
assert len(t.landmarks) == int(sys.argv[1])
window = t.landmarks[1000:1300]
print(next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")))
"""


def test_peak_memory_of_a_track_does_not_grow_with_its_length(tmp_path):
    peaks = {}
    for frames in (1500, 45000):  # one minute and half an hour at 25 fps (45000 frames: 172 MB of landmarks)
        folder = tmp_path / str(frames)
        folder.mkdir()
        out = subprocess.run(
            [sys.executable, "-c", _BUILD, str(frames), str(folder)],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        )
        peaks[frames] = int(out.stdout) / 1024
    assert peaks[45000] - peaks[1500] < 25, peaks  # MiB; in memory it would add over 300
