"""train.asr trains for real: a tiny random Whisper with LoRA on espeak-ng Albanian shards."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from shqip_av.config import from_dict
from tests.conftest import REPO
from train.asr.config import AsrConfig
from train.asr.train import COMPLETE, run_training


def tiny_config(root, model, output, **overrides) -> AsrConfig:
    data = {
        "name": "tiny",
        "output": str(output),
        "model": {
            "name_or_path": str(model),
            "finetune": "lora",
            "lora": {
                "r": 32,
                "alpha": 64,
                "dropout": 0.0,
                "target_modules": ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"],
            },
            "spec_augment": {"enabled": False},
        },
        "data": {"root": str(root), "report_splits": ["train", "test"]},
        "training": {
            "max_steps": 150,
            "batch_size": 6,
            "eval_batch_size": 8,
            "learning_rate": 0.006,
            "warmup_steps": 10,
            "eval_steps": 50,
            "save_steps": 50,
            "logging_steps": 10,
            "num_workers": 0,
            "max_new_tokens": 48,
        },
    }
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split("__")
        node = data
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return from_dict(AsrConfig, data)


@pytest.mark.slow
def test_lora_learns_the_training_utterances(asr_root, tiny_whisper, tmp_path):
    """Learning check (not a timing): loss falls and WER on the training utterances drops from ~100 %."""
    run = tmp_path / "run"
    metrics = run_training(tiny_config(asr_root, tiny_whisper, run))
    losses = [entry["loss"] for entry in metrics["training"]["history"] if "loss" in entry]
    assert metrics["training"]["steps"] == 150
    assert losses[-1] < 0.25 * losses[0]
    train = metrics["splits"]["train"]
    assert train["base"]["samples"] == train["fine_tuned"]["samples"] == 12
    assert train["base"]["wer_normalized"] >= 0.9
    assert train["fine_tuned"]["wer_normalized"] <= 0.3
    # the held-out speaker's sentences are new to the model: reported, not expected to be good
    assert metrics["splits"]["test"]["fine_tuned"]["samples"] == 4
    assert metrics["data"]["train"] == {
        "kept": 12,
        "skipped": {"audio-too-long": 1, "empty-transcript": 1, "no-transcript": 1, "transcript-too-long": 1},
        "transcript_sources": {"manual": 12},
    }
    # outputs of a finished run
    assert (run / "adapter" / "adapter_config.json").is_file()
    assert (run / "processor" / "tokenizer.json").is_file()
    assert "learning_rate: 0.006" in (run / "config.yaml").read_text()
    rows = [json.loads(line) for line in (run / "predictions" / "test.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and {"key", "reference", "prediction", "reference_normalized"} <= set(rows[0])
    fine = [json.loads(line) for line in (run / "predictions" / "train.jsonl").read_text().splitlines()]
    assert sum(r["prediction"] == r["reference"] for r in fine) >= 6
    assert any(("ë" in r["prediction"] or "ç" in r["prediction"]) for r in fine)

    # the stand-alone evaluator gives the same numbers for base and fine-tuned, side by side
    from train.asr.evaluate import EvaluateConfig, evaluate_models

    results = evaluate_models(
        EvaluateConfig(model=[str(tiny_whisper), str(run)], root=str(asr_root), split=["train"], max_new_tokens=48)
    )
    assert results[0]["wer_normalized"] == pytest.approx(train["base"]["wer_normalized"])
    assert results[1]["wer_normalized"] == pytest.approx(train["fine_tuned"]["wer_normalized"])

    # a rerun of the finished run changes nothing
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    again = run_training(tiny_config(asr_root, tiny_whisper, run))
    assert again == json.loads((run / "metrics.json").read_text())
    assert before == {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}


def _resume_config(root, model, run):
    # dropout and SpecAugment on, so the restored torch and numpy RNG states matter
    return tiny_config(
        root,
        model,
        run,
        training__max_steps=8,
        training__save_steps=4,
        training__eval_steps=4,
        training__batch_size=4,
        training__logging_steps=1,
        training__evaluate_base=False,
        data__report_splits=[],
        model__lora__dropout=0.1,
        model__spec_augment__enabled=True,
    )


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_result(asr_root, tiny_whisper, tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    run_training(_resume_config(asr_root, tiny_whisper, whole))
    # what a kill just after step 4's checkpoint leaves: the config, checkpoint-4, a half-saved checkpoint-8
    (killed / "checkpoints").mkdir(parents=True)
    shutil.copy(whole / "config.yaml", killed / "config.yaml")
    shutil.copytree(whole / "checkpoints" / "checkpoint-4", killed / "checkpoints" / "checkpoint-4")
    partial = killed / "checkpoints" / "checkpoint-8"
    partial.mkdir()
    shutil.copy(whole / "checkpoints" / "checkpoint-8" / "adapter_model.safetensors", partial)

    metrics = run_training(_resume_config(asr_root, tiny_whisper, killed))
    assert metrics["training"]["resumed_from"] == "checkpoint-4"
    assert metrics["training"]["steps"] == 8
    state = json.loads((killed / "checkpoints" / "checkpoint-8" / "trainer_state.json").read_text())
    assert state["global_step"] == 8
    assert (killed / "checkpoints" / "checkpoint-8" / COMPLETE).is_file()

    # the resumed steps saw the same batches and random masks: same losses (steps 1-4 come from
    # checkpoint-4's log history, 5-8 were computed again), weights and optimizer state
    def logged(m):
        return [(e["step"], e["loss"]) for e in m["training"]["history"] if "loss" in e]

    whole_metrics = json.loads((whole / "metrics.json").read_text())
    assert [step for step, _ in logged(metrics)] == list(range(1, 9))
    assert logged(metrics) == logged(whole_metrics)
    a, b = (
        load_file(whole / "adapter" / "adapter_model.safetensors"),
        load_file(killed / "adapter" / "adapter_model.safetensors"),
    )
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    opt_a = torch.load(whole / "checkpoints" / "checkpoint-8" / "optimizer.pt", weights_only=False)
    opt_b = torch.load(killed / "checkpoints" / "checkpoint-8" / "optimizer.pt", weights_only=False)
    for key, value in opt_a["state"].items():
        assert torch.allclose(value["exp_avg"], opt_b["state"][key]["exp_avg"], atol=1e-6)
        assert torch.equal(value["step"], opt_b["state"][key]["step"])

    # a changed setting refuses to resume with one line naming it
    from shqip_av.config import ConfigError

    changed = _resume_config(asr_root, tiny_whisper, killed)
    changed.training.learning_rate = 0.01
    with pytest.raises(ConfigError, match="training.learning_rate"):
        run_training(changed)


@pytest.mark.slow
def test_accelerate_launch_with_two_cpu_processes(asr_root, tiny_whisper, tmp_path):
    run = tmp_path / "ddp"
    accelerate = shutil.which("accelerate", path=str(REPO / ".venv" / "bin")) or shutil.which("accelerate")
    proc = subprocess.run(
        # --multi_gpu selects accelerate's torchrun launcher; on a machine without GPUs the two
        # processes train on the CPU over gloo (accelerate's --cpu flag alone starts one process)
        [
            accelerate,
            "launch",
            "--multi_gpu",
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "-m",
            "train.asr",
            f"data.root={asr_root}",
            f"model.name_or_path={tiny_whisper}",
            f"output={run}",
            "training.max_steps=4",
            "training.batch_size=1",
            "training.gradient_accumulation=2",
            "training.save_steps=2",
            "training.eval_steps=2",
            "training.num_workers=0",
            "training.evaluate_base=false",
            "data.report_splits=test",
            "training.max_new_tokens=8",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["training"]["processes"] == 2
    assert metrics["training"]["steps"] == 4
    state = json.loads((run / "checkpoints" / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["train_batch_size"] == 1
    # each process gets 6 of the 12 eligible samples; 2 micro-batches of 1 per optimizer step make
    # 3 steps an epoch, so 4 steps are 1.33 epochs (one process, or no accumulation, would differ)
    assert state["epoch"] == pytest.approx(4 / 3, abs=0.01)
    assert metrics["splits"]["test"]["fine_tuned"]["samples"] == 4


@pytest.mark.slow
def test_streaming_with_evaluation_during_training(asr_root, tiny_whisper, tmp_path):
    cfg = tiny_config(
        asr_root,
        tiny_whisper,
        tmp_path / "stream",
        data__streaming=True,
        data__eval_split="test",
        data__report_splits=["test"],
        training__max_steps=4,
        training__batch_size=2,
        training__save_steps=2,
        training__eval_steps=2,
        training__evaluate_base=False,
        training__max_new_tokens=8,
        model__merge=True,
    )
    metrics = run_training(cfg)
    evaluations = [e for e in metrics["training"]["history"] if "eval_wer" in e]
    assert [e["step"] for e in evaluations] == [2, 4]
    assert all(0.0 <= e["eval_wer_normalized"] and 0.0 <= e["eval_cer"] for e in evaluations)
    assert metrics["streaming"] is True
    assert metrics["data"]["test"] == {"kept": 4, "skipped": {}, "transcript_sources": {"manual": 4}}
    # the stream skipped the four unusable training samples as it met them
    assert set(metrics["data"]["train"]["skipped"]) == {
        "audio-too-long",
        "empty-transcript",
        "no-transcript",
        "transcript-too-long",
    }
    assert metrics["splits"]["test"]["fine_tuned"]["samples"] == 4

    # the merged model is a plain Whisper checkpoint that transcribes like the adapter
    from shqip_av.components.whisper import load_for_inference
    from train.asr.scoring import eligible_split, transcribe

    merged = load_for_inference(str(tmp_path / "stream" / "merged"))
    assert not hasattr(merged.model, "peft_config")
    dataset, _ = eligible_split(asr_root, "test", merged.processor.tokenizer, max_seconds=10)
    rows = transcribe(merged.model, merged.processor, dataset)
    adapter_rows = [
        json.loads(line) for line in (tmp_path / "stream" / "predictions" / "test.jsonl").read_text().splitlines()
    ]
    assert [r["prediction"] for r in rows] == [r["prediction"] for r in adapter_rows]


@pytest.mark.slow
def test_full_fine_tuning_scores_the_base_model_beside_it(asr_root, tiny_whisper, tmp_path):
    run = tmp_path / "full"
    metrics = run_training(
        tiny_config(
            asr_root,
            tiny_whisper,
            run,
            model__finetune="full",
            training__max_steps=2,
            training__learning_rate=1e-4,
            data__report_splits=["test"],
            training__max_new_tokens=8,
        )
    )
    assert (run / "model" / "model.safetensors").is_file() and not (run / "adapter").exists()
    test = metrics["splits"]["test"]
    assert test["base"]["samples"] == test["fine_tuned"]["samples"] == 4
    assert (run / "predictions" / "test.base.jsonl").is_file()
    from shqip_av.components.whisper import load_for_inference

    assert load_for_inference(str(run)).base_name.endswith("model")


def test_push_to_hub_refused_is_one_line_and_keeps_the_token_out(tmp_path, refusing_hub):
    """A Hub that refuses (a local server on 127.0.0.1 via HF_ENDPOINT): a clear error, and the token
    travels only in the Authorization header."""
    import os

    endpoint, seen = refusing_hub
    run = tmp_path / "run"
    for folder in ("adapter", "processor"):
        (run / folder).mkdir(parents=True)
        (run / folder / "placeholder.json").write_text("{}")
    token = "hf_testTOKENthatmustnotleak123"
    script = (
        "from shqip_av.config import run_cli\n"
        "from train.asr.config import AsrConfig\n"
        "from train.asr.train import push_to_hub\n"
        "cfg = AsrConfig(); cfg.hub.repo_id = 'someone/whisper-small-sq'\n"
        f"run_cli(lambda: push_to_hub(cfg, __import__('pathlib').Path({str(run)!r})) and 0)\n"
    )
    env = {
        **os.environ,
        "HF_ENDPOINT": endpoint,
        "HF_TOKEN": token,
        "HF_HUB_OFFLINE": "0",
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: push to the Hub repo someone/whisper-small-sq failed: 403")
    assert token not in proc.stdout + proc.stderr
    assert seen, "the test server received no request"
    for _, path, headers in seen:
        assert token not in path
        assert headers.get("authorization") == f"Bearer {token}"
    assert not any(token in p.read_text(errors="ignore") for p in tmp_path.rglob("*") if p.is_file())


def test_a_refused_push_leaves_a_complete_run_and_names_the_command_to_push_again(
    asr_root, tiny_whisper, tmp_path, refusing_hub
):
    """The run's results are written before the push: a Hub that refuses must not cost metrics.json."""
    import os

    endpoint, _ = refusing_hub
    run = tmp_path / "run"
    cfg = tiny_config(
        asr_root,
        tiny_whisper,
        run,
        training__max_steps=2,
        training__save_steps=2,
        training__eval_steps=2,
        data__report_splits=["test"],
        training__evaluate_base=False,
    )
    script = (
        "import sys, yaml\n"
        "from shqip_av.config import from_dict, run_cli\n"
        "from train.asr.config import AsrConfig\n"
        "from train.asr.train import run_training\n"
        "cfg = from_dict(AsrConfig, yaml.safe_load(open(sys.argv[1])))\n"
        "run_cli(lambda: run_training(cfg) and 0)\n"
    )
    from shqip_av.config import to_dict

    cfg.hub.push, cfg.hub.repo_id = True, "someone/whisper-tiny-sq"
    (tmp_path / "cfg.yaml").write_text(__import__("yaml").safe_dump(to_dict(cfg)))
    env = {
        **os.environ,
        "HF_ENDPOINT": endpoint,
        "HF_TOKEN": "hf_testTOKENthatmustnotleak123",
        "HF_HUB_OFFLINE": "0",
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "cfg.yaml")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    error = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(error) == 1 and "python -m cards publish" in error[0] and f"--run {run}" in error[0]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["splits"]["test"]["fine_tuned"]["samples"] == 4
    assert (run / "adapter" / "adapter_config.json").is_file() and (run / "trained_on.json").is_file()


def test_pseudo_labels_train_but_never_score_by_default(tmp_path):
    """train.asr reads transcript_source: pseudo-labels join the train split, validation and test
    are scored against human transcripts only, and metrics.json reports scores per source."""
    from tests.train.espeak_shards import PSEUDO_SOURCE, albanian_sentences, build_asr_root, missing_inputs
    from train.asr.tiny import TinyWhisperConfig, build_tiny_whisper

    if missing_inputs():
        pytest.skip(missing_inputs())
    texts = albanian_sentences(9, skip=20)
    root = build_asr_root(
        tmp_path / "data", texts[:3], texts[3:5], edge_cases=False, pseudo_train=texts[5:7], pseudo_test=texts[7:9]
    )
    model = build_tiny_whisper(TinyWhisperConfig(out=str(tmp_path / "m"), root=str(root)))
    short = dict(
        training__max_steps=1, training__evaluate_base=False, training__max_new_tokens=4, data__report_splits=["test"]
    )
    metrics = run_training(tiny_config(root, model, tmp_path / "default", **short))
    train, test = metrics["data"]["train"], metrics["data"]["test"]
    assert train["kept"] == 5 and train["transcript_sources"] == {"manual": 3, PSEUDO_SOURCE: 2}
    assert test["kept"] == 2 and test["skipped"] == {"pseudo-label-excluded": 2}
    assert set(metrics["splits"]["test"]["fine_tuned"]["by_source"]) == {"manual"}

    metrics = run_training(tiny_config(root, model, tmp_path / "none", data__pseudo_labels=[], **short))
    assert metrics["data"]["train"]["kept"] == 3 and metrics["data"]["train"]["skipped"] == {"pseudo-label-excluded": 2}

    metrics = run_training(tiny_config(root, model, tmp_path / "all", data__pseudo_labels=["train", "test"], **short))
    by_source = metrics["splits"]["test"]["fine_tuned"]["by_source"]
    assert (
        metrics["data"]["test"]["kept"] == 4
        and by_source["manual"]["samples"] == by_source[PSEUDO_SOURCE]["samples"] == 2
    )
