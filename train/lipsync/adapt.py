"""Per-video adaptation (DESIGN.md §8): before a video is lip-synced, a copy of the generator is
fine-tuned for a bounded number of steps on that video's own face, driven by its own audio
(self-reconstruction: the masked lower face rebuilt from the unmasked rest, references from the
same video and its speech), so the output knows this face's lips, teeth and light.

Only the speech segments' frames are used (a mouth is only informative while it speaks). The base
generator is never changed. A loss that turns NaN stops adaptation and hands back the base, said
in ``AdaptResult.note``; so does a video too short to hold one window. Used alike by the dub
(``export.pipeline``) and by the evaluation (``train.lipsync.evaluate --self-dub``).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np

from shqip_av.log import get_logger, progress

log = get_logger(__name__)

MIN_FRAMES = 25  # a second of speaking face: less cannot teach anything about it


@dataclass
class AdaptResult:
    model: object  # the adapted copy, or the base itself when adaptation did not run
    steps: int = 0  # optimizer steps actually taken
    frames: int = 0  # frames it learned from
    seconds: float = 0.0
    loss: list[float] = field(default_factory=list)  # masked L1, first and last 10 steps' means
    note: str = ""  # why it did not run (or stopped), for the report

    @property
    def adapted(self) -> bool:
        return self.steps > 0 and not self.note


def adapt_generator(
    generator,
    crops: list[np.ndarray],
    landmarks: list[np.ndarray],
    audio: list[np.ndarray],
    *,
    steps: int,
    learning_rate: float = 1e-4,
    batch_size: int = 2,
    seed: int = 0,
    exclude: int = 5,
    show_progress: bool = True,
) -> AdaptResult:
    """Fine-tune a copy of ``generator`` on runs of consecutive frames of one face: per run,
    ``crops`` (N, S, S, 3) uint8 at the generator's size, ``landmarks`` (N, 478, 2) in those crops'
    pixels and ``audio`` (N, 80, M) each frame's own log-mel window (``frame_audio``'s layout)."""
    import torch

    from shqip_av.components.lipsync_generator import mouth_targets
    from train.lipsync.generator_data import to_chw
    from train.lipsync.references import ReferencePicker

    cfg = generator.generator_config
    t = cfg.frames
    runs = [(c, m, a) for c, m, a in zip(crops, landmarks, audio) if len(c) >= t]
    total = sum(len(c) for c, _, _ in runs)
    if steps <= 0:
        return AdaptResult(generator)
    if total < MIN_FRAMES:
        return AdaptResult(
            generator,
            frames=total,
            note=f"the video has {total} frames of speaking face, fewer than the {MIN_FRAMES} "
            f"adaptation needs; the base generator was used",
        )
    all_crops = np.concatenate([c for c, _, _ in runs])
    all_marks = np.concatenate([m for _, m, _ in runs]).astype(np.float32)
    all_audio = np.concatenate([a for _, _, a in runs]).astype(np.float32)
    offsets = np.cumsum([0] + [len(c) for c, _, _ in runs])
    starts = np.concatenate([np.arange(o, o + len(c) - t + 1) for o, (c, _, _) in zip(offsets, runs)])
    picker = ReferencePicker(all_marks, cfg.references, min(exclude, max(0, (len(all_crops) - t) // 2 - 1)), seed)
    own = np.linspace(0, len(all_crops) - 1, cfg.references).round().astype(int).tolist()

    device = next(generator.parameters()).device
    model = copy.deepcopy(generator).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    rng = np.random.default_rng(seed)
    mask = model.mask
    losses: list[float] = []
    began = time.perf_counter()
    shown = progress(range(steps), desc="adapting the generator to this face", unit="step") if show_progress else None
    for step in shown if shown is not None else range(steps):
        chosen = rng.choice(starts, size=batch_size)
        frames = torch.from_numpy(np.stack([to_chw(all_crops[s : s + t]) for s in chosen])).to(device)
        refs = torch.from_numpy(np.stack([to_chw(all_crops[picker.pick(int(s), t) or own]) for s in chosen])).to(device)
        mel = torch.from_numpy(np.stack([all_audio[s : s + t] for s in chosen])).to(device)
        marks = torch.from_numpy(np.stack([all_marks[s : s + t] for s in chosen])).to(device)
        out, mouth = model(frames, refs, mel, return_mouth=True)
        l1 = ((out - frames).abs() * mask).sum() / (mask.sum() * out.shape[0] * out.shape[1] * 3)
        loss = l1 + 0.1 * (mouth - mouth_targets(marks, cfg.size)).abs().mean()
        if not torch.isfinite(loss):
            return AdaptResult(
                generator,
                steps=step,
                frames=len(all_crops),
                seconds=time.perf_counter() - began,
                loss=losses,
                note=f"adaptation diverged at step {step + 1} (loss not finite); the base generator was used",
            )
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(float(l1.detach()))
    model.eval()
    summary = [round(float(np.mean(losses[:10])), 5), round(float(np.mean(losses[-10:])), 5)]
    return AdaptResult(model, steps=steps, frames=len(all_crops), seconds=time.perf_counter() - began, loss=summary)
