"""python -m collect.takedown --root data: remove withdrawn content everywhere it is.

Everything matching <root>/takedown.txt (video ids, channels, consent subjects, URLs; see
shqip_av.takedown) is removed from raw/ (folders, manifest lines, rejection lines, the
download archive), work/<video_id>/, clips/ (folders and manifest/rejection lines) and from
every shard tar that holds one of its samples (keys start with ``<video_id>_``). Shards are
rewritten atomically; shards/index.json is then out of date and is removed, so nothing
publishes stale counts or checksums until ``python -m filter.shard`` rebuilds it.
Running it twice is a no-op.
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from collect.download import drop_archive_lines
from shqip_av.config import option, parse_config, run_cli
from shqip_av.files import DatasetRoot, atomic_output, remove_tree
from shqip_av.log import setup_logging
from shqip_av.manifest import read_jsonl, write_jsonl
from shqip_av.takedown import TakedownList


@dataclass
class TakedownConfig:
    root: str = option("data", "dataset root")


@dataclass
class TakedownReport:
    videos: list[str] = field(default_factory=list)
    files_removed: int = 0
    lines_removed: int = 0
    samples_removed: int = 0
    shards_rewritten: int = 0

    def summary(self) -> str:
        return (f"takedown: {len(self.videos)} video(s) withdrawn; removed {self.files_removed} folder(s), "
                f"{self.lines_removed} manifest/rejection line(s), {self.samples_removed} shard sample(s) "
                f"from {self.shards_rewritten} shard(s)")


def _filter_jsonl(path: Path, drop) -> int:
    if not path.exists():
        return 0
    records = list(read_jsonl(path))
    kept = [r for r in records if not drop(r)]
    if len(kept) != len(records):
        write_jsonl(path, kept)
    return len(records) - len(kept)


def _rewrite_shard(path: Path, video_ids: set[str]) -> int:
    """Copy a tar without the members of withdrawn videos; returns how many samples went."""
    def withdrawn(name: str) -> bool:
        key = Path(name).name.split(".", 1)[0]
        return any(key.startswith(f"{v}_") for v in video_ids)

    with tarfile.open(path) as src:
        members = src.getmembers()
        doomed = {Path(m.name).name.split(".", 1)[0] for m in members if withdrawn(m.name)}
        if not doomed:
            return 0
        with atomic_output(path, suffix=".tar") as tmp:
            with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as dst:
                for m in members:
                    if not withdrawn(m.name):
                        dst.addfile(m, src.extractfile(m) if m.isfile() else None)
    return len(doomed)


def apply_takedown(root: str | Path) -> TakedownReport:
    root = DatasetRoot(root)
    takedown = TakedownList.load(root.takedown)
    report = TakedownReport()
    if not takedown:
        return report
    raw_manifest = root.path("raw", "manifest.jsonl")
    records = list(read_jsonl(raw_manifest))
    withdrawn = {r["video_id"] for r in records if takedown.match_record(r)}
    # clip records carry video_id and speaker; a subject withdrawn there counts too
    withdrawn |= {r["video_id"] for r in read_jsonl(root.path("clips", "manifest.jsonl"))
                  if r.get("video_id") and takedown.match_record(r)}
    report.videos = sorted(withdrawn)
    if not withdrawn:
        return report
    urls = {r["source"]["url"] for r in records if r["video_id"] in withdrawn}

    def drop(r: dict) -> bool:
        return r.get("video_id") in withdrawn or r.get("key") in withdrawn or r.get("url") in urls

    # manifests first: once a line is gone no stage uses the files, even if removal is interrupted
    for rel in ("raw/manifest.jsonl", "raw/rejected.jsonl", "clips/manifest.jsonl", "clips/rejected.jsonl"):
        report.lines_removed += _filter_jsonl(root.path(rel), drop)
    ids = {r["source"].get("id") for r in records if r["video_id"] in withdrawn} - {None}
    drop_archive_lines(root.path("raw", "download-archive.txt"), lambda extractor, vid: vid in ids)
    for vid in sorted(withdrawn):
        for folder in (root.path("raw", vid), root.path("raw", ".partial", vid), root.path("work", vid),
                       root.path("clips", vid)):
            report.files_removed += remove_tree(folder)
    shards = root.path("shards")
    if shards.is_dir():
        for tar in sorted(shards.rglob("*.tar")):
            n = _rewrite_shard(tar, withdrawn)
            if n:
                report.samples_removed += n
                report.shards_rewritten += 1
        if report.shards_rewritten:
            remove_tree(shards / "index.json")
    return report


def main(argv=None) -> int:
    cfg, args = parse_config(TakedownConfig, argv, prog="python -m collect.takedown",
                             description="Remove everything listed in <root>/takedown.txt from the dataset.")
    setup_logging(args.verbose)
    report = apply_takedown(cfg.root)
    print(report.summary())
    if report.shards_rewritten:
        print("shards/index.json removed: rebuild it with `python -m filter.shard --root "
              f"{cfg.root}` before publishing")
    return 0


if __name__ == "__main__":
    run_cli(main)
