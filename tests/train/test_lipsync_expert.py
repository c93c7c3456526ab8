"""train.lipsync.expert: the sync expert learns aligned vs. shifted windows on the demo shards,
saves like a Hub model, resumes a killed run to the same weights, and refuses bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch

from shqip_av.config import from_dict
from tests.conftest import REPO


def _cfg(root, output, **training):
    from train.lipsync.expert import ExpertConfig

    return from_dict(
        ExpertConfig,
        {
            "name": "t",
            "output": str(output),
            "model": {"frames": 5, "crop_size": 48, "channels": [16, 32, 64], "embedding": 64},
            "data": {"root": str(root), "max_shift": 12},
            "training": {"batch_size": 32, "learning_rate": 0.002, "eval_pairs": 256, **training},
        },
    )


@pytest.mark.slow
def test_the_expert_learns_to_tell_aligned_from_shifted_audio(demo_expert):
    """Learning check: validation is another speaker's samples (the demo salt spreads speakers)."""
    from shqip_av.components.sync_expert import load_expert

    run, metrics = demo_expert
    first, last = metrics["history"][0], metrics["history"][-1]
    assert metrics["validation"]["samples"] > 0 and metrics["train"]["speakers"] >= 1
    assert last["eval_accuracy"] >= 0.65, metrics["history"]
    assert last["loss"] < first["loss"]
    assert {"config.json", "model.safetensors", "README.md", "thresholds.json"} <= {
        p.name for p in (run / "expert").iterdir()
    }
    assert load_expert(str(run)).sync_config.crop_size == 48
    # calibration: held-out samples with their own audio are found at offset 0
    assert metrics["calibration"]["own_offset_zero"] == 1.0
    assert metrics["calibration"]["own_confidence_p10"] > metrics["calibration"]["foreign_confidence_p90"]


def test_a_killed_run_resumes_from_its_checkpoint_to_the_same_weights(demo_root, tmp_path):
    from safetensors.torch import load_file

    from train.lipsync.expert import run_training

    whole, killed = tmp_path / "whole", tmp_path / "killed"
    settings = dict(max_steps=6, eval_steps=3, save_steps=3)
    run_training(_cfg(demo_root, whole, **settings))
    # the killed run had saved step 3 (complete) and was half-way through saving step 6
    (killed / "checkpoints").mkdir(parents=True)
    shutil.copytree(whole / "checkpoints" / "step-3", killed / "checkpoints" / "step-3")
    shutil.copy(whole / "config.yaml", killed / "config.yaml")
    (killed / "checkpoints" / "step-6").mkdir()
    metrics = run_training(_cfg(demo_root, killed, **settings))
    assert metrics["resumed_from"] == 3 and not (killed / "checkpoints" / "step-6").exists()
    a, b = load_file(whole / "expert" / "model.safetensors"), load_file(killed / "expert" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_bad_input_is_one_line(demo_root, tmp_path):
    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "train.lipsync.expert", *args], cwd=REPO, capture_output=True, text=True, timeout=300
        )

    for args, message in (
        ((f"data.root={tmp_path / 'empty'}",), "no shards under"),
        (("training.batch_sise=3",), "did you mean 'training.batch_size'"),
        (("model.crop_size=-1",), "'model.crop_size' must be"),
        ((f"data.root={demo_root}", "data.min_shift=9", "data.max_shift=4"), "min_shift"),
    ):
        proc = cli(*args)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], (args, proc.stderr)
    # a run folder holding another config is refused, not overwritten
    run = tmp_path / "run"
    (run).mkdir()
    (run / "config.yaml").write_text(json.dumps({"name": "other"}))
    proc = cli(f"data.root={demo_root}", f"output={run}")
    assert proc.returncode == 2 and "different config" in proc.stderr
