"""filter.shard on the filtered real clips: loading with webdataset and datasets (offline),
members decode to the schema, speaker-disjoint splits, byte-identical repacking, resumption."""

from __future__ import annotations

import io
import json
import wave

import numpy as np
import pytest

from filter.shard import SPLITS, ShardConfig, pack_shards, split_of
from shqip_av import schema
from shqip_av.manifest import read_jsonl
from shqip_av.media import probe


def _config(root, **kw) -> ShardConfig:
    """Shares and a salt that put the accepted speakers into at least two splits."""
    speakers = {r["speaker"] for r in read_jsonl(root / "clips" / "manifest.jsonl")}
    assert len(speakers) >= 2
    for i in range(100):
        cfg = ShardConfig(root=str(root), train=0.34, validation=0.33, test=0.33, salt=f"test-{i}", **kw)
        if len({split_of(s, cfg) for s in speakers}) >= 2:
            return cfg
    raise AssertionError("no salt separates the speakers")


@pytest.fixture(scope="module")
def packed(real_root):
    root = real_root[0]
    cfg = _config(root, max_samples=3)
    return root, cfg, pack_shards(cfg)


def _tars(root, split):
    return sorted((root / "shards" / split).glob("*.tar"))


def test_index_counts_and_checksums(packed):
    root, cfg, index = packed
    accepted = list(read_jsonl(root / "clips" / "manifest.jsonl"))
    assert sum(index["splits"][s]["samples"] for s in SPLITS) == len(accepted)
    assert json.loads((root / "shards" / "index.json").read_text()) == index
    from shqip_av.files import sha256_file

    for split in SPLITS:
        entries = index["splits"][split]["shards"]
        assert [e["path"] for e in entries] == [f"shards/{split}/{p.name}" for p in _tars(root, split)]
        for e in entries:
            assert e["samples"] <= 3 and sha256_file(root / e["path"]) == e["sha256"]
    assert index["rejections"]["total"] == len(list(read_jsonl(root / "clips" / "rejected.jsonl")))
    assert index["rejections"]["by_reason"]["face-too-small"] >= 1


def test_no_speaker_in_two_splits(packed):
    root, _, _ = packed
    import webdataset as wds

    seen: dict[str, str] = {}
    used = set()
    for split in SPLITS:
        tars = [str(p) for p in _tars(root, split)]
        for sample in wds.WebDataset(tars, shardshuffle=False) if tars else []:
            speaker = json.loads(sample["json"])["speaker"]
            assert seen.setdefault(speaker, split) == split, f"{speaker} in {seen[speaker]} and {split}"
            used.add(split)
    assert len(used) >= 2


def test_webdataset_members_decode_to_the_schema(packed):
    root, _, _ = packed
    import webdataset as wds

    tars = [str(p) for s in SPLITS for p in _tars(root, s)]
    count = 0
    for sample in wds.WebDataset(tars, shardshuffle=False):
        count += 1
        assert "." not in sample["__key__"]
        meta = json.loads(sample["json"])
        schema.check_meta(meta)
        for member in schema.REQUIRED:
            assert member in sample, member
        n = meta["num_frames"]
        assert np.load(io.BytesIO(sample["landmarks.npy"])).shape == (n, 478, 2)
        assert np.load(io.BytesIO(sample["affine.npy"])).dtype == np.float32
        with wave.open(io.BytesIO(sample["wav"])) as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        path = root / "tmp_member.mp4"
        path.write_bytes(sample["mp4"])
        info = probe(path)
        assert (info.num_frames, info.width, info.height, info.has_audio) == (n, 256, 256, False)
    assert count == sum(1 for _ in read_jsonl(root / "clips" / "manifest.jsonl"))


def test_datasets_loads_the_shards_offline(packed):
    root, _, index = packed
    import datasets

    split = next(s for s in SPLITS if index["splits"][s]["samples"])
    ds = datasets.load_dataset("webdataset", data_files={split: [str(p) for p in _tars(root, split)]}, split=split)
    assert len(ds) == index["splits"][split]["samples"]
    row = ds[0]
    assert row["json"]["schema_version"] == 1
    assert np.asarray(row["landmarks.npy"]).shape[1:] == (478, 2)
    assert len(row["mp4"]) == row["json"]["num_frames"]  # torchcodec decodes every frame
    audio = row["wav"].get_all_samples()
    assert audio.sample_rate == 16000 and audio.data.shape[0] == 1


def test_repacking_is_byte_identical_and_repairs_a_broken_state(packed):
    root, cfg, index = packed
    before = {p: p.read_bytes() for s in SPLITS for p in _tars(root, s)}
    index_bytes = (root / "shards" / "index.json").read_bytes()
    # a killed run leaves a temporary file, a missing shard, no index, and a stale extra shard
    victim = next(iter(before))
    victim.unlink()
    (victim.parent / (victim.name + ".tmp")).write_bytes(b"half a shard")
    (root / "shards" / "index.json").unlink()
    (root / "shards" / "train" / "shqip-av-train-000099.tar").write_bytes(b"stale")
    pack_shards(cfg)
    after = {p: p.read_bytes() for s in SPLITS for p in _tars(root, s)}
    assert after == before
    assert (root / "shards" / "index.json").read_bytes() == index_bytes
    assert not list((root / "shards").rglob("*.tmp"))


def test_max_bytes_rotates_shards(real_root, tmp_path):
    root = real_root[0]
    cfg = _config(root, max_samples=1000, max_bytes=1)
    index = pack_shards(cfg)
    for split in SPLITS:  # one sample per shard when every sample exceeds the limit
        assert all(e["samples"] == 1 for e in index["splits"][split]["shards"])


def test_report_summarises_the_root(packed):
    from filter.report import report

    root, _, index = packed
    text = report(str(root))
    kept = sum(index["splits"][s]["samples"] for s in SPLITS)
    assert f"utterances kept: {kept}" in text and "hours per split: train" in text
    assert "face-too-small" in text


def test_a_split_table_puts_every_speaker_where_it_says_and_refuses_gaps(real_root, tmp_path):
    """--splits: a predefined speaker → split table (as speakers.tsv gives) decides the splits."""
    import os
    import shutil

    from shqip_av import ShqipError

    root = tmp_path / "root"
    shutil.copytree(real_root[0] / "clips", root / "clips", copy_function=os.link)
    speakers = sorted({r["speaker"] for r in read_jsonl(root / "clips" / "manifest.jsonl")})
    wanted = {s: SPLITS[i % 3] for i, s in enumerate(speakers)}
    table = tmp_path / "speakers.tsv"
    table.write_text("file\tspeaker\tsplit\n" + "".join(f"x.mp4\t{s}\t{wanted[s]}\n" for s in speakers))
    index = pack_shards(ShardConfig(root=str(root), splits=str(table)))
    for split in SPLITS:
        members = [r for r in read_jsonl(root / "clips" / "manifest.jsonl") if wanted[r["speaker"]] == split]
        assert index["splits"][split]["samples"] == len(members)
        assert index["splits"][split]["speakers"] == len({r["speaker"] for r in members})
    assert index["config"]["splits"]["file"] == "speakers.tsv" and str(tmp_path) not in json.dumps(index)

    table.write_text("file\tspeaker\tsplit\n" + "".join(f"x.mp4\t{s}\t{wanted[s]}\n" for s in speakers[1:]))
    with pytest.raises(ShqipError, match="not in the table"):
        pack_shards(ShardConfig(root=str(root), splits=str(table)))
    table.write_text("speaker\tsplit\na\ttrain\na\tvalidation\n")
    with pytest.raises(ShqipError, match="both train and validation"):
        pack_shards(ShardConfig(root=str(root), splits=str(table)))
    table.write_text("speaker\tsplit\na\tdev\n")
    with pytest.raises(ShqipError, match="'dev' is not one of"):
        pack_shards(ShardConfig(root=str(root), splits=str(table)))
    table.write_text("name\tgroup\n")
    with pytest.raises(ShqipError, match="'speaker' and 'split'"):
        pack_shards(ShardConfig(root=str(root), splits=str(table)))
