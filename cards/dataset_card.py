"""python -m cards dataset --root data: the dataset card, from the dataset's own records.

Writes <root>/cards/dataset/README.md (Hub YAML metadata + body, built with huggingface_hub's
DatasetCard) and its pictures in <root>/cards/dataset/assets/. Every number comes from
shards/index.json checked against the shards themselves (cards/facts.py) and from the collect and
filter records; the fixed prose is the project's policy (uses, takedown).
"""

from __future__ import annotations

import os
import re
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from shqip_av.config import option
from shqip_av.files import DatasetRoot, atomic_write_text
from shqip_av.log import get_logger
from shqip_av.schema import META_FIELDS, SCHEMA_VERSION

from cards import plots
from cards.facts import NO_LICENCE, SPLITS, TRANSCRIPT_KINDS, dataset_facts, thresholds, verify_shards

log = get_logger(__name__)


@dataclass
class DatasetCardConfig:
    root: str = option("data", "dataset root")
    repo: str = option("", "Hub dataset repo the card is for (user/name); used in links")
    pretty_name: str = option("shqip-av: Albanian audio-visual speech", "title of the card")
    contact: str = option("", "takedown contact (e-mail or URL); default: the Hub repo's discussions")
    consent_license: str = option(
        "other",
        "Hub licence id for videos admitted by explicit consent without "
        "a public licence (their consent records set the terms)",
    )
    out: str = option("", "folder for README.md and assets/ (default <root>/cards/dataset)")


_LICENSES = [  # (pattern on a normalised licence name, Hub licence id)
    (r"^(cc0|creative commons zero|cc zero)", "cc0-1.0"),
    (r"public domain", "cc0-1.0"),
    (r"(cc|creative commons)( attribution)?[ -]?by[ -]?sa|attribution[ -]share ?alike", "cc-by-sa-4.0"),
    (r"(cc|creative commons)[ -]?by\b|creative commons attribution", "cc-by-4.0"),
]


def hub_license(name: str | None, consent_license: str) -> str:
    """A licence name as platforms and sources.yaml write it → the Hub's licence id."""
    if not name:
        return consent_license
    text = name.strip().lower().replace("_", " ")
    version = re.search(r"(\d\.\d)", text)
    for pattern, hub_id in _LICENSES:
        if re.search(pattern, text):
            if hub_id.startswith("cc-by") and version:
                return hub_id.rsplit("-", 1)[0] + f"-{version.group(1)}"
            if hub_id.startswith("cc-by") and ("youtube" in text or "reuse allowed" in text):
                return hub_id.rsplit("-", 1)[0] + "-3.0"  # YouTube's Creative Commons option is CC BY 3.0
            return hub_id
    return "other"


def _licence_id(name: str, cfg: DatasetCardConfig) -> str:
    """Hub id of a licence as cards.facts names it (NO_LICENCE for consent-only videos)."""
    return hub_license(None if name == NO_LICENCE else name, cfg.consent_license)


def size_category(samples: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if samples < limit:
            return label
    return "1M<n<10M"


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def build_dataset_card(cfg: DatasetCardConfig) -> Path:
    from huggingface_hub import DatasetCard, DatasetCardData

    root = DatasetRoot(cfg.root)
    index, splits = verify_shards(cfg.root)
    facts = dataset_facts(cfg.root)
    out = Path(cfg.out) if cfg.out else root.path("cards", "dataset")
    total = sum(f.samples for f in splits.values())

    plots.duration_histogram({s: splits[s].durations for s in SPLITS}, out / "assets" / "durations.png")
    v = facts["videos"]
    funnel_steps = [
        ("sources listed", v["collected"] + v["sources_refused"]),
        ("videos collected", v["collected"]),
        ("videos with utterances", v["with_utterances"]),
    ]
    funnel_steps += [(f"utterances after {f.stage.split('.')[1]}", f.entered - f.rejected) for f in facts["funnel"]]
    plots.funnel_chart(funnel_steps, out / "assets" / "funnel.png")

    licences = sorted({_licence_id(name, cfg) for name in facts["licences"]}) or [cfg.consent_license]
    present = [s for s in SPLITS if splits[s].samples]
    data = DatasetCardData(
        language=["sq"],
        license=licences if len(licences) > 1 else licences[0],
        task_categories=["automatic-speech-recognition", "video-text-to-text"],
        size_categories=size_category(total),
        pretty_name=cfg.pretty_name,
        tags=["audio-visual", "talking-head", "lip-sync", "speech", "albanian", "webdataset"],
        configs=[
            {"config_name": "default", "data_files": [{"split": s, "path": f"shards/{s}/*.tar"} for s in present]}
        ],
    )
    body = _body(cfg, index, splits, facts)
    card = DatasetCard(f"---\n{data.to_yaml()}\n---\n\n{body}")
    atomic_write_text(out / "README.md", str(card))
    log.info(
        "dataset card written to %s (%d samples, %.3f h)",
        out / "README.md",
        total,
        sum(f.hours for f in splits.values()),
    )
    return out / "README.md"


def _dialect_line(dialects: dict[str, tuple[int, float]]) -> str:
    known = {d: v for d, v in dialects.items() if d != "not recorded"}
    if not known:
        return (
            "- **Dialects**: no video records its dialect (Gheg or Tosk; `dialect:` in sources.yaml), so the "
            "dialect coverage is unknown; evaluate on both before relying on a model for either."
        )
    parts = [f"{d}: {n} videos, {s / 60:.1f} min" for d, (n, s) in dialects.items()]
    missing = [d for d in ("gheg", "tosk") if d not in known]
    gap = f" There is no {' or '.join(missing)} material: expect worse results there." if missing else ""
    return f"- **Dialects** (from sources.yaml): {'; '.join(parts)}.{gap}"


def _transcripts_line(splits: dict, total: int) -> str:
    kinds = Counter()
    for f in splits.values():
        kinds.update(f.transcripts)
    if not kinds["pseudo-label"] and not kinds["captions, verified"]:
        return (
            f"- **Transcripts** exist only where the uploader provided captions ({kinds['captions, unverified']} "
            f"of {total} utterances); they were not checked by a recognizer nor by hand."
        )
    return (
        f"- **Transcripts**: {kinds['captions, verified']} captions verified by a recognizer, "
        f"{kinds['captions, unverified']} captions unverified, {kinds['pseudo-label']} pseudo-labels (a "
        f"recognizer's text, not checked by hand: they carry its errors), {kinds['none']} utterances without "
        f"one, of {total}. Evaluate on captioned samples (train.asr does by default)."
    )


def _review_link(cfg: DatasetCardConfig) -> list[str]:
    """A pointer to the review page (python -m filter.report --html) when the root has one."""
    page = DatasetRoot(cfg.root).path("cards", "review", "index.html")
    if not page.is_file():
        return []
    out = Path(cfg.out) if cfg.out else DatasetRoot(cfg.root).path("cards", "dataset")
    link = os.path.relpath(page, out.resolve())
    return [
        f"To look at what was kept and what was rejected, and why, open the [review page]({link}) "
        "(made with `python -m filter.report --html`; it opens from disk, in the dataset root).",
        "",
    ]


def _body(cfg: DatasetCardConfig, index: dict, splits: dict, facts: dict) -> str:
    total = sum(f.samples for f in splits.values())
    hours = sum(f.hours for f in splits.values())
    speakers = set().union(*(set(f.speakers) for f in splits.values()))
    v = facts["videos"]
    contact = cfg.contact or (
        f"a discussion on https://huggingface.co/datasets/{cfg.repo}/discussions"
        if cfg.repo
        else "the maintainers of this repository (open a discussion on its Hub page)"
    )
    parts = [f"# {cfg.pretty_name}", ""]
    parts.append(
        f"Albanian (shqip) talking-head speech: {total} utterances, {hours:.2f} hours, from {len(speakers)} "
        f"speakers in {v['with_utterances']} videos, each with a canonical 256×256 face crop, 16 kHz audio, "
        "face landmarks and, where the source had captions, a transcript. Built with the open "
        "shqip-av toolkit from videos whose licence or explicit consent is on record."
    )
    parts += [
        "",
        "## Contents",
        "",
        _table(
            ["split", "utterances", "hours", "speakers", "videos", "with transcript", "shards"],
            [
                [s, f.samples, f"{f.hours:.3f}", len(f.speakers), len(f.videos), f.with_transcript, len(f.shards)]
                for s, f in splits.items()
            ],
        ),
    ]
    parts += [
        "",
        "Transcripts by source (captions are the uploader's; *verified* means a confident Whisper agreed "
        "with them, within the character error rate in the thresholds below; pseudo-labels are that "
        "recognizer's own text where there was no caption and it was confident):",
        "",
        _table(
            ["split", *TRANSCRIPT_KINDS],
            [[s, *(f.transcripts.get(k, 0) for k in TRANSCRIPT_KINDS)] for s, f in splits.items()],
        ),
    ]
    parts += [
        "",
        "Splits are speaker-disjoint: a speaker's utterances are all in one split (a salted hash of the "
        "speaker). Counts are read from the shards, which were checked against `shards/index.json` "
        "(size and sha256 of every shard).",
        "",
        "![Utterance durations per split](assets/durations.png)",
    ]

    parts += [
        "",
        "## How it was made",
        "",
        *_review_link(cfg),
        f"- **Collected**: {v['collected']} videos; {v['sources_refused']} sources were not collected"
        + (" (" + ", ".join(f"{r}: {n}" for r, n in v["refused_reasons"][:4]) + ")" if v["refused_reasons"] else "")
        + ".",
        f"- **Rejected whole** by the filter: {v['rejected_whole']} videos"
        + (
            " (" + ", ".join(f"{r}: {n}" for r, n in facts["video_rejections"][:4]) + ")"
            if facts["video_rejections"]
            else ""
        )
        + f"; {v['with_utterances']} videos contribute utterances.",
        "- **Utterances** went through the filter's stages in this order:",
        "",
        _table(
            ["stage", "in", "rejected", "survived", "top reasons"],
            [
                [
                    f.stage.split(".")[1],
                    f.entered,
                    f.rejected,
                    _pct(f.survived),
                    ", ".join(f"{r} ({n})" for r, n in f.reasons) or "—",
                ]
                for f in facts["funnel"]
            ],
        ),
        "",
        "![What survives each step](assets/funnel.png)",
        "",
        "Speech segments come from uploader captions or Silero VAD; faces are tracked with MediaPipe "
        "FaceLandmarker; each utterance's face must be large enough, tracked throughout, sharp, and in sync "
        "with the audio; accepted crops are aligned to a fixed template by a similarity (Procrustes) "
        "transform. The thresholds used (from `clips/filter.yaml`):",
        "",
        _table(["setting", "value", "meaning"], [[k, f"`{val}`", h] for k, val, h in thresholds(cfg.root)]),
    ]

    members = index.get("members", {})
    parts += [
        "",
        f"## Sample schema (version {SCHEMA_VERSION})",
        "",
        "One WebDataset sample per utterance of one face track, key `<video_id>_<track>_<start_ms>`:",
        "",
        _table(["member", "content"], [[f"`.{m}`", d] for m, d in members.items()]),
        "",
        "Metadata fields (`.json`): " + ", ".join(f"`{f}`" for f in META_FIELDS) + ".",
        "",
        "```python",
        "import datasets",
        f'ds = datasets.load_dataset("{cfg.repo or "path/to/this/folder"}", split="train", streaming=True)',
        "```",
    ]

    basis = facts["consent_basis"]
    parts += [
        "",
        "## Licences and consent",
        "",
        "Every video entered with a consent basis on record: a public licence from an allow-list "
        "(reported by the platform or declared with a reference), or an explicit consent record "
        "(a release form or a channel's permission).",
        "",
        _table(["basis", "videos"], [[b, n] for b, n in sorted(basis.items())]),
        "",
        _table(
            ["licence", "videos", "Hub id"],
            [[name, n, _licence_id(name, cfg)] for name, n in sorted(facts["licences"].items())],
        ),
    ]

    parts += [
        "",
        "## Takedown",
        "",
        f"Anyone shown or heard in this dataset can ask for their recordings to be removed: contact {contact}, "
        "naming the video, channel or person. The entry goes into the dataset's `takedown.txt`; the toolkit "
        "then deletes every file and shard sample of it, never collects it again, and the next publication "
        "removes the affected shards from this repository (earlier revisions stay in the Hub's git history; "
        "ask the Hub for their deletion where needed).",
    ]

    parts += [
        "",
        "## Intended uses",
        "",
        "- Training and evaluating Albanian speech recognition (Whisper fine-tuning and others).",
        "- Research on audio-visual speech: lip reading, audio-visual sync, lip-sync generation for dubbing "
        "into and out of Albanian.",
        "",
        "## Out-of-scope uses",
        "",
        "- Impersonating, or making anyone appear to say what they did not say, without their consent.",
        "- Identifying or profiling the people in the videos; biometric identification.",
        "- Any synthetic audio or video made with models trained on this data must be disclosed as synthetic.",
    ]

    all_seconds = {}
    for f in splits.values():
        for speaker, secs in f.speakers.items():
            all_seconds[speaker] = all_seconds.get(speaker, 0.0) + secs
    total_seconds = sum(all_seconds.values()) or 1.0
    biggest = max(all_seconds.values(), default=0.0)
    median = statistics.median(all_seconds.values()) if all_seconds else 0.0
    parts += [
        "",
        "## Limitations",
        "",
        f"- **Speaker balance**: {len(all_seconds)} speakers; the largest holds {_pct(biggest / total_seconds)} "
        f"of the audio, the median speaker {median:.1f} s. Models trained on it will fit the largest speakers best.",
        _dialect_line(facts["dialects"]),
        _transcripts_line(splits, total),
        "- The sync, face and sharpness filters are automatic and make mistakes in both directions.",
    ]
    return "\n".join(parts) + "\n"
