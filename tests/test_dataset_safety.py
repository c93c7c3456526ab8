"""A built dataset survives bad settings, failed runs, concurrent runs and killed runs; a
takedown leaves no byte of the withdrawn samples anywhere under the root (issue: never lose a
built dataset, and make a takedown complete)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shqip_av.manifest import read_jsonl
from tests.conftest import REPO


def _snapshot(root: Path, *folders: str) -> dict[str, str]:
    out = {}
    for folder in folders:
        for p in sorted((root / folder).rglob("*")):
            if p.is_file():
                out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _run(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env
    )


def _errors(proc: subprocess.CompletedProcess) -> list[str]:
    return [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]


@pytest.fixture
def built(demo_root, tmp_path) -> Path:
    """A copy of the demo dataset with its card written: collect, filter, shard and cards done."""
    root = tmp_path / "data"
    shutil.copytree(demo_root, root, symlinks=True)
    from cards.dataset_card import DatasetCardConfig, build_dataset_card

    build_dataset_card(DatasetCardConfig(root=str(root)))
    return root


def test_a_bad_setting_stops_before_any_video_is_touched(built):
    before = _snapshot(built, "clips", "shards", "cards", "work")
    for override in (
        "faces.model=/nope.task",
        "speech.vad_model=/nope.onnx",
        "crop.size=-5",
        "sync.min_confidence=-1",
        "quality.min_coverage=1.5",
        "workers=0",
        "speech.min_utterance=20",
    ):
        proc = _run("filter", "--root", str(built), override)
        assert proc.returncode == 2, (override, proc.stderr)
        assert len(_errors(proc)) == 1, (override, proc.stderr)
    assert _snapshot(built, "clips", "shards", "cards", "work") == before


def test_failed_videos_keep_their_previous_output_and_the_run_exits_non_zero(built, monkeypatch, capsys):
    # A crash inside a worker cannot be caused on purpose with real inputs (every bad input is a
    # rejection record by design), so process_video is replaced by one that raises.
    import filter.__main__ as cli
    import filter.engine as engine

    before = {k: v for k, v in _snapshot(built, "clips").items() if not k.endswith("filter.yaml")}

    def crash(record, root, cfg):
        raise RuntimeError("simulated crash in the middle of a video")

    monkeypatch.setattr(engine, "process_video", crash)
    code = cli.main(["--root", str(built), "quality.min_sharpness=14.5"])  # a changed setting: all redo
    out = capsys.readouterr().out
    assert code == 1
    assert "9 failed" in out and "earlier results" in out
    after = {k: v for k, v in _snapshot(built, "clips").items() if not k.endswith("filter.yaml")}
    assert after == before  # every clip kept, and the manifests rebuilt identical


def test_a_done_video_with_a_missing_clip_is_redone_so_shard_advice_works(built):
    from filter.config import FilterConfig
    from filter.pipeline import prepare_clips
    from filter.shard import ShardConfig, pack_shards

    record = next(iter(read_jsonl(built / "clips" / "manifest.jsonl")))
    (built / record["files"]["mp4"]).unlink()
    salt = json.loads((built / "shards" / "index.json").read_text())["config"]["salt"]
    with pytest.raises(Exception, match="rerun `python -m filter"):
        pack_shards(ShardConfig(root=str(built), salt=salt))
    stats = prepare_clips(FilterConfig(root=str(built)))
    assert stats.processed == 1 and stats.skipped == 8
    assert (built / record["files"]["mp4"]).is_file()
    index = pack_shards(ShardConfig(root=str(built), salt=salt))
    assert sum(s["samples"] for s in index["splits"].values()) == stats.utterances


def test_shard_refuses_to_replace_shards_by_an_empty_or_much_smaller_set(built):
    from filter.shard import ShardConfig, pack_shards
    from shqip_av import ShqipError

    salt = json.loads((built / "shards" / "index.json").read_text())["config"]["salt"]
    before = _snapshot(built, "shards")
    manifest = built / "clips" / "manifest.jsonl"
    records = list(read_jsonl(manifest))
    manifest.write_text("", encoding="utf-8")
    with pytest.raises(ShqipError, match="--allow-shrink") as err:
        pack_shards(ShardConfig(root=str(built), salt=salt))
    assert "by 0" in str(err.value) and "would be dropped" in str(err.value)
    assert any(r["video_id"] in str(err.value) for r in records)
    assert _snapshot(built, "shards") == before
    # a third of the samples gone is refused too; told to, it replaces them
    manifest.write_text("".join(json.dumps(r) + "\n" for r in records[: len(records) // 3]), encoding="utf-8")
    with pytest.raises(ShqipError, match="--allow-shrink"):
        pack_shards(ShardConfig(root=str(built), salt=salt))
    assert _snapshot(built, "shards") == before
    index = pack_shards(ShardConfig(root=str(built), salt=salt, allow_shrink=True))
    assert sum(s["samples"] for s in index["splits"].values()) == len(records) // 3


def test_an_interrupted_repack_never_leaves_a_stale_index(built, monkeypatch):
    import filter.shard as shard

    salt = json.loads((built / "shards" / "index.json").read_text())["config"]["salt"]

    def killed(path, samples):
        raise KeyboardInterrupt  # the run dies while the first tar is being replaced

    monkeypatch.setattr(shard, "_write_shard", killed)
    with pytest.raises(KeyboardInterrupt):
        shard.pack_shards(shard.ShardConfig(root=str(built), salt=salt))
    assert not (built / "shards" / "index.json").exists()


def test_publish_refuses_to_delete_most_of_the_repos_shards(tmp_path):
    from cards.facts import CardError
    from cards.publish import DATASET_OWNED, PublishConfig, UploadFile, check_deletions, commit_plan

    local = tmp_path / "shqip-av-train-000000.tar"
    local.write_bytes(b"x" * 10)
    files = [UploadFile("shards/train/shqip-av-train-000000.tar", local, 10, "a" * 64, "")]
    remote = {f"shards/train/shqip-av-train-{i:06d}.tar": "b" * 64 for i in range(8)}
    commits = commit_plan(files, remote, owned=DATASET_OWNED, chunk_bytes=1 << 30)
    with pytest.raises(CardError, match="would delete 7 of the 8 shards.*--allow-delete"):
        check_deletions(commits, remote, PublishConfig(repo="u/n"))
    check_deletions(commits, remote, PublishConfig(repo="u/n", allow_delete=True))
    # one shard of eight (a takedown's re-shard) is within the default share
    files += [UploadFile(f"shards/train/shqip-av-train-{i:06d}.tar", local, 10, "b" * 64, "") for i in range(1, 7)]
    check_deletions(
        commit_plan(files, remote, owned=DATASET_OWNED, chunk_bytes=1 << 30), remote, PublishConfig(repo="u/n")
    )


def test_a_second_run_on_the_same_root_is_refused_with_the_holders_pid(built):
    from shqip_av.lock import stage_lock

    with stage_lock(built, "filter"):
        proc = _run("filter", "--root", str(built))
        assert proc.returncode == 2
        assert _errors(proc) and f"pid {os.getpid()}" in _errors(proc)[0]
        # other stages are not blocked by filter's lock
        assert _run("filter.report", "--root", str(built)).returncode == 0
    assert _run("filter", "--root", str(built)).returncode == 0  # released with its holder


def test_a_killed_filter_leaves_no_live_worker(built):
    import psutil

    proc = subprocess.Popen(
        [sys.executable, "-m", "filter", "--root", str(built), "--workers", "2", "quality.min_sharpness=14.5"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    parent = psutil.Process(proc.pid)
    deadline = time.monotonic() + 120
    children: list[psutil.Process] = []
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            children = parent.children(recursive=True)
            pythons = [c for c in children if "python" in c.name()]
        except psutil.NoSuchProcess:  # a short-lived ffmpeg child ended while being listed
            continue
        if len(pythons) >= 2 and list(built.glob("clips/*.partial")):
            break
        time.sleep(0.05)
    assert proc.poll() is None and len(children) >= 2, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    alive = children

    def running(c: psutil.Process) -> bool:
        try:
            return c.is_running() and c.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    while alive and time.monotonic() < deadline:
        alive = [c for c in alive if running(c)]
        time.sleep(0.1)
    assert not alive, [c.cmdline()[:3] for c in alive]


def test_out_of_range_settings_are_refused_and_the_defaults_are_in_range():
    from cards.publish import PublishConfig
    from collect.pipeline import CollectConfig
    from filter.config import FilterConfig
    from filter.shard import ShardConfig
    from shqip_av.config import ConfigError, from_dict, validate
    from train.asr.config import AsrConfig

    for cls in (FilterConfig, ShardConfig, CollectConfig, PublishConfig, AsrConfig):
        validate(cls())
    for cls, data, key in (
        (FilterConfig, {"crop": {"size": -5}}, "crop.size"),
        (FilterConfig, {"faces": {"detection_confidence": 2}}, "faces.detection_confidence"),
        (FilterConfig, {"probe": {"fps": 0}}, "probe.fps"),
        (ShardConfig, {"max_samples": 0}, "max_samples"),
        (ShardConfig, {"train": -0.1}, "train"),
        (AsrConfig, {"training": {"batch_size": 0}}, "training.batch_size"),
        (CollectConfig, {"retries": -1}, "retries"),
    ):
        with pytest.raises(ConfigError, match=f"'{key}' must be"):
            from_dict(cls, data)
    cfg = FilterConfig()
    cfg.crop.size = -5  # set in code, not through a file: the stage still refuses it
    with pytest.raises(ConfigError, match="crop.size"):
        validate(cfg)


def _lipsync_side(root: Path, victim: dict, demo_expert, demo_generator) -> set[bytes]:
    """What the lip-sync side makes of a person, made under the root by the real commands: the
    expert and generator runs (with their sample pictures), an evaluation listing every sample, a
    re-voiced video of the victim's face, a bundle built from those runs, and a dub of the
    victim's own source video. Returns byte needles of the results that show or speak them."""
    from export.bundle import BundleConfig, build_bundle
    from export.dub import DubConfig, dub
    from train.lipsync.evaluate import EvaluateConfig, evaluate_generator
    from train.lipsync.revoice import RevoiceConfig, revoice

    lipsync = root / "runs" / "lipsync"
    shutil.copytree(demo_expert[0], lipsync / "expert-tiny")
    shutil.copytree(demo_generator[0], lipsync / "generator-tiny", ignore=shutil.ignore_patterns("checkpoints"))
    generator = lipsync / "generator-tiny"
    assert (generator / "trained_on.json").is_file() and list((generator / "samples").glob("*.png"))
    result = evaluate_generator(
        EvaluateConfig(
            generator=str(generator),
            expert=str(lipsync / "expert-tiny"),
            root=str(root),
            split="train",
            max_samples=0,
            landmarks=False,
        )
    )
    (generator / "eval").mkdir()
    (generator / "eval" / "metrics.json").write_text(json.dumps(result))
    revoice(RevoiceConfig(generator=str(generator), root=str(root), face=victim["key"]))
    build_bundle(
        BundleConfig(
            root=str(root),
            out=str(root / "exports" / "demo-en"),
            asr="runs/asr/tiny",
            generator="runs/lipsync/generator-tiny",
            expert="runs/lipsync/expert-tiny",
            tts="espeak:en",
            license=["asr=mit", "generator=mit", "expert=mit"],
        )
    )
    source = root / victim["url"].removeprefix("local:")
    translation = source.with_name(f"{source.stem}.en.srt")
    dub(
        DubConfig(
            input=str(source),
            bundle=str(root / "exports" / "demo-en"),
            translation=str(translation),
            out=str(root / "dubs" / source.stem),
        )
    )
    dubbed = root / "dubs" / source.stem

    def middle(path):  # past the container's headers (encoder settings are alike in every file)
        data = path.read_bytes()
        return data[len(data) // 2 : len(data) // 2 + 48]

    assert (dubbed / "report.json").is_file()
    return {
        middle(dubbed / f"{source.stem}.dub.mp4"),
        middle(generator / "revoice" / "revoiced.mp4"),
        middle(next((generator / "samples").glob("*.png"))),
        json.dumps(victim["key"]).encode(),
        json.dumps(str(source)).encode(),
    }


def test_takedown_leaves_no_byte_of_the_withdrawn_samples_anywhere_under_the_root(
    demo_root, demo_run, demo_expert, demo_generator, tmp_path
):
    """The search covers every file under the root: raw, clips, shards, runs, and what the
    lip-sync side made (dubs/, exports/, the generator's pictures, re-voiced video, metrics)."""
    root = tmp_path / "data"
    shutil.copytree(demo_root, root, symlinks=True)
    run = root / "runs" / "asr" / "tiny"
    assert (run / "predictions").is_dir() and (root / "cache" / "datasets").is_dir()
    assert _run("cards", "publish", "--root", str(root), "--repo", "someone/shqip-av", "--dry-run").returncode == 0
    assert list((root / "cards" / "upload").rglob("*.tar"))
    records = list(read_jsonl(root / "clips" / "manifest.jsonl"))
    # a video of the validation split: scored in predictions/ and used by the run (model selection)
    keys_in_predictions = {r["key"] for r in read_jsonl(run / "predictions" / "validation.jsonl")}
    victim = next(r for r in records if r["key"] in keys_in_predictions and "txt" in r["files"])
    vid = victim["video_id"]
    mine = [r for r in records if r["video_id"] == vid]
    others = [r for r in records if r["video_id"] != vid]

    # what must not survive: the id, the URL, the words, and bytes of the audio, face video and landmarks
    needles = {vid.encode(), victim["url"].encode()}
    # (a sentence another video also says is that video's, and stays)
    other_raw = b"".join(p.read_bytes() for p in (root / "raw").glob("*/captions.*.vtt") if vid not in str(p))
    for r in mine:
        if "txt" in r["files"]:
            text = (root / r["files"]["txt"]).read_text(encoding="utf-8").encode("utf-8")
            if text not in other_raw:
                needles.add(text)
        for member, start in (("wav", 2000), ("mp4", 3000), ("landmarks.npy", 4000)):
            data = (root / r["files"][member]).read_bytes()
            needles.add(data[start : start + 48])
    assert any(n for n in needles if len(n) > 40)
    needles |= _lipsync_side(root, victim, demo_expert, demo_generator)
    from filter.review import write_review

    write_review(root)  # the review page shows the victim's face, words and id
    assert vid.encode() in (root / "cards" / "review" / "index.html").read_bytes()

    # a copy of the dub under another name, elsewhere in the root: its metadata names the source
    dub_copy = root / "shared-with-friends" / "holiday.mp4"
    dub_copy.parent.mkdir()
    shutil.copy(next((root / "dubs").rglob("*.dub.mp4")), dub_copy)
    (root / "takedown.txt").write_text(f"video:{vid}\n", encoding="utf-8")
    first = _run("collect.takedown", "--root", str(root))
    assert first.returncode == 1 and "shared-with-friends/holiday.mp4 still names a withdrawn video" in first.stdout
    dub_copy.unlink()  # removed by hand, as it says
    proc = _run("collect.takedown", "--root", str(root))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "deleted the source file incoming/" in first.stdout  # the sample's own recordings
    source = root / victim["url"].removeprefix("local:")  # and their captions and translations
    assert not list(source.parent.glob(f"{source.stem}.*")), list(source.parent.glob(f"{source.stem}.*"))
    found = []
    for path in root.rglob("*"):
        if path.is_file() and path.name != "takedown.txt":
            data = path.read_bytes()
            found += [(str(path.relative_to(root)), n[:20]) for n in needles if n in data]
    assert not found, found
    # what it could not erase is said: the run trained on it is marked, and its card says so
    assert json.loads((run / "withdrawn.json").read_text())["videos"] == 1
    from cards.model_card import ModelCardConfig, build_model_card

    card = build_model_card(ModelCardConfig(run=str(run), root=str(root))).read_text(encoding="utf-8")
    assert "Trained on withdrawn data" in card
    # the lip-sync side: its runs and the bundle built from them are marked, and publish refuses the bundle
    assert (root / "runs" / "lipsync" / "generator-tiny" / "withdrawn.json").is_file()
    assert not (root / "runs" / "lipsync" / "generator-tiny" / "samples").exists()
    assert not (root / "dubs").exists() or not list((root / "dubs").rglob("*.mp4"))
    assert (root / "exports" / "demo-en" / "withdrawn.json").is_file()
    refused = _run(
        "cards",
        "publish",
        "--root",
        str(root),
        "--repo",
        "someone/b",
        "--bundle",
        str(root / "exports" / "demo-en"),
        "--dry-run",
    )
    assert refused.returncode == 2 and "withdrawn" in refused.stderr
    # the other videos' samples are all still there
    assert {r["key"] for r in read_jsonl(root / "clips" / "manifest.jsonl")} == {r["key"] for r in others}

    again = _run("collect.takedown", "--root", str(root))
    assert again.returncode == 0 and "0 video(s) withdrawn" in again.stdout
    (root / "takedown.txt").write_text(f"video:{vid}\nvideo:no-such-video\n", encoding="utf-8")
    typo = _run("collect.takedown", "--root", str(root))
    assert typo.returncode == 1 and "no-such-video" in typo.stdout and "matches nothing" in typo.stdout


def test_takedown_and_report_on_a_missing_root_fail(tmp_path):
    for args in (
        ("collect.takedown", "--root", str(tmp_path / "nope")),
        ("filter.report", "--root", str(tmp_path / "nope")),
    ):
        proc = _run(*args)
        assert proc.returncode == 2 and len(_errors(proc)) == 1, proc.stderr


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("takedown.txt", b"video:caf\xe9\n", "takedown.txt:1: the takedown list is not UTF-8"),
        (
            "sources.yaml",
            b"sources:\n  - url: https://x.org/v\n    title: caf\xe9\n",
            "sources.yaml:3: the sources file is not UTF-8",
        ),
        ("sources.yaml", b"sources:\n  - url: https://x.org/v\n    title: [a, b]\n", "'title' must be a single value"),
        (
            "sources.yaml",
            b"sources:\n  - url: https://x.org/v\n    consent: {kind: release, subject: A, reference: r, "
            b"granted: 2999-01-01}\n",
            "is in the future",
        ),
        (
            "sources.yaml",
            b"sources:\n  - url: https://x.org/v\n    consent: {kind: release, subject: A, reference: r, "
            b"granted: soon}\n",
            "must be a date",
        ),
    ],
)
def test_bad_text_inputs_get_one_line_naming_the_file(tmp_path, name, content, message):
    (tmp_path / name).write_bytes(content)
    if name == "sources.yaml":
        proc = _run("collect", "--root", str(tmp_path))
    else:
        (tmp_path / "raw").mkdir()
        (tmp_path / "raw" / "manifest.jsonl").write_text("")
        proc = _run("collect.takedown", "--root", str(tmp_path))
    assert proc.returncode == 2 and len(_errors(proc)) == 1 and message in _errors(proc)[0], proc.stderr


def test_a_yaml_alias_bomb_is_refused_quickly(tmp_path):
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    bomb = "sources:\n  - url: https://x.org/v\n    title: *i\n" + "\n".join("x" + ln for ln in lines[:0])
    (tmp_path / "sources.yaml").write_text("anchors:\n" + "\n".join("  " + ln for ln in lines) + "\n" + bomb)
    start = time.monotonic()
    proc = _run("collect", "--root", str(tmp_path))
    assert proc.returncode == 2 and "aliases" in proc.stderr and time.monotonic() - start < 60
    (tmp_path / "bomb.yaml").write_text("\n".join(lines) + "\n")
    proc = _run("filter.shard", "--root", str(tmp_path), "--config", str(tmp_path / "bomb.yaml"))
    assert proc.returncode == 2 and "aliases" in proc.stderr


def test_outputs_follow_the_umask_and_sample_keys_match_their_start(demo_root, tmp_path):
    from shqip_av.files import atomic_write_text

    path = atomic_write_text(tmp_path / "a.txt", "x")
    assert path.stat().st_mode & 0o777 == 0o666 & ~_umask()
    for r in read_jsonl(demo_root / "clips" / "manifest.jsonl"):
        assert r["key"].endswith(f"_{round(r['meta']['start'] * 1000)}"), r["key"]
        for rel in r["files"].values():
            assert (demo_root / rel).stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_the_docs_webdataset_snippet_runs_on_a_built_dataset(demo_root, tmp_path, monkeypatch):
    readme = (REPO / "docs" / "stages.md").read_text(encoding="utf-8")
    start = readme.index("```python\nimport glob\nimport webdataset")
    snippet = readme[start + len("```python\n") : readme.index("```", start + 10)]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").symlink_to(demo_root)
    scope: dict = {}
    exec(compile(snippet, "docs/stages.md", "exec"), scope)  # noqa: S102 - the docs' own code
    assert scope["sample"]["json"]["schema_version"] == 1 and len(scope["ds"]) > 0


def test_progress_in_a_log_is_a_line_now_and_then_not_a_line_per_update(caplog):
    from shqip_av.log import progress

    with caplog.at_level("INFO", logger="shqip_av.progress"):
        assert list(progress(range(1000), desc="work", unit="item", every=3600)) == list(range(1000))
    lines = [r.getMessage() for r in caplog.records if r.name == "shqip_av.progress"]
    assert lines == [lines[-1]] and lines[0].startswith("work: 1000/1000 item done")


def test_a_stage_writes_nothing_outside_the_root(demo_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(demo_root, root, symlinks=True)
    home = tmp_path / "home"
    home.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("MPLCONFIGDIR", "HF_MODULES_CACHE", "XDG_CACHE_HOME", "HF_DATASETS_CACHE", "HF_HOME")
    }
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"))
    proc = _run("cards", "dataset", "--root", str(root), env=env)
    assert proc.returncode == 0, proc.stderr
    assert not [p for p in home.rglob("*") if p.is_file()]
    assert (root / "cache" / "matplotlib").is_dir()


def test_cards_refuse_a_dataset_with_no_samples(built):
    from filter.shard import ShardConfig, pack_shards

    salt = json.loads((built / "shards" / "index.json").read_text())["config"]["salt"]
    (built / "clips" / "manifest.jsonl").write_text("", encoding="utf-8")
    pack_shards(ShardConfig(root=str(built), salt=salt, allow_shrink=True))
    before = _snapshot(built, "cards")
    proc = _run("cards", "dataset", "--root", str(built))
    assert proc.returncode == 2 and "no samples" in _errors(proc)[0]
    assert _snapshot(built, "cards") == before
