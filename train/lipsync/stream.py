"""Generator training windows streamed from tar shards, for data too large to decode up front.

``index_split`` reads only each sample's metadata (json, and which members it has): enough to
skip the samples that cannot serve (counted, as ``load_faces`` counts them) and to know how many
windows each one gives (num_frames // T). ``WindowStream`` (a torch IterableDataset) then decodes
samples inside the DataLoader's workers, keeps at most ``buffer`` of them decoded per worker, and
yields windows drawn at random from that buffer.

Determinism, so that a killed run resumes to the same weights: the schedule (which sample, which
window, in which order) depends only on the seed, the epoch and the metadata, never on decoded
pixels. Each accelerate process takes every world-th sample of an epoch's order, each of its
loader workers ("lanes") every W-th of those, and the DataLoader takes whole batches from the lanes
in turn. Resuming after B batches, each lane skips the batches it had produced by replaying the
schedule without decoding (a sample is decoded only when one of its windows is still to come), and
lane numbers are rotated so that the next batch comes from the lane that was next. A sample that
fails to decode although its metadata looked fine (a corrupt video) is logged and its windows are
left out; that is the one case where a resumed run can differ from the uninterrupted one.
"""

from __future__ import annotations

import glob
import json
from collections import Counter
from dataclasses import dataclass

import numpy as np

from shqip_av.files import DatasetRoot
from shqip_av.log import get_logger
from shqip_av.schema import read_member_spans, tar_member_spans, video_id_of_key

log = get_logger(__name__)


@dataclass(frozen=True)
class IndexedSample:
    tar: str
    key: str
    speaker: str
    num_frames: int
    spans: tuple  # ((suffix, byte offset, size), ...) of its members in the tar


def index_split(
    root: str, split: str, *, frames: int, exclude: int, videos: set[str] | None = None, drop: set[str] = frozenset()
) -> tuple[list[IndexedSample], Counter]:
    """The usable samples of a split from their metadata alone, and the skipped ones counted by reason."""
    samples, skipped = [], Counter()
    for tar in sorted(glob.glob(str(DatasetRoot(root).path("shards", split) / "*.tar"))):
        for key, members in tar_member_spans(tar).items():
            if key in drop or (videos is not None and video_id_of_key(key) not in videos):
                continue
            if "landmarks.npy" not in members:
                skipped["no-landmarks"] += 1
                continue
            if not {"mp4", "wav", "json"} <= set(members):
                skipped["missing-members"] += 1
                continue
            meta = json.loads(read_member_spans(tar, {"json": members["json"]})["json"])
            n = int(meta.get("num_frames") or 0)
            if abs(float(meta.get("fps", 25)) - 25) > 1e-6:
                skipped["not-25-fps"] += 1
            elif n < frames + 2 * exclude + 1:
                skipped["too-short-for-references"] += 1
            else:
                spans = tuple((suffix, *span) for suffix, span in sorted(members.items()))
                samples.append(IndexedSample(tar, key, str(meta.get("speaker")), n, spans))
    return samples, skipped


def lane_batches_done(batches: int, lane: int, lanes: int) -> int:
    """How many of the first ``batches`` batches (taken from lanes 0, 1, …, lanes-1, 0, … in turn) lane produced."""
    return max(0, (batches - lane + lanes - 1) // lanes)


def _iterable_dataset():
    from torch.utils.data import IterableDataset

    return IterableDataset


class WindowStream(_iterable_dataset()):
    """Infinite stream of generator windows (the items ``WindowDataset`` gives) from indexed samples."""

    def __init__(
        self,
        samples: list[IndexedSample],
        *,
        size: int,
        frames: int,
        references: int,
        exclude: int,
        seed: int,
        batch_size: int,
        rank: int = 0,
        world: int = 1,
        buffer: int = 8,
        start_batch: int = 0,
    ):
        from shqip_av import ShqipError

        if not samples:
            raise ShqipError("no usable samples to train the generator on")
        self.samples, self.size, self.frames, self.references, self.exclude = samples, size, frames, references, exclude
        self.seed, self.batch_size, self.rank, self.world = seed, batch_size, rank, world
        self.buffer, self.start_batch = max(1, buffer), start_batch

    def __iter__(self):
        import torch

        info = torch.utils.data.get_worker_info()
        lanes, worker = (info.num_workers, info.id) if info else (1, 0)
        lane = (worker + self.start_batch) % lanes  # the DataLoader restarts at worker 0
        skip = lane_batches_done(self.start_batch, lane, lanes) * self.batch_size
        return self.lane_items(lane, lanes, skip)

    def schedule(self, lane: int, lanes: int):
        """(sample number, window start, its last window?) in this lane's order, forever; no decoding."""
        epoch = 0
        while True:
            order = np.random.default_rng((self.seed, epoch)).permutation(len(self.samples))
            mine = order[self.rank :: self.world]
            mine = mine if len(mine) else order  # more processes than samples: share them
            mine = mine[lane::lanes] if len(mine) >= lanes else mine  # more lanes than samples: share them
            rng = np.random.default_rng((self.seed, epoch, self.rank, lane))
            pending = [int(i) for i in mine]
            active: list[tuple[int, list[int]]] = []
            while pending or active:
                while pending and len(active) < self.buffer:
                    i = pending.pop(0)
                    n = self.samples[i].num_frames
                    starts = n - self.frames + 1
                    count = min(starts, max(1, n // self.frames))
                    active.append((i, [int(x) for x in rng.choice(starts, size=count, replace=False)]))
                j = int(rng.integers(len(active)))
                i, starts = active[j]
                first = starts.pop()
                if not starts:
                    active.pop(j)
                yield i, first, not starts
            epoch += 1

    def lane_items(self, lane: int, lanes: int, skip: int = 0):
        """This lane's windows, after skipping the first ``skip`` without decoding anything."""
        from train.lipsync.generator_data import sample_window

        decoded: dict[int, object] = {}  # at most ``buffer`` samples: one is dropped after its last window
        for count, (i, first, last) in enumerate(self.schedule(lane, lanes)):
            if count < skip:
                continue
            if i not in decoded:
                decoded[i] = self._decode(self.samples[i])
            sample = decoded.pop(i) if last else decoded[i]
            if sample is not None:
                yield sample_window(sample, first, self.frames)

    def _decode(self, item: IndexedSample):
        sample = decode_indexed(
            item, size=self.size, frames=self.frames, references=self.references, exclude=self.exclude
        )
        if isinstance(sample, str):
            log.warning("%s: skipped while streaming (%s)", item.key, sample)
            return None
        return sample


def decode_indexed(item: IndexedSample, *, size: int, frames: int, references: int, exclude: int):
    """The FaceSample of an indexed sample, or the reason it cannot serve."""
    from train.lipsync.generator_data import decode_face_sample

    try:
        members = read_member_spans(item.tar, {suffix: (offset, size_) for suffix, offset, size_ in item.spans})
    except OSError:
        return "unreadable"
    return decode_face_sample(item.key, members, size, frames, references, exclude)
