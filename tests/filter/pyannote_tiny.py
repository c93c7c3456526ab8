"""A pyannote.audio speaker-diarization pipeline with random weights, saved to disk the way a
real one is laid out (config.yaml + segmentation and embedding checkpoints + PLDA files).
The real weights live on the Hugging Face Hub and cannot be downloaded here; this lets the real
pyannote loading and inference code run in tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml


def _save(model, path: Path) -> None:
    import torch

    checkpoint: dict = {}
    model.on_save_checkpoint(checkpoint)  # pyannote's own metadata (version, class, specifications)
    checkpoint.update(
        state_dict=model.state_dict(), hyper_parameters=dict(model.hparams), **{"pytorch-lightning_version": "2.5.0"}
    )
    torch.save(checkpoint, path)


def build_random_pipeline(folder: Path) -> Path:
    """Write the pipeline into ``folder``; returns the config.yaml path."""
    import torch
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.embedding import WeSpeakerResNet34
    from pyannote.audio.models.segmentation import PyanNet

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    seg = PyanNet(
        sincnet={"stride": 10}, lstm={"hidden_size": 32, "num_layers": 1}, linear={"hidden_size": 32, "num_layers": 1}
    )
    seg.specifications = Specifications(
        problem=Problem.MONO_LABEL_CLASSIFICATION,
        resolution=Resolution.FRAME,
        duration=5.0,
        classes=["s1", "s2", "s3"],
        powerset_max_classes=2,
        permutation_invariant=True,
    )
    seg.build()
    _save(seg, folder / "segmentation.ckpt")
    emb = WeSpeakerResNet34()
    emb.specifications = Specifications(problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK, duration=3.0)
    _save(emb, folder / "embedding.ckpt")
    plda = folder / "plda"
    plda.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    np.savez(
        plda / "xvec_transform.npz", mean1=np.zeros(256), mean2=np.zeros(128), lda=rng.standard_normal((256, 128)) / 16
    )
    np.savez(plda / "plda.npz", mu=np.zeros(128), tr=np.eye(128), psi=np.linspace(2.0, 0.1, 128))
    config = {
        "pipeline": {
            "name": "pyannote.audio.pipelines.SpeakerDiarization",
            "params": {
                "segmentation": str(folder / "segmentation.ckpt"),
                "embedding": str(folder / "embedding.ckpt"),
                "plda": str(plda),
                "clustering": "VBxClustering",
            },
        },
        "params": {"segmentation": {"min_duration_off": 0.0}, "clustering": {"threshold": 0.6, "Fa": 0.07, "Fb": 0.8}},
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path
