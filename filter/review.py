"""The dataset review page: ``python -m filter.report --root R --html`` (DESIGN.md §10).

One self-contained page, ``R/cards/review/index.html``, that opens from disk without a server:

- the funnel (sources → collected → samples kept → per split), as bars;
- every rejection reason with its count and a contact sheet of examples: a frame of the rejected
  span with the face box and landmarks drawn; a click plays that span of the collected video;
- the kept samples by split and speaker, each with a filmstrip of its face crop, its transcript and
  its quality values (sharpness, face size, head pose, sync offset and confidence);
- filters by reason, speaker and split.

Every count comes from clips/manifest.jsonl and clips/rejected.jsonl (the split of a sample from
the shards on disk). Pictures are cut with ffmpeg into ``cards/review/thumbs/``; each is recorded
with a fingerprint of what it was made from, so a rerun makes only the pictures whose inputs changed
and removes those no longer shown. Videos are linked, not copied: the page plays
``raw/<video>/video.mp4#t=start,end`` by a path relative to itself.
"""

from __future__ import annotations

import html
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shqip_av import ShqipError
from shqip_av.files import DatasetRoot, UnsafePathError, atomic_write_bytes, atomic_write_text, safe_id
from shqip_av.log import get_logger, progress
from shqip_av.manifest import read_jsonl
from shqip_av.media import MediaError, frame_at, run_ffmpeg

log = get_logger(__name__)

PICTURES_VERSION = 1  # bump when the drawing changes: every picture is made again
EXAMPLES_PER_REASON = 12  # pictures on a reason's contact sheet (the count is of all)
THUMB_WIDTH = 240
STRIP_FRAMES, STRIP_SIZE = 6, 80
SPLIT_ORDER = ["train", "validation", "test", "unsharded"]


@dataclass
class Card:
    """One picture on the page: a kept sample or an example of a rejection."""

    key: str
    video_id: str
    speaker: str
    split: str
    start: float | None  # seconds in the collected video; None: the whole video
    end: float | None
    play: str = ""  # root-relative video to play (with the span as a media fragment)
    picture: str = ""  # file name under thumbs/ ("" when none could be made)
    reason: str = ""
    stage: str = ""
    detail: str = ""
    value: object = None
    transcript: str | None = None
    quality: dict = field(default_factory=dict)
    video_seconds: float = 0.0  # the collected video's length (a whole-video rejection shows its middle)


@dataclass
class Review:
    root: DatasetRoot
    funnel: list[tuple[str, int]]
    refused: Counter  # collect's refusals by reason
    rejected: dict[str, list[Card]]  # reason → every rejection (the sheet shows the first few)
    stages: dict[str, str]  # reason → stage
    kept: dict[str, dict[str, list[Card]]]  # split → speaker → samples
    speakers: list[str]


# ------------------------------------------------------------------------------------ the records
def _inside(droot: DatasetRoot, *parts: str) -> Path | None:
    """``droot.path(*parts)``, or None when a record's value would lead outside the root."""
    try:
        return droot.path(*parts)
    except UnsafePathError:
        return None


def _spans(droot: DatasetRoot, video_id: str) -> dict[str, tuple[float, float, int | None]]:
    """key → (start, end, track) from filter's decisions for the video (its work folder)."""
    path = _inside(droot, "work", video_id, "decisions.json")
    if path is None or not path.is_file():
        return {}
    try:
        decisions = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    spans = {}
    for t in decisions.get("tracks", []):
        if "key" in t:
            spans[t["key"]] = (float(t["start"]), float(t["end"]), t.get("track"))
    return spans


_SPAN_IN_DETAIL = re.compile(r"(\d+(?:\.\d+)?)\s*[–-]\s*(\d+(?:\.\d+)?)\s*s\b")


def _span_of(record: dict, spans: dict) -> tuple[float | None, float | None, int | None]:
    """Where in the video a rejection lies: filter's decision for its key, else the span its detail
    names ("utterance 7.18–8.15 s"); None for a whole-video rejection."""
    if record.get("key") in spans:
        return spans[record["key"]]
    found = _SPAN_IN_DETAIL.search(record.get("detail") or "")
    if found:
        return float(found.group(1)), float(found.group(2)), None
    return None, None, None


def _split_of_keys(droot: DatasetRoot) -> dict[str, str]:
    from filter.shard import current_keys

    return {key: split for split, keys in current_keys(droot).items() for key in keys}


def prepare_review(root: str | Path) -> Review:
    """Everything the page shows, from the root's records (no pictures yet)."""
    from filter.video import speaker_of
    from shqip_av.records import RawVideo

    droot = DatasetRoot(root)
    if not droot.root.is_dir():
        raise ShqipError(f"dataset root {droot.root} does not exist")
    if not droot.path("clips", "manifest.jsonl").is_file() and not droot.path("clips", "rejected.jsonl").is_file():
        raise ShqipError(f"{droot.root} has no clips/manifest.jsonl: run `python -m filter --root {root}` first")
    raw = {r["video_id"]: r for r in read_jsonl(droot.path("raw", "manifest.jsonl"))}
    refused = Counter(r["reason"] for r in read_jsonl(droot.path("raw", "rejected.jsonl")))
    kept_records = list(read_jsonl(droot.path("clips", "manifest.jsonl")))
    rejected_records = list(read_jsonl(droot.path("clips", "rejected.jsonl")))
    split_of = _split_of_keys(droot)

    def speaker(video_id: str) -> str:
        try:
            return speaker_of(RawVideo.from_dict(raw[video_id]))
        except (KeyError, ShqipError):
            return "unknown"

    def video_file(video_id: str) -> str:
        files = raw.get(video_id, {}).get("files", {})
        return files.get("video", "")

    kept: dict[str, dict[str, list[Card]]] = defaultdict(lambda: defaultdict(list))
    speaker_split: dict[str, str] = {}
    for r in kept_records:
        meta = r.get("meta", {})
        split = split_of.get(r["key"], "unsharded")
        spk = r.get("speaker") or meta.get("speaker") or "unknown"
        speaker_split.setdefault(spk, split)
        card = Card(
            r["key"],
            r["video_id"],
            spk,
            split,
            meta.get("start"),
            meta.get("end"),
            play=video_file(r["video_id"]) or r["files"].get("mp4", ""),
            transcript=meta.get("transcript"),
            quality=dict(meta.get("quality") or {}),
        )
        card.quality.update(_pose(droot, r["video_id"], meta))
        kept[split][spk].append(card)

    rejected: dict[str, list[Card]] = defaultdict(list)
    stages: dict[str, str] = {}
    spans_cache: dict[str, dict] = {}
    for r in rejected_records:
        vid = r.get("video_id") or r.get("key", "")
        if vid not in spans_cache:
            spans_cache[vid] = _spans(droot, vid) if vid in raw else {}
        start, end, _ = _span_of(r, spans_cache[vid])
        spk = speaker(vid)
        rejected[r["reason"]].append(
            Card(
                r.get("key", vid),
                vid,
                spk,
                speaker_split.get(spk, ""),
                start,
                end,
                play=video_file(vid),
                reason=r["reason"],
                stage=r.get("stage", ""),
                detail=r.get("detail", ""),
                value=r.get("value"),
                video_seconds=float(raw.get(vid, {}).get("media", {}).get("duration") or 0.0),
            )
        )
        stages.setdefault(r["reason"], r.get("stage", ""))

    with_kept = {r["video_id"] for r in kept_records}
    funnel = [
        ("sources listed", len(raw) + sum(refused.values())),
        ("videos collected", len(raw)),
        ("videos with a kept sample", len(with_kept)),
        ("samples kept", len(kept_records)),
    ]
    funnel += [
        (f"samples in {split}", sum(len(v) for v in kept[split].values())) for split in SPLIT_ORDER if split in kept
    ]
    ordered_kept = {s: dict(sorted(kept[s].items())) for s in SPLIT_ORDER if s in kept}
    ordered_rejected = dict(sorted(rejected.items(), key=lambda kv: (-len(kv[1]), kv[0])))
    speakers = sorted({c.speaker for s in ordered_kept.values() for c in sum(s.values(), [])} |
                      {c.speaker for cards in rejected.values() for c in cards})  # fmt: skip
    return Review(droot, funnel, refused, ordered_rejected, stages, ordered_kept, speakers)


def _pose(droot: DatasetRoot, video_id: str, meta: dict) -> dict:
    """Median |yaw| and |pitch| (degrees) of the sample's face over its span, from filter's scan."""
    path = _inside(droot, "work", video_id, "faces.npz")
    name = f"track{meta.get('track', 0)}_pose"
    if path is None or not path.is_file() or meta.get("start") is None:
        return {}
    try:
        with np.load(path) as z:
            if name not in z.files:
                return {}
            fps, first = float(z["fps"]), int(z[f"track{meta.get('track', 0)}_start"])
            pose = z[name]
    except (OSError, ValueError, KeyError):
        return {}
    a = max(0, int(round(meta["start"] * fps)) - first)
    b = max(a + 1, int(round(meta["end"] * fps)) - first)
    window = pose[a:b]
    if not len(window):
        return {}
    return {
        "yaw_deg": round(float(np.median(np.abs(window[:, 0]))), 1),
        "pitch_deg": round(float(np.median(np.abs(window[:, 1]))), 1),
    }


# ------------------------------------------------------------------------------------ the pictures
def _fingerprint(*paths: Path, extra: str = "") -> str:
    parts = [str(PICTURES_VERSION), extra]
    for p in paths:
        try:
            st = p.stat()
            parts.append(f"{p.name}:{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            parts.append(f"{p.name}:missing")
    return "|".join(parts)


def _face_marks(droot: DatasetRoot, video_id: str, seconds: float) -> list[np.ndarray]:
    """Landmarks (478, 2) of each face filter tracked at that moment (in source-frame pixels)."""
    from shqip_av.components.face_tracker import FaceScan

    path = _inside(droot, "work", video_id, "faces.npz")
    if path is None or not path.is_file():
        return []
    try:
        scan = FaceScan.load(path)
    except (OSError, ValueError, KeyError):
        return []
    frame = int(round(seconds * scan.fps))
    marks = []
    for t in scan.tracks:
        if t.start <= frame < t.end:
            try:
                marks.append(np.asarray(t.landmarks[frame - t.start : frame - t.start + 1])[0])
            except (OSError, ValueError):
                continue
    return marks


def _draw_rejection(droot: DatasetRoot, card: Card, video: Path) -> bytes:
    import cv2

    t = (card.start + card.end) / 2 if card.start is not None and card.end is not None else card.video_seconds / 2
    frame = np.ascontiguousarray(frame_at(video, t)[:, :, ::-1])  # BGR, as cv2 draws and encodes
    h, w = frame.shape[:2]
    scale = THUMB_WIDTH / w
    frame = cv2.resize(frame, (THUMB_WIDTH, max(1, int(round(h * scale)))), interpolation=cv2.INTER_AREA)
    for marks in _face_marks(droot, card.video_id, t):
        pts = marks * scale
        x0, y0 = pts.min(axis=0)
        x1, y1 = pts.max(axis=0)
        cv2.rectangle(frame, (int(x0), int(y0)), (int(x1), int(y1)), (0, 200, 255), 1, cv2.LINE_AA)
        for x, y in pts[::3]:  # every third point: the mesh stays readable at thumbnail size
            cv2.circle(frame, (int(x), int(y)), 1, (80, 255, 80), -1, cv2.LINE_AA)
    ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return data.tobytes()


def _draw_strip(clip: Path, duration: float) -> bytes:
    rate = STRIP_FRAMES / max(duration, 0.1)
    proc = run_ffmpeg(
        [
            "-i", str(clip),
            "-vf", f"fps={rate:.4f},scale={STRIP_SIZE}:{STRIP_SIZE},tile={STRIP_FRAMES}x1",
            "-frames:v", "1", "-f", "image2pipe", "-c:v", "mjpeg", "-q:v", "4", "-",
        ],
        f"{clip.name}: filmstrip",
        timeout=60,
    )  # fmt: skip
    return proc.stdout


def make_pictures(review: Review, folder: Path) -> dict[str, int]:
    """The contact sheets' frames and the kept samples' filmstrips under ``folder``; a picture whose
    inputs have not changed since the last run is kept as it is. Returns {made, kept, removed, failed}."""
    droot = review.root
    folder.mkdir(parents=True, exist_ok=True)
    state_path = folder / "pictures.json"
    try:
        state = json.loads(state_path.read_text(encoding="utf-8")) if state_path.is_file() else {}
    except ValueError:
        state = {}
    jobs = []  # (card, name, fingerprint, make)
    counts = Counter()

    def leaves_root(card: Card) -> None:  # a hostile or corrupt record: shown, without a picture
        log.warning("%s: its record names a path outside the dataset root; shown without a picture", card.key)
        card.detail = (card.detail + " " if card.detail else "") + "(record names a path outside the dataset root)"
        card.play = ""  # nothing outside the root is linked from the page either
        counts["outside the root"] += 1

    for cards in review.rejected.values():
        for card in cards[:EXAMPLES_PER_REASON]:
            if not card.play:
                continue
            video, marks = _inside(droot, card.play), _inside(droot, "work", card.video_id, "faces.npz")
            if video is None or marks is None:
                leaves_root(card)
                continue
            name = safe_id(card.key) + ".jpg"
            fp = _fingerprint(video, marks, extra=f"{card.start}-{card.end}")
            jobs.append((card, name, fp, lambda c=card, v=video: _draw_rejection(droot, c, v)))
    for speakers in review.kept.values():
        for cards in speakers.values():
            for card in cards:
                clip = _inside(droot, "clips", card.video_id, f"{card.key}.mp4")
                if clip is None or (card.play and _inside(droot, card.play) is None):
                    leaves_root(card)
                    continue
                name = safe_id(card.key) + ".strip.jpg"
                duration = (card.end or 0) - (card.start or 0)
                jobs.append((card, name, _fingerprint(clip), lambda c=clip, d=duration: _draw_strip(c, d)))
    new_state = {}
    for card, name, fp, make in progress(jobs, desc="review pictures", unit="picture"):
        if state.get(name) == fp and (folder / name).is_file():
            counts["kept"] += 1
        else:
            try:
                atomic_write_bytes(folder / name, make())
                counts["made"] += 1
            except (MediaError, OSError) as e:
                log.warning("%s: no picture (%s)", card.key, str(e).splitlines()[0])
                counts["failed"] += 1
                continue
        new_state[name] = fp
        card.picture = name
    for old in folder.glob("*.jpg"):
        if old.name not in new_state:
            old.unlink()
            counts["removed"] += 1
    atomic_write_text(state_path, json.dumps(new_state, indent=1, sort_keys=True) + "\n")
    return {k: counts.get(k, 0) for k in ("made", "kept", "removed", "failed", "outside the root")}


# ------------------------------------------------------------------------------------ the page
def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _play_url(card: Card) -> str:
    """The video to play, relative to cards/review/, with the span as a media fragment."""
    if not card.play:
        return ""
    url = "../../" + "/".join(_e(p) for p in card.play.split("/"))
    if card.start is not None and card.end is not None:
        url += f"#t={card.start:.2f},{card.end:.2f}"
    return url


def _figure(card: Card, body: str) -> str:
    attrs = (
        f'class="clip" data-key="{_e(card.key)}" data-speaker="{_e(card.speaker)}" data-split="{_e(card.split)}" '
        f'data-reason="{_e(card.reason)}" data-play="{_play_url(card)}"'
    )
    picture = (
        f'<img src="thumbs/{_e(card.picture)}" alt="{_e(card.key)}" loading="lazy">'
        if card.picture
        else '<div class="nopic">no picture</div>'
    )
    button = '<span class="play" title="play this span">&#9654;</span>' if card.play else ""
    return f'<figure {attrs}><div class="frame">{picture}{button}</div><figcaption>{body}</figcaption></figure>'


QUALITY_LABELS = [
    ("sharpness", "sharpness"),
    ("eye_distance_px", "face size (eyes, px)"),
    ("yaw_deg", "|yaw| °"),
    ("pitch_deg", "|pitch| °"),
    ("sync_offset_frames", "sync offset (fr)"),
    ("sync_confidence", "sync confidence"),
    ("sync_method", "sync method"),
]


def _kept_body(card: Card) -> str:
    rows = "".join(
        f"<tr><th>{_e(label)}</th><td>{_e(card.quality[k])}</td></tr>"
        for k, label in QUALITY_LABELS
        if card.quality.get(k) is not None
    )
    transcript = (
        f'<p class="transcript">{_e(card.transcript)}</p>' if card.transcript else '<p class="none">no transcript</p>'
    )
    span = f"{card.start:.2f}–{card.end:.2f} s" if card.start is not None else ""
    problem = f'<p class="detail">{_e(card.detail)}</p>' if card.detail else ""
    return (
        f'<div class="key">{_e(card.key)}</div><div class="span">{span}</div>{problem}{transcript}<table>{rows}</table>'
    )


def _rejected_body(card: Card) -> str:
    value = f" (value {_e(card.value)})" if card.value is not None else ""
    span = f"{card.start:.2f}–{card.end:.2f} s" if card.start is not None else "whole video"
    return (
        f'<div class="key">{_e(card.key)}</div><div class="span">{_e(card.speaker)} · {span}</div>'
        f'<p class="detail">{_e(card.detail)}{value}</p>'
    )


def render_html(review: Review) -> str:
    top = max([n for _, n in review.funnel] + [1])
    funnel = "".join(
        f'<div class="bar"><span class="label">{_e(label)}</span>'
        f'<span class="fill" style="width:{100 * n / top:.1f}%"></span>'
        f'<span class="n" data-funnel="{_e(label)}">{n}</span></div>'
        for label, n in review.funnel
    )
    refused = (
        "<p>Refused at collect: " + ", ".join(f"{_e(r)} <b>{n}</b>" for r, n in review.refused.most_common()) + "</p>"
        if review.refused
        else ""
    )
    reasons = []
    for reason, cards in review.rejected.items():
        shown = cards[:EXAMPLES_PER_REASON]
        more = f" (showing {len(shown)})" if len(cards) > len(shown) else ""
        reasons.append(
            f'<section class="reason" data-reason="{_e(reason)}"><h3>{_e(reason)} '
            f'<span class="count" data-count-reason="{_e(reason)}">{len(cards)}</span>'
            f'<span class="stage">{_e(review.stages.get(reason, ""))}{more}</span></h3>'
            f'<div class="sheet">{"".join(_figure(c, _rejected_body(c)) for c in shown)}</div></section>'
        )
    kept = []
    for split, speakers in review.kept.items():
        n = sum(len(v) for v in speakers.values())
        groups = "".join(
            f'<div class="speaker" data-speaker="{_e(spk)}"><h4>{_e(spk)} <span class="n">{len(cards)}</span></h4>'
            f'<div class="sheet">{"".join(_figure(c, _kept_body(c)) for c in cards)}</div></div>'
            for spk, cards in speakers.items()
        )
        kept.append(
            f'<section class="split" data-split="{_e(split)}"><h3>{_e(split)} '
            f'<span class="count" data-count-split="{_e(split)}">{n}</span></h3>{groups}</section>'
        )
    options = {
        "reason": sorted(review.rejected),
        "speaker": review.speakers,
        "split": list(review.kept),
    }
    selects = "".join(
        f'<label>{name} <select id="filter-{name}" data-filter="{name}"><option value="">all</option>'
        + "".join(f'<option value="{_e(v)}">{_e(v)}</option>' for v in values)
        + "</select></label>"
        for name, values in options.items()
    )
    total_rejected = sum(len(c) for c in review.rejected.values())
    total_kept = sum(len(c) for s in review.kept.values() for c in s.values())
    return PAGE.format(
        title=_e(f"shqip-av review: {review.root.root.name}"),
        root=_e(review.root.root.name),
        funnel=funnel,
        refused=refused,
        selects=selects,
        total_rejected=total_rejected,
        total_kept=total_kept,
        reasons="".join(reasons) or "<p>nothing was rejected</p>",
        kept="".join(kept) or "<p>nothing was kept</p>",
        script=SCRIPT,
        style=STYLE,
    )


STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0 1.5em 3em;color:#222;background:#fafafa;overflow-wrap:anywhere}
h1{font-size:1.5em}h2{margin-top:1.6em;border-bottom:1px solid #ccc}h3{margin:1em 0 .4em}
.bar{display:grid;grid-template-columns:14em 1fr 4em;align-items:center;gap:.5em;margin:.2em 0}
.bar .fill{display:block;height:1em;background:#4a7bd0;border-radius:2px}.bar .n{text-align:right}
.count{background:#333;color:#fff;border-radius:1em;padding:0 .6em;margin-left:.4em;font-size:.85em}
.stage{color:#777;font-weight:normal;font-size:.8em;margin-left:.6em}
.filters{position:sticky;top:0;background:#fafafa;padding:.6em 0;border-bottom:1px solid #ddd;z-index:1}
.filters label{margin-right:1.2em}
.sheet{display:flex;flex-wrap:wrap;gap:.6em}
figure.clip{margin:0;width:250px;background:#fff;border:1px solid #ddd;border-radius:4px;padding:4px}
figure.clip .frame{position:relative;cursor:pointer;min-height:60px;background:#eee}
figure.clip img,figure.clip video{display:block;width:100%;max-height:200px;object-fit:contain;background:#111}
figure.clip .play{position:absolute;right:6px;bottom:6px;background:rgba(0,0,0,.6);color:#fff;
 border-radius:50%;width:1.8em;height:1.8em;text-align:center;line-height:1.8em}
figcaption{font-size:12px}.key{font-family:monospace;font-size:11px;color:#555;word-break:break-all}
.transcript{font-style:italic;margin:.2em 0}.none,.nopic{color:#999}.detail{margin:.2em 0}
figcaption table{border-collapse:collapse;width:100%}figcaption th{text-align:left;font-weight:normal;color:#666}
figcaption td{text-align:right}.speaker h4 .n{color:#777;font-weight:normal}.hidden{display:none!important}
"""

SCRIPT = """
(function(){
  var selects = document.querySelectorAll('select[data-filter]');
  function apply(){
    var want = {};
    selects.forEach(function(s){ want[s.dataset.filter] = s.value; });
    document.querySelectorAll('figure.clip').forEach(function(f){
      var inReason = f.closest('section.reason') !== null;
      var hide = (want.speaker && f.dataset.speaker !== want.speaker) ||
                 (want.split && f.dataset.split !== want.split) ||
                 (want.reason && inReason && f.dataset.reason !== want.reason) ||
                 (want.reason && !inReason);
      f.classList.toggle('hidden', !!hide);
    });
    document.querySelectorAll('section.reason, div.speaker, section.split').forEach(function(s){
      s.classList.toggle('hidden', s.querySelectorAll('figure.clip:not(.hidden)').length === 0);
    });
  }
  selects.forEach(function(s){ s.addEventListener('change', apply); });
  document.querySelectorAll('figure.clip .frame').forEach(function(frame){
    frame.addEventListener('click', function(){
      var fig = frame.closest('figure.clip'), url = fig.dataset.play;
      if (!url) return;
      var video = frame.querySelector('video');
      if (!video) {
        video = document.createElement('video');
        video.controls = true; video.src = url; video.setAttribute('playsinline', '');
        frame.innerHTML = ''; frame.appendChild(video);
      }
      var p = video.play(); if (p && p.catch) p.catch(function(){});
    });
  });
})();
"""

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<link rel="icon" href="data:,"><meta name="viewport" content="width=device-width,initial-scale=1">
<style>{style}</style></head>
<body>
<h1>Dataset review: {root}</h1>
<p>Made by <code>python -m filter.report --html</code> from clips/manifest.jsonl and clips/rejected.jsonl.
Click a picture to play its span of the collected video.</p>
<h2>Funnel</h2>
<div class="funnel">{funnel}</div>
{refused}
<div class="filters">{selects}</div>
<h2 id="rejected">Rejected <span class="count" data-count="rejected">{total_rejected}</span></h2>
{reasons}
<h2 id="kept">Kept <span class="count" data-count="kept">{total_kept}</span></h2>
{kept}
<script>{script}</script>
</body></html>
"""


def write_review(root: str | Path) -> tuple[Path, dict[str, int]]:
    """Write ``<root>/cards/review/index.html`` and its pictures; (page, picture counts)."""
    review = prepare_review(root)
    folder = review.root.path("cards", "review")
    counts = make_pictures(review, folder / "thumbs")
    page = folder / "index.html"
    atomic_write_text(page, render_html(review))
    return page, counts
