"""python -m export onnx --model runs/lipsync/<name> [--out DIR]: the generator as ONNX.

Dynamic batch; inputs ``frames`` (B, T, 3, S, S), ``references`` (B, K, 3, S, S), ``mel``
(B, T, 80, M) and output ``generated``, as LipSyncGenerator.forward. After writing, the file is
run with onnxruntime on the same random inputs as PyTorch (two batch sizes) and the largest
absolute difference is reported; above ``tolerance`` the export is refused and nothing is left.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shqip_av import ShqipError
from shqip_av.config import option
from shqip_av.log import get_logger

log = get_logger(__name__)


@dataclass
class OnnxConfig:
    model: str = option(
        "", "the generator: a train.lipsync run (runs/lipsync/<name>), its generator/ folder or a Hub id"
    )
    out: str = option("", "output folder (default: <run>/onnx)")
    opset: int = option(18, "ONNX opset", min=17, max=23)
    tolerance: float = option(1e-4, "largest accepted |ONNX - PyTorch| on the check inputs", above=0)


def example_inputs(model, batch: int, seed: int = 0):
    import torch

    from shqip_av.components import audio_frontend as frontend
    from shqip_av.components.lipsync_generator import AUDIO_FRAMES

    c = model.generator_config
    g = torch.Generator().manual_seed(seed)
    return (
        torch.rand(batch, c.frames, 3, c.size, c.size, generator=g),
        torch.rand(batch, c.references, 3, c.size, c.size, generator=g),
        torch.randn(batch, c.frames, 80, frontend.mel_length(AUDIO_FRAMES), generator=g) * 3 - 4,
    )


def export_onnx(cfg: OnnxConfig) -> dict:
    import onnxruntime as ort
    import torch

    from shqip_av.files import atomic_write_text
    from shqip_av.components.lipsync_generator import load_generator

    if not cfg.model:
        raise ShqipError("give --model runs/lipsync/<name>")
    try:
        model = load_generator(cfg.model, "--model").eval()
    except (OSError, ValueError) as e:
        raise ShqipError(f"cannot load the generator {cfg.model!r}: {str(e).splitlines()[0]}") from None
    source = Path(cfg.model)
    out = Path(cfg.out) if cfg.out else (source / "onnx" if source.is_dir() else Path("onnx"))
    out.mkdir(parents=True, exist_ok=True)
    target, tmp = out / "generator.onnx", out / "generator.onnx.tmp"
    batch = torch.export.Dim("batch", min=1, max=4096)
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured), torch.no_grad():  # the exporter prints its progress
        torch.onnx.export(
            model,
            example_inputs(model, 2),
            str(tmp),
            dynamo=True,
            opset_version=cfg.opset,
            input_names=["frames", "references", "mel"],
            output_names=["generated"],
            dynamic_shapes=({0: batch}, {0: batch}, {0: batch}),
            external_data=False,
        )
    session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    worst = 0.0
    for b in (1, 3):
        inputs = example_inputs(model, b, seed=b)
        with torch.no_grad():
            expected = model(*inputs).numpy()
        got = session.run(None, dict(zip(("frames", "references", "mel"), (x.numpy() for x in inputs))))[0]
        worst = max(worst, float(np.abs(got - expected).max()))
    if worst > cfg.tolerance:
        tmp.unlink(missing_ok=True)
        raise ShqipError(
            f"the ONNX generator differs from PyTorch by {worst:.3g} (> {cfg.tolerance}); nothing was written"
        )
    tmp.replace(target)
    c = model.generator_config
    info = {
        "file": str(target),
        "max_abs_difference": worst,
        "checked_batches": [1, 3],
        "opset": cfg.opset,
        "inputs": {
            "frames": ["batch", c.frames, 3, c.size, c.size],
            "references": ["batch", c.references, 3, c.size, c.size],
            "mel": ["batch", c.frames, 80, int(example_inputs(model, 1)[2].shape[-1])],
        },
        "outputs": {"generated": ["batch", c.frames, 3, c.size, c.size]},
    }
    atomic_write_text(out / "onnx.json", json.dumps(info, indent=2) + "\n")
    return info
