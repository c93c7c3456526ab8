"""python -m collect.takedown --root data: remove withdrawn content everywhere it is.

Everything matching <root>/takedown.txt (video ids, channels, consent subjects, URLs; see
shqip_av.takedown) is removed from every place under the root that holds a person's audio,
face or words:

- raw/ (folders, manifest and rejection lines, the download archive), work/<video_id>/,
  clips/ (folders, manifest and rejection lines);
- every shard tar that holds one of its samples (keys start with ``<video_id>_``), rewritten
  atomically; shards/index.json is then out of date and removed, so nothing publishes stale
  counts or checksums until ``python -m filter.shard`` rebuilds it;
- cards/upload/ (assembled Hub uploads hard-link the old tars), cards/review/ (the review page
  shows faces, words and ids) and cache/datasets (the Arrow cache of train.asr holds audio and
  transcripts): all are rebuilt on demand, so they go whole;
- runs/*/*/predictions/*.jsonl lines of the withdrawn samples (references and hypotheses);
- the user's own source files of withdrawn videos (sources.yaml ``path`` entries) and their
  caption files, when they lie inside the root (``--keep-sources`` keeps them, and says so);
- a training run whose data held a withdrawn video gets ``withdrawn.json``, which its model
  card states: a trained model cannot forget, it must be retrained.

Last, every remaining file under the root (except takedown.txt) is searched for the withdrawn
video ids and source URLs, and any hit is reported and makes the command fail. What cannot be
reached from here: the Hub's history of an already-published dataset, and models already
trained and published. Running it twice is a no-op; an entry that matches nothing is reported.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from glob import escape as glob_escape
from dataclasses import dataclass, field
from pathlib import Path

from collect.download import drop_archive_lines
from shqip_av.config import option, parse_config, run_cli
from shqip_av import ShqipError
from shqip_av.files import DatasetRoot, atomic_output, atomic_write_text, remove_tree, sha256_file
from shqip_av.lock import stage_locks
from shqip_av.log import setup_logging
from shqip_av.manifest import read_jsonl, write_jsonl
from shqip_av.records import utc_now
from shqip_av.schema import split_member, video_id_of_key
from shqip_av.takedown import TRAINED_ON, WITHDRAWN_MARKER, TakedownList, video_digest

LEDGER = "raw/takedown-applied.jsonl"  # sha256 of applied entries, never the entries themselves


@dataclass
class TakedownConfig:
    root: str = option("data", "dataset root")
    keep_sources: bool = option(
        False,
        "keep your own source files (sources.yaml 'path' entries) of withdrawn "
        "videos that lie inside the root; by default they are deleted too",
    )


@dataclass
class TakedownReport:
    videos: list[str] = field(default_factory=list)
    files_removed: int = 0
    lines_removed: int = 0
    samples_removed: int = 0
    shards_rewritten: int = 0

    derived_removed: list[str] = field(default_factory=list)
    runs_marked: list[str] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)  # entries that withdrew nothing, ever
    sources_removed: list[str] = field(default_factory=list)  # the user's own source files, deleted
    sources_kept: list[str] = field(default_factory=list)  # ... or kept with --keep-sources
    still_found: list[str] = field(default_factory=list)  # files that still name a withdrawn video

    def summary(self) -> str:
        lines = [
            f"takedown: {len(self.videos)} video(s) withdrawn; removed {self.files_removed} folder(s), "
            f"{self.lines_removed} manifest/rejection/prediction line(s), {self.samples_removed} shard "
            f"sample(s) from {self.shards_rewritten} shard(s)"
            + (f", and {', '.join(self.derived_removed)} (rebuilt on demand)" if self.derived_removed else "")
        ]
        for run in self.runs_marked:
            lines.append(
                f"takedown: {run} was trained on withdrawn data; its model card now says so "
                f"(retrain it; published copies are not reached from here)"
            )
        for path in self.sources_removed:
            lines.append(f"takedown: deleted the source file {path} (listed in sources.yaml; collect now refuses it)")
        for path in self.sources_kept:
            lines.append(
                f"takedown: kept the source file {path} (--keep-sources); it still holds the withdrawn footage"
            )
        for entry in self.unmatched:
            lines.append(
                f"takedown: entry {entry!r} matches nothing collected in this root (a typo?); "
                f"collect will still refuse anything it matches"
            )
        for path in self.still_found:
            lines.append(
                f"takedown: {path} still names a withdrawn video (its id, URL or, for a copy of a dub, the "
                "source's sha256 in its metadata); remove it by hand"
            )
        return "\n".join(lines)

    @property
    def ok(self) -> bool:
        return not self.unmatched and not self.still_found


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
        key = split_member(name)[0]
        return bool(key) and video_id_of_key(key) in video_ids

    with tarfile.open(path) as src:
        members = src.getmembers()
        doomed = {split_member(m.name)[0] for m in members if withdrawn(m.name)}
        if not doomed:
            return 0
        with atomic_output(path, suffix=".tar") as tmp:
            with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as dst:
                for m in members:
                    if not withdrawn(m.name):
                        dst.addfile(m, src.extractfile(m) if m.isfile() else None)
    return len(doomed)


def _rewrite_predictions(path: Path, video_ids: set[str]) -> int:
    def drop(row: dict) -> bool:
        key = str(row.get("key") or "")
        return row.get("video_id") in video_ids or (bool(key) and video_id_of_key(key) in video_ids)

    return _filter_jsonl(path, drop)


def _mark_runs(root: DatasetRoot, withdrawn: set[str], report: TakedownReport) -> None:
    """Runs trained on a withdrawn video: say so in the run (the model card repeats it)."""
    digests = {video_digest(v) for v in withdrawn}
    for run in sorted(p for p in root.path("runs").glob("*/*") if p.is_dir()):
        trained = run / TRAINED_ON
        if trained.is_file():
            try:
                seen = set(json.loads(trained.read_text(encoding="utf-8")).get("video_sha256", []))
            except ValueError:
                seen = None
        else:
            seen = None  # a run that did not record its data may hold anything
        hit = len(seen & digests) if seen is not None else None
        if hit == 0:
            continue
        marker = run / WITHDRAWN_MARKER
        previous = json.loads(marker.read_text(encoding="utf-8")) if marker.is_file() else {}
        count = (previous.get("videos") or 0) + (hit or 0) if hit is not None else previous.get("videos")
        atomic_write_text(
            marker,
            json.dumps(
                {
                    "videos": count,
                    "known": seen is not None,
                    "last_takedown": utc_now(),
                    "note": "this model was trained on data that has since been withdrawn; retrain it without "
                    "that data and stop distributing this version",
                },
                indent=2,
            )
            + "\n",
        )
        report.runs_marked.append(root.relative(run))


DUB_OWNER = "export dub"
BUNDLE_OWNER = "export bundle"


def _remove_dubs(root: DatasetRoot, digests: set[str], prefixes: set[str], report: TakedownReport) -> None:
    """Every dub under the root whose source is a withdrawn video (its report.json names the
    source's sha256): the dubbed video, its .srt, its report (the person's words) and any work
    folder left by an interrupted dub, and the generator adapted to the person's face (--keep-adapted).
    Only the dub's own files go; others in the folder stay."""
    from shqip_av.files import OWNER_RECORD, forget_owned, owned_files

    for path in sorted(root.root.rglob("report.json")):
        if path.is_symlink() or ".locks" in path.parts:
            continue
        try:
            dub = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(dub, dict) or "source_sha256" not in dub or "generated" not in dub:
            continue  # not a dub's report
        sha = str(dub.get("source_sha256") or "")
        if sha not in digests and not any(sha.startswith(p) for p in prefixes):
            continue
        folder = path.parent
        stem = Path(str(dub.get("video", ""))).name.removesuffix(".dub.mp4")
        doomed = (
            [f"{stem}.dub.mp4", f"{stem}.dub.srt", "report.json", f".{stem}.dub-work", f"{stem}.adapted-generator"]
            if stem
            else ["report.json"]
        )
        for name in doomed:
            remove_tree(folder / name)
        known = owned_files(folder, DUB_OWNER)
        if known is not None:  # the names, and files inside the named folders (the adapted generator)
            forget_owned(folder, DUB_OWNER, [n for n in known if n.split("/")[0] in doomed])
            if not [p for p in folder.iterdir() if p.name != OWNER_RECORD]:
                remove_tree(folder)  # nothing but our record was left: the folder was the dub's
        report.derived_removed.append(root.relative(folder) + "/ (dub)")


def _remove_run_media(root: DatasetRoot, withdrawn: set[str], report: TakedownReport) -> None:
    """Runs that learned from a withdrawn video (marked above) lose their sample pictures (faces of
    training samples); a re-voiced video showing or speaking with a withdrawn sample goes too."""
    from shqip_av.schema import video_id_of_key

    for marker in sorted(root.path("runs").glob(f"*/*/{WITHDRAWN_MARKER}")):
        samples = marker.parent / "samples"
        if remove_tree(samples):
            report.derived_removed.append(root.relative(samples))
    for revoiced in sorted(root.path("runs").rglob("revoiced.json")):
        try:
            info = json.loads(revoiced.read_text(encoding="utf-8"))
            keys = {str(info.get("face", "")), str(info.get("voice", ""))}
        except (OSError, ValueError, AttributeError):
            keys = set()
        if not keys or any(k and video_id_of_key(k) in withdrawn for k in keys):
            for name in ("revoiced.mp4", "revoiced.json"):
                remove_tree(revoiced.parent / name)
            report.derived_removed.append(root.relative(revoiced.parent))


def _scrub_json(root: DatasetRoot, withdrawn: set[str]) -> int:
    """Per-sample rows and key lists of withdrawn videos, removed from the JSON files of runs and
    exports (evaluation metrics, validation key lists); returns how many entries went."""
    from shqip_av.schema import video_id_of_key

    def named(value) -> bool:
        return isinstance(value, str) and (value in withdrawn or video_id_of_key(value) in withdrawn)

    def scrub(value):
        if isinstance(value, list):
            kept = [
                v
                for v in value
                if not named(v)
                and not (isinstance(v, dict) and any(named(v.get(k)) for k in ("key", "video_id", "face", "voice")))
            ]
            return [scrub(v) for v in kept], len(value) - len(kept)
        if isinstance(value, dict):
            out, gone = {}, 0
            for k, v in value.items():
                if named(k):
                    gone += 1
                    continue
                out[k], n = scrub(v)
                gone += n
            return out, gone
        return value, 0

    removed = 0
    for top in ("runs", "exports"):
        for path in sorted(root.path(top).rglob("*.json")) if root.path(top).is_dir() else []:
            if path.is_symlink() or path.name in (TRAINED_ON, WITHDRAWN_MARKER):
                continue
            raw = path.read_bytes()
            if not any(v.encode() in raw for v in withdrawn):
                continue
            try:
                data = json.loads(raw)
            except ValueError:
                continue
            clean, gone = scrub(data)
            if gone:
                atomic_write_text(path, json.dumps(clean, indent=2, ensure_ascii=False) + "\n")
                removed += gone
    return removed


def _mark_bundles(root: DatasetRoot, withdrawn: set[str], report: TakedownReport) -> None:
    """A dubbing bundle under the root whose components learned from a withdrawn video (its
    trained_on.json, or the runs it was built from when it has none) gets ``withdrawn.json``:
    publish refuses it, and it must be rebuilt from retrained runs."""
    from shqip_av.files import owned_files, record_owned

    digests = {video_digest(v) for v in withdrawn}
    marked = {root.path(r) for r in report.runs_marked}
    for index_file in sorted(root.root.rglob("model_index.json")):
        bundle = index_file.parent
        if index_file.is_symlink() or bundle.name.endswith((".partial", ".old")):
            continue
        trained = bundle / TRAINED_ON
        if trained.is_file():
            try:
                hit = bool(set(json.loads(trained.read_text(encoding="utf-8")).get("video_sha256", [])) & digests)
            except (ValueError, AttributeError):
                hit = True
        else:
            try:
                index = json.loads(index_file.read_text(encoding="utf-8"))
            except ValueError:
                continue
            sources = {
                str(e.get("trained_from")) for e in index.values() if isinstance(e, dict) and e.get("trained_from")
            }
            runs = set()
            for s in sources:
                try:
                    runs.add(Path(s).resolve() if Path(s).is_absolute() else root.path(s))
                except ShqipError:
                    continue
            hit = bool(runs & marked)
        if not hit:
            continue
        atomic_write_text(
            bundle / WITHDRAWN_MARKER,
            json.dumps(
                {
                    "last_takedown": utc_now(),
                    "note": "a component of this bundle was trained on data that has since been withdrawn; rebuild it "
                    "from retrained runs and stop distributing this version",
                },
                indent=2,
            )
            + "\n",
        )
        if owned_files(bundle, BUNDLE_OWNER) is not None:
            record_owned(bundle, BUNDLE_OWNER, [WITHDRAWN_MARKER])
        report.runs_marked.append(root.relative(bundle))


def _sweep(root: DatasetRoot, needles: set[bytes]) -> list[str]:
    """Every file under the root (but takedown.txt and the lock files) that still contains one of
    ``needles``: the check that the removal above was complete, done by searching, not by
    trusting the list of places."""
    if not needles:
        return []
    longest = max(len(n) for n in needles)
    skip = {root.takedown, root.path(LEDGER)}
    hits = []
    for path in sorted(root.root.rglob("*")):
        if not path.is_file() or path.is_symlink() or path in skip or ".locks" in path.parts:
            continue
        tail = b""
        with open(path, "rb") as fh:
            while block := fh.read(1 << 22):
                window = tail + block
                if any(n in window for n in needles):
                    hits.append(root.relative(path))
                    break
                tail = window[-longest:]
    return hits


def _ledger(root: DatasetRoot) -> set[str]:
    """sha256 of the takedown entries applied before (so a rerun does not call them unmatched)."""
    path = root.path(LEDGER)
    return {r["entry_sha256"] for r in read_jsonl(path)} if path.is_file() else set()


def _entry_digest(takedown: TakedownList, i: int) -> str:
    kind, value = takedown.entries[i]
    return hashlib.sha256(f"{kind}:{value}".encode("utf-8")).hexdigest()


def _local_sources(root: DatasetRoot, records: list[dict], withdrawn: set[str]) -> list[Path]:
    """The user's own source files (and their caption and translation sidecars, <stem>.<lang>.vtt or
    .srt) of withdrawn videos, when inside the root."""
    found = []
    for r in records:
        url = r["source"]["url"]
        if r["video_id"] not in withdrawn or not url.startswith("local:"):
            continue
        try:
            path = root.path(url[len("local:") :])
        except ShqipError:
            continue  # outside the root: not ours to touch
        sidecars = [p for ext in ("vtt", "srt") for p in path.parent.glob(f"{glob_escape(path.stem)}.*.{ext}")]
        found += [p for p in [path, *sidecars] if p.is_file()]
    return found


def apply_takedown(root: str | Path, keep_sources: bool = False) -> TakedownReport:
    droot = DatasetRoot(root)
    if not droot.root.is_dir():
        raise ShqipError(f"dataset root {droot.root} does not exist")
    if not droot.takedown.is_file():
        raise ShqipError(
            f"{droot.takedown} does not exist: write the withdrawn video ids, channels or "
            f"consent subjects there, one per line"
        )
    with stage_locks(droot, "collect", "filter", "shard", "publish"):
        return _apply(droot, keep_sources)


def _apply(root: DatasetRoot, keep_sources: bool) -> TakedownReport:
    takedown = TakedownList.load(root.takedown)
    report = TakedownReport()
    if not takedown:
        return report
    raw_manifest = root.path("raw", "manifest.jsonl")
    records = list(read_jsonl(raw_manifest))
    clip_records = list(read_jsonl(root.path("clips", "manifest.jsonl")))
    refused = list(read_jsonl(root.path("raw", "rejected.jsonl")))
    matched: set[int] = set()
    withdrawn = set()
    for r in records:
        hits = takedown.matching_record(r)
        if hits:
            matched.update(hits)
            withdrawn.add(r["video_id"])
    # clip records carry video_id and speaker; a subject withdrawn there counts too
    for r in clip_records:
        hits = takedown.matching_record(r) if r.get("video_id") else []
        if hits:
            matched.update(hits)
            withdrawn.add(r["video_id"])
    for r in refused:  # sources collect refused because of the takedown list: the entry works
        matched.update(takedown.matching(url=r.get("url"), video_id=r.get("key")))
    report.videos = sorted(withdrawn)
    applied_before = _ledger(root)
    report.unmatched = [
        takedown.describe(i)
        for i in range(len(takedown.entries))
        if i not in matched and _entry_digest(takedown, i) not in applied_before
    ]
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
        for folder in (
            root.path("raw", vid),
            root.path("raw", ".partial", vid),
            root.path("work", vid),
            *(root.path("clips", f"{vid}{s}") for s in ("", ".partial", ".old")),
        ):
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
    # the content digests of the withdrawn videos (collected file, the user's own source file):
    # a dub names its source by sha256, whatever the file was called
    digests = {
        r["media"]["sha256"] for r in records if r["video_id"] in withdrawn and (r.get("media") or {}).get("sha256")
    }
    local_sources = _local_sources(root, records, withdrawn)
    digests |= {sha256_file(p) for p in local_sources if p.suffix.lower() not in (".vtt", ".srt")}
    prefixes = {v.removeprefix("local-") for v in withdrawn if v.startswith("local-")}
    for path in local_sources:
        if keep_sources:
            report.sources_kept.append(root.relative(path))
        else:
            path.unlink()
            report.sources_removed.append(root.relative(path))
    # derived copies that are rebuilt on demand go whole
    for rel in ("cards/upload", "cards/review", "cache/datasets"):
        if remove_tree(root.path(rel)):
            report.derived_removed.append(rel)
    for path in sorted(root.path("runs").glob("*/*/predictions/*.jsonl")):
        report.lines_removed += _rewrite_predictions(path, withdrawn)
    _mark_runs(root, withdrawn, report)
    # what the lip-sync side made of the person: dubs of the video, pictures and re-voiced videos
    # of runs trained on it, per-sample rows of their metrics, bundles built from those runs
    _remove_dubs(root, digests, prefixes, report)
    _remove_run_media(root, withdrawn, report)
    report.lines_removed += _scrub_json(root, withdrawn)
    _mark_bundles(root, withdrawn, report)
    # a dub's container comment names its source's sha256: a renamed copy of a dub is found by it
    needles = {v.encode() for v in withdrawn} | {u.encode() for u in urls} | {d.encode() for d in digests if d}
    report.still_found = _sweep(root, needles)
    ledger = list(read_jsonl(root.path(LEDGER))) if root.path(LEDGER).is_file() else []
    ledger += [
        {"entry_sha256": _entry_digest(takedown, i), "applied": utc_now()}
        for i in sorted(matched)
        if _entry_digest(takedown, i) not in applied_before
    ]
    write_jsonl(root.path(LEDGER), ledger)
    return report


def main(argv=None) -> int:
    cfg, args = parse_config(
        TakedownConfig,
        argv,
        prog="python -m collect.takedown",
        description="Remove everything listed in <root>/takedown.txt from the dataset.",
    )
    setup_logging(args.verbose, root=cfg.root)
    report = apply_takedown(cfg.root, keep_sources=cfg.keep_sources)
    print(report.summary())
    if report.shards_rewritten:
        print(
            f"shards/index.json removed: rebuild it with `python -m filter.shard --root {cfg.root}` before publishing"
        )
    return 0 if report.ok else 1


if __name__ == "__main__":
    run_cli(main)
