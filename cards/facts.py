"""What the dataset card says, gathered from the project's own records, never typed by hand.

``verify_shards`` reads every shard listed in shards/index.json: it checks size and sha256,
counts the samples, and reads each sample's metadata. A dataset whose index does not verify
(missing, partial, extra or altered shards; counts that disagree) raises ``CardError`` naming the
first problem, so no card is written and nothing is published from it.
``dataset_facts`` adds the collect and filter records: how many videos came in and what share
survived each filter, licences and consent, speaker balance, the thresholds used.
"""

from __future__ import annotations

import json
import tarfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from shqip_av import ShqipError, schema
from shqip_av.files import DatasetRoot, sha256_file
from shqip_av.log import progress
from shqip_av.manifest import read_jsonl
from shqip_av.takedown import TakedownList

SPLITS = ("train", "validation", "test")
# the order in which filter's stages see an utterance (DESIGN.md §3)
FILTER_STAGES = ("filter.probe", "filter.speech", "filter.transcripts", "filter.faces", "filter.quality", "filter.sync")
# how a sample's transcript came to be (its metadata: transcript_source and transcript_check)
TRANSCRIPT_KINDS = ("captions, verified", "captions, unverified", "pseudo-label", "none")
NO_LICENCE = "none (explicit consent)"  # the licence column of videos admitted by a consent record alone


class CardError(ShqipError):
    pass


@dataclass
class SplitFacts:
    samples: int = 0
    seconds: float = 0.0
    durations: list[float] = field(default_factory=list)
    speakers: Counter = field(default_factory=Counter)  # speaker → seconds
    videos: set = field(default_factory=set)
    with_transcript: int = 0
    transcripts: Counter = field(default_factory=Counter)  # TRANSCRIPT_KINDS → samples
    shards: list[dict] = field(default_factory=list)  # the index entries, verified

    @property
    def hours(self) -> float:
        return self.seconds / 3600


def _members(path: Path):
    """(key, {suffix: bytes of json/txt, or None}) per sample of a WebDataset tar, in order."""
    return dict(schema.read_tar_samples(path, wanted=("json", "txt")))


def verify_shards(root: str | Path) -> tuple[dict, dict[str, SplitFacts]]:
    """(index, facts per split) after checking every shard against shards/index.json."""
    droot = DatasetRoot(root)
    index_path = droot.path("shards", "index.json")
    if not index_path.is_file():
        raise CardError(f"{index_path} is missing: run `python -m filter.shard --root {root}` first")
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise CardError(f"{index_path} is not valid JSON ({e})") from None
    takedown = TakedownList.load(droot.takedown)
    facts: dict[str, SplitFacts] = {}
    listed = set()
    entries = [(split, e) for split in SPLITS for e in index.get("splits", {}).get(split, {}).get("shards", [])]
    for split, entry in progress(entries, desc="verifying shards", unit="shard"):
        path = droot.path(entry["path"])
        listed.add(path.resolve())
        if not path.is_file():
            raise CardError(f"shard {entry['path']} is listed in shards/index.json but missing")
        if path.stat().st_size != entry["bytes"]:
            raise CardError(
                f"shard {entry['path']} has {path.stat().st_size} bytes, the index says {entry['bytes']} "
                "(partial or altered: rerun `python -m filter.shard`)"
            )
        if sha256_file(path) != entry["sha256"]:
            raise CardError(
                f"shard {entry['path']} does not match its sha256 in shards/index.json "
                "(altered or corrupted: rerun `python -m filter.shard`)"
            )
        try:
            samples = _members(path)
        except (tarfile.TarError, OSError) as e:
            raise CardError(f"shard {entry['path']} is not a readable tar ({e})") from None
        if len(samples) != entry["samples"]:
            raise CardError(f"shard {entry['path']} holds {len(samples)} samples, the index says {entry['samples']}")
        f = facts.setdefault(split, SplitFacts())
        f.shards.append(entry)
        for key, members in samples.items():
            if "json" not in members:
                raise CardError(f"sample {key} in {entry['path']} has no .json metadata")
            meta = json.loads(members["json"])
            withdrawn = takedown.match(
                video_id=meta.get("video_id"), url=meta.get("source_url"), subject=meta.get("speaker")
            )
            if withdrawn:
                raise CardError(
                    f"sample {key} in {entry['path']} is withdrawn ({withdrawn}): run "
                    f"`python -m collect.takedown --root {root}` and `python -m filter.shard --root {root}`"
                )
            seconds = float(meta["end"]) - float(meta["start"])
            f.samples += 1
            f.seconds += seconds
            f.durations.append(seconds)
            f.speakers[meta["speaker"]] += seconds
            f.videos.add(meta["video_id"])
            f.with_transcript += "txt" in members
            f.transcripts[transcript_kind(meta, "txt" in members)] += 1
    for split in SPLITS:
        f = facts.setdefault(split, SplitFacts())
        said = index.get("splits", {}).get(split, {})
        if said.get("samples", 0) != f.samples:
            raise CardError(
                f"shards/index.json says {said.get('samples', 0)} {split} samples, the shards hold {f.samples}"
            )
        folder = droot.path("shards", split)
        extra = sorted(p.name for p in folder.glob("*.tar*") if p.resolve() not in listed) if folder.is_dir() else []
        if extra:
            raise CardError(
                f"shards/{split}/{extra[0]} is not in shards/index.json (a stale or partial shard: "
                "rerun `python -m filter.shard`)"
            )
    if not sum(f.samples for f in facts.values()):  # a card (and a publish) of nothing is a mistake
        raise CardError(
            "the shards hold no samples: check the filter and shard runs (python -m filter.report "
            f"--root {root}) before writing a card"
        )
    return index, facts


def transcript_kind(meta: dict, has_text: bool) -> str:
    """One of TRANSCRIPT_KINDS for a sample's metadata."""
    source = meta.get("transcript_source") or ""
    if not has_text or not source:
        return "none"
    if source.startswith("asr:"):
        return "pseudo-label"
    return "captions, verified" if (meta.get("transcript_check") or {}).get("verified") else "captions, unverified"


@dataclass
class StageFunnel:
    stage: str
    entered: int
    rejected: int
    reasons: list[tuple[str, int]]

    @property
    def survived(self) -> float:
        return (self.entered - self.rejected) / self.entered if self.entered else 0.0


def _load(path: Path) -> list[dict]:
    return list(read_jsonl(path)) if path.is_file() else []


def dataset_facts(root: str | Path) -> dict:
    """Collect and filter records summarised for the card (everything but the shards)."""
    droot = DatasetRoot(root)
    raw = _load(droot.path("raw", "manifest.jsonl"))
    refused = _load(droot.path("raw", "rejected.jsonl"))
    clips = _load(droot.path("clips", "manifest.jsonl"))
    rejected = _load(droot.path("clips", "rejected.jsonl"))
    if not raw:
        raise CardError(
            f"{droot.path('raw', 'manifest.jsonl')} is missing or empty: the card describes collected videos"
        )

    # videos: refused at collect, rejected whole by filter, kept with at least one utterance
    whole = [r for r in rejected if r["key"] == r["video_id"]]
    videos = {
        "sources_refused": len(refused),
        "refused_reasons": Counter(r["reason"] for r in refused).most_common(),
        "collected": len(raw),
        "rejected_whole": len({r["video_id"] for r in whole}),
        "with_utterances": len({c["video_id"] for c in clips}),
    }
    # utterances through the filter stages; other-face-selected concerns a second face, not the utterance
    per_utterance = [r for r in rejected if r["key"] != r["video_id"] and r["reason"] != "other-face-selected"]
    by_stage = defaultdict(list)
    for r in per_utterance:
        by_stage[r["stage"]].append(r["reason"])
    entered = len(clips) + len(per_utterance)
    funnel = []
    for stage in FILTER_STAGES[1:]:
        if stage == "filter.transcripts" and not _transcripts_ran(droot) and stage not in by_stage:
            continue
        reasons = by_stage.get(stage, [])
        funnel.append(StageFunnel(stage, entered, len(reasons), Counter(reasons).most_common(3)))
        entered -= len(reasons)

    bases = Counter()
    licences = Counter()
    kept = {c["video_id"] for c in clips}
    seconds_of = Counter()
    for c in clips:
        seconds_of[c["video_id"]] += c.get("duration", 0.0)
    dialects: dict[str, list] = defaultdict(lambda: [0, 0.0])  # dialect → [videos, seconds of utterances]
    for record in raw:
        if record["video_id"] in kept:
            rights = record.get("rights") or {}
            bases[rights.get("basis") or "unknown"] += 1
            licences[rights.get("license") or NO_LICENCE] += 1
            entry = dialects[(record.get("source") or {}).get("dialect") or "not recorded"]
            entry[0] += 1
            entry[1] += seconds_of[record["video_id"]]
    return {
        "videos": videos,
        "funnel": funnel,
        "video_rejections": Counter(r["reason"] for r in whole).most_common(),
        "consent_basis": dict(bases),
        "licences": dict(licences),
        "dialects": {d: (n, s) for d, (n, s) in sorted(dialects.items())},
        "all_rejections": Counter(r["reason"] for r in rejected).most_common(),
    }


def _transcripts_ran(root: DatasetRoot) -> bool:
    from shqip_av.config import load_yaml

    path = root.path("clips", "filter.yaml")
    return path.is_file() and bool(((load_yaml(path) or {}).get("transcripts") or {}).get("model"))


def thresholds(root: str | Path) -> list[tuple[str, object, str]]:
    """(key, value, meaning) of the filter settings that decide what is kept, from clips/filter.yaml."""
    import dataclasses

    from filter.config import FilterConfig
    from shqip_av.config import from_dict, load_yaml

    path = DatasetRoot(root).path("clips", "filter.yaml")
    if not path.is_file():
        raise CardError(f"{path} is missing: the card states the thresholds the filter used")
    cfg = from_dict(FilterConfig, load_yaml(path))
    rows = []
    for section in ("probe", "speech", "diarization", "transcripts", "quality", "sync", "crop"):
        obj = getattr(cfg, section, None)
        if obj is None:
            continue
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if section == "transcripts" and f.name != "model" and not cfg.transcripts.model:
                continue  # the step did not run: its thresholds decided nothing
            if isinstance(value, (int, float, bool)) or (isinstance(value, str) and section in ("sync", "transcripts")):
                rows.append((f"{section}.{f.name}", value, f.metadata.get("help", "")))
    return rows
