"""Cards from a dataset made by the demo pipeline, and the Hub publish path (offline)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
import webdataset as wds
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, DatasetCard, ModelCard

from cards.dataset_card import DatasetCardConfig, build_dataset_card, hub_license
from cards.facts import CardError
from cards.model_card import ModelCardConfig, build_model_card
from cards.publish import PublishConfig, UploadFile, commit_plan, publish
from tests.conftest import REPO


def _cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "cards", *args], cwd=REPO, capture_output=True, text=True, timeout=300, env=env
    )


def _count_shards(root):
    """Samples, seconds and speakers per split, read from the tars with webdataset (not from the index)."""
    counts = {}
    for split in ("train", "validation", "test"):
        samples, seconds, speakers = 0, 0.0, set()
        for tar in sorted((root / "shards" / split).glob("*.tar")):
            for sample in wds.WebDataset(str(tar), shardshuffle=False):
                meta = json.loads(sample["json"])
                samples += 1
                seconds += meta["end"] - meta["start"]
                speakers.add(meta["speaker"])
        counts[split] = (samples, seconds, len(speakers))
    return counts


def test_dataset_card_states_the_real_counts_and_parses_back(demo_root):
    card_path = build_dataset_card(DatasetCardConfig(root=str(demo_root), repo="someone/shqip-av"))
    card = DatasetCard.load(card_path)
    meta = card.data.to_dict()
    assert meta["language"] == ["sq"]
    assert meta["license"] == "cc0-1.0"  # the sample clips are CC0 1.0 with release forms
    assert "automatic-speech-recognition" in meta["task_categories"]
    assert meta["size_categories"] == "n<1K"
    splits = {f["split"]: f["path"] for f in meta["configs"][0]["data_files"]}
    assert splits == {s: f"shards/{s}/*.tar" for s in ("train", "validation", "test")}

    counts = _count_shards(demo_root)
    assert sum(n for n, _, _ in counts.values()) == 12
    for split, (n, seconds, speakers) in counts.items():
        videos = len(
            {
                json.loads(s["json"])["video_id"]
                for t in (demo_root / "shards" / split).glob("*.tar")
                for s in wds.WebDataset(str(t), shardshuffle=False)
            }
        )
        assert f"| {split} | {n} | {seconds / 3600:.3f} | {speakers} | {videos} | {n} | 1 |" in card.text
    # how it was made: the funnel and reasons come from the records
    assert "9 videos; 1 sources were not collected (no-consent: 1)" in card.text
    assert "no-face: 1, no-speech: 1" in card.text
    assert "| quality | 13 | 1 | 92.3 % | face-too-small (1) |" in card.text
    assert "| quality.min_eye_distance | `80.0` |" in card.text
    assert "| consent | 6 |" in card.text and "| CC0 1.0 | 6 | cc0-1.0 |" in card.text
    for heading in ("## Takedown", "## Intended uses", "## Out-of-scope uses", "## Limitations", "## Sample schema"):
        assert heading in card.text
    assert "disclosed as synthetic" in card.text
    assert "no video records its dialect (Gheg or Tosk" in card.text
    for png in ("durations.png", "funnel.png"):
        assert (card_path.parent / "assets" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"(assets/{png})" in card.text


@pytest.mark.parametrize(
    "name, hub_id",
    [
        ("CC BY 4.0", "cc-by-4.0"),
        ("cc-by-sa-4.0", "cc-by-sa-4.0"),
        ("CC0 1.0", "cc0-1.0"),
        ("Creative Commons Attribution license (reuse allowed)", "cc-by-3.0"),
        ("Public Domain Mark", "cc0-1.0"),
        (None, "other"),
        ("Some custom terms", "other"),
    ],
)
def test_licence_names_map_to_hub_ids(name, hub_id):
    assert hub_license(name, "other") == hub_id


def test_model_card_reports_metrics_against_the_base_model(demo_run, demo_root):
    path = build_model_card(ModelCardConfig(run=str(demo_run), root=str(demo_root), dataset="someone/shqip-av"))
    card = ModelCard.load(path)
    metrics = json.loads((demo_run / "metrics.json").read_text())
    data = card.data
    assert data.language == "sq" and data.library_name == "peft" and data.datasets == ["someone/shqip-av"]
    assert data.pipeline_tag == "automatic-speech-recognition"
    reported = {(r.dataset_split, r.metric_name): r.metric_value for r in data.eval_results}
    for split, by_model in metrics["splits"].items():
        tuned = by_model["fine_tuned"]
        assert reported[(split, "WER")] == pytest.approx(round(100 * tuned["wer"], 2))
        assert reported[(split, "CER (normalized)")] == pytest.approx(round(100 * tuned["cer_normalized"], 2))
        base = by_model["base"]
        assert (
            f"| {split} | `{metrics['base_model']}` (base) | {base['samples']} | {100 * base['wer']:.1f} |" in card.text
        )
    assert "model-index" in path.read_text()


def test_card_commands_stop_with_one_line_on_missing_or_broken_inputs(demo_root, tmp_path):
    unfinished = tmp_path / "runs" / "asr" / "half"
    (unfinished / "processor").mkdir(parents=True)
    (unfinished / "config.yaml").write_text("name: half\n")
    proc = _cli("model", "--root", str(tmp_path), "--run", "runs/asr/half")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {unfinished} has no metrics.json: the run has not finished (rerun train.asr to complete it)"
    ]
    proc = _cli("dataset", "--root", str(tmp_path))
    assert proc.returncode == 2 and "shards/index.json is missing" in proc.stderr


@pytest.fixture
def broken_copy(demo_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(demo_root, root, ignore=shutil.ignore_patterns("runs", "cards", "cache"))
    return root


def test_a_corrupted_shard_stops_card_and_publish(broken_copy):
    tar = next((broken_copy / "shards" / "train").glob("*.tar"))
    data = bytearray(tar.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte flipped
    tar.write_bytes(bytes(data))
    for command in (
        ["dataset", "--root", str(broken_copy)],
        ["publish", "--root", str(broken_copy), "--repo", "someone/x", "--dry-run"],
    ):
        proc = _cli(*command)
        assert proc.returncode == 2
        assert proc.stderr.strip().splitlines() == [
            f"error: shard shards/train/{tar.name} does not match its sha256 in shards/index.json "
            "(altered or corrupted: rerun `python -m filter.shard`)"
        ]
    assert not (broken_copy / "cards" / "upload").exists()
    assert not (broken_copy / "cards" / "dataset" / "README.md").exists()


def test_partial_extra_or_miscounted_shards_are_refused(broken_copy):
    index_path = broken_copy / "shards" / "index.json"
    original = index_path.read_text()
    stale = broken_copy / "shards" / "test" / "shqip-av-test-000007.tar"
    stale.write_bytes(b"")
    with pytest.raises(CardError, match="shqip-av-test-000007.tar is not in shards/index.json"):
        build_dataset_card(DatasetCardConfig(root=str(broken_copy)))
    stale.unlink()
    index = json.loads(original)
    index["splits"]["train"]["shards"][0]["samples"] += 1
    index_path.write_text(json.dumps(index))
    with pytest.raises(CardError, match="holds .* samples, the index says"):
        build_dataset_card(DatasetCardConfig(root=str(broken_copy)))
    index_path.write_text(original)
    tar = next((broken_copy / "shards" / "validation").glob("*.tar"))
    tar.write_bytes(tar.read_bytes()[:1000])
    with pytest.raises(CardError, match="bytes, the index says"):
        build_dataset_card(DatasetCardConfig(root=str(broken_copy)))


def test_dry_run_is_exactly_what_publish_would_send(demo_root):
    summary = publish(PublishConfig(root=str(demo_root), repo="someone/shqip-av", dry_run=True))
    assert summary["published"] is False
    folder = demo_root / "cards" / "upload" / "someone--shqip-av"
    staged = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert staged == sorted(path for path, _ in summary["files"])
    index = json.loads((demo_root / "shards" / "index.json").read_text())
    tars = {e["path"]: e["sha256"] for s in index["splits"].values() for e in s["shards"]}
    assert {p for p in staged if p.endswith(".tar")} == set(tars)
    assert {"README.md", "shards/index.json", "assets/durations.png", "assets/funnel.png"} <= set(staged)
    for path, sha in tars.items():
        assert hashlib.sha256((folder / path).read_bytes()).hexdigest() == sha

    # the operations a publish to an empty repo makes: every staged file, to the same repo path
    from cards.publish import _hashes

    files = [UploadFile(p, folder / p, (folder / p).stat().st_size, *_hashes(folder / p)) for p in staged]
    commits = commit_plan(files, {}, owned=("shards/", "assets/"), chunk_bytes=10**12)
    ops = [op for commit in commits for op in commit]
    assert all(isinstance(op, CommitOperationAdd) for op in ops)
    assert sorted((op.path_in_repo, op.path_or_fileobj) for op in ops) == sorted((p, str(folder / p)) for p in staged)
    assert commits[-1][0].path_in_repo in (
        "README.md",
        "assets/durations.png",
        "assets/funnel.png",
        "shards/index.json",
    )


def test_republish_skips_uploaded_files_and_deletes_withdrawn_shards(tmp_path):
    def file(path, content):
        local = tmp_path / path.replace("/", "_")
        local.write_bytes(content)
        from cards.publish import _hashes

        return UploadFile(path, local, len(content), *_hashes(local))

    files = [
        file("README.md", b"card v2"),
        file("shards/index.json", b"{}"),
        file("shards/train/shqip-av-train-000000.tar", b"a" * 600),
        file("shards/train/shqip-av-train-000001.tar", b"b" * 600),
        file("shards/test/shqip-av-test-000000.tar", b"rewritten after a takedown" * 30),
    ]
    remote = {
        ".gitattributes": "x",
        "README.md": "old card",
        "shards/train/shqip-av-train-000000.tar": files[2].sha256,  # already uploaded (LFS sha256)
        "shards/index.json": files[1].git_sha1,  # already there (git blob id)
        "shards/test/shqip-av-test-000000.tar": "sha of the old content",
        "shards/test/shqip-av-test-000001.tar": "withdrawn sample's shard",
        "notes/keep-me.md": "not ours",
    }
    commits = commit_plan(files, remote, owned=("shards/", "assets/"), chunk_bytes=1000)  # 600 + 780 > 1000
    described = [[(type(op).__name__, op.path_in_repo) for op in commit] for commit in commits]
    assert described == [
        [("CommitOperationAdd", "shards/train/shqip-av-train-000001.tar")],
        [("CommitOperationAdd", "shards/test/shqip-av-test-000000.tar")],
        [("CommitOperationAdd", "README.md"), ("CommitOperationDelete", "shards/test/shqip-av-test-000001.tar")],
    ]
    assert isinstance(commits[-1][1], CommitOperationDelete)


def test_publish_to_a_refusing_hub_fails_in_one_line_and_keeps_the_token_secret(demo_root, tmp_path, refusing_hub):
    endpoint, seen = refusing_hub
    token = "hf_cardsTESTtokenNEVERshown42"
    env = {
        **os.environ,
        "HF_ENDPOINT": endpoint,
        "HF_TOKEN": token,
        "HF_HUB_OFFLINE": "0",
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    proc = _cli("publish", "--root", str(demo_root), "--repo", "someone/shqip-av", "-v", env=env)
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .startswith("error: publish to someone/shqip-av failed before anything was committed: 403")
    )
    assert "nothing reported as published" in proc.stderr
    assert "published to" not in proc.stdout
    assert token not in proc.stdout + proc.stderr
    assert seen, "the test server received no request"
    for _, path, headers in seen:
        assert token not in path
        assert headers.get("authorization") == f"Bearer {token}"
    written = [
        p for p in list(demo_root.rglob("*")) + list(tmp_path.rglob("*")) if p.is_file() and p.stat().st_size < 10**7
    ]
    assert not any(token.encode() in p.read_bytes() for p in written)


def test_publish_without_a_token_says_how_to_get_one(demo_root, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    env.update(HF_HOME=str(tmp_path / "empty-hf-home"), HF_HUB_OFFLINE="0")
    proc = _cli("publish", "--root", str(demo_root), "--repo", "someone/shqip-av", env=env)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: no Hugging Face token: set HF_TOKEN or run `hf auth login` (nothing was published)"
    )


def test_after_a_takedown_the_republish_deletes_the_withdrawn_shards(broken_copy):
    """Takedown → re-shard → publish plan against what the repo held before: the withdrawn
    speaker's shard is deleted from the repo and the card/index are replaced."""
    from cards.publish import _hashes
    from collect.takedown import apply_takedown
    from filter.shard import ShardConfig, pack_shards
    from shqip_av.config import from_dict, load_yaml

    before = publish(PublishConfig(root=str(broken_copy), repo="someone/shqip-av", dry_run=True))
    folder = broken_copy / "cards" / "upload" / "someone--shqip-av"
    remote = {path: _hashes(folder / path)[0] for path, _ in before["files"]}  # as if published
    test_tar = "shards/test/" + next((broken_copy / "shards" / "test").glob("*.tar")).name
    speaker = json.loads(next(iter(wds.WebDataset(str(broken_copy / test_tar), shardshuffle=False)))["json"])["speaker"]

    (broken_copy / "takedown.txt").write_text(f"subject:{speaker}\n")
    apply_takedown(broken_copy)
    with pytest.raises(CardError, match="index.json is missing"):  # nothing publishable until re-sharded
        publish(PublishConfig(root=str(broken_copy), repo="someone/shqip-av", dry_run=True))
    pack_shards(from_dict(ShardConfig, {**load_yaml(broken_copy / "shards" / "shard.yaml"), "root": str(broken_copy)}))
    after = publish(PublishConfig(root=str(broken_copy), repo="someone/shqip-av", dry_run=True))
    assert test_tar not in dict(after["files"])
    files = [UploadFile(p, folder / p, size, *_hashes(folder / p)) for p, size in after["files"]]
    commits = commit_plan(files, remote, owned=("shards/", "assets/"), chunk_bytes=10**12)
    ops = {(type(op).__name__, op.path_in_repo) for commit in commits for op in commit}
    assert ("CommitOperationDelete", test_tar) in ops
    assert ("CommitOperationAdd", "README.md") in ops and ("CommitOperationAdd", "shards/index.json") in ops
    unchanged = [p for p, _ in after["files"] if p.endswith(".tar") and remote.get(p) == _hashes(folder / p)[0]]
    assert unchanged and not any(("CommitOperationAdd", p) in ops for p in unchanged)


def test_shards_still_holding_a_withdrawn_video_are_not_carded(broken_copy):
    record = json.loads((broken_copy / "clips" / "manifest.jsonl").read_text().splitlines()[0])
    (broken_copy / "takedown.txt").write_text(f"video:{record['video_id']}\n")  # listed, takedown not yet run
    with pytest.raises(
        CardError, match=rf"is withdrawn \(video:{record['video_id']}\): run `python -m collect.takedown"
    ):
        publish(PublishConfig(root=str(broken_copy), repo="someone/shqip-av", dry_run=True))


def test_recorded_dialects_are_counted_in_the_card(broken_copy):
    manifest = broken_copy / "raw" / "manifest.jsonl"
    kept = {
        json.loads(line)["video_id"] for line in (broken_copy / "clips" / "manifest.jsonl").read_text().splitlines()
    }
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    tagged = [r for r in records if r["video_id"] in kept][:2]
    for r in tagged:
        r["source"]["dialect"] = "gheg"  # as sources.yaml's `dialect: gheg` records it
    manifest.write_text("".join(json.dumps(r) + "\n" for r in records))
    text = DatasetCard.load(build_dataset_card(DatasetCardConfig(root=str(broken_copy)))).text
    assert "- **Dialects** (from sources.yaml): gheg: 2 videos" in text
    assert "not recorded: 4 videos" in text
    assert "There is no tosk material" in text


def test_a_sync_expert_run_gets_a_card_and_publishes_as_a_loadable_model_repo(demo_expert, demo_root, tmp_path):
    """The expert's model card carries its validation accuracy as model-index results, and the folder
    a publish would upload loads with SyncExpert.from_pretrained to the same weights (the Hub itself
    cannot be reached here: the dry run stops before sending)."""
    from safetensors.torch import load_file

    from shqip_av.components.sync_expert import load_expert

    run, metrics = demo_expert
    card = ModelCard.load(build_model_card(ModelCardConfig(run=str(run), root=str(demo_root), repo="someone/expert")))
    results = {r.metric_name: r.metric_value for r in card.data.eval_results}
    assert results["sync accuracy"] == round(100 * metrics["final"]["eval_accuracy"], 2)
    assert "sync-expert" in card.data.tags and "someone/expert" in card.text
    summary = publish(PublishConfig(root=str(demo_root), repo="someone/expert", run=str(run), dry_run=True))
    staged = {path for path, _ in summary["files"]}
    assert {"README.md", "config.json", "model.safetensors", "thresholds.json", "metrics.json"} <= staged
    folder = demo_root / "cards" / "upload" / "someone--expert"
    loaded = load_expert(str(folder))
    original = load_file(run / "expert" / "model.safetensors")
    assert all(torch.equal(original[k], v) for k, v in loaded.state_dict().items() if k in original)
    assert loaded.sync_config == load_expert(str(run)).sync_config


def test_a_generator_run_gets_a_card_and_publishes_its_weights(demo_generator, demo_root):
    run, metrics, _ = demo_generator
    card = ModelCard.load(build_model_card(ModelCardConfig(run=str(run), root=str(demo_root))))
    assert "synthetic-media" in card.data.tags and "Validation during training" in card.text
    summary = publish(PublishConfig(root=str(demo_root), repo="someone/generator", run=str(run), dry_run=True))
    assert {"README.md", "config.json", "model.safetensors", "metrics.json"} <= {p for p, _ in summary["files"]}
