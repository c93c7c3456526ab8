"""python -m filter.shard --root data [--max-samples N] [--max-bytes B] [--splits speakers.tsv]

Packs the accepted samples of clips/manifest.jsonl into WebDataset tars, split train /
validation / test by a hash of each sample's speaker (so no speaker is in two splits), or by a
given speaker → split table (``--splits``: for a predefined test set), and writes
shards/index.json. Packing is deterministic: the same clips give byte-identical shards.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import webdataset as wds

from shqip_av import ShqipError, schema
from shqip_av.config import option, parse_config, run_cli, save_config, to_dict, validate
from shqip_av.files import DatasetRoot, atomic_write_text, remove_tree, sha256_file
from shqip_av.lock import stage_lock
from shqip_av.log import get_logger, progress, setup_logging
from shqip_av.manifest import read_jsonl
from shqip_av.takedown import TakedownList

log = get_logger(__name__)
SPLITS = ("train", "validation", "test")
TAR_OVERHEAD = 1024  # a member's header plus its padding, at most


@dataclass
class ShardConfig:
    root: str = option("data", "dataset root; reads clips/, writes shards/")
    max_samples: int = option(1000, "most samples per shard", min=1)
    max_bytes: int = option(1_000_000_000, "most bytes per shard (a single larger sample still gets a shard)", min=1)
    train: float = option(0.8, "share of speakers in the train split", min=0, max=1)
    validation: float = option(0.1, "share of speakers in the validation split", min=0, max=1)
    test: float = option(0.1, "share of speakers in the test split", min=0, max=1)
    salt: str = option("shqip-av-v1", "mixed into the speaker hash; changing it reshuffles speakers between splits")
    max_shrink: float = option(
        0.5,
        "largest share of the samples now in shards/ that a repack may drop; "
        "more (or an empty result) needs allow_shrink",
        min=0,
        max=1,
    )
    allow_shrink: bool = option(False, "replace the shards even when the new set is empty or much smaller")
    splits: str = option(
        "",
        "a tab-separated table with 'speaker' and 'split' columns (train, validation or test): "
        "its speakers go to their split instead of the hash's; every speaker must be listed",
    )


def read_split_table(path: str) -> dict[str, str]:
    """speaker → split from a TSV with a header naming 'speaker' and 'split' (other columns are
    ignored). A missing column, an unknown split or a speaker listed in two splits is one line."""
    from shqip_av.files import read_text_file

    try:
        text = read_text_file(path, "split table")
    except OSError as e:
        raise ShqipError(f"--splits {path}: {e.strerror or e}") from None
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    header = lines[0].split("\t") if lines else []
    if "speaker" not in header or "split" not in header:
        raise ShqipError(f"--splits {path}: the first line must name the columns, with 'speaker' and 'split'")
    who, which = header.index("speaker"), header.index("split")
    table: dict[str, str] = {}
    for number, line in enumerate(lines[1:], start=2):
        cells = line.split("\t")
        if len(cells) <= max(who, which):
            raise ShqipError(f"--splits {path}: line {number} has {len(cells)} columns, fewer than the header")
        speaker, split = cells[who].strip(), cells[which].strip()
        if split not in SPLITS:
            raise ShqipError(f"--splits {path}: line {number}: split {split!r} is not one of {', '.join(SPLITS)}")
        if table.setdefault(speaker, split) != split:
            raise ShqipError(f"--splits {path}: speaker {speaker!r} is in both {table[speaker]} and {split}")
    return table


def split_of(speaker: str, cfg: ShardConfig) -> str:
    """Deterministic split of a speaker: a hash of the name placed on the cumulative shares."""
    total = cfg.train + cfg.validation + cfg.test
    if total <= 0 or min(cfg.train, cfg.validation, cfg.test) < 0:
        raise ShqipError("split shares must be non-negative and not all zero")
    digest = hashlib.sha256(f"{cfg.salt}\0{speaker}".encode("utf-8")).digest()
    x = int.from_bytes(digest[:8], "big") / 2**64 * total
    if x < cfg.train:
        return "train"
    if x < cfg.train + cfg.validation:
        return "validation"
    return "test"


def shard_name(split: str, index: int) -> str:
    return f"shqip-av-{split}-{index:06d}.tar"


def _sample_files(root: DatasetRoot, record: dict) -> dict[str, Path]:
    files = {member: root.path(rel) for member, rel in record["files"].items()}
    missing = [m for m in schema.REQUIRED if m not in files or not files[m].is_file()]
    if missing:  # filter redoes a done video whose files are gone, so this advice works
        raise ShqipError(
            f"sample {record['key']}: missing {', '.join(missing)} under clips/; "
            f"rerun `python -m filter --root {root.root}` (it redoes that video)"
        )
    try:
        schema.check_sample_files(files, record["meta"])
    except schema.SchemaError as e:
        vid = record["video_id"]
        raise ShqipError(
            f"sample {record['key']} is not a valid sample: {e}; delete "
            f"{root.path('clips', vid)} and rerun `python -m filter --root {root.root}` "
            f"to redo that video"
        ) from None
    return files


def current_keys(root: DatasetRoot) -> dict[str, set[str]]:
    """split → sample keys in the shards now on disk (read from the tars, not the index, which a
    takedown removes)."""
    keys: dict[str, set[str]] = {}
    for split in SPLITS:
        found: set[str] = set()
        for tar in sorted(root.path("shards", split).glob("shqip-av-*.tar")):
            try:
                with tarfile.open(tar) as tf:
                    found |= {schema.split_member(name)[0] for name in tf.getnames()}
            except (tarfile.TarError, OSError):
                continue  # a damaged shard is replaced anyway
        keys[split] = found
    return keys


def check_shrink(root: DatasetRoot, new: dict[str, list], cfg: ShardConfig) -> None:
    """Refuse to replace shards by an empty or much smaller set unless told to: a broken filter
    run that kept nothing must not wipe a built dataset (and, through publish, the Hub copy)."""
    old = current_keys(root)
    old_total = sum(len(k) for k in old.values())
    new_total = sum(len(samples) for samples in new.values())
    if not old_total or cfg.allow_shrink or (new_total and new_total >= (1 - cfg.max_shrink) * old_total):
        return
    new_videos = {r["video_id"] for samples in new.values() for r, _ in samples}
    videos = sorted({schema.video_id_of_key(k) for keys in old.values() for k in keys} - new_videos)
    per_split = ", ".join(f"{s} {len(old[s])}→{len(new[s])}" for s in SPLITS)
    raise ShqipError(
        f"refusing to replace {old_total} samples in shards/ by {new_total} ({per_split}): "
        f"every sample of {len(videos)} video(s) would be dropped "
        f"({', '.join(videos[:5])}{', …' if len(videos) > 5 else ''}); check the filter run "
        f"(clips/manifest.jsonl), or pass --allow-shrink to replace them anyway"
    )


def _plan(samples: list[tuple[dict, dict[str, Path]]], cfg: ShardConfig) -> list[list[tuple[dict, dict[str, Path]]]]:
    shards, current, size = [], [], 0
    for sample in samples:
        nbytes = sum(p.stat().st_size + TAR_OVERHEAD for p in sample[1].values())
        if current and (len(current) >= cfg.max_samples or size + nbytes > cfg.max_bytes):
            shards.append(current)
            current, size = [], 0
        current.append(sample)
        size += nbytes
    if current:
        shards.append(current)
    return shards


def _write_shard(path: Path, samples: list[tuple[dict, dict[str, Path]]]) -> None:
    """Write to a temporary name and rename once complete; fixed mtime/owner make it reproducible."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        writer = wds.TarWriter(fh, user="shqip-av", group="shqip-av", mode=0o644, encoder=False, mtime=0)
        for record, files in samples:
            sample = {"__key__": record["key"]}
            sample.update({member: p.read_bytes() for member, p in files.items()})
            writer.write(sample)
        writer.close()
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def pack_shards(cfg: ShardConfig) -> dict:
    """clips/ → shards/<split>/*.tar + shards/index.json. Returns the index."""
    validate(cfg)
    root = DatasetRoot(cfg.root)
    with stage_lock(root, "shard"):
        return _pack_shards(root, cfg)


def _pack_shards(root: DatasetRoot, cfg: ShardConfig) -> dict:
    manifest = root.path("clips", "manifest.jsonl")
    if not manifest.is_file():
        raise ShqipError(f"{manifest} does not exist: run `python -m filter --root {cfg.root}` first")
    takedown = TakedownList.load(root.takedown)
    table = read_split_table(cfg.splits) if cfg.splits else None
    by_split: dict[str, list] = {s: [] for s in SPLITS}
    withdrawn = 0
    for record in read_jsonl(manifest):
        if takedown.match_record(record):
            withdrawn += 1
            continue
        schema.check_meta(record["meta"])
        if table is not None and record["speaker"] not in table:
            raise ShqipError(
                f"--splits {cfg.splits}: speaker {record['speaker']!r} (sample {record['key']}) is not in the "
                f"table; list every speaker, so that none lands in a split by accident"
            )
        split = table[record["speaker"]] if table is not None else split_of(record["speaker"], cfg)
        by_split[split].append((record, _sample_files(root, record)))

    check_shrink(root, by_split, cfg)
    # the old index goes first: a reader never sees an index describing tars being replaced
    remove_tree(root.path("shards", "index.json"))
    index = {
        "schema_version": schema.SCHEMA_VERSION,
        "members": schema.MEMBERS,
        "splits": {},
        "config": {k: v for k, v in to_dict(cfg).items() if k != "root"},
    }
    for split in SPLITS:
        samples = sorted(by_split[split], key=lambda s: s[0]["key"])
        folder = root.path("shards", split)
        folder.mkdir(parents=True, exist_ok=True)
        entries = []
        plan = _plan(samples, cfg)
        for i, shard in enumerate(progress(plan, desc=f"shard {split}", unit="shard")):
            path = folder / shard_name(split, i)
            _write_shard(path, shard)
            entries.append(
                {
                    "path": root.relative(path),
                    "samples": len(shard),
                    "bytes": path.stat().st_size,
                    "sha256": sha256_file(path),
                    "seconds": round(sum(r["duration"] for r, _ in shard), 3),
                }
            )
        keep = {shard_name(split, i) for i in range(len(plan))}
        for stale in folder.glob("shqip-av-*.tar*"):  # from an earlier, larger packing
            if stale.name not in keep:
                stale.unlink()
        seconds = sum(e["seconds"] for e in entries)
        index["splits"][split] = {
            "samples": len(samples),
            "hours": round(seconds / 3600, 4),
            "seconds": round(seconds, 3),
            "bytes": sum(e["bytes"] for e in entries),
            "speakers": len({r["speaker"] for r, _ in samples}),
            "videos": len({r["video_id"] for r, _ in samples}),
            "with_transcript": sum(1 for r, _ in samples if "txt" in r["files"]),
            "licenses": dict(sorted(Counter(r["meta"]["license"] or "consent record" for r, _ in samples).items())),
            "shards": entries,
        }
    rejected = list(read_jsonl(root.path("clips", "rejected.jsonl")))
    index["rejections"] = {
        "total": len(rejected),
        "by_reason": dict(Counter(r["reason"] for r in rejected).most_common()),
        "by_stage": dict(Counter(r["stage"] for r in rejected).most_common()),
    }
    index["withdrawn_samples"] = withdrawn
    index["config"].pop("allow_shrink")  # how this run was allowed, not what the shards are
    if cfg.splits:  # which table, without the path of the machine that packed it
        index["config"]["splits"] = {"file": Path(cfg.splits).name, "sha256": sha256_file(cfg.splits)}
    atomic_write_text(root.path("shards", "index.json"), _json(index))
    save_config(cfg, root.path("shards", "shard.yaml"))
    return index


def _json(data: dict) -> str:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def summary(index: dict) -> str:
    parts = [
        f"{s} {v['samples']} samples / {v['hours']:.4f} h / {v['speakers']} speakers / {len(v['shards'])} shards"
        for s, v in index["splits"].items()
    ]
    top = ", ".join(f"{r} {n}" for r, n in list(index["rejections"]["by_reason"].items())[:5]) or "none"
    return "shard: " + "; ".join(parts) + f"\nrejections: {top}"


def main(argv=None) -> int:
    cfg, args = parse_config(
        ShardConfig,
        argv,
        prog="python -m filter.shard",
        description="Pack accepted clips into speaker-disjoint WebDataset shards.",
    )
    setup_logging(args.verbose, root=cfg.root)
    print(summary(pack_shards(cfg)))
    return 0


if __name__ == "__main__":
    run_cli(main)
